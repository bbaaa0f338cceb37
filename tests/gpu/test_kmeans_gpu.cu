// kmeans() with Device::kCuda (kernels/kmeans_gpu.cu over cuda/kmeans_gpu.cuh) against the CPU
// path, kmeans() with kCpu: the same centroids (bit for bit) and objective at every iteration, the
// same final codes, objective, counts, splits and fixed point; Gaussian and weight-like data,
// d = 1..16, K from 2 to 65536, weighted and unweighted, both sort-key widths. Bad input gets the
// CPU path's errors; the host API's own checks (workspace size, shapes) their Status. The GPU main
// skips (exit 77) without a CUDA device. tests/cpu/test_kmeans_gpu_replay.cpp checks the same
// algorithm, kernel by kernel, on the CPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/cuda/kmeans_gpu.cuh"
#include "support/gpu_test.cuh"
#include "support/kmeans_test.hpp"

using namespace cluscomp;

namespace {

struct Run {
  KMeansResult r;
  std::vector<double> objective;
  std::vector<std::vector<float>> centroids;  // per iteration: the centroids that assignment used
  Status status;
};

Run run(const std::vector<float>& x, int d, int64_t k, Device device, const float* w, int iterations, uint64_t seed,
        double tolerance = 0.0) {
  Run out;
  KMeansOptions o;
  o.k = k;
  o.iterations = iterations;
  o.seed = seed;
  o.tolerance = tolerance;
  o.point_weights = w;
  o.device = device;
  o.progress = [&](const KMeansProgress& p) {
    out.objective.push_back(p.objective);
    out.centroids.emplace_back(p.centroids.data, p.centroids.data + k * d);
    return true;
  };
  const int64_t n = static_cast<int64_t>(x.size()) / d;
  const Status s = kmeans(make_matrix_view<const float>(x.data(), n, d), o, &out.r);
  out.status = s;
  return out;
}

void compare(const std::vector<float>& x, int d, int64_t k, const float* w, int iterations, uint64_t seed,
             double tolerance = 0.0) {
  INFO("n " << x.size() / d << " d " << d << " k " << k << " weighted " << (w != nullptr) << " seed " << seed
            << " iterations " << iterations << " tolerance " << tolerance);
  const Run cpu = run(x, d, k, Device::kCpu, w, iterations, seed, tolerance);
  const Run gpu = run(x, d, k, Device::kCuda, w, iterations, seed, tolerance);
  INFO("cpu: " << cpu.status.message() << " gpu: " << gpu.status.message());
  REQUIRE(cpu.status.ok());
  REQUIRE(gpu.status.ok());
  REQUIRE(gpu.objective.size() == cpu.objective.size());
  for (size_t t = 0; t < cpu.objective.size(); ++t) {
    INFO("iteration " << t);
    CHECK(gpu.objective[t] == cpu.objective[t]);
    REQUIRE(std::memcmp(gpu.centroids[t].data(), cpu.centroids[t].data(), cpu.centroids[t].size() * sizeof(float)) == 0);
  }
  REQUIRE(std::memcmp(gpu.r.centroids.data(), cpu.r.centroids.data(), cpu.r.centroids.size() * sizeof(float)) == 0);
  REQUIRE(gpu.r.codes == cpu.r.codes);
  REQUIRE(gpu.r.counts == cpu.r.counts);
  REQUIRE(gpu.r.final_objective == cpu.r.final_objective);
  REQUIRE(gpu.r.iterations_run == cpu.r.iterations_run);
  REQUIRE(gpu.r.stats.splits == cpu.r.stats.splits);
  REQUIRE(gpu.r.stats.fixed_point_iteration == cpu.r.stats.fixed_point_iteration);
  // Not only equal to each other: the codes are nearest centroids (tie-aware, in double; the
  // double brute force is left out where it would take minutes on one core).
  const int64_t n = static_cast<int64_t>(x.size()) / d;
  if (n * k <= 200000000) cluscomp_test::check_tie_aware(x, d, gpu.r.centroids.data(), k, gpu.r.codes.data());
}

std::vector<float> exp_weights(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<float> e(1.0f);
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = (i % 23 == 0) ? 0.0f : e(rng);
  return w;
}

}  // namespace

