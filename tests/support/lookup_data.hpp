#pragma once
// Clustered matrices and activations for the lookup GEMM/GEMV tests (CPU and GPU): small integers
// (every product and partial sum exact, so any summation order gives the same bits) or Gaussian
// values (realistic rounding), and the relative error both compare with.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"

namespace cluscomp_test {

/// Centroids: small integers in [-3, 3] (exact in every dtype) or N(0, 0.05); codes uniform.
/// Throws cluscomp::Error on a bad shape (also usable outside Catch2, by the GPU benchmarks).
template <class Rng>
cluscomp::CodebookTensor lookup_tensor(const cluscomp::CodebookShape& sh, bool integers, Rng& rng) {
  cluscomp::CodebookTensor t(sh);
  std::normal_distribution<float> g(0.0f, 0.05f);
  for (int s = 0; s < sh.num_codebooks; ++s)
    for (int64_t q = 0; q < sh.k; ++q)
      for (int e = 0; e < sh.d; ++e)
        t.set_centroid(s, q, e, integers ? static_cast<float>(static_cast<int>(rng() % 7) - 3) : g(rng));
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  for (auto& v : codes) v = static_cast<uint32_t>(rng() % static_cast<uint32_t>(sh.k));
  cluscomp::throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

/// A test matrix's geometry, as the lookup tests list them: (out, in, d, K, code bits, S).
struct LookupCase {
  int64_t out, in;
  int d;
  int64_t k;
  int bits, s;
};

/// lookup_tensor for a LookupCase with centroids of `dtype`.
template <class Rng>
cluscomp::CodebookTensor lookup_tensor(const LookupCase& c, cluscomp::DType dtype, bool integers, Rng& rng) {
  cluscomp::CodebookShape sh;
  sh.out = c.out;
  sh.in = c.in;
  sh.d = c.d;
  sh.k = c.k;
  sh.code_bits = c.bits;
  sh.num_codebooks = c.s;
  sh.centroid_dtype = dtype;
  return lookup_tensor(sh, integers, rng);
}

/// Activations: small integers in [-2, 2] or N(0, 1).
template <class Rng>
std::vector<float> lookup_x(int64_t n, bool integers, Rng& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = integers ? static_cast<float>(static_cast<int>(rng() % 5) - 2) : g(rng);
  return x;
}

/// ||got - ref|| / ||ref||.
inline double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

}  // namespace cluscomp_test
