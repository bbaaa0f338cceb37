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
/// order. Returns false, leaving `out` untouched, when the weights sum to 0 (the caller then
/// takes segment_mean: a cluster of zero-weight points keeps a defined centroid).
template <int D>
CLUSCOMP_HOST_DEVICE inline bool segment_weighted_mean(const float* pts, const float* w, int64_t lo, int64_t hi,
                                                       float* out) {
  double s[D] = {};
  double sw = 0.0;
  for (int64_t i = lo; i < hi; ++i) {
    const double wi = w[i];
    sw += wi;
    for (int c = 0; c < D; ++c) s[c] += wi * static_cast<double>(pts[i * D + c]);
  }
  if (!(sw > 0.0)) return false;
  for (int c = 0; c < D; ++c) out[c] = static_cast<float>(s[c] / sw);
  return true;
}

CLUSCOMP_NAMESPACE_END
