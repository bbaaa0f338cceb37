#pragma once
/// RMSNorm as LLaMA defines it: y = x / sqrt(mean(x^2) + eps) * weight, row by row.
///
/// Numerics: the sum of squares is accumulated in double (one row is at most a few thousand
/// values, so this costs nothing and removes the length dependence of an fp32 sum); the scale is
/// rounded to fp32 once and the products are fp32, as in HF's fp32 path. Tolerance class: a few
/// fp32 ulps per element against reference::rms_norm_ref. Deterministic (rows are independent).

#include <cmath>
#include <cstdint>
#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// y (rows, dim) = rms_norm(x (rows, dim)) * weight (dim); rows contiguous with leading dimensions
/// ldx / ldy. x and y may be the same buffer. Parallel over rows on `pool` when it is worth it.
inline Status rms_norm(const float* x, int64_t ldx, const float* weight, float eps, int64_t rows,
                       int64_t dim, float* y, int64_t ldy, ThreadPool* pool = nullptr) {
  if (rows < 0 || dim <= 0 || ldx < dim || ldy < dim || !(eps > 0.0f))
    return Status(StatusCode::kInvalidArgument,
                  "rms_norm: bad shape or eps (rows " + std::to_string(rows) + ", dim " +
                      std::to_string(dim) + ", eps " + std::to_string(eps) + ")");
  if (rows == 0) return Status();
  if (!x || !weight || !y) return Status(StatusCode::kInvalidArgument, "rms_norm: null pointer");
  auto one_row = [&](int64_t r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = (xr[i] * scale) * weight[i];
  };
  parallel_for(rows * dim >= (int64_t{1} << 15) ? pool : nullptr, rows, one_row);
  return Status();
}

CLUSCOMP_NAMESPACE_END
