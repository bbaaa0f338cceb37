#pragma once
/// Dense fp32 matrix products of the CPU runtime: y (m, n) = x (m, k) . w (n, k)^T (+ bias), i.e.
/// a batch of rows times the HF weight layout (out, in). Used by every dense projection and by
/// attention (scores = q . K^T).
///
/// Numerics: fp32 inputs, fp32 accumulation. Every output element is computed by the same
/// sequence of operations whatever m, n, the blocking or the thread split: k is consumed in
/// 8-wide lanes (lane l accumulates the products with k = l mod 8, below the largest multiple of
/// 8), the 8 lanes are summed in a fixed tree, the remaining k % 8 products are added in order,
/// then the bias. So a batched prefill and a one-token decode give bit-identical rows, and results
/// never depend on the thread count. On x86-64 CPUs with AVX2+FMA (checked at run time) the lanes
/// use fused multiply-adds; elsewhere a portable path uses separate multiply and add. The two
/// paths differ in the last bits (tolerance class: fp32 dot products of length k, relative error
/// about k * 2^-24 in the worst case); within one machine the result is deterministic.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/cpu_features.hpp"
#include "cluscomp/ops/parallel.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CLUSCOMP_OPS_X86 1
#include <immintrin.h>
#else
#define CLUSCOMP_OPS_X86 0
#endif

CLUSCOMP_NAMESPACE_BEGIN

/// Arguments of matmul_nt. Row-major operands with leading dimensions (elements between rows).
struct MatmulArgs {
  const float* x = nullptr;  // (m, k), leading dimension ldx
  int64_t ldx = 0;
  const float* w = nullptr;  // (n, k), leading dimension ldw: the HF weight (out, in)
  int64_t ldw = 0;
  const float* bias = nullptr;  // (n) or null
  float* y = nullptr;           // (m, n), leading dimension ldy
  int64_t ldy = 0;
  int64_t m = 0, n = 0, k = 0;
};

namespace ops_detail {

inline constexpr int kLanes = 8;
inline constexpr int kMaxMr = 3;  // rows of x per micro-tile
inline constexpr int kMaxNr = 3;  // rows of w per micro-tile
inline constexpr int64_t kColumnsPerTask = 48;  // rows of w per parallel task (multiple of kMaxNr)
inline constexpr int64_t kRowsPerBlock = 64;    // rows of x kept hot while a task walks its w rows

/// The fixed lane-summation tree shared by both paths: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
inline float sum_lanes(const float* l) {
  const float b0 = l[0] + l[4], b1 = l[1] + l[5], b2 = l[2] + l[6], b3 = l[3] + l[7];
  return (b0 + b2) + (b1 + b3);
}

/// How the 8 lanes accumulate. matmul_nt's portable path multiplies and adds separately (its
/// results predate the fused variant and stay as they were); the stored-type products
/// (ops/stored_matmul.hpp) use std::fma on their portable path so that it is bit-identical to
/// the AVX2+FMA one.
enum class LaneMath { kAvx2Fma, kPortableMulAdd, kPortableFma };

/// Portable micro-tile: lanes emulated with arrays; Fused: std::fma (one rounding, as the AVX2
/// path), else a separately rounded multiply and add.
template <int MR, int NR, bool Fused>
inline void micro_tile_portable(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t k8,
                                float (*out)[kMaxNr]) {
  float acc[MR][NR][kLanes] = {};
  for (int64_t p = 0; p < k8; p += kLanes)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j)
        for (int l = 0; l < kLanes; ++l) {
          if (Fused) {
            acc[i][j][l] = std::fma(x[i * ldx + p + l], w[j * ldw + p + l], acc[i][j][l]);
          } else {
            const float prod = x[i * ldx + p + l] * w[j * ldw + p + l];
            acc[i][j][l] = acc[i][j][l] + prod;
          }
        }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) out[i][j] = sum_lanes(acc[i][j]);
}

#if CLUSCOMP_OPS_X86
/// AVX2+FMA micro-tile: MR x NR accumulators of 8 lanes, k in steps of 8.
template <int MR, int NR>
__attribute__((target("avx2,fma"))) inline void micro_tile_avx2(const float* x, int64_t ldx,
                                                                const float* w, int64_t ldw,
                                                                int64_t k8, float (*out)[kMaxNr]) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t p = 0; p < k8; p += kLanes) {
    __m256 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + p);
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + j * ldw + p);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  alignas(32) float lanes[kLanes];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      _mm256_store_ps(lanes, acc[i][j]);
      out[i][j] = sum_lanes(lanes);
    }
}

#endif

