#pragma once
/// The autograd's operations: each is a forward that returns (or fills) a saved context and a
/// backward that consumes it. There is no tape: the caller (TrainBlock, a recovery loop) calls
/// the backwards in reverse order itself. Every op is a template on the scalar type T: T = float
/// trains, T = double runs the very same backward code for the finite-difference checks.
///
/// Forwards for T = float call the runtime's kernels (matmul_nt, lookup_gemm, rms_norm,
/// apply_rope, causal_attention, swiglu), so training computes what inference computes, bit for
/// bit; for T = double they are plain loops with double accumulation. Backwards are the same code
/// for both types.
///
/// Contexts are non-owning unless stated: they point at the forward's inputs (and weights), which
/// the caller keeps alive and unchanged until the backward. Layouts: activations are row-major
/// (rows = tokens) and contiguous.
///
/// Gradient conventions: a backward writes (overwrites) the gradient of an activation input unless
/// an `accumulate` flag says to add; gradients of parameters (weights, centroids, biases, norm
/// weights, embedding rows) are always ADDED, as in PyTorch, so several backwards can share a
/// buffer that the caller zeroes.
///
/// Determinism: every output element is produced by one task in a fixed order (sums over tokens,
/// keys and codes run in index order), so results never depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/ops/attention.hpp"
#include "cluscomp/ops/lookup_gemm.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/rmsnorm.hpp"
#include "cluscomp/ops/rope.hpp"
#include "cluscomp/ops/swiglu.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

// ---------------------------------------------------------------------------------------------
// Dense linear (also lm_head): y (n, out) = x (n, in) W^T + b
// ---------------------------------------------------------------------------------------------

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
    if (w.bias)
      for (int64_t r = 0; r < n; ++r)
        for (int64_t o = 0; o < w.out; ++o) y[r * w.out + o] += w.bias[o];
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

// ---------------------------------------------------------------------------------------------
// Lookup linear: a linear layer whose weight is a codebook (CLUSCOMP.md §1 geometry)
// ---------------------------------------------------------------------------------------------

/// A clustered weight with trainable centroids of type T and frozen packed codes. Geometry as
/// codebook_view.hpp: Wt (in, out) padded on out to out_pad (multiple of d), vector
/// v = i * (out_pad/d) + j holds Wt[i, j*d .. j*d+d-1]; codebook s owns input rows
/// [floor(s*in/S), floor((s+1)*in/S)).
template <class T>
struct LookupLinearWeight {
  const T* centroids = nullptr;     // (S, K, d) row-major
  const uint32_t* codes = nullptr;  // packed (bitpack.hpp), in * out_pad/d codes of code_bits bits, each < K
  const T* bias = nullptr;          // (out) or null
  int64_t out = 0, in = 0, k = 0;
  int d = 0;
  int num_codebooks = 1;
  int code_bits = 0;

  int64_t out_pad() const { return d > 0 ? (out + d - 1) / d * d : 0; }
  int64_t vectors_per_row() const { return d > 0 ? out_pad() / d : 0; }
  int64_t num_centroid_values() const { return static_cast<int64_t>(num_codebooks) * k * d; }
};

/// The weight of a CodebookTensor's shape and packed codes with caller-held master centroids
/// (S*K*d values of T) and optional bias. The tensor must outlive the weight.
template <class T>
LookupLinearWeight<T> lookup_linear_weight(const CodebookTensor& t, const T* centroids, const T* bias = nullptr) {
  LookupLinearWeight<T> w;
  w.centroids = centroids;
  w.codes = t.code_words().data();
  w.bias = bias;
  w.out = t.shape().out;
  w.in = t.shape().in;
  w.k = t.shape().k;
  w.d = t.shape().d;
  w.num_codebooks = t.shape().num_codebooks;
  w.code_bits = t.code_bits();
  return w;
}

/// Saved by lookup_linear_forward (non-owning).
template <class T>
struct LookupLinearCtx {
  LookupLinearWeight<T> w;
  const T* x = nullptr;  // (n, in)
  int64_t n = 0;
};

/// Where lookup_linear_backward writes. Null pointers are skipped.
template <class T>
struct LookupLinearGrads {
  T* dx = nullptr;  // (n, in): overwritten, or added to when accumulate_dx
  bool accumulate_dx = false;
  T* dcentroids = nullptr;  // (S, K, d): added to
  T* db = nullptr;          // (out): added to
  /// Optional x^T (in, n) of the context's x, when the caller already has it (q/k/v share one);
  /// only T = double reads it (float reads x in place).
  const T* xt = nullptr;
};

