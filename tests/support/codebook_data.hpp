#pragma once
// Random clustered matrices for the codebook tests (CPU and GPU). Fixed seeds are the callers'.
#include <cstdint>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"

namespace cluscomp_test {

inline cluscomp::CodebookShape make_shape(int64_t out, int64_t in, int d, int64_t k, int s = 1,
                                          int bits = 0, cluscomp::DType dt = cluscomp::DType::kF16) {
  cluscomp::CodebookShape sh;
  sh.out = out;
  sh.in = in;
  sh.d = d;
  sh.k = k;
  sh.num_codebooks = s;
  sh.code_bits = bits;
  sh.centroid_dtype = dt;
  return sh;
}

inline std::string describe(const cluscomp::CodebookShape& sh) {
  std::ostringstream o;
  o << "out=" << sh.out << " in=" << sh.in << " d=" << sh.d << " K=" << sh.k << " S=" << sh.num_codebooks
    << " bits=" << sh.effective_code_bits() << " dtype=" << cluscomp::dtype_name(sh.centroid_dtype);
  return o.str();
}

/// Random centroids (any non-NaN bit pattern of the storage type: normals, subnormals, zeros of
/// both signs, infinities) and uniform random codes that include 0 and K-1. Throws on a bad shape.
inline cluscomp::CodebookTensor random_tensor(const cluscomp::CodebookShape& sh, std::mt19937_64& rng) {
  using cluscomp::DType;
  cluscomp::CodebookTensor t(sh);
  auto& bytes = t.centroid_bytes();
  const int64_t nv = sh.num_centroid_values();
  for (int64_t i = 0; i < nv; ++i) {
    if (sh.centroid_dtype == DType::kF32) {
      uint32_t u;
      do u = static_cast<uint32_t>(rng()); while ((u & 0x7fffffffu) > 0x7f800000u);
      std::memcpy(bytes.data() + 4 * i, &u, 4);
    } else {
      const uint16_t exp_mask = sh.centroid_dtype == DType::kF16 ? 0x7c00u : 0x7f80u;
      uint16_t h;
      do h = static_cast<uint16_t>(rng()); while ((h & exp_mask) == exp_mask && (h & ~exp_mask & 0x7fffu) != 0);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  std::uniform_int_distribution<int64_t> pick(0, sh.k - 1);
  for (auto& c : codes) c = static_cast<uint32_t>(pick(rng));
  codes[0] = static_cast<uint32_t>(sh.k - 1);
  if (codes.size() > 1) codes[1] = 0;
  cluscomp::throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

/// True when `got` has exactly the bits of `want` converted to float (want is an exact float).
inline bool same_bits(float got, double want) {
  const float w = static_cast<float>(want);
  return std::memcmp(&got, &w, 4) == 0;
}

/// Mismatches between a (rows, cols) view (W if !transposed, else Wt) and a reference W (out, in)
/// row-major; `first` describes the first one.
template <class V>
int64_t count_mismatches(const std::vector<double>& ref, int64_t out, int64_t in, bool transposed,
                         const V& got, std::string* first) {
  int64_t bad = 0;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      const float g = transposed ? got(i, o) : got(o, i);
      const double r = ref[static_cast<size_t>(o * in + i)];
      if (!same_bits(g, r) && bad++ == 0) {
        std::ostringstream m;
        m << "W[" << o << ", " << i << "] got " << g << " want " << r;
        *first = m.str();
      }
    }
  return bad;
}

}  // namespace cluscomp_test
