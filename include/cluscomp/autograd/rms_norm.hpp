#pragma once
/// RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, per row. Conventions: common.hpp.

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
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/rmsnorm.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// Saved by rms_norm_forward: the input and weight (non-owning) and, owned, the per-row scale
/// r = 1/sqrt(mean(x^2) + eps) exactly as the forward rounded it.
template <class T>
struct RmsNormCtx {
  const T* x = nullptr;       // (rows, dim)
  const T* weight = nullptr;  // (dim)
  int64_t rows = 0, dim = 0;
  std::vector<T> rstd;  // (rows)
};

namespace detail {
/// The per-row scale as ops::rms_norm computes it: sum of squares in double, rounded to T once.
template <class T>
T rms_scale(const T* xr, int64_t dim, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * static_cast<double>(xr[i]);
  return static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
}
}  // namespace detail

/// y (rows, dim) = rms_norm(x) * weight. float: ops::rms_norm (bit for bit the runtime's);
/// double: the same formula in double. Deterministic.
template <class T>
RmsNormCtx<T> rms_norm_forward(const T* x, const T* weight, float eps, int64_t rows, int64_t dim, T* y,
                               ThreadPool* pool = nullptr) {
  detail::require(rows >= 0 && dim > 0 && eps > 0.0f, "rms_norm_forward",
                  "bad shape or eps (rows " + std::to_string(rows) + ", dim " + std::to_string(dim) + ")");
  detail::require(rows == 0 || (x && weight && y), "rms_norm_forward", "null pointer");
  RmsNormCtx<T> c{x, weight, rows, dim, std::vector<T>(detail::count(rows))};
  if constexpr (std::is_same_v<T, float>) {
    throw_if_error(rms_norm(x, dim, weight, eps, rows, dim, y, dim, pool));
    for (int64_t r = 0; r < rows; ++r) c.rstd[static_cast<size_t>(r)] = detail::rms_scale(x + r * dim, dim, eps);
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const T s = detail::rms_scale(x + r * dim, dim, eps);
      c.rstd[static_cast<size_t>(r)] = s;
      for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = (x[r * dim + i] * s) * weight[i];
    }
  }
  return c;
}

/// dx = r * (g - x * r^2 * mean(g * x)) with g = dy * weight (the scale r is a function of x);
/// dweight += sum over rows of dy * x * r. Row dot products and the weight sums in double, the
/// elementwise part in double rounded to T. Deterministic.
template <class T>
void rms_norm_backward(const RmsNormCtx<T>& c, const T* dy, T* dx, bool accumulate_dx, T* dweight,
                       ThreadPool* pool = nullptr) {
  detail::require(c.rows >= 0 && c.dim > 0 && static_cast<int64_t>(c.rstd.size()) == c.rows, "rms_norm_backward",
                  "context does not match its shape (rows " + std::to_string(c.rows) + ", " +
                      std::to_string(c.rstd.size()) + " scales)");
  if (c.rows == 0) return;
  detail::require(c.x && c.weight && dy, "rms_norm_backward", "null pointer");
  const int64_t D = c.dim;
  if (dx) {
    parallel_for(c.rows * D >= (int64_t{1} << 15) ? pool : nullptr,
                 (c.rows + detail::kRowsPerTask - 1) / detail::kRowsPerTask, [&](int64_t t) {
                   const int64_t r0 = t * detail::kRowsPerTask, r1 = std::min(c.rows, r0 + detail::kRowsPerTask);
                   for (int64_t r = r0; r < r1; ++r) {
                     const T* xr = c.x + r * D;
                     const T* gr = dy + r * D;
                     const double rs = static_cast<double>(c.rstd[static_cast<size_t>(r)]);
                     double dot = 0.0;
                     for (int64_t i = 0; i < D; ++i)
                       dot += static_cast<double>(gr[i]) * static_cast<double>(c.weight[i]) * static_cast<double>(xr[i]);
                     const double coef = rs * rs * rs * dot / static_cast<double>(D);
                     T* o = dx + r * D;
                     for (int64_t i = 0; i < D; ++i) {
                       const double v = rs * static_cast<double>(gr[i]) * static_cast<double>(c.weight[i]) -
                                        static_cast<double>(xr[i]) * coef;
                       o[i] = accumulate_dx ? static_cast<T>(o[i] + v) : static_cast<T>(v);
                     }
                   }
                 });
  }
  if (dweight) {
    constexpr int64_t kCols = 64;
    parallel_for(c.rows * D >= (int64_t{1} << 15) ? pool : nullptr, (D + kCols - 1) / kCols, [&](int64_t t) {
      const int64_t j0 = t * kCols, j1 = std::min(D, j0 + kCols);
      double acc[kCols] = {};
      for (int64_t r = 0; r < c.rows; ++r) {
        const double rs = static_cast<double>(c.rstd[static_cast<size_t>(r)]);
        for (int64_t j = j0; j < j1; ++j)
          acc[j - j0] += static_cast<double>(dy[r * D + j]) * static_cast<double>(c.x[r * D + j]) * rs;
      }
      for (int64_t j = j0; j < j1; ++j) dweight[j] = static_cast<T>(dweight[j] + acc[j - j0]);
    });
  }
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