namespace detail {

template <class T>
void check_lookup(const LookupLinearWeight<T>& w, const void* x, int64_t n, const char* op) {
  require(w.out > 0 && w.in > 0, op, "weight extents must be positive, got (" + std::to_string(w.out) + ", " +
                                         std::to_string(w.in) + ")");
  require(w.d >= 1 && w.d <= 16, op, "d must be in 1..16, got " + std::to_string(w.d));
  require(w.k >= 1, op, "K must be positive, got " + std::to_string(w.k));
  require(w.num_codebooks >= 1 && w.num_codebooks <= w.in, op,
          "S must be in 1..in (" + std::to_string(w.in) + "), got " + std::to_string(w.num_codebooks));
  require(w.code_bits >= 1 && w.code_bits <= 16 && (int64_t{1} << w.code_bits) >= w.k, op,
          "code width " + std::to_string(w.code_bits) + " bits cannot index K = " + std::to_string(w.k));
  require(w.centroids != nullptr && w.codes != nullptr, op, "null centroids or codes");
  require(n >= 0, op, "negative row count " + std::to_string(n));
  require(n == 0 || x != nullptr, op, "null input");
}

/// Unpacks the codes of Wt row i and checks them against K (a hand-built weight can hold anything).
inline void row_codes(const uint32_t* packed, int64_t i, int64_t vpr, int bits, int64_t k, uint32_t* out,
                      const char* op) {
  unpack_code_run(packed, i * vpr, vpr, bits, out);
  for (int64_t j = 0; j < vpr; ++j)
    if (out[j] >= static_cast<uint64_t>(k))  // the message is built only on failure (hot loop)
      require(false, op,
              "code " + std::to_string(out[j]) + " of vector " + std::to_string(i * vpr + j) +
                  " is not below K = " + std::to_string(k));
}

}  // namespace detail

/// Wt (in, out) decoded from the centroids and codes (padding components dropped). Exact (copies).
/// float: the library's decoder (decode_wt_rows); double: the same geometry in a loop. Parallel over
/// rows; deterministic. Throws Error for a bad weight or a code >= K.
template <class T>
void lookup_decode_wt(const LookupLinearWeight<T>& w, T* wt, ThreadPool* pool = nullptr) {
  detail::check_lookup(w, nullptr, 0, "lookup_decode_wt");
  const int64_t vpr = w.vectors_per_row();
  const int64_t rows_per_task = 32;
  parallel_for(w.in * w.out >= (int64_t{1} << 16) ? pool : nullptr, (w.in + rows_per_task - 1) / rows_per_task,
               [&](int64_t t) {
                 const int64_t i0 = t * rows_per_task, i1 = std::min(w.in, i0 + rows_per_task);
                 std::vector<uint32_t> codes(static_cast<size_t>(vpr));
                 for (int64_t i = i0; i < i1; ++i)
                   detail::row_codes(w.codes, i, vpr, w.code_bits, w.k, codes.data(), "lookup_decode_wt");
                 if constexpr (std::is_same_v<T, float>) {
                   const CodebookView<float> v{w.centroids, w.codes, w.out, w.in, w.out_pad(), w.k,
                                               w.d,         w.num_codebooks, w.code_bits};
                   MatrixView<float> dst;
                   dst.data = wt + i0 * w.out;
                   dst.rows = i1 - i0;
                   dst.cols = w.out;
                   dst.row_stride = w.out;
                   dst.col_stride = 1;
                   throw_if_error(decode_wt_rows(v, i0, i1, dst));
                 } else {
                   for (int64_t i = i0; i < i1; ++i) {
                     unpack_code_run(w.codes, i * vpr, vpr, w.code_bits, codes.data());
                     const int64_t s = codebook_of_row(i, w.num_codebooks, w.in);
                     for (int64_t j = 0; j < vpr; ++j) {
                       const T* c = w.centroids + (s * w.k + codes[static_cast<size_t>(j)]) * w.d;
                       const int64_t live = std::min<int64_t>(w.d, w.out - j * w.d);
                       for (int64_t t2 = 0; t2 < live; ++t2) wt[i * w.out + j * w.d + t2] = c[t2];
                     }
                   }
                 }
               });
}

