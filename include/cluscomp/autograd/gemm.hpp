#pragma once
/// Dense products, transposes and small vector helpers of the autograd, in the caller's scalar
/// type T (float for training, double for the finite-difference checks).
///
/// Numerics: gemm_nt with T = float runs the runtime's ops::matmul_nt (fp32 accumulation in a
/// per-element order independent of the matrix sizes, blocking and threads); T = double runs a plain
/// loop that accumulates in double in index order. detail::gemm_f32 (the backward passes' products
/// with transposed operands) runs each output element as one fp32 multiply-add chain in index order.
/// All are deterministic: every output element is written by one task in a fixed order, so results
/// never depend on the thread count.

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/cpu_features.hpp"
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

namespace detail {

// ---- Packed fp32 products for the backward passes -------------------------------------------
// C (m, n) (+)= op(A) (m, k) . op(B) (k, n), with op(A) = A or A^T and op(B) = B or B^T of
// row-major operands, so the backward's transposed products (x^T dy, dy W, dy^T x) read their
// operands where they lie, without transposed copies. Blocks of op(A) are packed into panels of
// kGemmMr rows and blocks of op(B) into panels of kGemmNr columns; a kGemmMr x kGemmNr register
// tile walks k.
//
// Numerics: every C element is ONE multiply-add chain over p = 0..k-1 in index order, starting
// from 0 (or from C's value when accumulating), rounded to fp32 at every step (fused multiply-add
// on the AVX2+FMA path, multiply then add on the portable one). Blocking over k stores and
// reloads the running fp32 value, which changes nothing, and no other split touches the chain:
// results never depend on the blocking, the matrix sizes or the thread count.

inline constexpr int kGemmMr = 6;
inline constexpr int kGemmNr = 16;
inline constexpr int64_t kGemmKc = 256;  // k per packed block (a kc x 16 B panel stays in L1)
inline constexpr int64_t kGemmMc = 96;   // rows of C per task (multiple of kGemmMr)
inline constexpr int64_t kGemmNc = 128;  // columns of C per task (multiple of kGemmNr)

/// Rows [i0, i0 + mc) x k [p0, p0 + kc) of op(A) as panels (panel, p, row) of kGemmMr rows, rows
/// past mc zero.
template <bool kTransA>
void gemm_pack_a(const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t ip = 0; ip < mc; ip += kGemmMr) {
    float* panel = dst + ip * kc;
    const int rows = static_cast<int>(std::min<int64_t>(kGemmMr, mc - ip));
    if constexpr (kTransA) {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = a + (p0 + p) * lda + i0 + ip;
        float* o = panel + p * kGemmMr;
        for (int r = 0; r < rows; ++r) o[r] = src[r];
        for (int r = rows; r < kGemmMr; ++r) o[r] = 0.0f;
      }
    } else {
      for (int r = 0; r < kGemmMr; ++r) {
        if (r < rows) {
          const float* src = a + (i0 + ip + r) * lda + p0;
          for (int64_t p = 0; p < kc; ++p) panel[p * kGemmMr + r] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) panel[p * kGemmMr + r] = 0.0f;
        }
      }
    }
  }
}

/// Columns [j0, j0 + nc) x k [p0, p0 + kc) of op(B) as panels (panel, p, column) of kGemmNr
/// columns, columns past nc zero.
template <bool kTransB>
void gemm_pack_b(const float* b, int64_t ldb, int64_t j0, int64_t nc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t jp = 0; jp < nc; jp += kGemmNr) {
    float* panel = dst + jp * kc;
    const int cols = static_cast<int>(std::min<int64_t>(kGemmNr, nc - jp));
    if constexpr (kTransB) {
      for (int c = 0; c < kGemmNr; ++c) {
        if (c < cols) {
          const float* src = b + (j0 + jp + c) * ldb + p0;
          for (int64_t p = 0; p < kc; ++p) panel[p * kGemmNr + c] = src[p];
        } else {
          for (int64_t p = 0; p < kc; ++p) panel[p * kGemmNr + c] = 0.0f;
        }
      }
    } else {
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = b + (p0 + p) * ldb + j0 + jp;
        float* o = panel + p * kGemmNr;
        for (int c = 0; c < cols; ++c) o[c] = src[c];
        for (int c = cols; c < kGemmNr; ++c) o[c] = 0.0f;
      }
    }
  }
}

/// Portable register tile: c (kGemmMr x kGemmNr, leading dimension ldc) (+)= ap . bp over kc.
inline void gemm_tile_portable(int64_t kc, const float* ap, const float* bp, float* c, int64_t ldc, bool load_c) {
  float acc[kGemmMr][kGemmNr];
  for (int r = 0; r < kGemmMr; ++r)
    for (int j = 0; j < kGemmNr; ++j) acc[r][j] = load_c ? c[r * ldc + j] : 0.0f;
  for (int64_t p = 0; p < kc; ++p)
    for (int r = 0; r < kGemmMr; ++r) {
      const float av = ap[p * kGemmMr + r];
      for (int j = 0; j < kGemmNr; ++j) {
        const float prod = av * bp[p * kGemmNr + j];
        acc[r][j] = acc[r][j] + prod;
      }
    }
  for (int r = 0; r < kGemmMr; ++r)
    for (int j = 0; j < kGemmNr; ++j) c[r * ldc + j] = acc[r][j];
}

