#pragma once
/// The k-means centroid update of one cluster, shared by the CPU engine and a GPU k-means: the
/// (weighted) mean of the cluster's points, held contiguously in cluster order. Plain C++17,
/// CLUSCOMP_HOST_DEVICE.
///
/// Why it is written this way: the sum runs in double, point by point in segment order, and is
/// rounded to fp32 once, so an implementation that keeps points in the same cluster order gets
/// the same centroid bits whatever its thread count or device.

#include <cstdint>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/distance.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// out[c] = fp32(sum_{i in [lo, hi)} pts[i*D + c] / (hi - lo)); sums in double in index order.
/// The segment must not be empty.
template <int D>
CLUSCOMP_HOST_DEVICE inline void segment_mean(const float* pts, int64_t lo, int64_t hi, float* out) {
  double s[D] = {};
  for (int64_t i = lo; i < hi; ++i)
    for (int c = 0; c < D; ++c) s[c] += pts[i * D + c];
  const double count = static_cast<double>(hi - lo);
  for (int c = 0; c < D; ++c) out[c] = static_cast<float>(s[c] / count);
}

/// The weighted mean sum w_i x_i / sum w_i over [lo, hi), products and sums in double in index
/// order (each product rounded before its add: no FMA on any path). Returns false, leaving `out` untouched, when the weights sum to 0 (the caller then
/// takes segment_mean: a cluster of zero-weight points keeps a defined centroid).
template <int D>
CLUSCOMP_HOST_DEVICE inline bool segment_weighted_mean(const float* pts, const float* w, int64_t lo, int64_t hi,
                                                       float* out) {
  double s[D] = {};
  double sw = 0.0;
  for (int64_t i = lo; i < hi; ++i) {
    const double wi = w[i];
    sw += wi;
    // The product is rounded before the add on every path: a fused multiply-add (GCC with FMA
    // enabled on the host, nvcc by default on the device) would change the centroid bits.
    for (int c = 0; c < D; ++c) s[c] = uncontracted_add(s[c], uncontracted_mul(wi, static_cast<double>(pts[i * D + c])));
  }
  if (!(sw > 0.0)) return false;
  for (int c = 0; c < D; ++c) out[c] = static_cast<float>(s[c] / sw);
  return true;
}

/// A cluster's new centroid from its non-empty segment [lo, hi): the weighted mean when there are
/// weights (w != nullptr) whose sum is positive, else the plain mean. The CPU engine and the GPU
/// update kernel both call this, one cluster at a time.
template <int D>
CLUSCOMP_HOST_DEVICE inline void cluster_centroid(const float* pts, const float* w, int64_t lo, int64_t hi, float* out) {
  if (w == nullptr || !segment_weighted_mean<D>(pts, w, lo, hi, out)) segment_mean<D>(pts, lo, hi, out);
}

/// The k-means objective is summed over fixed chunks of this many points (in cluster order), each
/// chunk sequentially in double, and the chunk sums in chunk order: the CPU engine runs the chunks
/// on its threads, the GPU one chunk per thread, and both get the same bits.
inline constexpr int64_t kObjectiveChunk = int64_t{1} << 16;

/// The objective of one chunk [lo, hi): sum of dist[i] in double in index order, or with weights
/// (w != nullptr) sum of w[i] * dist[i], each product in double and rounded before its add.
CLUSCOMP_HOST_DEVICE inline double objective_chunk_sum(const float* dist, const float* w, int64_t lo, int64_t hi) {
  double s = 0.0;
  if (w != nullptr) {
    for (int64_t i = lo; i < hi; ++i)
      s = uncontracted_add(s, uncontracted_mul(static_cast<double>(w[i]), static_cast<double>(dist[i])));
  } else {
    for (int64_t i = lo; i < hi; ++i) s += static_cast<double>(dist[i]);
  }
  return s;
}

CLUSCOMP_NAMESPACE_END
