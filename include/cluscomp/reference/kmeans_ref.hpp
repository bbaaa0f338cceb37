#pragma once
/// Reference twin of cluster/kmeans.hpp: brute-force Lloyd k-means written independently, with
/// every distance and sum in double. O(N K d) per assignment; tests only.
///
/// It follows the same specification as kmeans() (initial permutation, split rule and its
/// per-iteration seed, final reassignment, optional per-point weights) but shares no code with it. Its assignments can differ
/// from kmeans()'s fp32 ones only on near-ties (distances equal to within fp32 rounding).

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

/// Squared L2 distance of point i of `x` (n, d) to row j of `c` (k, d), in double.
inline double distance2_ref(const std::vector<float>& x, size_t i, const std::vector<float>& c, size_t j, size_t d) {
  double s = 0.0;
  for (size_t e = 0; e < d; ++e) {
    const double t = static_cast<double>(x[i * d + e]) - static_cast<double>(c[j * d + e]);
    s += t * t;
  }
  return s;
}

struct AssignmentRef {
  std::vector<uint32_t> labels;  // (n) lowest index among the minimal double distances
  std::vector<double> d2;        // (n) squared distance to that label
  double objective = 0.0;        // sum of d2, double, in point order
};

/// Brute-force nearest centroid of every point, all in double.
inline AssignmentRef assign_ref(const std::vector<float>& x, const std::vector<float>& c, size_t d) {
  const size_t n = x.size() / d, k = c.size() / d;
  AssignmentRef r;
  r.labels.resize(n);
  r.d2.resize(n);
  for (size_t i = 0; i < n; ++i) {
    double best = std::numeric_limits<double>::infinity();
    size_t bj = 0;
    for (size_t j = 0; j < k; ++j) {
      const double v = distance2_ref(x, i, c, j, d);
      if (v < best) {
        best = v;
        bj = j;
      }
    }
    r.labels[i] = static_cast<uint32_t>(bj);
    r.d2[i] = best;
    r.objective += best;
  }
  return r;
}

/// The reference initialisation: a full forward Fisher-Yates shuffle of 0..n-1 driven by
/// std::mt19937_64(seed) (index i swaps with i + (x % (n - i)), x the first draw >= (2^64 - (n-i))
/// mod (n-i)), then the first k points whose values are pairwise distinct. Returns (k, d), or an
/// empty vector when fewer than k distinct points exist.
inline std::vector<float> init_random_permutation_ref(const std::vector<float>& x, size_t d, size_t k, uint64_t seed) {
  const size_t n = x.size() / d;
  std::vector<size_t> perm(n);
  for (size_t i = 0; i < n; ++i) perm[i] = i;
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i + 1 < n; ++i) {
    const uint64_t m = n - i;
    const uint64_t reject_below = (0 - m) % m;
    uint64_t v;
    do v = rng(); while (v < reject_below);
    std::swap(perm[i], perm[i + static_cast<size_t>(v % m)]);
  }
  std::vector<float> out;
  for (size_t i = 0; i < n && out.size() < k * d; ++i) {
    bool dup = false;
    for (size_t j = 0; j < out.size() / d && !dup; ++j) {
      bool same = true;
      for (size_t e = 0; e < d; ++e) same = same && (x[perm[i] * d + e] == out[j * d + e]);
      dup = same;
    }
    if (!dup)
      for (size_t e = 0; e < d; ++e) out.push_back(x[perm[i] * d + e]);
  }
  if (out.size() < k * d) out.clear();
  return out;
}

struct KMeansRefResult {
  std::vector<float> centroids;   // (k, d) after the last update
  std::vector<uint32_t> labels;   // final reassignment
  std::vector<double> objective;  // per iteration, against the centroids it started from (weighted)
  double final_objective = 0.0;   // (weighted)
  int64_t splits = 0;
};

