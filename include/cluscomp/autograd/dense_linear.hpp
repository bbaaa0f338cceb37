#pragma once
/// Dense linear layer (also the lm_head): y (n, out) = x (n, in) W^T + b, W in the HF layout.
/// Conventions (contexts, gradient accumulation, determinism): common.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// A dense weight in the HF layout.
template <class T>
struct DenseLinearWeight {
  const T* w = nullptr;     // (out, in) row-major
  const T* wt = nullptr;    // optional (in, out) transpose of w (frozen layers keep one); else built per backward
  const T* bias = nullptr;  // (out) or null
  int64_t out = 0, in = 0;
};

/// Saved by dense_linear_forward: the input and the weight (non-owning).
template <class T>
struct DenseLinearCtx {
  DenseLinearWeight<T> w;
  const T* x = nullptr;  // (n, in)
  int64_t n = 0;
};

/// Where dense_linear_backward writes. Null pointers are skipped.
template <class T>
struct DenseLinearGrads {
  T* dx = nullptr;            // (n, in): overwritten, or added to when accumulate_dx
  bool accumulate_dx = false;
  T* dw = nullptr;            // (out, in): added to
  T* db = nullptr;            // (out): added to
};

namespace detail {
template <class T>
void check_dense(const DenseLinearWeight<T>& w, const void* x, int64_t n, const char* op) {
  require(w.out > 0 && w.in > 0, op, "weight extents must be positive, got (" + std::to_string(w.out) + ", " +
                                         std::to_string(w.in) + ")");
  require(w.w != nullptr, op, "null weight");
  require(n >= 0, op, "negative row count " + std::to_string(n));
  require(n == 0 || x != nullptr, op, "null input");
}
}  // namespace detail

/// y = x W^T (+ b). float: ops::matmul_nt (the runtime's dense Linear, bit for bit); double:
/// double accumulation. Deterministic. Throws Error for bad extents or null pointers.
template <class T>
DenseLinearCtx<T> dense_linear_forward(const DenseLinearWeight<T>& w, const T* x, int64_t n, T* y,
                                       ThreadPool* pool = nullptr) {
  detail::check_dense(w, x, n, "dense_linear_forward");
  detail::require(n == 0 || y != nullptr, "dense_linear_forward", "null output");
  if constexpr (std::is_same_v<T, float>) {
    MatmulArgs a;
    a.x = x;
    a.ldx = w.in;
    a.w = w.w;
    a.ldw = w.in;
    a.bias = w.bias;
    a.y = y;
    a.ldy = w.out;
    a.m = n;
    a.n = w.out;
    a.k = w.in;
    throw_if_error(matmul_nt(a, pool));
  } else {
    gemm_nt(x, w.in, w.w, w.in, y, w.out, n, w.out, w.in, false, pool);
    detail::add_bias_rows(y, n, w.out, w.bias);
  }
  return DenseLinearCtx<T>{w, x, n};
}

/// dx = dy W, dW += dy^T x, db += column sums of dy. float: fp32 products by detail::gemm_f32
/// straight from the row-major operands (one multiply-add chain per element, in index order; dW's
/// chain starts from its old value); double: double products through gemm_nt. Bias sums in double.
/// Deterministic.
template <class T>
void dense_linear_backward(const DenseLinearCtx<T>& c, const T* dy, const DenseLinearGrads<T>& g,
                           ThreadPool* pool = nullptr) {
  const DenseLinearWeight<T>& w = c.w;
  detail::check_dense(w, c.x, c.n, "dense_linear_backward");
  if (c.n == 0) return;
  detail::require(dy != nullptr, "dense_linear_backward", "null dy");
  if constexpr (std::is_same_v<T, float>) {
    // dx (n, in) = dy (n, out) . W (out, in); dW (out, in) += dy^T . x (n, in).
    if (g.dx) detail::gemm_f32<false, false>(c.n, w.in, w.out, dy, w.out, w.w, w.in, g.dx, w.in, g.accumulate_dx, pool);
    if (g.dw) detail::gemm_f32<true, false>(w.out, w.in, c.n, dy, w.out, c.x, w.in, g.dw, w.in, true, pool);
  } else {
    if (g.dx) {
      std::vector<T> wt_local;
      const T* wt = w.wt;
      if (!wt) {
        wt_local = transposed(w.w, w.out, w.in, pool);
        wt = wt_local.data();
      }
      gemm_nt(dy, w.out, wt, w.out, g.dx, w.in, c.n, w.in, w.out, g.accumulate_dx, pool);
    }
    if (g.dw) {
      const std::vector<T> dyt = transposed(dy, c.n, w.out, pool);  // (out, n)
      const std::vector<T> xt = transposed(c.x, c.n, w.in, pool);   // (in, n)
      gemm_nt(dyt.data(), c.n, xt.data(), c.n, g.dw, w.in, w.out, w.in, c.n, true, pool);
    }
  }
  if (g.db) column_sums(dy, c.n, w.out, w.out, g.db, true, pool);
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
