#pragma once
// Data for the nearest-centroid assignment tests (CPU replay and GPU): Gaussian points and
// centroids with exact ties built in: the last centroid duplicates the first (the lower index must
// win) and every `on_centroid`-th point sits exactly on a centroid. Plain C++ (used by .cpp and .cu).
#include <cstdint>
#include <random>
#include <vector>

namespace cluscomp_test {

struct AssignData {
  std::vector<float> points;     // (n, d) row-major
  std::vector<float> centroids;  // (k, d) row-major
};

inline AssignData make_assign_data(int64_t n, int64_t k, int d, uint32_t seed, int64_t on_centroid) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  AssignData a;
  a.centroids.resize(static_cast<size_t>(k * d));
  a.points.resize(static_cast<size_t>(n * d));
  for (float& v : a.centroids) v = g(rng);
  for (float& v : a.points) v = g(rng);
  if (k > 1)
    for (int e = 0; e < d; ++e) a.centroids[static_cast<size_t>((k - 1) * d + e)] = a.centroids[static_cast<size_t>(e)];
  for (int64_t p = 0; p < n; p += on_centroid)
    for (int e = 0; e < d; ++e)
      a.points[static_cast<size_t>(p * d + e)] = a.centroids[static_cast<size_t>((p % k) * d + e)];
  return a;
}

}  // namespace cluscomp_test
