// kmeans_assign_gpu (cuda/kmeans_assign.cuh) against a host brute force on core/distance.hpp's
// distance and tie-break (which tests/cpu/test_kmeans_assign_map.cpp shows equal to the CPU
// k-means' kmeans_assign), bit for bit: codes and fp32 distances, d = 1..16, K from 1 to several tiles, Gaussian data with exact ties
// (duplicated centroids, points on centroids); and the Status of bad arguments. The GPU main
// skips (exit 77) without a CUDA device.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cluscomp/core/distance.hpp"
#include "cluscomp/cuda/kmeans_assign.cuh"
#include "support/assign_data.hpp"
#include "support/gpu_test.cuh"

using namespace cluscomp;
using cluscomp_test::DeviceBuffer;

namespace {

template <int D>
void check_gpu_assign(int64_t n, int64_t k, uint32_t seed) {
  INFO("d = " << D << " n = " << n << " k = " << k << " seed = " << seed);
  const cluscomp_test::AssignData data = cluscomp_test::make_assign_data(n, k, D, seed, 5);
  const std::vector<float>& c = data.centroids;
  const std::vector<float>& x = data.points;
  // The host answer: every centroid in index order, the lexicographic minimum of (distance, index).
  std::vector<uint32_t> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float bd = 0.0f;
    int32_t bi = -1;
    for (int32_t j = 0; j < static_cast<int32_t>(k); ++j) {
      const float d = squared_distance<D>(&x[static_cast<size_t>(i * D)], &c[static_cast<size_t>(j) * D]);
      if (bi < 0 || precedes(d, j, bd, bi)) {
        bd = d;
        bi = j;
      }
    }
    want[static_cast<size_t>(i)] = static_cast<uint32_t>(bi);
  }
  DeviceBuffer<float> dx(x.data(), x.size()), dc(c.data(), c.size()), dd(static_cast<size_t>(n));
  DeviceBuffer<uint32_t> codes(static_cast<size_t>(n));
  codes.fill_bytes(0xff);
  KMeansAssignGpuArgs a;
  a.points = make_matrix_view<const float>(dx.get(), n, D);
  a.centroids = make_matrix_view<const float>(dc.get(), k, D);
  a.codes = codes.get();
  a.distances = dd.get();
  REQUIRE(kmeans_assign_gpu_workspace_size(a) == 0);
  const Status s = kmeans_assign_gpu(a, nullptr);
  INFO(s.to_string());
  REQUIRE(s.ok());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  REQUIRE(codes.download() == want);
  const std::vector<float> got_d = dd.download();
  for (int64_t i = 0; i < n; ++i) {
    const float d = squared_distance<D>(&x[static_cast<size_t>(i * D)], &c[static_cast<size_t>(want[static_cast<size_t>(i)]) * D]);
    REQUIRE(std::memcmp(&d, &got_d[static_cast<size_t>(i)], sizeof d) == 0);
  }
}

}  // namespace

TEST_CASE("kmeans_assign_gpu equals the CPU assignment bit for bit", "[gpu][kmeans]") {
  check_gpu_assign<1>(5000, 2, 1);
  check_gpu_assign<2>(4099, 255, 2);
  check_gpu_assign<3>(1000, 257, 3);
  check_gpu_assign<4>(20000, 4096, 4);
  check_gpu_assign<4>(1, 1, 5);
  check_gpu_assign<5>(777, 100, 6);
  check_gpu_assign<6>(513, 512, 7);
  check_gpu_assign<7>(300, 9, 8);
  check_gpu_assign<8>(10000, 1024, 9);
  check_gpu_assign<9>(400, 33, 10);
  check_gpu_assign<10>(400, 70, 11);
  check_gpu_assign<11>(400, 300, 12);
  check_gpu_assign<12>(400, 16, 13);
  check_gpu_assign<13>(400, 17, 14);
  check_gpu_assign<14>(400, 18, 15);
  check_gpu_assign<15>(400, 19, 16);
  check_gpu_assign<16>(3000, 700, 17);
}

TEST_CASE("kmeans_assign_gpu: bad arguments are a Status naming the problem", "[gpu][kmeans]") {
  DeviceBuffer<float> buf(64);
  DeviceBuffer<uint32_t> codes(16);
  KMeansAssignGpuArgs a;
  a.points = make_matrix_view<const float>(buf.get(), 16, 4);
  a.centroids = make_matrix_view<const float>(buf.get(), 4, 4);
  a.codes = codes.get();
  REQUIRE(check_kmeans_assign_gpu_args(a).ok());
  KMeansAssignGpuArgs b = a;
  b.points.cols = 17;
  b.points.row_stride = 17;
  Status s = kmeans_assign_gpu(b, nullptr);
  REQUIRE(s.code() == StatusCode::kInvalidArgument);
  REQUIRE(s.message().find("d = 17") != std::string::npos);
  b = a;
  b.centroids.rows = 0;
  REQUIRE(kmeans_assign_gpu(b, nullptr).message().find("K = 0") != std::string::npos);
  b = a;
  b.centroids.cols = 3;
  b.centroids.row_stride = 3;
  REQUIRE(kmeans_assign_gpu(b, nullptr).code() == StatusCode::kInvalidArgument);
  b = a;
  b.codes = nullptr;
  REQUIRE(kmeans_assign_gpu(b, nullptr).message().find("null") != std::string::npos);
  b = a;
  b.points.row_stride = 8;
  REQUIRE(kmeans_assign_gpu(b, nullptr).code() == StatusCode::kUnsupported);
}