/// dC[s, code(v), t] += dWt[i, j*d + t] for every vector v = i*(out_pad/d) + j of codebook s and
/// every live component t (padding components have no gradient: they never reach the output).
/// dwt is (in, out) row-major. CLUSCOMP.md §2's scatter-add over the codes.
/// Numerics: each codebook's rows are cut into 2 fixed chunks (the same whatever the pool); each
/// chunk sums its vectors in vector order in double, the chunk sums are added in chunk order (in
/// double) and the total is added to dcentroids once (rounded to T). Parallel over (codebook, chunk),
/// one pass over the codes; the result is independent of the thread count. Throws Error for a code
/// >= K.
template <class T>
void codebook_scatter_add(const LookupLinearWeight<T>& w, const T* dwt, T* dcentroids, ThreadPool* pool = nullptr) {
  detail::check_lookup(w, nullptr, 0, "codebook_scatter_add");
  detail::require(dwt != nullptr && dcentroids != nullptr, "codebook_scatter_add", "null gradient buffer");
  const int64_t vpr = w.vectors_per_row();
  const int64_t S = w.num_codebooks, K = w.k, d = w.d;
  constexpr int64_t kChunks = 2;  // fixed: the chunking, not the thread count, shapes the sums
  const int64_t per_chunk = K * d;
  std::vector<double> acc(detail::count(S * kChunks, per_chunk), 0.0);  // (S, chunk, K, d)
  parallel_for(w.in * w.out >= (int64_t{1} << 16) ? pool : nullptr, S * kChunks, [&](int64_t task) {
    const int64_t s = task / kChunks, part = task % kChunks;
    const int64_t b0 = codebook_row_begin(s, S, w.in), b1 = codebook_row_begin(s + 1, S, w.in);
    const int64_t i0 = b0 + (b1 - b0) * part / kChunks, i1 = b0 + (b1 - b0) * (part + 1) / kChunks;
    std::vector<uint32_t> codes(static_cast<size_t>(vpr));
    double* a = acc.data() + task * per_chunk;
    const int64_t full = w.out / d;  // vectors with d live components
    // kD > 0: d known at compile time (the common d = 4 unrolls); 0: any d.
    auto rows = [&](auto d_const) {
      constexpr int64_t kD = decltype(d_const)::value;
      const int64_t dd = kD > 0 ? kD : d;
      for (int64_t i = i0; i < i1; ++i) {
        detail::row_codes(w.codes, i, vpr, w.code_bits, K, codes.data(), "codebook_scatter_add");
        const T* g = dwt + i * w.out;
        for (int64_t j = 0; j < full; ++j) {
          double* dst = a + static_cast<int64_t>(codes[static_cast<size_t>(j)]) * dd;
          for (int64_t t = 0; t < dd; ++t) dst[t] += static_cast<double>(g[j * dd + t]);
        }
        for (int64_t j = full; j < vpr; ++j) {  // the padded last vector
          double* dst = a + static_cast<int64_t>(codes[static_cast<size_t>(j)]) * dd;
          for (int64_t t = 0; t < w.out - j * dd; ++t) dst[t] += static_cast<double>(g[j * dd + t]);
        }
      }
    };
    if (d == 4)
      rows(std::integral_constant<int64_t, 4>{});
    else
      rows(std::integral_constant<int64_t, 0>{});
  });
  for (int64_t s = 0; s < S; ++s)
    for (int64_t e = 0; e < per_chunk; ++e) {
      const double* a = acc.data() + s * kChunks * per_chunk + e;
      double sum = a[0];
      for (int64_t part = 1; part < kChunks; ++part) sum += a[part * per_chunk];
      T& out = dcentroids[s * per_chunk + e];
      out = static_cast<T>(out + sum);
    }
}

/// y = x W^T (+ b) with W given by the codebook. float: ops::lookup_gemm over an fp32 view of the
/// master centroids (the runtime's codebook Linear, bit for bit, whenever the runtime's centroids
/// hold the same values, e.g. fp16 centroids and their exact fp32 copy); double: Wt decoded, double
/// accumulation. Deterministic. Throws Error for a bad weight.
template <class T>
LookupLinearCtx<T> lookup_linear_forward(const LookupLinearWeight<T>& w, const T* x, int64_t n, T* y,
                                         ThreadPool* pool = nullptr) {
  detail::check_lookup(w, x, n, "lookup_linear_forward");
  detail::require(n == 0 || y != nullptr, "lookup_linear_forward", "null output");
  if (n > 0) {
    if constexpr (std::is_same_v<T, float>) {
      LookupGemmArgs a;
      a.w.centroids = w.centroids;
      a.w.centroid_dtype = DType::kF32;
      a.w.codes = w.codes;
      a.w.out = w.out;
      a.w.in = w.in;
      a.w.out_pad = w.out_pad();
      a.w.k = w.k;
      a.w.d = w.d;
      a.w.num_codebooks = w.num_codebooks;
      a.w.code_bits = w.code_bits;
      a.x = x;
      a.ldx = w.in;
      a.bias = w.bias;
      a.y = y;
      a.ldy = w.out;
      a.m = n;
      throw_if_error(lookup_gemm(a, pool));
    } else {
      std::vector<T> wt(detail::count(w.in, w.out));
      lookup_decode_wt(w, wt.data(), pool);
      const std::vector<T> wmat = transposed(wt.data(), w.in, w.out, pool);  // (out, in)
      gemm_nt(x, w.in, wmat.data(), w.in, y, w.out, n, w.out, w.in, false, pool);
      if (w.bias)
        for (int64_t r = 0; r < n; ++r)
          for (int64_t o = 0; o < w.out; ++o) y[r * w.out + o] += w.bias[o];
    }
  }
  return LookupLinearCtx<T>{w, x, n};
}

