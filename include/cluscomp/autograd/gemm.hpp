#pragma once
/// Dense products, transposes and small vector helpers of the autograd, in the caller's scalar
/// type T (float for training, double for the finite-difference checks).
///
/// Numerics: T = float runs the runtime's ops::matmul_nt (fp32 accumulation in a per-element order
/// independent of the matrix sizes, blocking and threads); T = double runs a plain loop that
/// accumulates in double in index order. Both are deterministic: every output element is written
/// by one task in a fixed order, so results never depend on the thread count.

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// The scalar types the autograd is instantiated for.
template <class T>
inline constexpr bool kIsAutogradScalar = std::is_same_v<T, float> || std::is_same_v<T, double>;

namespace detail {

/// Throws Error(kInvalidArgument) "<op>: <what>" when `ok` is false.
inline void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(StatusCode::kInvalidArgument, std::string(op) + ": " + what);
}

/// Elements of a buffer of (a, b) values, as size_t, refusing negative extents.
inline size_t count(int64_t a, int64_t b = 1) {
  require(a >= 0 && b >= 0, "autograd", "negative extent");
  return static_cast<size_t>(a) * static_cast<size_t>(b);
}

/// Rows per parallel task for row-wise elementwise passes; only the split changes with it.
inline constexpr int64_t kRowsPerTask = 16;

}  // namespace detail

/// y (m, n) = x (m, k) . w (n, k)^T, or y += x . w^T when `accumulate`. Row-major operands with
/// leading dimensions. Numerics: see the file comment (float: ops::matmul_nt, fp32 accumulation;
/// double: double accumulation in index order). Deterministic. Parallel on `pool`. Throws Error
/// for bad extents.
template <class T>
void gemm_nt(const T* x, int64_t ldx, const T* w, int64_t ldw, T* y, int64_t ldy, int64_t m, int64_t n,
             int64_t k, bool accumulate, ThreadPool* pool = nullptr) {
  static_assert(kIsAutogradScalar<T>, "autograd scalars are float and double");
  // Checks build their messages only on failure: attention calls this once per task.
  if (m < 0 || n < 0 || k < 0)
    detail::require(false, "gemm_nt",
                    "negative extent (m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " +
                        std::to_string(k) + ")");
  if (m == 0 || n == 0) return;
  if (y == nullptr || ldy < n) detail::require(false, "gemm_nt", "null output or ldy < n");
  if (k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(y + i * ldy, y + i * ldy + n, T(0));
    return;
  }
  if (x == nullptr || w == nullptr || ldx < k || ldw < k)
    detail::require(false, "gemm_nt", "null operand or leading dimension below k = " + std::to_string(k));
  if constexpr (std::is_same_v<T, float>) {
    MatmulArgs a;
    a.x = x;
    a.ldx = ldx;
    a.w = w;
    a.ldw = ldw;
    a.m = m;
    a.n = n;
    a.k = k;
    if (!accumulate) {
      a.y = y;
      a.ldy = ldy;
      throw_if_error(matmul_nt(a, pool));
      return;
    }
    std::vector<float> tmp(detail::count(m, n));
    a.y = tmp.data();
    a.ldy = n;
    throw_if_error(matmul_nt(a, pool));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * ldy + j] += tmp[static_cast<size_t>(i * n + j)];
  } else {
    const int64_t rows = 4;
    ThreadPool* p = m * n * k < (int64_t{1} << 15) ? nullptr : pool;
    parallel_for(p, (m + rows - 1) / rows, [&](int64_t t) {
      for (int64_t i = t * rows; i < std::min(m, t * rows + rows); ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0.0;
          const T* xr = x + i * ldx;
          const T* wr = w + j * ldw;
          for (int64_t q = 0; q < k; ++q) s += static_cast<double>(xr[q]) * static_cast<double>(wr[q]);
          T& out = y[i * ldy + j];
          out = accumulate ? static_cast<T>(out + s) : static_cast<T>(s);
        }
    });
  }
}

/// dst (cols, rows) = src (rows, cols)^T; src has leading dimension lds, dst is contiguous.
/// Exact (copies); parallel over blocks of source columns; deterministic.
template <class T>
void transpose(const T* src, int64_t rows, int64_t cols, int64_t lds, T* dst, ThreadPool* pool = nullptr) {
  detail::require(rows >= 0 && cols >= 0 && lds >= cols, "transpose", "bad extents");
  if (rows == 0 || cols == 0) return;
  constexpr int64_t kBlock = 32;
  const int64_t col_blocks = (cols + kBlock - 1) / kBlock;
  ThreadPool* p = rows * cols < (int64_t{1} << 16) ? nullptr : pool;
  parallel_for(p, col_blocks, [&](int64_t cb) {
    const int64_t c0 = cb * kBlock, c1 = std::min(cols, c0 + kBlock);
    for (int64_t r0 = 0; r0 < rows; r0 += kBlock) {
      const int64_t r1 = std::min(rows, r0 + kBlock);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * lds + c];
    }
  });
}

/// The transpose as a new buffer.
template <class T>
std::vector<T> transposed(const T* src, int64_t rows, int64_t cols, ThreadPool* pool = nullptr) {
  std::vector<T> out(detail::count(rows, cols));
  transpose(src, rows, cols, cols, out.data(), pool);
  return out;
}

/// out[j] (+)= sum over rows r of x[r * ld + j], for j < cols; the sum runs in double in row
/// order (bias and norm-weight gradients). Parallel over column blocks; deterministic.
template <class T>
void column_sums(const T* x, int64_t rows, int64_t cols, int64_t ld, T* out, bool accumulate,
                 ThreadPool* pool = nullptr) {
  constexpr int64_t kCols = 64;
  ThreadPool* p = rows * cols < (int64_t{1} << 15) ? nullptr : pool;
  parallel_for(p, (cols + kCols - 1) / kCols, [&](int64_t t) {
    const int64_t j0 = t * kCols, j1 = std::min(cols, j0 + kCols);
    double acc[kCols] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(x[r * ld + j]);
    for (int64_t j = j0; j < j1; ++j)
      out[j] = accumulate ? static_cast<T>(out[j] + acc[j - j0]) : static_cast<T>(acc[j - j0]);
  });
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
