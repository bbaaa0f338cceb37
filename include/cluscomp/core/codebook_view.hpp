#pragma once
/// The device-usable view of one clustered weight matrix, and the per-element decode math that
/// every decoder (CPU, GPU, lookup-GEMM) calls. Plain C++17, CLUSCOMP_HOST_DEVICE.
///
/// Geometry (CLUSCOMP.md §1): the HF weight W has shape (out, in). Its transpose Wt (in, out) is
/// zero-padded on the output dimension to out_pad (a multiple of d) and cut row-major into
/// d-vectors: vector v = i * (out_pad/d) + j holds W[j*d .. j*d+d-1, i]. S codebooks split the
/// input rows into contiguous ranges: codebook s owns rows [floor(s*in/S), floor((s+1)*in/S)).

#include <cstdint>

#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// First input row owned by codebook s of S (rows split as evenly as integers allow).
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE int64_t codebook_row_begin(int64_t s, int64_t num_codebooks,
                                                                     int64_t in) {
  return s * in / num_codebooks;
}

/// The codebook that owns input row i: the largest s with codebook_row_begin(s) <= i.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE int64_t codebook_of_row(int64_t i, int64_t num_codebooks,
                                                                  int64_t in) {
  if (num_codebooks == 1) return 0;  // the common case, without a 64-bit division
  return ((i + 1) * num_codebooks - 1) / in;
}

/// Non-owning view of a clustered matrix. `T` is the centroid storage type (float, f16, bf16).
template <class T>
struct CodebookView {
  const T* centroids = nullptr;  // (S, K, d) row-major
  const uint32_t* codes = nullptr;  // packed, in * out_pad / d codes of code_bits bits
  int64_t out = 0;                  // rows of the HF weight
  int64_t in = 0;                   // columns of the HF weight
  int64_t out_pad = 0;              // out rounded up to a multiple of d
  int64_t k = 0;                    // centroids per codebook
  int d = 0;                        // vector dimension
  int num_codebooks = 1;            // S
  int code_bits = 16;               // packed code width

  CLUSCOMP_HOST_DEVICE int64_t vectors_per_row() const { return out_pad / d; }
  CLUSCOMP_HOST_DEVICE int64_t num_vectors() const { return in * (out_pad / d); }

  /// Code of vector v (v = i * out_pad/d + j).
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE uint32_t code(int64_t v) const {
    return unpack_code(codes, v, code_bits);
  }

  /// The (K, d) table of the codebook that owns input row i: hoisted out of a loop over row i's
  /// codes, it saves the per-code division of centroid_for_row when S > 1.
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE const T* codebook_for_row(int64_t i) const {
    return centroids + codebook_of_row(i, num_codebooks, in) * k * d;
  }

  /// Pointer to the first of the d components of centroid `c` of the codebook owning row i.
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE const T* centroid_for_row(int64_t i, uint32_t c) const {
    const int64_t s = codebook_of_row(i, num_codebooks, in);
    return centroids + (s * k + static_cast<int64_t>(c)) * d;
  }

  /// W[o, i] (o < out_pad; padding rows decode to whatever the centroid holds there).
  /// Exact: a load and a conversion to float, no arithmetic.
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float weight(int64_t o, int64_t i) const {
    const int64_t j = o / d;
    const uint32_t c = code(i * (out_pad / d) + j);
    return decode_component(centroid_for_row(i, c), static_cast<int>(o - j * d));
  }

  /// Number of components of vector j that are real output channels (d, or fewer for the last
  /// vector of a row when out is not a multiple of d): the rest is padding, dropped on decode.
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE int live_components(int64_t j) const {
    const int64_t left = out - j * d;
    return left < d ? static_cast<int>(left) : d;
  }

  /// The per-vector decode every decoder calls: writes W[j*d + t, i] for t < live_components(j)
  /// to dst[t * stride], given the vector's code c. Exact (a load and a conversion per element);
  /// padding components are never written.
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void decode_vector(int64_t i, int64_t j, uint32_t c,
                                                               float* dst, int64_t stride) const {
    const T* src = centroid_for_row(i, c);
    const int n = live_components(j);
    for (int t = 0; t < n; ++t) dst[t * stride] = decode_component(src, t);
  }

  /// The single element operation of decoding: component t of a centroid as float (exact).
  CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE static float decode_component(const T* centroid, int t) {
    return to_float(centroid[t]);
  }
};

/// A CodebookView whose centroid type is known only at run time: what host code holds before the
/// one dispatch (codebook/configs.hpp visit_centroid_type) turns the dtype into a template argument.
struct AnyCodebookView {
  const void* centroids = nullptr;  // (S, K, d) row-major in centroid_dtype
  DType centroid_dtype = DType::kF32;
  const uint32_t* codes = nullptr;  // packed, in * out_pad / d codes of code_bits bits
  int64_t out = 0;
  int64_t in = 0;
  int64_t out_pad = 0;
  int64_t k = 0;
  int d = 0;
  int num_codebooks = 1;
  int code_bits = 16;

  /// The typed view. T must be the storage type of centroid_dtype; the dispatch guarantees it.
  template <class T>
  CodebookView<T> typed() const {
    return CodebookView<T>{static_cast<const T*>(centroids), codes, out, in, out_pad, k, d,
                           num_codebooks, code_bits};
  }
};

CLUSCOMP_NAMESPACE_END