/// Gradients of a lookup linear layer: dWt = x^T dy (in, out), scattered onto the centroids
/// (codebook_scatter_add); dx = dy W through the decoded Wt (decoded once per call: the centroids
/// change every step); db = column sums of dy. Numerics: float products in fp32 by
/// detail::gemm_f32 straight from the row-major x, dy and Wt (one multiply-add chain per element,
/// in index order; g.xt is not needed), double products through gemm_nt; scatter and bias sums in
/// double; deterministic.
template <class T>
void lookup_linear_backward(const LookupLinearCtx<T>& c, const T* dy, const LookupLinearGrads<T>& g,
                            ThreadPool* pool = nullptr) {
  const LookupLinearWeight<T>& w = c.w;
  detail::check_lookup(w, c.x, c.n, "lookup_linear_backward");
  if (c.n == 0) return;
  detail::require(dy != nullptr, "lookup_linear_backward", "null dy");
  if constexpr (std::is_same_v<T, float>) {
    if (g.dcentroids) {
      std::vector<T> dwt(detail::count(w.in, w.out));  // (in, out) = x^T (in, n) . dy (n, out)
      detail::gemm_f32<true, false>(w.in, w.out, c.n, c.x, w.in, dy, w.out, dwt.data(), w.out, false, pool);
      codebook_scatter_add(w, dwt.data(), g.dcentroids, pool);
    }
    if (g.dx) {
      std::vector<T> wt(detail::count(w.in, w.out));
      lookup_decode_wt(w, wt.data(), pool);
      // dx (n, in) = dy (n, out) . Wt^T, Wt (in, out) read as the transposed operand.
      detail::gemm_f32<false, true>(c.n, w.in, w.out, dy, w.out, wt.data(), w.out, g.dx, w.in, g.accumulate_dx, pool);
    }
    if (g.db) column_sums(dy, c.n, w.out, w.out, g.db, true, pool);
    return;
  }
  if (g.dcentroids) {
    std::vector<T> xt_local;
    const T* xt = g.xt;
    if (!xt) {
      xt_local = transposed(c.x, c.n, w.in, pool);
      xt = xt_local.data();
    }
    const std::vector<T> dyt = transposed(dy, c.n, w.out, pool);  // (out, n)
    std::vector<T> dwt(detail::count(w.in, w.out));                // (in, out)
    gemm_nt(xt, c.n, dyt.data(), c.n, dwt.data(), w.out, w.in, w.out, c.n, false, pool);
    codebook_scatter_add(w, dwt.data(), g.dcentroids, pool);
  }
  if (g.dx) {
    std::vector<T> wt(detail::count(w.in, w.out));
    lookup_decode_wt(w, wt.data(), pool);
    gemm_nt(dy, w.out, wt.data(), w.out, g.dx, w.in, c.n, w.in, w.out, g.accumulate_dx, pool);
  }
  if (g.db) column_sums(dy, c.n, w.out, w.out, g.db, true, pool);
}

// ---------------------------------------------------------------------------------------------
// RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// RoPE (rotate_half layout, the runtime's tables)
// ---------------------------------------------------------------------------------------------

/// Rotates, in place, `heads` heads of each of the table's rows of x (row r at position
/// t.pos0 + r; row stride ldx). float: ops::apply_rope (bit for bit); double: the same rotation
/// with the same fp32 cos/sin tables. The context is the table itself (nothing else is saved).
template <class T>
void rope_forward(T* x, int64_t ldx, int64_t heads, const RopeTable& t) {
  const int64_t half = t.half, hd = 2 * half;
  detail::require(heads >= 0 && ldx >= heads * hd, "rope_forward",
                  "row stride " + std::to_string(ldx) + " is shorter than " + std::to_string(heads) + " heads of " +
                      std::to_string(hd));
  if constexpr (std::is_same_v<T, float>) {
    throw_if_error(apply_rope(x, ldx, heads, t));
  } else {
    for (int64_t r = 0; r < t.n; ++r)
      for (int64_t h = 0; h < heads; ++h) {
        T* v = x + r * ldx + h * hd;
        for (int64_t i = 0; i < half; ++i) {
          const T cs = t.cos[static_cast<size_t>(r * half + i)], sn = t.sin[static_cast<size_t>(r * half + i)];
          const T a = v[i], b = v[i + half];
          v[i] = a * cs - b * sn;
          v[i + half] = b * cs + a * sn;
        }
      }
  }
}

