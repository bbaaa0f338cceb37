#pragma once
/// The portable lookup GEMM (any CPU): the per-row structure for every m, built on core/'s
/// lookup_row_step. Bit-identical to the AVX2 structures (ops/lookup_gemm.hpp, numerics).

#include <cstdint>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/lookup_row.hpp"
#include "cluscomp/ops/lookup_gemm_common.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace lookup_detail {

/// Per-row structure, portable (any number of rows): vectors [j0, j0+nv) for rows [r0, r0+rows).
/// Each input row's contribution is core/lookup_row.hpp's lookup_row_step, rows ascending.
inline void gemv_block_portable(const Plan& p, int64_t r0, int64_t rows, int64_t j0, int64_t nv) {
  const int64_t ncol = nv * p.w.d;
  std::vector<float> acc(static_cast<size_t>(rows * ncol), 0.0f);  // (rows, ncol)
  std::vector<uint32_t> run(static_cast<size_t>(nv));
  const uint32_t kmax = static_cast<uint32_t>(p.w.k - 1);
  for (int64_t i = 0; i < p.w.in; ++i) {
    load_codes(p.w.codes, i * p.vpr + j0, nv, p.w.code_bits, kmax, run.data());
    for (int64_t r = 0; r < rows; ++r)
      lookup_row_step(p.w, i, run.data(), nv, p.x[(r0 + r) * p.ldx + i], acc.data() + r * ncol);
  }
  store_columns(p, acc.data(), ncol, r0, rows, j0, nv);
}

}  // namespace lookup_detail
CLUSCOMP_NAMESPACE_END
