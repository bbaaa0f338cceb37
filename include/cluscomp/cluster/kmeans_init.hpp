#pragma once
/// The k-means initialisers: the reference's seeded random permutation (the first K distinct
/// points), k-means++ and k-means||, and kmeans_initial_centroids, which picks one per
/// KMeansOptions. All are deterministic for a seed whatever the thread count, and unweighted.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/host/kmeans_random.hpp"
#include "cluscomp/cluster/kmeans_types.hpp"
#include "cluscomp/cluster/kmeans_validate.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/host/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

/// Open-addressing set of d-dimensional points compared by value (-0 equals +0), held as row
/// indices into a caller-owned row-major array (the initialisation's walk over distinct points; a
/// node-free table: std::unordered_set took ~10 ms at K = 65536). At most `capacity` rows; rows
/// must not change while they are in the set.
class FlatPointSet {
 public:
  FlatPointSet(const float* rows, int d, int64_t capacity) : rows_(rows), d_(d) {
    size_t cap = 16;
    while (cap < static_cast<size_t>(capacity) * 2) cap *= 2;
    slots_.assign(cap, kEmpty);
    mask_ = cap - 1;
  }
  /// Adds row r unless an equal row is present; returns that row's index, or r when added.
  int64_t insert(int64_t r) {
    const float* x = rows_ + r * d_;
    for (size_t h = hash(x) & mask_;; h = (h + 1) & mask_) {
      if (slots_[h] == kEmpty) {
        slots_[h] = static_cast<uint32_t>(r);
        return r;
      }
      if (equal(rows_ + static_cast<int64_t>(slots_[h]) * d_, x)) return slots_[h];
    }
  }

 private:
  static constexpr uint32_t kEmpty = 0xffffffffu;
  size_t hash(const float* x) const {
    uint64_t h = 1469598103934665603ull;
    for (int c = 0; c < d_; ++c) {
      const float v = x[c] == 0.0f ? 0.0f : x[c];
      uint32_t u;
      std::memcpy(&u, &v, 4);
      h = (h ^ u) * 1099511628211ull;
    }
    return static_cast<size_t>(h ^ (h >> 29));
  }
  bool equal(const float* a, const float* b) const {
    for (int c = 0; c < d_; ++c)
      if (!(a[c] == b[c])) return false;
    return true;
  }
  const float* rows_;
  int d_;
  std::vector<uint32_t> slots_;
  size_t mask_ = 0;
};

/// Reference initialisation: forward Fisher-Yates with std::mt19937_64(seed) and uniform_below,
/// walking the permutation until K points with distinct values are found.
inline std::vector<float> init_random_permutation(MatrixView<const float> p, int64_t k, uint64_t seed) {
  const int64_t n = p.rows;
  const int d = static_cast<int>(p.cols);
  std::vector<uint32_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = static_cast<uint32_t>(i);
  std::mt19937_64 rng(seed);
  std::vector<float> out(static_cast<size_t>(k * d));
  FlatPointSet seen(out.data(), d, k);
  int64_t chosen = 0;
  for (int64_t i = 0; i < n && chosen < k; ++i) {
    const int64_t j = i + static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(n - i)));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
    const int64_t idx = perm[static_cast<size_t>(i)];
    float* dst = &out[static_cast<size_t>(chosen * d)];
    for (int c = 0; c < d; ++c) dst[c] = p(idx, c);
    if (seen.insert(chosen) == chosen) ++chosen;
  }
  if (chosen < k) throw too_few_distinct(k, chosen);
  return out;
}

/// Squared distance in double for the initialisation methods (they do not need the kernels).
inline double point_distance2(MatrixView<const float> p, int64_t i, const float* c) {
  double s = 0;
  for (int64_t e = 0; e < p.cols; ++e) {
    const double t = static_cast<double>(p(i, e)) - c[e];
    s += t * t;
  }
  return s;
}

/// Samples an index with probability w[i] / sum(w) (w >= 0, sum > 0), deterministic.
inline int64_t sample_weighted(const std::vector<double>& w, double total, std::mt19937_64& rng) {
  const double r = uniform01(rng) * total;
  double acc = 0.0;
  int64_t last_positive = -1;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] <= 0.0) continue;
    acc += w[i];
    last_positive = static_cast<int64_t>(i);
    if (r < acc) return last_positive;
  }
  return last_positive;
}