/// The gradient of rope_forward, in place: the transposed (inverse) rotation of dy. Exact up to
/// one rounding per element; deterministic.
template <class T>
void rope_backward(T* dx, int64_t ldx, int64_t heads, const RopeTable& t) {
  const int64_t half = t.half, hd = 2 * half;
  detail::require(heads >= 0 && ldx >= heads * hd, "rope_backward",
                  "row stride " + std::to_string(ldx) + " is shorter than " + std::to_string(heads) + " heads of " +
                      std::to_string(hd));
  for (int64_t r = 0; r < t.n; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      T* v = dx + r * ldx + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T cs = t.cos[static_cast<size_t>(r * half + i)], sn = t.sin[static_cast<size_t>(r * half + i)];
        const T ga = v[i], gb = v[i + half];
        v[i] = ga * cs + gb * sn;
        v[i + half] = gb * cs - ga * sn;
      }
    }
}

// ---------------------------------------------------------------------------------------------
// Causal grouped-query attention, positions 0..n-1
// ---------------------------------------------------------------------------------------------

/// Extents of one attention call. q is (n, heads*head_dim), k and v (n, kv_heads*head_dim),
/// out (n, heads*head_dim), all contiguous; query head h reads kv head h / (heads/kv_heads).
struct AttentionShape {
  int64_t n = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t window = 0;  // sliding window in keys (0: full causal)
  float scale = 0.0f;  // 0: 1/sqrt(head_dim) rounded to fp32, as the runtime
};

/// Saved by attention_forward: the inputs (non-owning), no probabilities. The backward recomputes
/// the scores and the softmax from q and k (activation memory O(n * heads), not O(n^2 * heads)).
template <class T>
struct AttentionCtx {
  AttentionShape shape;
  const T* q = nullptr;
  const T* k = nullptr;
  const T* v = nullptr;
};

namespace detail {

inline AttentionShape checked_attention_shape(AttentionShape s, const char* op) {
  require(s.n >= 0 && s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0 && s.window >= 0, op,
          "bad extents (n " + std::to_string(s.n) + ", heads " + std::to_string(s.heads) + ", kv heads " +
              std::to_string(s.kv_heads) + ", head_dim " + std::to_string(s.head_dim) + ")");
  require(s.heads % s.kv_heads == 0, op,
          "kv heads " + std::to_string(s.kv_heads) + " do not divide heads " + std::to_string(s.heads));
  if (s.scale == 0.0f) s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  return s;
}

inline int64_t first_key(const AttentionShape& s, int64_t pos) {
  return s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
}

inline constexpr int64_t kAttnBlock = 16;  // queries (pass A) or keys (pass B) per task

/// y (m, n) = a (m, hd) . b (n, hd)^T (contiguous y) for the attention backward's score tiles.
/// Element (i, j) is a[i] . b[j] with the same bits as b[j] . a[i] (float: one fused multiply-add
/// chain over hd by gemm_f32, whose products commute; double: gemm_nt), so pass B rebuilds pass
/// A's scores exactly.
template <class T>
void attention_scores(const T* a, int64_t lda, const T* b, int64_t ldb, T* y, int64_t m, int64_t n, int64_t hd) {
  if constexpr (std::is_same_v<T, float>)
    gemm_f32<false, true>(m, n, hd, a, lda, b, ldb, y, n, false, nullptr);
  else
    gemm_nt(a, lda, b, ldb, y, n, m, n, hd, false);
}

}  // namespace detail

/// out = softmax(q k^T * scale, causal) v per head. float: ops::causal_attention (bit for bit the
/// runtime's, pos0 = 0); double: the same definition with double accumulation. Deterministic.
template <class T>
AttentionCtx<T> attention_forward(const AttentionShape& shape, const T* q, const T* k, const T* v, T* out,
                                  ThreadPool* pool = nullptr) {
  const AttentionShape s = detail::checked_attention_shape(shape, "attention_forward");
  detail::require(s.n == 0 || (q && k && v && out), "attention_forward", "null pointer");
  const int64_t Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim, hd = s.head_dim;
  if (s.n > 0) {
    if constexpr (std::is_same_v<T, float>) {
      AttentionArgs a;
      a.q = q;
      a.ldq = Q;
      a.k = k;
      a.v = v;
      a.ldkv = KV;
      a.out = out;
      a.ldo = Q;
      a.n = s.n;
      a.pos0 = 0;
      a.heads = s.heads;
      a.kv_heads = s.kv_heads;
      a.head_dim = hd;
      a.window = s.window;
      a.scale = s.scale;
      throw_if_error(causal_attention(a, pool));
    } else {
      const int64_t group = s.heads / s.kv_heads;
      parallel_for(pool, s.heads, [&](int64_t h) {
        std::vector<double> p(static_cast<size_t>(s.n));
        const int64_t kvh = h / group;
        for (int64_t r = 0; r < s.n; ++r) {
          const int64_t lo = detail::first_key(s, r);
          double mx = -INFINITY;
          for (int64_t j = lo; j <= r; ++j) {
            double dot = 0.0;
            for (int64_t e = 0; e < hd; ++e) dot += static_cast<double>(q[r * Q + h * hd + e]) * k[j * KV + kvh * hd + e];
            p[static_cast<size_t>(j)] = dot * s.scale;
            mx = std::max(mx, p[static_cast<size_t>(j)]);
          }
          double sum = 0.0;
          for (int64_t j = lo; j <= r; ++j) sum += (p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx));
          for (int64_t e = 0; e < hd; ++e) {
            double o = 0.0;
            for (int64_t j = lo; j <= r; ++j) o += p[static_cast<size_t>(j)] / sum * v[j * KV + kvh * hd + e];
            out[r * Q + h * hd + e] = static_cast<T>(o);
          }
        }
      });
    }
  }
  return AttentionCtx<T>{s, q, k, v};
}