#if CLUSCOMP_OPS_X86
/// AVX2+FMA register tile: 6 x 16 accumulators in 12 named registers (an array would be kept in
/// memory by the compiler), one fused multiply-add per element and p.
__attribute__((target("avx2,fma"))) inline void gemm_tile_avx2(int64_t kc, const float* ap, const float* bp,
                                                               float* c, int64_t ldc, bool load_c) {
  static_assert(kGemmMr == 6 && kGemmNr == 16, "the tile is written out for 6 x 16");
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  if (load_c) {
    c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
    c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
    c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
    c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
    c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
    c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
  }
  for (int64_t p = 0; p < kc; ++p, ap += kGemmMr, bp += kGemmNr) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
    __m256 a = _mm256_broadcast_ss(ap);
    c00 = _mm256_fmadd_ps(a, b0, c00), c01 = _mm256_fmadd_ps(a, b1, c01);
    a = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(a, b0, c10), c11 = _mm256_fmadd_ps(a, b1, c11);
    a = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(a, b0, c20), c21 = _mm256_fmadd_ps(a, b1, c21);
    a = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(a, b0, c30), c31 = _mm256_fmadd_ps(a, b1, c31);
    a = _mm256_broadcast_ss(ap + 4);
    c40 = _mm256_fmadd_ps(a, b0, c40), c41 = _mm256_fmadd_ps(a, b1, c41);
    a = _mm256_broadcast_ss(ap + 5);
    c50 = _mm256_fmadd_ps(a, b0, c50), c51 = _mm256_fmadd_ps(a, b1, c51);
  }
  _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
  _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
  _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
  _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
  _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}
#endif

/// C (m, n) (+)= op(A) . op(B), fp32; see the section comment for the numerics. A is (m, k)
/// (kTransA: stored (k, m)), B is (k, n) (kTransB: stored (n, k)), all row-major with leading
/// dimensions. Parallel over (96-row, 128-column) blocks of C on `pool`; deterministic.
template <bool kTransA, bool kTransB>
void gemm_f32(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
              int64_t ldc, bool accumulate, ThreadPool* pool) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
#if CLUSCOMP_OPS_X86
  const bool avx2 = cpu_has_avx2_fma();
#endif
  const int64_t mb = (m + kGemmMc - 1) / kGemmMc, nb = (n + kGemmNc - 1) / kGemmNc;
  const int64_t kc_max = std::min(k, kGemmKc);
  ThreadPool* p = m * n * k < (int64_t{1} << 16) ? nullptr : pool;
  parallel_for(p, mb * nb, [&](int64_t task) {
    const int64_t i0 = (task / nb) * kGemmMc, j0 = (task % nb) * kGemmNc;
    const int64_t mc = std::min(kGemmMc, m - i0), nc = std::min(kGemmNc, n - j0);
    const int64_t mc_pad = (mc + kGemmMr - 1) / kGemmMr * kGemmMr, nc_pad = (nc + kGemmNr - 1) / kGemmNr * kGemmNr;
    std::vector<float> apack(static_cast<size_t>(mc_pad * kc_max)), bpack(static_cast<size_t>(nc_pad * kc_max));
    float edge[kGemmMr * kGemmNr] = {};
    for (int64_t p0 = 0; p0 < k; p0 += kGemmKc) {
      const int64_t kc = std::min(kGemmKc, k - p0);
      const bool load_c = accumulate || p0 > 0;
      gemm_pack_a<kTransA>(a, lda, i0, mc, p0, kc, apack.data());
      gemm_pack_b<kTransB>(b, ldb, j0, nc, p0, kc, bpack.data());
      for (int64_t jp = 0; jp < nc; jp += kGemmNr) {
        const float* bp = bpack.data() + jp * kc;
        const int cols = static_cast<int>(std::min<int64_t>(kGemmNr, nc - jp));
        for (int64_t ip = 0; ip < mc; ip += kGemmMr) {
          const float* ap = apack.data() + ip * kc;
          const int rows = static_cast<int>(std::min<int64_t>(kGemmMr, mc - ip));
          float* dst = c + (i0 + ip) * ldc + j0 + jp;
          const bool full = rows == kGemmMr && cols == kGemmNr;
          float* tile = full ? dst : edge;
          const int64_t ldt = full ? ldc : kGemmNr;
          if (!full && load_c)
            for (int r = 0; r < rows; ++r)
              for (int j = 0; j < cols; ++j) edge[r * kGemmNr + j] = dst[r * ldc + j];
#if CLUSCOMP_OPS_X86
          if (avx2)
            gemm_tile_avx2(kc, ap, bp, tile, ldt, load_c);
          else
            gemm_tile_portable(kc, ap, bp, tile, ldt, load_c);
#else
          gemm_tile_portable(kc, ap, bp, tile, ldt, load_c);
#endif
          if (!full)
            for (int r = 0; r < rows; ++r)
              for (int j = 0; j < cols; ++j) dst[r * ldc + j] = edge[r * kGemmNr + j];
        }
      }
    }
  });
}

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
