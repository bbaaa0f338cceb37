#pragma once
/// The brute-force nearest-centroid assignment as the GPU runs it (cuda/kmeans_assign.cuh), in
/// pieces the CPU can run too: the work mapping (which thread owns which points) and the per-tile
/// step (a thread's points against one tile of centroids). Plain C++17, CLUSCOMP_HOST_DEVICE.
///
/// Why the pieces live here: the kernel only maps block/thread ids to points and calls these, so
/// tests on a machine without a GPU replay the whole kernel on the CPU (every point written once,
/// every read in bounds, the same codes as cluster/kmeans.hpp) and the per-pair arithmetic is
/// core/distance.hpp's, the one the CPU k-means uses: the same fp32 distances, the same tie-break
/// (lowest index among minimal distances), so the same codes on both.

#include <cstdint>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/distance.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace kmeans_assign_map {

inline constexpr int kThreads = 128;         // threads per block
inline constexpr int kPointsPerThread = 4;   // points a thread keeps in registers
inline constexpr int kTileCentroids = 256;   // centroids per shared-memory tile (16 KiB at d = 16)
inline constexpr int64_t kPointsPerBlock = int64_t{kThreads} * kPointsPerThread;
inline constexpr int32_t kNoCentroid = 0x7fffffff;

/// Blocks for n points.
CLUSCOMP_HOST_DEVICE constexpr int64_t blocks_for(int64_t n) { return (n + kPointsPerBlock - 1) / kPointsPerBlock; }

/// The point in slot `slot` of thread `thread` of block `block`: a block owns kPointsPerBlock
/// consecutive points, and slot s of its threads covers the s-th run of kThreads of them, so the
/// threads of a warp load consecutive points (coalesced) and every point has exactly one owner.
CLUSCOMP_HOST_DEVICE constexpr int64_t point_index(int64_t block, int thread, int slot) {
  return block * kPointsPerBlock + int64_t{slot} * kThreads + thread;
}

/// One thread's points (x[p], D floats each; live[p] false for slots past the last point) against
/// `count` centroids (row-major, D floats each) whose first index is `first`: keeps, per point,
/// the lexicographic minimum of (fp32 squared distance, index). Centroid-outer, point-inner, so
/// each centroid value read from shared memory serves all the thread's points.
template <int D, int P>
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void scan_tile(const float (&x)[P][D], const bool (&live)[P],
                                                         const float* tile, int count, int32_t first,
                                                         float (&best_d)[P], int32_t (&best_i)[P]) {
  for (int j = 0; j < count; ++j) {
    const float* c = tile + j * D;
    const int32_t idx = first + j;
    for (int p = 0; p < P; ++p) {
      if (!live[p]) continue;
      const float d = squared_distance<D>(x[p], c);
      if (precedes(d, idx, best_d[p], best_i[p])) {
        best_d[p] = d;
        best_i[p] = idx;
      }
    }
  }
}

}  // namespace kmeans_assign_map
CLUSCOMP_NAMESPACE_END