/// Gradients of attention_forward (dq, dk, dv overwritten). With P = softmax(S), S = q k^T scale:
/// dP = dout v^T, dS = P * (dP - rowsum(P * dP)), dq = scale dS k, dk = scale dS^T q, dv = P^T dout.
/// Two passes, both recomputing the scores (so P never takes O(n^2) memory):
/// pass A, parallel over (head, block of 16 queries), recomputes the softmax, writes dq and keeps
/// per (head, query) the max, the reciprocal normaliser and rowsum(P * dP) (in double);
/// pass B, parallel over (kv head, block of 16 keys), rebuilds the same P from those (the same
/// operations on the same bits) and accumulates dk and dv over its group's heads and the queries in
/// index order. The sums over keys (dq) and queries (dk, dv) run as products of the block's dS or P
/// tile (masked entries zero) with k, q or dout: float through detail::gemm_f32 (one fp32
/// multiply-add chain per element in index order), double in loops of the same order. Every element
/// is owned by one task: deterministic. Scratch: 2 * 16 * n values per
/// task plus 3 * heads * n. Throws Error for bad extents.
template <class T>
void attention_backward(const AttentionCtx<T>& c, const T* dout, T* dq, T* dk, T* dv, ThreadPool* pool = nullptr) {
  const AttentionShape s = detail::checked_attention_shape(c.shape, "attention_backward");
  if (s.n == 0) return;
  detail::require(c.q && c.k && c.v && dout && dq && dk && dv, "attention_backward", "null pointer");
  const int64_t n = s.n, Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim, hd = s.head_dim;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t B = detail::kAttnBlock;
  const int64_t blocks = (n + B - 1) / B;
  const T scale = static_cast<T>(s.scale);
  std::vector<T> row_max(detail::count(s.heads, n)), row_inv(detail::count(s.heads, n));
  std::vector<double> row_dot(detail::count(s.heads, n));

  // Pass A: dq, and the row statistics.
  parallel_for(pool, s.heads * blocks, [&](int64_t task) {
    const int64_t h = task / blocks, b = task % blocks, kvh = h / group;
    const int64_t r0 = b * B, r1 = std::min(n, r0 + B);
    const int64_t k_lo = detail::first_key(s, r0), k_hi = r1, nk = k_hi - k_lo;
    std::vector<T> sc(detail::count(r1 - r0, nk)), dp(detail::count(r1 - r0, nk));
    detail::attention_scores(c.q + r0 * Q + h * hd, Q, c.k + k_lo * KV + kvh * hd, KV, sc.data(), r1 - r0, nk, hd);
    detail::attention_scores(dout + r0 * Q + h * hd, Q, c.v + k_lo * KV + kvh * hd, KV, dp.data(), r1 - r0, nk, hd);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t lo = detail::first_key(s, r), len = r + 1 - lo;
      T* p = sc.data() + (r - r0) * nk + (lo - k_lo);
      const T* g = dp.data() + (r - r0) * nk + (lo - k_lo);
      T mx = p[0] * scale;
      for (int64_t j = 0; j < len; ++j) {
        p[j] = p[j] * scale;
        mx = p[j] > mx ? p[j] : mx;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < len; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += static_cast<double>(p[j]);
      }
      const T inv = static_cast<T>(1.0 / sum);
      double dot = 0.0;
      for (int64_t j = 0; j < len; ++j) {
        p[j] = p[j] * inv;
        dot += static_cast<double>(p[j]) * static_cast<double>(g[j]);
      }
      const size_t st = static_cast<size_t>(h * n + r);
      row_max[st] = mx;
      row_inv[st] = inv;
      row_dot[st] = dot;
      // dS over the block's keys, zero outside [lo, r] (a zero term leaves the sums unchanged).
      T* ds = sc.data() + (r - r0) * nk;
      const int64_t off = lo - k_lo;
      for (int64_t j = 0; j < len; ++j)
        ds[off + j] = static_cast<T>(static_cast<double>(p[j]) * (static_cast<double>(g[j]) - dot));
      std::fill(ds, ds + off, T(0));
      std::fill(ds + off + len, ds + nk, T(0));
    }
    // dq (rows, hd) = scale * dS (rows, nk) . k (nk, hd), each element summed over keys in order.
    const T* kb = c.k + k_lo * KV + kvh * hd;
    if constexpr (std::is_same_v<T, float>) {
      detail::gemm_f32<false, false>(r1 - r0, hd, nk, sc.data(), nk, kb, KV, dq + r0 * Q + h * hd, Q, false, nullptr);
    } else {
      for (int64_t r = r0; r < r1; ++r) {
        T* o = dq + r * Q + h * hd;
        std::fill(o, o + hd, T(0));
        const T* ds = sc.data() + (r - r0) * nk;
        for (int64_t j = 0; j < nk; ++j)
          for (int64_t e = 0; e < hd; ++e) o[e] += ds[j] * kb[j * KV + e];
      }
    }
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t e = 0; e < hd; ++e) dq[r * Q + h * hd + e] *= scale;
  });

  // Pass B: dk, dv.
  parallel_for(pool, s.kv_heads * blocks, [&](int64_t task) {
    const int64_t kvh = task / blocks, b = task % blocks;
    const int64_t j0 = b * B, j1 = std::min(n, j0 + B), nb = j1 - j0;
    // Queries that see at least one key of the block: r in [j0, r_hi).
    const int64_t r_hi = s.window > 0 ? std::min(n, j1 - 1 + s.window) : n;
    const int64_t nr = r_hi - j0;
    for (int64_t j = j0; j < j1; ++j) {
      std::fill(dk + j * KV + kvh * hd, dk + j * KV + kvh * hd + hd, T(0));
      std::fill(dv + j * KV + kvh * hd, dv + j * KV + kvh * hd + hd, T(0));
    }
    std::vector<T> sc(detail::count(nb, nr)), dp(detail::count(nb, nr));
    for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
      detail::attention_scores(c.k + j0 * KV + kvh * hd, KV, c.q + j0 * Q + h * hd, Q, sc.data(), nb, nr, hd);
      detail::attention_scores(c.v + j0 * KV + kvh * hd, KV, dout + j0 * Q + h * hd, Q, dp.data(), nb, nr, hd);
      // P and dS of the block's keys (rows) and queries (columns), zero outside [j, r_end).
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t r_end = s.window > 0 ? std::min(n, j + s.window) : n;
        T* pr = sc.data() + (j - j0) * nr;
        T* dr = dp.data() + (j - j0) * nr;
        for (int64_t r = j; r < r_end; ++r) {
          const size_t st = static_cast<size_t>(h * n + r);
          const size_t at = static_cast<size_t>(r - j0);
          const T p = std::exp(pr[at] * scale - row_max[st]) * row_inv[st];
          dr[at] = static_cast<T>(static_cast<double>(p) * (static_cast<double>(dr[at]) - row_dot[st]));
          pr[at] = p;
        }
        std::fill(pr, pr + (j - j0), T(0));
        std::fill(pr + (r_end - j0), pr + nr, T(0));
        std::fill(dr, dr + (j - j0), T(0));
        std::fill(dr + (r_end - j0), dr + nr, T(0));
      }
      // dv (keys, hd) += P . dout (queries, hd), dk += dS . q: per element over this group's heads
      // (outer) and the queries in order.
      const T* gq = dout + j0 * Q + h * hd;
      const T* qq = c.q + j0 * Q + h * hd;
      T* dvb = dv + j0 * KV + kvh * hd;
      T* dkb = dk + j0 * KV + kvh * hd;
      if constexpr (std::is_same_v<T, float>) {
        detail::gemm_f32<false, false>(nb, hd, nr, sc.data(), nr, gq, Q, dvb, KV, true, nullptr);
        detail::gemm_f32<false, false>(nb, hd, nr, dp.data(), nr, qq, Q, dkb, KV, true, nullptr);
      } else {
        for (int64_t j = 0; j < nb; ++j)
          for (int64_t r = 0; r < nr; ++r) {
            const T p = sc[static_cast<size_t>(j * nr + r)], ds = dp[static_cast<size_t>(j * nr + r)];
            for (int64_t e = 0; e < hd; ++e) {
              dvb[j * KV + e] += p * gq[r * Q + e];
              dkb[j * KV + e] += ds * qq[r * Q + e];
            }
          }
      }
    }
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t e = 0; e < hd; ++e) dk[j * KV + kvh * hd + e] *= scale;
  });
}

