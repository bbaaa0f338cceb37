#pragma once
/// The empty-cluster split of k-means (faiss's rule, as the reference runs it), as a free function
/// over plain arrays so every backend applies the same rule: the GPU k-means (cuda/kmeans_gpu.cuh)
/// downloads the K counts, splits on the host (K-sized, sequential, seeded) and uploads the
/// centroids. Host-only (std::mt19937_64), hence host/ and not core/; below cluster/ and cuda/,
/// which both include it.

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "cluscomp/host/kmeans_random.hpp"
#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

inline constexpr double kSplitEps = 1.0 / 1024.0;

/// The seed of the split after iteration `it` (0-based) of a run seeded with `seed`: every backend
/// draws the same numbers for the same run.
inline uint64_t split_seed(uint64_t seed, int it) {
  return seed ^ (0x5851f42d4c957f2dull * static_cast<uint64_t>(it + 1));
}

/// faiss's split rule: for each empty cluster ci in index order, walk cj = 0, 1, ... (cyclic) and
/// take cj with probability (count[cj] - 1) / (N - K); copy its centroid, scale even coordinates
/// by (1 + eps) / (1 - eps) and odd ones by (1 - eps) / (1 + eps) for ci / cj, and halve the
/// count. After 16 K tries without success, the largest cluster is taken.
/// counts (K) are the points per cluster of the last assignment; centroids (K, d) row-major are
/// updated in place; `pairs`, when not null, gets (empty, donor) for every split. Returns the
/// number of splits. Deterministic for a seed; the products are in double, rounded once to fp32.
inline int64_t split_empty_clusters(const int64_t* counts, int64_t k, int64_t n, int d, uint64_t seed,
                                    float* centroids, std::vector<std::pair<int64_t, int64_t>>* pairs) {
  std::vector<double> h(static_cast<size_t>(k));
  for (int64_t a = 0; a < k; ++a) h[static_cast<size_t>(a)] = static_cast<double>(counts[a]);
  const double denom = static_cast<double>(std::max<int64_t>(n - k, 1));
  std::mt19937_64 rng(seed);
  int64_t splits = 0;
  for (int64_t ci = 0; ci < k; ++ci) {
    if (h[static_cast<size_t>(ci)] != 0.0) continue;
    int64_t cj = 0;
    bool found = false;
    for (int64_t tries = 0; tries < 16 * k; ++tries, cj = (cj + 1) % k) {
      const double prob = (h[static_cast<size_t>(cj)] - 1.0) / denom;
      if (uniform01(rng) < prob) {
        found = true;
        break;
      }
    }
    if (!found) cj = static_cast<int64_t>(std::max_element(h.begin(), h.end()) - h.begin());
    float* c_i = centroids + ci * d;
    float* c_j = centroids + cj * d;
    for (int c = 0; c < d; ++c) {
      const float v = c_j[c];
      const bool even = (c % 2) == 0;
      c_i[c] = static_cast<float>(v * (even ? 1.0 + kSplitEps : 1.0 - kSplitEps));
      c_j[c] = static_cast<float>(v * (even ? 1.0 - kSplitEps : 1.0 + kSplitEps));
    }
    if (pairs) pairs->emplace_back(ci, cj);
    h[static_cast<size_t>(ci)] = h[static_cast<size_t>(cj)] / 2;
    h[static_cast<size_t>(cj)] -= h[static_cast<size_t>(ci)];
    ++splits;
  }
  return splits;
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
