// The GPU brute-force assignment (cuda/kmeans_assign.cuh) replayed on the CPU: its work mapping
// (core/kmeans_assign_tile.hpp's point_index over the launch grid) writes every point exactly once
// and reads only inside the inputs, and its per-thread arithmetic (scan_tile over shared-memory
// tiles, exactly as the kernel stages them) gives the codes of cluster/kmeans.hpp's kmeans_assign,
// bit for bit, including exact ties (duplicated centroids, points on centroids). This is what CI
// can check of the kernel without a GPU; tests/gpu/test_kmeans_assign_gpu.cu runs the kernel.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/core/kmeans_assign_tile.hpp"
#include "support/assign_data.hpp"

namespace test_kmeans_assign_map {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace km = cluscomp::kmeans_assign_map;

namespace {

struct Replay {
  std::vector<uint32_t> codes;
  std::vector<float> distances;
  std::vector<int> writes;  // per point: how many threads wrote it
  bool reads_in_bounds = true;
};

// The kernel, thread by thread: the same mapping, the same staging of centroid tiles, the same
// scan_tile call.
template <int D>
Replay replay_kernel(const std::vector<float>& points, int64_t n, const std::vector<float>& centroids, int64_t k) {
  Replay r;
  r.codes.assign(static_cast<size_t>(n), 0xffffffffu);
  r.distances.assign(static_cast<size_t>(n), -1.0f);
  r.writes.assign(static_cast<size_t>(n), 0);
  constexpr int P = km::kPointsPerThread;
  std::vector<float> tile(static_cast<size_t>(km::kTileCentroids) * D);
  for (int64_t b = 0; b < km::blocks_for(n); ++b) {
    for (int t = 0; t < km::kThreads; ++t) {
      float x[P][D];
      bool live[P];
      float bd[P];
      int32_t bi[P];
      for (int p = 0; p < P; ++p) {
        const int64_t i = km::point_index(b, t, p);
        live[p] = i < n;
        for (int e = 0; e < D; ++e) {
          if (live[p] && (i * D + e < 0 || i * D + e >= static_cast<int64_t>(points.size()))) r.reads_in_bounds = false;
          x[p][e] = live[p] ? points[static_cast<size_t>(i * D + e)] : 0.0f;
        }
        bd[p] = std::numeric_limits<float>::infinity();
        bi[p] = km::kNoCentroid;
      }
      for (int64_t c0 = 0; c0 < k; c0 += km::kTileCentroids) {
        const int count = static_cast<int>(std::min<int64_t>(km::kTileCentroids, k - c0));
        for (int e = 0; e < count * D; ++e) {
          if (c0 * D + e >= static_cast<int64_t>(centroids.size())) r.reads_in_bounds = false;
          tile[static_cast<size_t>(e)] = centroids[static_cast<size_t>(c0 * D + e)];
        }
        km::scan_tile<D, P>(x, live, tile.data(), count, static_cast<int32_t>(c0), bd, bi);
      }
      for (int p = 0; p < P; ++p) {
        if (!live[p]) continue;
        const int64_t i = km::point_index(b, t, p);
        r.codes[static_cast<size_t>(i)] = static_cast<uint32_t>(bi[p]);
        r.distances[static_cast<size_t>(i)] = bd[p];
        ++r.writes[static_cast<size_t>(i)];
      }
    }
  }
  return r;
}

template <int D>
void check_shape(int64_t n, int64_t k, uint32_t seed) {
  INFO("d = " << D << " n = " << n << " k = " << k << " seed = " << seed);
  const cluscomp_test::AssignData data = cluscomp_test::make_assign_data(n, k, D, seed, 7);
  const std::vector<float>& c = data.centroids;
  const std::vector<float>& x = data.points;
  const Replay r = replay_kernel<D>(x, n, c, k);
  REQUIRE(r.reads_in_bounds);
  for (int64_t i = 0; i < n; ++i) REQUIRE(r.writes[static_cast<size_t>(i)] == 1);
  const KMeansAssignment want = kmeans_assign(make_matrix_view<const float>(x.data(), n, D),
                                              make_matrix_view<const float>(c.data(), k, D), 1);
  REQUIRE(r.codes == want.codes);
  for (int64_t i = 0; i < n; ++i) {
    const float d = squared_distance<D>(&x[static_cast<size_t>(i * D)], &c[static_cast<size_t>(r.codes[static_cast<size_t>(i)] * D)]);
    REQUIRE(std::memcmp(&d, &r.distances[static_cast<size_t>(i)], sizeof d) == 0);
  }
  if (k > 1) REQUIRE(r.codes[0] == 0);  // point 0 sits on centroid 0 and on its duplicate k-1
}

}  // namespace

TEST_CASE("GPU assignment mapping: every point once, blocks cover n exactly", "[kmeans][gpu-replay]") {
  for (int64_t n : {int64_t{1}, km::kPointsPerBlock - 1, km::kPointsPerBlock, km::kPointsPerBlock + 1, int64_t{100003}}) {
    const int64_t blocks = km::blocks_for(n);
    REQUIRE(blocks * km::kPointsPerBlock >= n);
    REQUIRE((blocks - 1) * km::kPointsPerBlock < n);
    std::vector<int> seen(static_cast<size_t>(blocks * km::kPointsPerBlock), 0);
    for (int64_t b = 0; b < blocks; ++b)
      for (int t = 0; t < km::kThreads; ++t)
        for (int p = 0; p < km::kPointsPerThread; ++p) ++seen[static_cast<size_t>(km::point_index(b, t, p))];
    for (int v : seen) REQUIRE(v == 1);
  }
  // Consecutive threads of a slot take consecutive points (coalesced loads).
  REQUIRE(km::point_index(3, 1, 2) == km::point_index(3, 0, 2) + 1);
}

TEST_CASE("GPU assignment replayed on the CPU equals kmeans_assign, ties included", "[kmeans][gpu-replay]") {
  check_shape<1>(1000, 7, 1);
  check_shape<2>(513, 256, 2);
  check_shape<3>(2049, 257, 3);
  check_shape<4>(3000, 1000, 4);
  check_shape<4>(1, 1, 5);
  check_shape<8>(777, 300, 6);
  check_shape<16>(600, 513, 7);
}

}  // namespace test_kmeans_assign_map
