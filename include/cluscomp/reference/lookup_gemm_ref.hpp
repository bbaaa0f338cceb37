#pragma once
/// Reference twin of ops/lookup_gemm.hpp: y = x . W^T (+ bias) for a clustered W, naive, in
/// double. The weight comes from reference::decode_dense_ref (its own geometry, bit-by-bit code
/// unpacking, load_as_double centroids: no code shared with codebook_view.hpp, bitpack.hpp or the
/// kernel). Slow; tests only.
///
/// Numerics: every product and sum in double, inputs ascending; with small-integer data the
/// result is exact, otherwise within about in * 2^-53 of exact.

#include <cstdint>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/reference/codebook_ref.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

/// y (m, out) row-major in double. Centroids (S, K, d) row-major in `centroid_dtype`; x (m, in)
/// row-major; bias (out) or null.
inline std::vector<double> lookup_gemm_ref(int64_t out, int64_t in, int d, int64_t k, int num_codebooks,
                                           int code_bits, DType centroid_dtype, const void* centroids,
                                           const uint32_t* code_words, const float* x, int64_t m,
                                           const float* bias) {
  const std::vector<double> w =
      decode_dense_ref(out, in, d, k, num_codebooks, code_bits, centroid_dtype, centroids, code_words);
  std::vector<double> y(static_cast<size_t>(m * out), 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0.0;
      for (int64_t i = 0; i < in; ++i) s += static_cast<double>(x[r * in + i]) * w[o * in + i];
      if (bias) s += static_cast<double>(bias[o]);
      y[r * out + o] = s;
    }
  return y;
}

/// lookup_gemm_ref of an owning tensor.
inline std::vector<double> lookup_gemm_ref(const CodebookTensor& t, const float* x, int64_t m,
                                           const float* bias) {
  const CodebookShape& sh = t.shape();
  return lookup_gemm_ref(sh.out, sh.in, sh.d, sh.k, sh.num_codebooks, t.code_bits(), sh.centroid_dtype,
                         t.centroid_bytes().data(), t.code_words().data(), x, m, bias);
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