/// Weighted k-means++ over `cand` (m, d) with weights `wt`; returns K of them.
inline std::vector<float> weighted_kmeanspp(const std::vector<float>& cand, const std::vector<double>& wt,
                                            int d, int64_t k, std::mt19937_64& rng, int threads) {
  const int64_t m = static_cast<int64_t>(wt.size());
  MatrixView<const float> cv = make_matrix_view(cand.data(), m, d);
  std::vector<float> out(static_cast<size_t>(k * d));
  std::vector<double> mind(static_cast<size_t>(m), std::numeric_limits<double>::infinity());
  std::vector<double> score(static_cast<size_t>(m));
  double total = 0;
  for (double w : wt) total += w;
  int64_t first = sample_weighted(wt, total, rng);
  for (int64_t c = 0; c < k; ++c) {
    const float* cc = &cand[static_cast<size_t>(first * d)];
    std::copy(cc, cc + d, &out[static_cast<size_t>(c * d)]);
    if (c + 1 == k) break;
    parallel_chunks(threads, m, 4096, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        const double dd = point_distance2(cv, i, cc);
        if (dd < mind[static_cast<size_t>(i)]) mind[static_cast<size_t>(i)] = dd;
        score[static_cast<size_t>(i)] = mind[static_cast<size_t>(i)] * wt[static_cast<size_t>(i)];
      }
    });
    double s = 0;
    for (double v : score) s += v;
    if (!(s > 0.0)) throw too_few_distinct(k, c + 1);
    first = sample_weighted(score, s, rng);
  }
  return out;
}

inline std::vector<float> init_kmeanspp(MatrixView<const float> p, int64_t k, uint64_t seed, int threads) {
  const int64_t n = p.rows;
  const int d = static_cast<int>(p.cols);
  std::mt19937_64 rng(seed);
  std::vector<float> out(static_cast<size_t>(k * d));
  std::vector<double> mind(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
  int64_t pick = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(n)));
  const int64_t chunk = 1 << 14;
  const int64_t nchunks = (n + chunk - 1) / chunk;
  std::vector<double> part(static_cast<size_t>(nchunks));
  for (int64_t c = 0; c < k; ++c) {
    float* cc = &out[static_cast<size_t>(c * d)];
    for (int e = 0; e < d; ++e) cc[e] = p(pick, e);
    if (c + 1 == k) break;
    parallel_chunks(threads, nchunks, 1, [&](int64_t cb, int64_t, int) {
      double s = 0;
      for (int64_t i = cb * chunk; i < std::min(n, (cb + 1) * chunk); ++i) {
        double& m = mind[static_cast<size_t>(i)];
        m = std::min(m, point_distance2(p, i, cc));
        s += m;
      }
      part[static_cast<size_t>(cb)] = s;
    });
    double total = 0;
    for (double v : part) total += v;
    if (!(total > 0.0)) throw too_few_distinct(k, c + 1);
    const double r = uniform01(rng) * total;
    double acc = 0;
    int64_t cb = 0;
    while (cb + 1 < nchunks && acc + part[static_cast<size_t>(cb)] <= r) acc += part[static_cast<size_t>(cb++)];
    pick = -1;
    for (int64_t i = cb * chunk; i < std::min(n, (cb + 1) * chunk); ++i) {
      const double m = mind[static_cast<size_t>(i)];
      if (m <= 0.0) continue;
      acc += m;
      pick = i;
      if (r < acc) break;
    }
    if (pick < 0) {  // rounding pushed r past the chunk's mass: last point with mass anywhere
      for (int64_t i = n - 1; i >= 0 && pick < 0; --i)
        if (mind[static_cast<size_t>(i)] > 0.0) pick = i;
    }
  }
  return out;
}