// ---------------------------------------------------------------------------------------------
// SwiGLU, residual add, embedding
// ---------------------------------------------------------------------------------------------

/// out = silu(gate) * up elementwise (count values). float: ops::swiglu (bit for bit); double: the
/// same formula. Context: gate and up themselves (the caller keeps them). Deterministic.
template <class T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t count, ThreadPool* pool = nullptr) {
  detail::require(count >= 0 && (count == 0 || (gate && up && out)), "swiglu_forward", "bad count or null pointer");
  constexpr int64_t kChunk = 16384;
  parallel_for(count >= 4 * kChunk ? pool : nullptr, (count + kChunk - 1) / kChunk, [&](int64_t t) {
    const int64_t i0 = t * kChunk, len = std::min(count, i0 + kChunk) - i0;
    if constexpr (std::is_same_v<T, float>) {
      swiglu(gate + i0, up + i0, out + i0, len);
    } else {
      for (int64_t i = i0; i < i0 + len; ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    }
  });
}

/// dgate = dout * up * sig(g) * (1 + g * (1 - sig(g))), dup = dout * silu(g) (overwritten; either
/// may be null). sig in T; elementwise, deterministic.
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t count,
                     ThreadPool* pool = nullptr) {
  detail::require(count >= 0 && (count == 0 || (gate && up && dout)), "swiglu_backward", "bad count or null pointer");
  constexpr int64_t kChunk = 16384;
  parallel_for(count >= 4 * kChunk ? pool : nullptr, (count + kChunk - 1) / kChunk, [&](int64_t t) {
    const int64_t i0 = t * kChunk, i1 = std::min(count, i0 + kChunk);
    for (int64_t i = i0; i < i1; ++i) {
      const T g = gate[i];
      const T sg = T(1) / (T(1) + std::exp(-g));
      const T go = dout[i];
      if (dgate) dgate[i] = go * up[i] * (sg * (T(1) + g * (T(1) - sg)));
      if (dup) dup[i] = go * (g * sg);
    }
  });
}

