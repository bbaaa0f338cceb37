#pragma once
/// Input checks of k-means: shapes, sizes and finiteness of points and weights, each failure an
/// Error naming the bad value (the lowest bad index, found deterministically).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cluscomp/cluster/distance_kernels.hpp"
#include "cluscomp/cluster/kmeans_types.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/host/checked.hpp"
#include "cluscomp/host/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

inline Error too_few_distinct(int64_t k, int64_t distinct) {
  return Error(StatusCode::kInvalidArgument,
               "kmeans: K = " + std::to_string(k) + " exceeds the number of distinct points (" +
                   std::to_string(distinct) + ")");
}

/// KMeansOptions::point_weights: every one of the N weights finite and >= 0; the first bad one
/// (lowest index, found deterministically) is named.
inline void validate_weights(const float* w, int64_t n, int threads) {
  const int64_t chunk = 1 << 16;
  const int64_t nchunks = (n + chunk - 1) / chunk;
  std::vector<int64_t> bad(static_cast<size_t>(nchunks), -1);
  parallel_chunks(threads, nchunks, 1, [&](int64_t cb, int64_t, int) {
    const int64_t lo = cb * chunk, hi = std::min(n, lo + chunk);
    for (int64_t i = lo; i < hi; ++i)
      if (!(std::isfinite(w[i]) && w[i] >= 0.0f)) {
        bad[static_cast<size_t>(cb)] = i;
        return;
      }
  });
  for (int64_t b : bad)
    if (b >= 0)
      throw Error(StatusCode::kInvalidArgument,
                  "kmeans: point_weights[" + std::to_string(b) + "] = " + std::to_string(w[b]) +
                      (std::isfinite(w[b]) ? " is negative" : " is not finite") + " (weights must be finite and >= 0)");
}

/// Validates shape and finiteness of the points (and of o.point_weights when set).
inline void validate_points(MatrixView<const float> p, const KMeansOptions& o, int threads) {
  if (p.cols < 1 || p.cols > 16)
    throw Error(StatusCode::kInvalidArgument,
                "kmeans: d = " + std::to_string(p.cols) + " is outside 1..16");
  if (p.rows < 1) throw Error(StatusCode::kInvalidArgument, "kmeans: N = " + std::to_string(p.rows) + " points");
  if (o.k < 1) throw Error(StatusCode::kInvalidArgument, "kmeans: K = " + std::to_string(o.k) + " (must be >= 1)");
  if (p.rows > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    throw Error(StatusCode::kInvalidArgument,
                "kmeans: N = " + std::to_string(p.rows) + " exceeds 2^32 - 1 points");
  if (o.k > p.rows) throw too_few_distinct(o.k, p.rows);
  if (o.k >= static_cast<int64_t>(kNoIndex))
    throw Error(StatusCode::kInvalidArgument, "kmeans: K = " + std::to_string(o.k) + " exceeds 2^31 - 2");
  if (o.iterations < 0)
    throw Error(StatusCode::kInvalidArgument, "kmeans: iterations = " + std::to_string(o.iterations));
  if (!(o.tolerance >= 0.0))
    throw Error(StatusCode::kInvalidArgument, "kmeans: tolerance = " + std::to_string(o.tolerance));
  checked_mul(static_cast<uint64_t>(p.rows), static_cast<uint64_t>(p.cols) * 24u, "kmeans: N * d working set");
  // First non-finite point, found deterministically (minimum over fixed chunks).
  const int64_t chunk = 1 << 16;
  const int64_t nchunks = (p.rows + chunk - 1) / chunk;
  std::vector<int64_t> bad(static_cast<size_t>(nchunks), -1);
  parallel_chunks(threads, nchunks, 1, [&](int64_t cb, int64_t, int) {
    const int64_t lo = cb * chunk, hi = std::min(p.rows, lo + chunk);
    for (int64_t i = lo; i < hi; ++i)
      for (int64_t c = 0; c < p.cols; ++c)
        if (!std::isfinite(p(i, c))) {
          bad[static_cast<size_t>(cb)] = i;
          return;
        }
  });
  for (int64_t b : bad)
    if (b >= 0) {
      int64_t c = 0;
      while (std::isfinite(p(b, c))) ++c;
      throw Error(StatusCode::kInvalidArgument, "kmeans: point " + std::to_string(b) + " coordinate " +
                                                    std::to_string(c) + " is " +
                                                    std::to_string(p(b, c)) + " (not finite)");
    }
  if (o.point_weights != nullptr) validate_weights(o.point_weights, p.rows, threads);
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