inline std::vector<float> init_kmeans_parallel(MatrixView<const float> p, int64_t k, uint64_t seed, int threads) {
  const int64_t n = p.rows;
  const int d = static_cast<int>(p.cols);
  std::mt19937_64 rng(seed);
  std::vector<float> cand;
  std::vector<double> mind(static_cast<size_t>(n), std::numeric_limits<double>::infinity());
  auto add_and_update = [&](const std::vector<int64_t>& picks) {
    const size_t old = cand.size() / static_cast<size_t>(d);
    for (int64_t i : picks)
      for (int e = 0; e < d; ++e) cand.push_back(p(i, e));
    const size_t now = cand.size() / static_cast<size_t>(d);
    parallel_chunks(threads, n, 4096, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i)
        for (size_t c = old; c < now; ++c)
          mind[static_cast<size_t>(i)] = std::min(mind[static_cast<size_t>(i)], point_distance2(p, i, &cand[c * static_cast<size_t>(d)]));
    });
  };
  add_and_update({static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(n)))});
  const double ell = 2.0 * static_cast<double>(k);
  for (int round = 0; round < 64; ++round) {
    double psi = 0;
    for (double v : mind) psi += v;
    const int64_t have = static_cast<int64_t>(cand.size()) / d;
    if (!(psi > 0.0)) {
      if (have < k) throw too_few_distinct(k, have);
      break;
    }
    if (round >= 5 && have >= k) break;
    std::vector<int64_t> picks;
    for (int64_t i = 0; i < n; ++i)
      if (mind[static_cast<size_t>(i)] > 0.0 &&
          hashed_uniform(seed, static_cast<uint64_t>(round), static_cast<uint64_t>(i)) <
              ell * mind[static_cast<size_t>(i)] / psi)
        picks.push_back(i);
    add_and_update(picks);
  }
  const int64_t m = static_cast<int64_t>(cand.size()) / d;
  if (m < k) throw too_few_distinct(k, m);
  // Weight each candidate by the points nearest to it (lowest index on ties).
  std::vector<int64_t> owner(static_cast<size_t>(n));
  parallel_chunks(threads, n, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      double best = std::numeric_limits<double>::infinity();
      int64_t bi = 0;
      for (int64_t c = 0; c < m; ++c) {
        const double dd = point_distance2(p, i, &cand[static_cast<size_t>(c * d)]);
        if (dd < best) { best = dd; bi = c; }
      }
      owner[static_cast<size_t>(i)] = bi;
    }
  });
  std::vector<double> wt(static_cast<size_t>(m), 0.0);
  for (int64_t o : owner) wt[static_cast<size_t>(o)] += 1.0;
  return weighted_kmeanspp(cand, wt, d, k, rng, threads);
}

}  // namespace cluster_detail

/// The K initial centroids (K, d) row-major for `o.init` and `o.seed` (or a copy of
/// o.initial_centroids when set, after checking it). Deterministic for a seed whatever the thread
/// count. Throws Error(kInvalidArgument) for the cases listed at kmeans().
inline std::vector<float> kmeans_initial_centroids(MatrixView<const float> points, const KMeansOptions& o) {
  using namespace cluster_detail;
  const int threads = resolve_thread_count(o.threads);
  validate_points(points, o, threads);
  const int64_t k = o.k, d = points.cols;
  if (o.initial_centroids.data != nullptr || o.initial_centroids.rows != 0) {
    const auto& ic = o.initial_centroids;
    if (ic.rows != k || ic.cols != d)
      throw Error(StatusCode::kInvalidArgument, "kmeans: initial_centroids is " + std::to_string(ic.rows) +
                                                    " x " + std::to_string(ic.cols) + ", expected " +
                                                    std::to_string(k) + " x " + std::to_string(d));
    std::vector<float> out(static_cast<size_t>(k * d));
    for (int64_t i = 0; i < k; ++i)
      for (int64_t c = 0; c < d; ++c) {
        const float v = ic(i, c);
        if (!std::isfinite(v))
          throw Error(StatusCode::kInvalidArgument, "kmeans: initial centroid " + std::to_string(i) +
                                                        " coordinate " + std::to_string(c) + " is not finite");
        out[static_cast<size_t>(i * d + c)] = v;
      }
    return out;
  }
  switch (o.init) {
    case KMeansInit::kRandomPermutation: return init_random_permutation(points, k, o.seed);
    case KMeansInit::kKMeansPlusPlus: return init_kmeanspp(points, k, o.seed, threads);
    case KMeansInit::kKMeansParallel: return init_kmeans_parallel(points, k, o.seed, threads);
  }
  throw Error(StatusCode::kInvalidArgument, "kmeans: unknown init method");
}

CLUSCOMP_NAMESPACE_END
