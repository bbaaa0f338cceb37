#pragma once
// Synthetic point sets and the tie-aware nearest-centroid check shared by the k-means tests
// (test_kmeans.cpp, test_kmeans_weighted.cpp).
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <vector>

#include "cluscomp/core/dtype.hpp"
#include "cluscomp/reference/kmeans_ref.hpp"

namespace cluscomp_test {

/// Gaussian blobs (unit variance) around `centers` random centres of spread 8.
inline std::vector<float> gaussian_points(int64_t n, int d, int centers, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> c(static_cast<size_t>(centers * d));
  for (auto& v : c) v = 8.0f * g(rng);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t a = static_cast<int64_t>(rng() % static_cast<uint64_t>(centers));
    for (int e = 0; e < d; ++e) x[static_cast<size_t>(i * d + e)] = c[static_cast<size_t>(a * d + e)] + g(rng);
  }
  return x;
}

/// Weight-like: heavy-tailed (Student-t, 4 dof) values scaled to ~0.02 and rounded to bf16, so
/// there are many duplicate points and exact distance ties.
inline std::vector<float> weight_like_points(int64_t n, int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> t(4.0f);
  std::vector<float> x(static_cast<size_t>(n * d));
  for (auto& v : x) v = static_cast<float>(cluscomp::bf16(0.02f * t(rng)));
  return x;
}

/// Every code must be a nearest centroid in double, up to fp32 rounding of the distances
/// (documented ties). Returns the number of codes that differ from the reference's choice.
inline int64_t check_tie_aware(const std::vector<float>& x, int d, const float* cen, int64_t k, const uint32_t* codes) {
  namespace ref_ns = cluscomp::reference;
  const std::vector<float> c(cen, cen + k * d);
  const ref_ns::AssignmentRef ref = ref_ns::assign_ref(x, c, static_cast<size_t>(d));
  int64_t differ = 0;
  for (size_t i = 0; i < ref.labels.size(); ++i) {
    if (codes[i] == ref.labels[i]) continue;
    ++differ;
    REQUIRE(codes[i] < static_cast<uint32_t>(k));
    const double mine = ref_ns::distance2_ref(x, i, c, codes[i], static_cast<size_t>(d));
    INFO("point " << i << " code " << codes[i] << " ref " << ref.labels[i] << " d2 " << mine << " vs " << ref.d2[i]);
    REQUIRE(mine <= ref.d2[i] * (1.0 + 1e-5) + 1e-30);
  }
  return differ;
}

}  // namespace cluscomp_test