/// One micro-tile of y: the lane part from the chosen path, then the k tail in order, then bias.
/// a.w holds rows [w_row0, ...) of w: row j of w is a.w + (j - w_row0) * a.ldw (a caller that
/// decodes a few rows at a time passes just those).
template <int MR, int NR>
inline void tile(const MatmulArgs& a, int64_t i0, int64_t j0, LaneMath lm, int64_t w_row0) {
  const int64_t k8 = a.k / kLanes * kLanes;
  float out[kMaxMr][kMaxNr];
  const float* x = a.x + i0 * a.ldx;
  const float* w = a.w + (j0 - w_row0) * a.ldw;
  if (lm == LaneMath::kPortableFma) {
    micro_tile_portable<MR, NR, true>(x, a.ldx, w, a.ldw, k8, out);
  } else if (lm == LaneMath::kPortableMulAdd) {
    micro_tile_portable<MR, NR, false>(x, a.ldx, w, a.ldw, k8, out);
  } else {
#if CLUSCOMP_OPS_X86
    micro_tile_avx2<MR, NR>(x, a.ldx, w, a.ldw, k8, out);
#else
    micro_tile_portable<MR, NR, true>(x, a.ldx, w, a.ldw, k8, out);  // never chosen: no AVX2 here
#endif
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) {
      float s = out[i][j];
      for (int64_t p = k8; p < a.k; ++p) {
        const float prod = x[i * a.ldx + p] * w[j * a.ldw + p];
        s = s + prod;
      }
      if (a.bias) s = s + a.bias[j0 + j];
      a.y[(i0 + i) * a.ldy + j0 + j] = s;
    }
}

template <int MR>
inline void tile_rows(const MatmulArgs& a, int64_t i0, int64_t j0, int nr, LaneMath lm, int64_t w_row0) {
  switch (nr) {
    case 3: tile<MR, 3>(a, i0, j0, lm, w_row0); break;
    case 2: tile<MR, 2>(a, i0, j0, lm, w_row0); break;
    default: tile<MR, 1>(a, i0, j0, lm, w_row0); break;
  }
}

/// Columns [j_begin, j_end) of y for every row; a.w starts at row w_row0 of w (see tile).
inline void matmul_columns(const MatmulArgs& a, int64_t j_begin, int64_t j_end, LaneMath lm,
                           int64_t w_row0 = 0) {
  for (int64_t ib = 0; ib < a.m; ib += kRowsPerBlock) {
    const int64_t ie = std::min(a.m, ib + kRowsPerBlock);
    for (int64_t j = j_begin; j < j_end; j += kMaxNr) {
      const int nr = static_cast<int>(std::min<int64_t>(kMaxNr, j_end - j));
      for (int64_t i = ib; i < ie; i += kMaxMr) {
        switch (std::min<int64_t>(kMaxMr, ie - i)) {
          case 3: tile_rows<3>(a, i, j, nr, lm, w_row0); break;
          case 2: tile_rows<2>(a, i, j, nr, lm, w_row0); break;
          default: tile_rows<1>(a, i, j, nr, lm, w_row0); break;
        }
      }
    }
  }
}

}  // namespace ops_detail

/// Checks the shapes and pointers of a product; the message names the bad value.
inline Status check_matmul_args(const MatmulArgs& a) {
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "matmul_nt: " + m); };
  if (a.m < 0 || a.n < 0 || a.k < 0)
    return bad("negative extent (m " + std::to_string(a.m) + ", n " + std::to_string(a.n) + ", k " +
               std::to_string(a.k) + ")");
  if (a.m == 0 || a.n == 0) return Status();
  if (!a.y || (a.k > 0 && (!a.x || !a.w))) return bad("null operand");
  if (a.ldx < a.k || a.ldw < a.k || a.ldy < a.n)
    return bad("leading dimension too small (ldx " + std::to_string(a.ldx) + ", ldw " +
               std::to_string(a.ldw) + ", ldy " + std::to_string(a.ldy) + " for k " +
               std::to_string(a.k) + ", n " + std::to_string(a.n) + ")");
  return Status();
}

/// y = x . w^T (+ bias): see the file comment for the numerics (fp32 accumulation, per-element
/// order independent of m, blocking and threads: bit-identical rows between batched and one-row
/// calls; deterministic). Parallel over blocks of 48 rows of w on `pool` (null: calling thread).
/// Returns kInvalidArgument for bad shapes; never throws for valid arguments.
inline Status matmul_nt(const MatmulArgs& a, ThreadPool* pool = nullptr) {
  Status s = check_matmul_args(a);
  if (!s.ok() || a.m == 0 || a.n == 0) return s;
  const ops_detail::LaneMath lm =
      cpu_has_avx2_fma() ? ops_detail::LaneMath::kAvx2Fma : ops_detail::LaneMath::kPortableMulAdd;
  const int64_t per_task = ops_detail::kColumnsPerTask;
  const int64_t tasks = (a.n + per_task - 1) / per_task;
  // Small products (attention rows, tiny models) are not worth waking the pool for.
  ThreadPool* p = (a.m * a.n * a.k < (int64_t{1} << 16)) ? nullptr : pool;
  parallel_for(p, tasks, [&](int64_t t) {
    const int64_t j0 = t * per_task;
    ops_detail::matmul_columns(a, j0, std::min(a.n, j0 + per_task), lm);
  });
  return Status();
}

/// True when matmul_nt runs the AVX2+FMA path on this CPU (benchmarks and reports).
inline bool matmul_uses_avx2() { return cpu_has_avx2_fma(); }

CLUSCOMP_NAMESPACE_END
