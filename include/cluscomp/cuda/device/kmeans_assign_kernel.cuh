#pragma once
/// The brute-force exact assignment kernel: every point against every centroid, centroid tiles
/// streamed through shared memory, kPointsPerThread points per thread in registers. The thread
/// ids become points through core/kmeans_assign_tile.hpp's point_index and the arithmetic is its
/// scan_tile (core/distance.hpp's distance and tie-break), which the CPU tests replay.

#include <cuda_runtime.h>

#include <cstdint>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/kmeans_assign_tile.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// points (n, D) and centroids (k, D) row-major and contiguous; codes (n); distances (n) or null.
template <int D>
__global__ void __launch_bounds__(kmeans_assign_map::kThreads)
    kmeans_assign_kernel(const float* __restrict__ points, int64_t n, const float* __restrict__ centroids,
                         int64_t k, uint32_t* __restrict__ codes, float* __restrict__ distances) {
  using namespace kmeans_assign_map;
  __shared__ float tile[kTileCentroids * D];
  float x[kPointsPerThread][D];
  bool live[kPointsPerThread];
  float best_d[kPointsPerThread];
  int32_t best_i[kPointsPerThread];
  for (int p = 0; p < kPointsPerThread; ++p) {
    const int64_t i = point_index(blockIdx.x, static_cast<int>(threadIdx.x), p);
    live[p] = i < n;
    for (int e = 0; e < D; ++e) x[p][e] = live[p] ? points[i * D + e] : 0.0f;
    best_d[p] = __int_as_float(0x7f800000);  // +inf
    best_i[p] = kNoCentroid;
  }
  for (int64_t c0 = 0; c0 < k; c0 += kTileCentroids) {
    const int count = static_cast<int>(k - c0 < kTileCentroids ? k - c0 : kTileCentroids);
    __syncthreads();  // the previous tile is no longer read
    for (int e = static_cast<int>(threadIdx.x); e < count * D; e += kThreads) tile[e] = centroids[c0 * D + e];
    __syncthreads();
    scan_tile<D, kPointsPerThread>(x, live, tile, count, static_cast<int32_t>(c0), best_d, best_i);
  }
  for (int p = 0; p < kPointsPerThread; ++p) {
    if (!live[p]) continue;
    const int64_t i = point_index(blockIdx.x, static_cast<int>(threadIdx.x), p);
    codes[i] = static_cast<uint32_t>(best_i[p]);
    if (distances != nullptr) distances[i] = best_d[p];
  }
}

CLUSCOMP_NAMESPACE_END