/// y = a + b (count values; y may alias a or b). Exact up to one rounding; deterministic.
template <class T>
void residual_add_forward(const T* a, const T* b, T* y, int64_t count) {
  detail::require(count >= 0 && (count == 0 || (a && b && y)), "residual_add_forward", "bad count or null pointer");
  for (int64_t i = 0; i < count; ++i) y[i] = a[i] + b[i];
}

/// da, db (+)= dy (either may be null; accumulate adds instead of overwriting). Exact copies or one
/// rounding per element; deterministic.
template <class T>
void residual_add_backward(const T* dy, T* da, T* db, int64_t count, bool accumulate) {
  detail::require(count >= 0 && (count == 0 || dy), "residual_add_backward", "bad count or null pointer");
  for (T* g : {da, db}) {
    if (!g) continue;
    for (int64_t i = 0; i < count; ++i) g[i] = accumulate ? g[i] + dy[i] : dy[i];
  }
}

/// Saved by embedding_forward: the ids (non-owning).
struct EmbeddingCtx {
  const int32_t* ids = nullptr;
  int64_t n = 0, vocab = 0, dim = 0;
};

/// y (n, dim) = table[ids] (exact copies). Error(kOutOfRange) naming an id outside [0, vocab).
template <class T>
EmbeddingCtx embedding_forward(const T* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n, T* y) {
  detail::require(vocab > 0 && dim > 0 && n >= 0 && table && (n == 0 || (ids && y)), "embedding_forward",
                  "bad extents or null pointer (vocab " + std::to_string(vocab) + ", dim " + std::to_string(dim) + ")");
  for (int64_t r = 0; r < n; ++r) {
    if (ids[r] < 0 || ids[r] >= vocab)
      throw Error(StatusCode::kOutOfRange, "embedding_forward: id " + std::to_string(ids[r]) + " at row " +
                                               std::to_string(r) + " is outside the vocabulary of " +
                                               std::to_string(vocab));
    std::copy(table + static_cast<int64_t>(ids[r]) * dim, table + (static_cast<int64_t>(ids[r]) + 1) * dim, y + r * dim);
  }
  return EmbeddingCtx{ids, n, vocab, dim};
}

/// dtable[ids[r]] += dy[r] for every row r, in row order (a repeated id sums its rows in order).
/// Parallel over column blocks; deterministic.
template <class T>
void embedding_backward(const EmbeddingCtx& c, const T* dy, T* dtable, ThreadPool* pool = nullptr) {
  if (c.n == 0) return;
  detail::require(c.ids && dy && dtable, "embedding_backward", "null pointer");
  constexpr int64_t kCols = 64;
  parallel_for(c.n * c.dim >= (int64_t{1} << 15) ? pool : nullptr, (c.dim + kCols - 1) / kCols, [&](int64_t t) {
    const int64_t j0 = t * kCols, j1 = std::min(c.dim, j0 + kCols);
    for (int64_t r = 0; r < c.n; ++r) {
      if (c.ids[r] < 0 || c.ids[r] >= c.vocab)
        detail::require(false, "embedding_backward", "id " + std::to_string(c.ids[r]) + " is outside the vocabulary");
      T* dst = dtable + static_cast<int64_t>(c.ids[r]) * c.dim;
      for (int64_t j = j0; j < j1; ++j) dst[j] += dy[r * c.dim + j];
    }
  });
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
