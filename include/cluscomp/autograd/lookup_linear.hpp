#pragma once
/// Lookup linear layer: a linear layer whose weight is a codebook (CLUSCOMP.md §1 geometry, held
/// by CodebookView), with trainable centroids and frozen codes. Conventions: common.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/ops/lookup_gemm.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// A clustered weight with trainable centroids of type T and frozen packed codes: the matrix is a
/// CodebookView (CLUSCOMP.md §1: Wt (in, out) padded on out to out_pad, d-vectors
/// v = i * (out_pad/d) + j, S codebooks over contiguous input-row ranges), the one geometry every
/// decoder uses, so the op cannot drift from the runtime's decode. For T = double only the view's
/// geometry members are usable (decode_vector converts to float, which the finite-difference path
/// must not).
template <class T>
struct LookupLinearWeight {
  CodebookView<T> view;   // centroids (S, K, d) of T, packed codes (each < K), geometry
  const T* bias = nullptr;  // (out) or null
};

/// The weight of a CodebookTensor's shape and packed codes with caller-held master centroids
/// (S*K*d values of T) and optional bias. The tensor must outlive the weight.
template <class T>
LookupLinearWeight<T> lookup_linear_weight(const CodebookTensor& t, const T* centroids, const T* bias = nullptr) {
  return LookupLinearWeight<T>{make_codebook_view(t.shape(), centroids, t.code_words().data()), bias};
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
  require(w.view.out > 0 && w.view.in > 0, op, "weight extents must be positive, got (" + std::to_string(w.view.out) + ", " +
                                         std::to_string(w.view.in) + ")");
  require(w.view.d >= 1 && w.view.d <= 16, op, "d must be in 1..16, got " + std::to_string(w.view.d));
  require(w.view.k >= 1, op, "K must be positive, got " + std::to_string(w.view.k));
  require(w.view.num_codebooks >= 1 && w.view.num_codebooks <= w.view.in, op,
          "S must be in 1..in (" + std::to_string(w.view.in) + "), got " + std::to_string(w.view.num_codebooks));
  require(w.view.code_bits >= 1 && w.view.code_bits <= 16 && (int64_t{1} << w.view.code_bits) >= w.view.k, op,
          "code width " + std::to_string(w.view.code_bits) + " bits cannot index K = " + std::to_string(w.view.k));
  require(w.view.centroids != nullptr && w.view.codes != nullptr, op, "null centroids or codes");
  require(n >= 0, op, "negative row count " + std::to_string(n));
  require(n == 0 || x != nullptr, op, "null input");
}

/// Unpacks the codes of Wt row i (the view's vectors i*vpr .. i*vpr+vpr-1, one run instead of a
/// code(v) per vector) and checks them against K: a hand-built weight can hold anything.
template <class T>
void row_codes(const CodebookView<T>& v, int64_t i, uint32_t* out, const char* op) {
  const int64_t vpr = v.vectors_per_row();
  unpack_code_run(v.codes, i * vpr, vpr, v.code_bits, out);
  for (int64_t j = 0; j < vpr; ++j)
    if (out[j] >= static_cast<uint64_t>(v.k))  // the message is built only on failure (hot loop)
      require(false, op,
              "code " + std::to_string(out[j]) + " of vector " + std::to_string(i * vpr + j) +
                  " is not below K = " + std::to_string(v.k));
}

}  // namespace detail