TEST_CASE("GPU k-means equals the CPU path: Gaussian, d = 1..16", "[kmeans_gpu][large]") {
  for (int d = 1; d <= 16; ++d) {
    const auto x = cluscomp_test::gaussian_points(20000, d, 40, 100 + d);
    compare(x, d, d % 2 ? 64 : 300, nullptr, 8, 7 + d);
  }
}

TEST_CASE("GPU k-means equals the CPU path: K from 2 to 65536", "[kmeans_gpu][large]") {
  compare(cluscomp_test::gaussian_points(5000, 4, 3, 1), 4, 2, nullptr, 10, 1);
  compare(cluscomp_test::weight_like_points(50000, 4, 2), 4, 4096, nullptr, 6, 2);
  // K = 65536 (16-bit keys, all 16 bits) and K = 70000 (32-bit keys, 17 bits).
  compare(cluscomp_test::weight_like_points(400000, 4, 3), 4, 65536, nullptr, 4, 3);
  compare(cluscomp_test::gaussian_points(300000, 2, 500, 4), 2, 70000, nullptr, 3, 4);
}

TEST_CASE("GPU k-means equals the CPU path: weighted, weight-like data with splits", "[kmeans_gpu]") {
  for (int d : {1, 3, 4, 8, 16}) {
    const auto x = cluscomp_test::weight_like_points(30000, d, 200 + d);
    const auto w = exp_weights(x.size() / static_cast<size_t>(d), 300 + d);
    compare(x, d, 1024, w.data(), 6, 11);
    compare(x, d, 1024, nullptr, 6, 11);
  }
  // K near the number of distinct points: clusters empty out and the split runs.
  const auto x = cluscomp_test::weight_like_points(6000, 2, 9);
  compare(x, 2, 1500, nullptr, 8, 5);
}

TEST_CASE("GPU k-means equals the CPU path: tolerance stop and fixed point", "[kmeans_gpu]") {
  const auto x = cluscomp_test::gaussian_points(20000, 4, 16, 31);
  compare(x, 4, 16, nullptr, 60, 3);         // reaches the fixed point
  compare(x, 4, 256, nullptr, 40, 3, 1e-3);  // stops on the tolerance
}

TEST_CASE("GPU k-means: bad input gives the CPU path's errors", "[kmeans_gpu]") {
  const auto x = cluscomp_test::gaussian_points(1000, 4, 8, 41);
  auto both = [&](std::vector<float> pts, int d, int64_t k, const float* w, int iterations) {
    const Run cpu = run(pts, d, k, Device::kCpu, w, iterations, 1);
    const Run gpu = run(pts, d, k, Device::kCuda, w, iterations, 1);
    INFO("cpu: " << cpu.status.message() << " | gpu: " << gpu.status.message());
    REQUIRE(!cpu.status.ok());
    REQUIRE(gpu.status.code() == cpu.status.code());
    REQUIRE(gpu.status.message() == cpu.status.message());
  };
  both(x, 4, 0, nullptr, 5);                           // K = 0
  both(x, 4, 5000, nullptr, 5);                        // K above the points
  both(std::vector<float>(4000, 1.0f), 4, 2, nullptr, 5);  // K above the distinct points (1)
  auto nan = x;
  nan[77] = std::numeric_limits<float>::quiet_NaN();
  both(nan, 4, 8, nullptr, 5);
  auto inf = x;
  inf[5] = std::numeric_limits<float>::infinity();
  both(inf, 4, 8, nullptr, 5);
  std::vector<float> w(1000, 1.0f);
  w[9] = -1.0f;
  both(x, 4, 8, w.data(), 5);  // a negative weight
  both(x, 4, 8, nullptr, -1);  // negative iterations
  // d = 0 and d = 17: shapes the CPU path rejects.
  {
    KMeansOptions o;
    o.k = 2;
    for (int d : {0, 17}) {
      std::vector<float> p(static_cast<size_t>(std::max(d, 1)) * 10, 1.0f);
      KMeansResult rc, rg;
      o.device = Device::kCpu;
      const Status sc = kmeans(make_matrix_view<const float>(p.data(), 10, d), o, &rc);
      o.device = Device::kCuda;
      const Status sg = kmeans(make_matrix_view<const float>(p.data(), 10, d), o, &rg);
      INFO("d " << d << " cpu: " << sc.message() << " | gpu: " << sg.message());
      REQUIRE(!sc.ok());
      REQUIRE(sg.code() == sc.code());
      REQUIRE(sg.message() == sc.message());
    }
  }
}

