#pragma once
/// Reference twins of codebook/decode.hpp and CodebookShape's bits-per-weight, written from
/// CLUSCOMP.md §1 without using codebook_view.hpp or decode.hpp: geometry by counting, codes via
/// reference::unpack_codes_ref (bit by bit), centroids via load_as_double. Slow; tests only.

#include <cstdint>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/reference/bitpack_ref.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

/// The dense HF weight W (out, in), row-major, in double, of a clustered matrix whose centroids
/// ((S, K, d) row-major, `centroid_dtype`) and packed codes are given. Every value is an exact
/// centroid component; padding is dropped.
inline std::vector<double> decode_dense_ref(int64_t out, int64_t in, int d, int64_t k,
                                            int num_codebooks, int code_bits, DType centroid_dtype,
                                            const void* centroids, const uint32_t* code_words) {
  // Zero-pad the output dimension up to a multiple of d.
  int64_t out_pad = out;
  while (out_pad % d != 0) ++out_pad;
  const int64_t per_row = out_pad / d;  // d-vectors per input channel
  std::vector<uint32_t> codes(static_cast<size_t>(in * per_row));
  unpack_codes_ref(code_words, in * per_row, code_bits, codes.data());

  // Which codebook owns each input row: codebook s owns [floor(s*in/S), floor((s+1)*in/S)).
  std::vector<int64_t> owner(static_cast<size_t>(in), -1);
  for (int64_t s = 0; s < num_codebooks; ++s)
    for (int64_t i = s * in / num_codebooks; i < (s + 1) * in / num_codebooks; ++i) owner[i] = s;

  std::vector<double> w(static_cast<size_t>(out * in), 0.0);
  for (int64_t i = 0; i < in; ++i) {
    // Row i of Wt, padded, is the concatenation of the centroids its codes select.
    for (int64_t v = 0; v < per_row; ++v) {
      const int64_t c = codes[i * per_row + v];
      for (int t = 0; t < d; ++t) {
        const int64_t o = v * d + t;
        if (o >= out) continue;  // padding
        w[o * in + i] = load_as_double(centroids, centroid_dtype, (owner[i] * k + c) * d + t);
      }
    }
  }
  return w;
}

/// decode_dense_ref of an owning tensor.
inline std::vector<double> decode_dense_ref(const CodebookTensor& t) {
  const CodebookShape& sh = t.shape();
  return decode_dense_ref(sh.out, sh.in, sh.d, sh.k, sh.num_codebooks, t.code_bits(), sh.centroid_dtype,
                          t.centroid_bytes().data(), t.code_words().data());
}

/// Bits per weight: all code bits plus all centroid bits, over the out*in real weights
/// (CLUSCOMP.md §1: bits_code/d * out_pad/out + S*K*d*bits_centroid/(in*out)).
inline double bpw_ref(int64_t out, int64_t in, int d, int64_t k, int num_codebooks, int bits_code,
                      int bits_centroid) {
  int64_t out_pad = out;
  while (out_pad % d != 0) ++out_pad;
  const double code_bits_total = static_cast<double>(in) * static_cast<double>(out_pad / d) * bits_code;
  const double centroid_bits_total =
      static_cast<double>(num_codebooks) * static_cast<double>(k) * d * bits_centroid;
  return (code_bits_total + centroid_bits_total) / (static_cast<double>(out) * static_cast<double>(in));
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