/// Wt (in, out) decoded from the centroids and codes (padding components dropped). Exact (copies).
/// float: the library's decoder (decode_wt_rows, i.e. CodebookView::decode_vector); double: the
/// view's centroid_for_row and live_components with plain copies (no conversion through float).
/// Parallel over rows; deterministic. Throws Error for a bad weight or a code >= K.
template <class T>
void lookup_decode_wt(const LookupLinearWeight<T>& w, T* wt, ThreadPool* pool = nullptr) {
  detail::check_lookup(w, nullptr, 0, "lookup_decode_wt");
  const CodebookView<T> v = w.view;
  const int64_t vpr = v.vectors_per_row();
  const int64_t rows_per_task = 32;
  parallel_for(v.in * v.out >= (int64_t{1} << 16) ? pool : nullptr, (v.in + rows_per_task - 1) / rows_per_task,
               [&](int64_t t) {
                 const int64_t i0 = t * rows_per_task, i1 = std::min(v.in, i0 + rows_per_task);
                 std::vector<uint32_t> codes(static_cast<size_t>(vpr));
                 // Every row's codes are checked before any is decoded: decode_wt_rows trusts them.
                 for (int64_t i = i0; i < i1; ++i) detail::row_codes(v, i, codes.data(), "lookup_decode_wt");
                 if constexpr (std::is_same_v<T, float>) {
                   MatrixView<float> dst;
                   dst.data = wt + i0 * v.out;
                   dst.rows = i1 - i0;
                   dst.cols = v.out;
                   dst.row_stride = v.out;
                   dst.col_stride = 1;
                   throw_if_error(decode_wt_rows(v, i0, i1, dst));
                 } else {
                   for (int64_t i = i0; i < i1; ++i) {
                     unpack_code_run(v.codes, i * vpr, vpr, v.code_bits, codes.data());
                     for (int64_t j = 0; j < vpr; ++j) {
                       const T* c = v.centroid_for_row(i, codes[static_cast<size_t>(j)]);
                       const int live = v.live_components(j);
                       for (int t2 = 0; t2 < live; ++t2) wt[i * v.out + j * v.d + t2] = c[t2];
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
  const CodebookView<T> v = w.view;
  const int64_t vpr = v.vectors_per_row();
  const int64_t S = v.num_codebooks, K = v.k, d = v.d;
  constexpr int64_t kChunks = 2;  // fixed: the chunking, not the thread count, shapes the sums
  const int64_t per_chunk = K * d;
  std::vector<double> acc(detail::count(S * kChunks, per_chunk), 0.0);  // (S, chunk, K, d)
  parallel_for(v.in * v.out >= (int64_t{1} << 16) ? pool : nullptr, S * kChunks, [&](int64_t task) {
    const int64_t s = task / kChunks, part = task % kChunks;
    const int64_t b0 = codebook_row_begin(s, S, v.in), b1 = codebook_row_begin(s + 1, S, v.in);
    const int64_t i0 = b0 + (b1 - b0) * part / kChunks, i1 = b0 + (b1 - b0) * (part + 1) / kChunks;
    std::vector<uint32_t> codes(static_cast<size_t>(vpr));
    // The task's accumulator holds codebook s only, so centroid c sits at c * d in it (not at
    // centroid_for_row's (s*K + c) * d).
    double* a = acc.data() + task * per_chunk;
    const int64_t full = v.out / d;  // vectors with d live components
    // kD > 0: d known at compile time (the common d = 4 unrolls); 0: any d.
    auto rows = [&](auto d_const) {
      constexpr int64_t kD = decltype(d_const)::value;
      const int64_t dd = kD > 0 ? kD : d;
      for (int64_t i = i0; i < i1; ++i) {
        detail::row_codes(v, i, codes.data(), "codebook_scatter_add");
        const T* g = dwt + i * v.out;
        for (int64_t j = 0; j < full; ++j) {
          double* dst = a + static_cast<int64_t>(codes[static_cast<size_t>(j)]) * dd;
          for (int64_t t = 0; t < dd; ++t) dst[t] += static_cast<double>(g[j * dd + t]);
        }
        for (int64_t j = full; j < vpr; ++j) {  // the padded last vector
          double* dst = a + static_cast<int64_t>(codes[static_cast<size_t>(j)]) * dd;
          const int live = v.live_components(j);
          for (int64_t t = 0; t < live; ++t) dst[t] += static_cast<double>(g[j * dd + t]);
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
      a.w = make_any_codebook_view(w.view);
      a.x = x;
      a.ldx = w.view.in;
      a.bias = w.bias;
      a.y = y;
      a.ldy = w.view.out;
      a.m = n;
      throw_if_error(lookup_gemm(a, pool));
    } else {
      std::vector<T> wt(detail::count(w.view.in, w.view.out));
      lookup_decode_wt(w, wt.data(), pool);
      const std::vector<T> wmat = transposed(wt.data(), w.view.in, w.view.out, pool);  // (out, in)
      gemm_nt(x, w.view.in, wmat.data(), w.view.in, y, w.view.out, n, w.view.out, w.view.in, false, pool);
      detail::add_bias_rows(y, n, w.view.out, w.bias);
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
      std::vector<T> dwt(detail::count(w.view.in, w.view.out));  // (in, out) = x^T (in, n) . dy (n, out)
      detail::gemm_f32<true, false>(w.view.in, w.view.out, c.n, c.x, w.view.in, dy, w.view.out, dwt.data(), w.view.out, false, pool);
      codebook_scatter_add(w, dwt.data(), g.dcentroids, pool);
    }
    if (g.dx) {
      std::vector<T> wt(detail::count(w.view.in, w.view.out));
      lookup_decode_wt(w, wt.data(), pool);
      // dx (n, in) = dy (n, out) . Wt^T, Wt (in, out) read as the transposed operand.
      detail::gemm_f32<false, true>(c.n, w.view.in, w.view.out, dy, w.view.out, wt.data(), w.view.out, g.dx, w.view.in, g.accumulate_dx, pool);
    }
    if (g.db) column_sums(dy, c.n, w.view.out, w.view.out, g.db, true, pool);
    return;
  }
  if (g.dcentroids) {
    std::vector<T> xt_local;
    const T* xt = g.xt;
    if (!xt) {
      xt_local = transposed(c.x, c.n, w.view.in, pool);
      xt = xt_local.data();
    }
    const std::vector<T> dyt = transposed(dy, c.n, w.view.out, pool);  // (out, n)
    std::vector<T> dwt(detail::count(w.view.in, w.view.out));                // (in, out)
    gemm_nt(xt, c.n, dyt.data(), c.n, dwt.data(), w.view.out, w.view.in, w.view.out, c.n, false, pool);
    codebook_scatter_add(w, dwt.data(), g.dcentroids, pool);
  }
  if (g.dx) {
    std::vector<T> wt(detail::count(w.view.in, w.view.out));
    lookup_decode_wt(w, wt.data(), pool);
    gemm_nt(dy, w.view.out, wt.data(), w.view.out, g.dx, w.view.in, c.n, w.view.in, w.view.out, g.accumulate_dx, pool);
  }
  if (g.db) column_sums(dy, c.n, w.view.out, w.view.out, g.db, true, pool);
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