/// Objective of an assignment with optional per-point weights (empty: all 1): sum_i w_i * d2_i in
/// double, in point order.
inline double weighted_objective_ref(const AssignmentRef& a, const std::vector<float>& weights) {
  if (weights.empty()) return a.objective;
  double s = 0.0;
  for (size_t i = 0; i < a.d2.size(); ++i) s += static_cast<double>(weights[i]) * a.d2[i];
  return s;
}

/// Lloyd from `init` (k, d) for `iterations` updates: assign (double), mean in double rounded to
/// fp32, faiss's split of empty clusters with std::mt19937_64(seed ^ 0x5851f42d4c957f2d * (t+1))
/// in iteration t, then a final reassignment.
///
/// `weights` (n, point order; empty = every weight 1): weighted Lloyd. The objective is
/// sum_i w_i * d2_i, a centroid is sum_i w_i x_i / sum_i w_i over its points (the plain mean when
/// that total is 0); the split rule still counts points. Weights must be finite and >= 0 (not
/// checked here).
inline KMeansRefResult kmeans_ref(const std::vector<float>& x, size_t d, const std::vector<float>& init,
                                  int iterations, uint64_t seed, const std::vector<float>& weights = {}) {
  const size_t n = x.size() / d, k = init.size() / d;
  const bool weighted = !weights.empty();
  KMeansRefResult r;
  r.centroids = init;
  for (int t = 0; t < iterations; ++t) {
    const AssignmentRef a = assign_ref(x, r.centroids, d);
    r.objective.push_back(weighted_objective_ref(a, weights));
    std::vector<double> sum(k * d, 0.0), wsum(k * d, 0.0);
    std::vector<double> cnt(k, 0.0), wtot(k, 0.0);
    for (size_t i = 0; i < n; ++i) {
      const size_t j = a.labels[i];
      const double w = weighted ? static_cast<double>(weights[i]) : 1.0;
      cnt[j] += 1.0;
      wtot[j] += w;
      for (size_t e = 0; e < d; ++e) {
        sum[j * d + e] += x[i * d + e];
        wsum[j * d + e] += w * static_cast<double>(x[i * d + e]);
      }
    }
    for (size_t j = 0; j < k; ++j) {
      if (!(cnt[j] > 0)) continue;
      for (size_t e = 0; e < d; ++e)
        r.centroids[j * d + e] = wtot[j] > 0.0 ? static_cast<float>(wsum[j * d + e] / wtot[j])
                                               : static_cast<float>(sum[j * d + e] / cnt[j]);
    }
    std::mt19937_64 rng(seed ^ (0x5851f42d4c957f2dull * static_cast<uint64_t>(t + 1)));
    const double denom = n > k ? static_cast<double>(n - k) : 1.0;
    for (size_t ci = 0; ci < k; ++ci) {
      if (cnt[ci] != 0.0) continue;
      size_t cj = 0;
      bool found = false;
      for (size_t tries = 0; tries < 16 * k; ++tries) {
        const double u = static_cast<double>(rng() >> 11) / 9007199254740992.0;
        if (u < (cnt[cj] - 1.0) / denom) {
          found = true;
          break;
        }
        cj = (cj + 1) % k;
      }
      if (!found) {
        cj = 0;
        for (size_t j = 1; j < k; ++j)
          if (cnt[j] > cnt[cj]) cj = j;
      }
      for (size_t e = 0; e < d; ++e) {
        const double v = r.centroids[cj * d + e];
        const double up = 1.0 + 1.0 / 1024.0, down = 1.0 - 1.0 / 1024.0;
        r.centroids[ci * d + e] = static_cast<float>(v * (e % 2 == 0 ? up : down));
        r.centroids[cj * d + e] = static_cast<float>(v * (e % 2 == 0 ? down : up));
      }
      cnt[ci] = cnt[cj] / 2;
      cnt[cj] -= cnt[ci];
      ++r.splits;
    }
  }
  const AssignmentRef a = assign_ref(x, r.centroids, d);
  r.labels = a.labels;
  r.final_objective = weighted_objective_ref(a, weights);
  return r;
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