TEST_CASE("GPU k-means host API: workspace query and argument checks", "[kmeans_gpu]") {
  size_t small = 0, big = 0, wide = 0, weighted = 0;
  REQUIRE(kmeans_gpu_lloyd_workspace_size(100000, 4096, 4, false, &small).ok());
  REQUIRE(kmeans_gpu_lloyd_workspace_size(100000, 4096, 8, false, &big).ok());
  REQUIRE(kmeans_gpu_lloyd_workspace_size(100000, 70000, 4, false, &wide).ok());
  REQUIRE(kmeans_gpu_lloyd_workspace_size(100000, 4096, 4, true, &weighted).ok());
  CHECK(big >= small + 100000 * 2 * 4 * sizeof(float));  // two point buffers, 4 more floats each
  CHECK(weighted >= small + 100000 * 2 * sizeof(float));
  CHECK(wide > small);
  // The N = 58M, d = 4, K = 65536 problem of the benchmark: under 4 GB of workspace.
  size_t llama = 0;
  REQUIRE(kmeans_gpu_lloyd_workspace_size(58720256, 65536, 4, false, &llama).ok());
  CHECK(llama < (size_t{4} << 30));
  size_t unused = 0;
  CHECK(kmeans_gpu_lloyd_workspace_size(int64_t{1} << 32, 16, 4, false, &unused).code() == StatusCode::kInvalidArgument);
  CHECK(kmeans_gpu_lloyd_workspace_size(100, 0, 4, false, &unused).code() == StatusCode::kInvalidArgument);
  CHECK(kmeans_gpu_lloyd_workspace_size(100, 4, 17, false, &unused).code() == StatusCode::kInvalidArgument);

  // A workspace one byte short is refused before any launch, naming both sizes.
  const int64_t n = 1000, k = 8;
  const int d = 4;
  size_t ws = 0;
  REQUIRE(kmeans_gpu_lloyd_workspace_size(n, k, d, false, &ws).ok());
  cluscomp_test::DeviceBuffer<float> pts(static_cast<size_t>(n * d)), cen(static_cast<size_t>(k * d)),
      init(static_cast<size_t>(k * d));
  cluscomp_test::DeviceBuffer<uint32_t> first(static_cast<size_t>(n)), codes(static_cast<size_t>(n));
  cluscomp_test::DeviceBuffer<char> work(ws);
  KMeansGpuLloydArgs a;
  a.points = pts.get();
  a.first_labels = first.get();
  a.initial_centroids = init.get();
  a.centroids = cen.get();
  a.codes = codes.get();
  a.n = n;
  a.k = k;
  a.d = d;
  a.workspace = work.get();
  a.workspace_bytes = ws - 1;
  cluster_detail::LloydLoopResult r;
  const Status s = kmeans_gpu_lloyd(a, &r, nullptr);
  INFO(s.message());
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(s.message().find(std::to_string(ws)) != std::string::npos);
  a.workspace_bytes = ws;
  a.codes = nullptr;
  CHECK(kmeans_gpu_lloyd(a, &r, nullptr).code() == StatusCode::kInvalidArgument);
}
