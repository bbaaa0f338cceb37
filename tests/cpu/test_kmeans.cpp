// CPU k-means (cluster/kmeans.hpp) against its reference twin (reference/kmeans_ref.hpp):
// tie-aware labels at every iteration, objectives, init, split rule, determinism, errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/cluster/weight_vectors.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/reference/kmeans_ref.hpp"
#include "support/kmeans_test.hpp"

namespace test_kmeans {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

namespace {

using cluscomp_test::gaussian_points;
using cluscomp_test::weight_like_points;

MatrixView<const float> view(const std::vector<float>& x, int d) {
  return make_matrix_view<const float>(x.data(), static_cast<int64_t>(x.size()) / d, d);
}

using cluscomp_test::check_tie_aware;

void check_every_iteration(const std::vector<float>& x, int d, int64_t k, int iters, uint64_t seed) {
  KMeansOptions o;
  o.k = k;
  o.iterations = iters;
  o.seed = seed;
  o.report_codes = true;
  o.threads = 2;
  int64_t differ = 0;
  int calls = 0;
  o.progress = [&](const KMeansProgress& p) {
    ++calls;
    differ += check_tie_aware(x, d, p.centroids.data, k, p.codes);
    // The objective is the sum of fp32 distances in double: equal to the double sum up to rounding.
    std::vector<float> c(p.centroids.data, p.centroids.data + k * d);
    double ref = 0;
    for (size_t i = 0; i < x.size() / static_cast<size_t>(d); ++i)
      ref += reference::distance2_ref(x, i, c, p.codes[i], static_cast<size_t>(d));
    REQUIRE(std::fabs(p.objective - ref) <= 1e-6 * ref);
    return true;
  };
  INFO("d = " << d << " K = " << k << " seed = " << seed);
  const KMeansResult r = kmeans(view(x, d), o);
  REQUIRE(calls == iters);
  differ += check_tie_aware(x, d, r.centroids.data(), k, r.codes.data());
  // Ties are rare: well under 1% of labels.
  REQUIRE(differ * 100 <= static_cast<int64_t>(x.size()) / d * (iters + 1));
  int64_t total = 0;
  for (int64_t c : r.counts) total += c;
  REQUIRE(total == static_cast<int64_t>(x.size()) / d);
}

// Two runs that must agree bit for bit: centroids, codes and every objective.
void require_identical(const KMeansResult& a, const KMeansResult& b) {
  REQUIRE(a.centroids == b.centroids);
  REQUIRE(a.codes == b.codes);
  REQUIRE(a.objective == b.objective);
  REQUIRE(a.final_objective == b.final_objective);
}

struct PathRuns {
  KMeansResult base;   // 1 thread
  KMeansResult brute;  // 2 threads, SIMD, no pruning (empty unless asked for)
};

// How k-means computes must not change its answer: `o` on 1 thread is the base, and `o` on each
// of `threads`, then on 2 threads with portable (non-SIMD) kernels, then, with `brute`, on 2
// threads without pruning, must equal it bit for bit.
PathRuns require_identical_across_paths(const std::vector<float>& x, int d, KMeansOptions o,
                                        std::initializer_list<int> threads, bool brute) {
  PathRuns runs;
  o.threads = 1;
  runs.base = kmeans(view(x, d), o);
  for (int t : threads) {
    o.threads = t;
    INFO("threads " << t);
    require_identical(kmeans(view(x, d), o), runs.base);
  }
  o.threads = 2;
  o.use_simd = false;
  {
    INFO("portable kernels");
    require_identical(kmeans(view(x, d), o), runs.base);
  }
  if (brute) {
    o.use_simd = true;
    o.use_pruning = false;
    runs.brute = kmeans(view(x, d), o);
    INFO("no pruning");
    require_identical(runs.brute, runs.base);
  }
  return runs;
}

}  // namespace

TEST_CASE("kmeans codes equal brute force (tie-aware) at every iteration", "[kmeans]") {
  SECTION("gaussian d=4") { check_every_iteration(gaussian_points(20000, 4, 50, 1), 4, 256, 6, 11); }
  SECTION("gaussian d=8") { check_every_iteration(gaussian_points(10000, 8, 40, 2), 8, 128, 5, 12); }
  SECTION("gaussian d=3") { check_every_iteration(gaussian_points(8000, 3, 20, 3), 3, 100, 5, 13); }
  SECTION("gaussian d=16") { check_every_iteration(gaussian_points(4000, 16, 10, 4), 16, 64, 4, 14); }
  SECTION("gaussian d=1") { check_every_iteration(gaussian_points(5000, 1, 10, 5), 1, 32, 4, 15); }
  SECTION("weight-like d=4") { check_every_iteration(weight_like_points(20000, 4, 6), 4, 512, 6, 16); }
  SECTION("weight-like d=8") { check_every_iteration(weight_like_points(10000, 8, 7), 8, 256, 5, 17); }
}

TEST_CASE("kmeans objective equals the reference twin's Lloyd up to rounding", "[kmeans]") {
  for (int d : {2, 4, 8}) {
    const std::vector<float> x = gaussian_points(4000, d, 30, 20 + static_cast<uint64_t>(d));
    const int64_t k = 40;
    KMeansOptions o;
    o.k = k;
    o.iterations = 8;
    o.seed = 99;
    const KMeansResult r = kmeans(view(x, d), o);
    const std::vector<float> init = kmeans_initial_centroids(view(x, d), o);
    const reference::KMeansRefResult ref = reference::kmeans_ref(x, static_cast<size_t>(d), init, 8, 99);
    INFO("d = " << d);
    REQUIRE(r.objective.size() == ref.objective.size());
    for (size_t t = 0; t < ref.objective.size(); ++t)
      REQUIRE(std::fabs(r.objective[t] - ref.objective[t]) <= 1e-5 * ref.objective[t]);
    REQUIRE(std::fabs(r.final_objective - ref.final_objective) <= 1e-5 * ref.final_objective);
    REQUIRE(r.iterations_run == 8);
  }
}

TEST_CASE("reference init is the first K distinct points of the seeded permutation", "[kmeans]") {
  // Points drawn from a small set, so the permutation meets many duplicates.
  std::mt19937_64 rng(5);
  const int d = 4;
  std::vector<float> x(3000 * d);
  for (auto& v : x) v = static_cast<float>(rng() % 3);  // 81 distinct points at most
  std::set<std::vector<float>> distinct;
  for (size_t i = 0; i < x.size(); i += d) distinct.insert(std::vector<float>(x.begin() + i, x.begin() + i + d));
  for (uint64_t seed : {1ull, 2ull, 12345ull}) {
    for (int64_t k : {int64_t{1}, int64_t{10}, static_cast<int64_t>(distinct.size())}) {
      KMeansOptions o;
      o.k = k;
      o.seed = seed;
      const std::vector<float> mine = kmeans_initial_centroids(view(x, d), o);
      const std::vector<float> ref = reference::init_random_permutation_ref(x, d, static_cast<size_t>(k), seed);
      INFO("seed " << seed << " K " << k);
      REQUIRE(mine == ref);
    }
  }
  const std::vector<float> g = gaussian_points(5000, 8, 5, 7);
  KMeansOptions o;
  o.k = 300;
  o.seed = 77;
  REQUIRE(kmeans_initial_centroids(view(g, 8), o) == reference::init_random_permutation_ref(g, 8, 300, 77));
}

TEST_CASE("empty clusters split as faiss does, matching the reference twin exactly", "[kmeans]") {
  // Small-integer points: every sum is exact, so centroids must match the twin bit for bit.
  std::mt19937_64 rng(8);
  const int d = 4;
  std::vector<float> x(2000 * d);
  for (auto& v : x) v = static_cast<float>(static_cast<int>(rng() % 16));
  std::vector<float> init = {0, 0, 0, 0, 15, 15, 15, 15, 1000, 1000, 1000, 1000, 8, 8, 8, 8, -500, 3, 3, 3};
  KMeansOptions o;
  o.k = 5;
  o.iterations = 3;
  o.seed = 3;
  o.initial_centroids = make_matrix_view<const float>(init.data(), 5, d);
  const KMeansResult r = kmeans(view(x, d), o);
  const reference::KMeansRefResult ref = reference::kmeans_ref(x, d, init, 3, 3);
  REQUIRE(r.stats.splits >= 2);
  REQUIRE(r.stats.splits == ref.splits);
  for (int64_t c : r.counts) REQUIRE(c > 0);
  // After one update (both empty clusters split), the state must match the twin bit for bit.
  // Later iterations start from near-duplicate centroids (split copies differ by 1/1024), where
  // fp32 and double argmins legitimately differ on near-ties, so only the split count is compared.
  KMeansOptions o1 = o;
  o1.iterations = 1;
  const KMeansResult one = kmeans(view(x, d), o1);
  const reference::KMeansRefResult ref1 = reference::kmeans_ref(x, d, init, 1, 3);
  REQUIRE(one.stats.splits == 2);
  REQUIRE(one.centroids == ref1.centroids);
  REQUIRE(one.objective == ref1.objective);
  // The split copies differ from each other by the (1 +- 1/1024) push in every nonzero coordinate.
  int64_t pairs_apart = 0;
  for (int a = 0; a < 5; ++a)
    for (int b = a + 1; b < 5; ++b) {
      bool close = true;
      for (int e = 0; e < d; ++e)
        close = close && std::fabs(one.centroids[static_cast<size_t>(a * d + e)] - one.centroids[static_cast<size_t>(b * d + e)]) <=
                             0.003f * std::fabs(one.centroids[static_cast<size_t>(a * d + e)]);
      pairs_apart += close ? 1 : 0;
    }
  REQUIRE(pairs_apart >= 2);
}

TEST_CASE("a Lloyd fixed point ends the computing, not the iterations: every one equals the twin's", "[kmeans]") {
  // Small-integer points in clumps: every centroid sum is exact in double, so the engine and the
  // twin (which recomputes every iteration) must agree bit for bit, whatever the summation order.
  for (int d : {2, 4, 8}) {
    for (int64_t k : {int64_t{24}, int64_t{300}}) {
      std::mt19937_64 rng(40 + static_cast<uint64_t>(d) + static_cast<uint64_t>(k));
      const int64_t n = 6000;
      std::vector<float> x(static_cast<size_t>(n * d));
      std::vector<int> centre(static_cast<size_t>(32 * d));
      for (auto& c : centre) c = static_cast<int>(rng() % 200) - 100;
      for (int64_t i = 0; i < n; ++i) {
        const size_t m = static_cast<size_t>(rng() % 32);
        for (int e = 0; e < d; ++e)
          x[static_cast<size_t>(i * d + e)] = static_cast<float>(centre[m * static_cast<size_t>(d) + static_cast<size_t>(e)] +
                                                                 static_cast<int>(rng() % 7) - 3);
      }
      KMeansOptions o;
      o.k = k;
      o.iterations = 80;
      o.seed = 5;
      o.threads = 2;
      int calls = 0;
      std::vector<double> seen;
      o.progress = [&](const KMeansProgress& p) {
        REQUIRE(p.iteration == calls);
        ++calls;
        seen.push_back(p.objective);
        return true;
      };
      const KMeansResult r = kmeans(view(x, d), o);
      const std::vector<float> init = kmeans_initial_centroids(view(x, d), o);
      const reference::KMeansRefResult ref = reference::kmeans_ref(x, static_cast<size_t>(d), init, 80, 5);
      INFO("d = " << d << " K = " << k << " fixed point at " << r.stats.fixed_point_iteration);
      // Reached well before the cap, and nothing after it was recomputed.
      REQUIRE(r.stats.fixed_point_iteration >= 1);
      REQUIRE(r.stats.fixed_point_iteration < 70);
      REQUIRE(r.stats.assignments == (r.stats.fixed_point_iteration + 1) * n);
      REQUIRE(calls == 80);
      REQUIRE(r.iterations_run == 80);
      REQUIRE(seen == r.objective);
      // Objectives: fp32 distances summed in double here, double distances in the twin.
      REQUIRE(r.objective.size() == ref.objective.size());
      for (size_t t = 0; t < ref.objective.size(); ++t)
        REQUIRE(std::fabs(r.objective[t] - ref.objective[t]) <= 1e-6 * ref.objective[t]);
      REQUIRE(std::fabs(r.final_objective - ref.final_objective) <= 1e-6 * ref.final_objective);
      REQUIRE(r.centroids == ref.centroids);
      REQUIRE(r.stats.splits == ref.splits);
      for (int64_t i = 0; i < n; ++i) REQUIRE(r.codes[static_cast<size_t>(i)] == ref.labels[static_cast<size_t>(i)]);
      // Running exactly to the fixed point and no further gives the same answer.
      KMeansOptions o2 = o;
      o2.progress = nullptr;
      o2.iterations = r.stats.fixed_point_iteration;
      const KMeansResult r2 = kmeans(view(x, d), o2);
      REQUIRE(r2.stats.fixed_point_iteration == r.stats.fixed_point_iteration);  // found by the final reassignment
      REQUIRE(r2.centroids == r.centroids);
      REQUIRE(r2.codes == r.codes);
    }
  }
}

TEST_CASE("kmeans is bit-identical across thread counts, SIMD and pruning", "[kmeans]") {
  const std::vector<float> x = weight_like_points(60000, 4, 9);
  KMeansOptions o;
  o.k = 1024;
  o.iterations = 5;
  const PathRuns runs = require_identical_across_paths(x, 4, o, {2, 3, 8}, true);
  REQUIRE(runs.base.stats.distance_evaluations < runs.brute.stats.distance_evaluations / 4);
}

TEST_CASE("kmeans progress callback reports and cancels", "[kmeans]") {
  const std::vector<float> x = gaussian_points(5000, 4, 10, 10);
  KMeansOptions o;
  o.k = 16;
  o.iterations = 10;
  std::vector<int> seen;
  double last_elapsed = -1;
  o.progress = [&](const KMeansProgress& p) {
    seen.push_back(p.iteration);
    if (p.iteration == 0) last_elapsed = -1;
    REQUIRE(p.elapsed_s >= last_elapsed);
    last_elapsed = p.elapsed_s;
    REQUIRE(p.centroids.rows == 16);
    REQUIRE(p.codes == nullptr);
    return p.iteration < 2;
  };
  KMeansResult r;
  const Status s = kmeans(view(x, 4), o, &r);
  REQUIRE(s.code() == StatusCode::kCancelled);
  REQUIRE(r.cancelled);
  REQUIRE(seen == std::vector<int>{0, 1, 2});
  REQUIRE(r.objective.size() == 3);
  REQUIRE(r.codes.size() == 5000);
  REQUIRE_THROWS_AS(kmeans(view(x, 4), o), Error);
}

TEST_CASE("kmeans tolerance stops early; objective never increases", "[kmeans]") {
  const std::vector<float> x = gaussian_points(5000, 4, 8, 11);
  KMeansOptions o;
  o.k = 8;
  o.iterations = 100;
  o.tolerance = 1e-9;
  const KMeansResult r = kmeans(view(x, 4), o);
  REQUIRE(r.iterations_run < 100);
  for (size_t t = 1; t < r.objective.size(); ++t) REQUIRE(r.objective[t] <= r.objective[t - 1] * (1 + 1e-12));
  REQUIRE(r.final_objective <= r.objective.back() * (1 + 1e-12));
}

TEST_CASE("kmeans++ and k-means|| pick K distinct input points, deterministically", "[kmeans]") {
  const std::vector<float> x = weight_like_points(6000, 4, 12);
  std::set<std::vector<float>> pts;
  for (size_t i = 0; i < x.size(); i += 4) pts.insert(std::vector<float>(x.begin() + i, x.begin() + i + 4));
  for (KMeansInit init : {KMeansInit::kKMeansPlusPlus, KMeansInit::kKMeansParallel}) {
    KMeansOptions o;
    o.k = 100;
    o.init = init;
    o.threads = 1;
    const std::vector<float> a = kmeans_initial_centroids(view(x, 4), o);
    o.threads = 3;
    const std::vector<float> b = kmeans_initial_centroids(view(x, 4), o);
    REQUIRE(a == b);
    std::set<std::vector<float>> chosen;
    for (size_t i = 0; i < a.size(); i += 4) {
      std::vector<float> c(a.begin() + i, a.begin() + i + 4);
      REQUIRE(pts.count(c) == 1);
      chosen.insert(c);
    }
    REQUIRE(chosen.size() == 100);
    o.iterations = 3;
    const KMeansResult r = kmeans(view(x, 4), o);
    REQUIRE(r.objective.size() == 3);
  }
}

TEST_CASE("kmeans_assign matches the brute-force twin (tie-aware) and evaluates in double", "[kmeans]") {
  const std::vector<float> x = weight_like_points(20000, 8, 13);
  const std::vector<float> c = gaussian_points(300, 8, 300, 14);
  std::vector<float> cs(c);
  for (auto& v : cs) v *= 0.004f;
  const KMeansAssignment a = kmeans_assign(view(x, 8), make_matrix_view<const float>(cs.data(), 300, 8), 2);
  check_tie_aware(x, 8, cs.data(), 300, a.codes.data());
  const reference::AssignmentRef ref = reference::assign_ref(x, cs, 8);
  REQUIRE(std::fabs(a.objective - ref.objective) <= 1e-9 * ref.objective);
}

TEST_CASE("weight_vectors follows the CLUSCOMP geometry", "[kmeans]") {
  // W (out = 5, in = 3), d = 4: out_pad = 8, 2 vectors per input channel.
  std::vector<bf16> w(15);
  for (int o = 0; o < 5; ++o)
    for (int i = 0; i < 3; ++i) w[static_cast<size_t>(o * 3 + i)] = bf16(static_cast<float>(10 * o + i));
  const std::vector<float> v = weight_vectors(make_matrix_view<const bf16>(w.data(), 5, 3), 4);
  REQUIRE(v.size() == 3 * 8);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j)
      for (int e = 0; e < 4; ++e) {
        const int o = j * 4 + e;
        REQUIRE(v[static_cast<size_t>((i * 2 + j) * 4 + e)] == (o < 5 ? static_cast<float>(10 * o + i) : 0.0f));
      }
  std::vector<f16> h(6, f16(1.5f));
  REQUIRE(weight_vectors(make_matrix_view<const f16>(h.data(), 2, 3), 2) == std::vector<float>(6, 1.5f));
  REQUIRE_THROWS_AS(weight_vectors(make_matrix_view<const f16>(h.data(), 2, 3), 0), Error);
  REQUIRE_THROWS_AS(weight_vectors(make_matrix_view<const f16>(h.data(), 2, 3), 17), Error);
}

TEST_CASE("kmeans on fp16 and bf16 weight views: exact at every iteration, NaN rejected", "[kmeans]") {
  // A (96, 160) weight-like matrix stored as fp16 and as bf16, read through its view: the
  // vectors are the exact fp32 values of the stored weights, and the k-means over them is
  // exact (tie-aware brute force) at every iteration.
  const int64_t out = 96, in = 160;
  const std::vector<float> w = weight_like_points(out * in, 1, 77);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> h(w.size());
    for (size_t i = 0; i < w.size(); ++i) h[i] = T(w[i]);
    const auto hv = make_matrix_view<const T>(h.data(), out, in);
    for (int d : {4, 8}) {
      const std::vector<float> x = weight_vectors(hv, d);
      REQUIRE(x.size() == static_cast<size_t>(out * in));
      for (int64_t i = 0; i < in; ++i)
        for (int64_t o = 0; o < out; ++o)
          REQUIRE(x[static_cast<size_t>((i * (out / d) + o / d) * d + o % d)] == to_float(hv(o, i)));
      check_every_iteration(x, d, 64, 6, 5);
    }
    h[1234] = T(std::numeric_limits<float>::quiet_NaN());
    const std::vector<float> bad = weight_vectors(hv, 4);
    KMeansOptions o;
    o.k = 16;
    KMeansResult r;
    const Status st = kmeans(view(bad, 4), o, &r);
    REQUIRE(st.code() == StatusCode::kInvalidArgument);
    REQUIRE(st.message().find("not finite") != std::string::npos);
  };
  run(f16());
  run(bf16());
}

TEST_CASE("kmeans rejects bad input with a status naming the value", "[kmeans]") {
  std::vector<float> x = gaussian_points(100, 4, 3, 15);
  auto status = [](MatrixView<const float> p, KMeansOptions o) {
    KMeansResult r;
    return kmeans(p, o, &r);
  };
  auto has = [](const Status& s, const char* what) {
    INFO(s.to_string());
    REQUIRE(s.code() == StatusCode::kInvalidArgument);
    REQUIRE(s.message().find(what) != std::string::npos);
  };
  KMeansOptions o;
  o.k = 0;
  has(status(view(x, 4), o), "K = 0");
  o.k = 4;
  has(status(make_matrix_view<const float>(x.data(), 100, 0), o), "d = 0");
  has(status(make_matrix_view<const float>(x.data(), 20, 17), o), "d = 17");
  has(status(make_matrix_view<const float>(x.data(), 0, 4), o), "N = 0");
  o.k = 101;
  has(status(view(x, 4), o), "K = 101");
  // K larger than the number of distinct points (10 distinct among 100).
  std::vector<float> dup(400);
  for (size_t i = 0; i < dup.size(); ++i) dup[i] = static_cast<float>((i / 4) % 10);
  o.k = 11;
  has(status(view(dup, 4), o), "distinct points (10)");
  o.k = 10;
  REQUIRE(status(view(dup, 4), o).ok());
  for (KMeansInit init : {KMeansInit::kKMeansPlusPlus, KMeansInit::kKMeansParallel}) {
    o.k = 11;
    o.init = init;
    has(status(view(dup, 4), o), "distinct points");
  }
  o.init = KMeansInit::kRandomPermutation;
  o.k = 4;
  std::vector<float> bad = x;
  bad[4 * 37 + 2] = std::numeric_limits<float>::quiet_NaN();
  has(status(view(bad, 4), o), "point 37 coordinate 2");
  bad[4 * 37 + 2] = 1.0f;
  bad[4 * 99 + 3] = -std::numeric_limits<float>::infinity();
  has(status(view(bad, 4), o), "point 99 coordinate 3");
  // Size overflow: more points than 32-bit codes can index (never read).
  const MatrixView<const float> huge{x.data(), int64_t{1} << 33, 4, 4, 1};
  has(status(huge, o), "exceeds 2^32");
  o.iterations = -1;
  has(status(view(x, 4), o), "iterations = -1");
  o.iterations = 3;
  std::vector<float> ic(12);
  o.initial_centroids = make_matrix_view<const float>(ic.data(), 3, 4);
  has(status(view(x, 4), o), "initial_centroids is 3 x 4");
  KMeansResult big;
  big.k = 70000;
  REQUIRE_THROWS_AS(codes_as_uint16(big), Error);
  REQUIRE_THROWS_AS(kmeans_assign(view(x, 4), make_matrix_view<const float>(ic.data(), 3, 2)), Error);
}

namespace {

// The tiled brute-force kernel against kTilePoints one-point scans (portable and AVX2): same
// (distance, index) bit for bit, ties to the lower index, NaN padding never wins, and an all-+inf
// row (fp32 overflow) still resolves to the lowest index as the one-point scan does.
template <int D>
void check_tile_kernel(uint64_t seed) {
  using namespace cluster_detail;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> small(-3, 3);  // small integers: many exact ties
  for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{61}, int64_t{300}}) {
    const int64_t stride = (k + 7) / 8 * 8;
    std::vector<float> soa(static_cast<size_t>(stride * D), std::numeric_limits<float>::quiet_NaN());
    std::vector<int32_t> idx(static_cast<size_t>(stride), kNoIndex);
    for (int64_t j = 0; j < k; ++j) {
      idx[static_cast<size_t>(j)] = static_cast<int32_t>(j);
      for (int c = 0; c < D; ++c) soa[static_cast<size_t>(c * stride + j)] = static_cast<float>(small(rng));
    }
    const SoaBlock blk{soa.data(), idx.data(), nullptr, stride, stride};
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> x(static_cast<size_t>(kTilePoints * D));
      for (auto& v : x) v = static_cast<float>(small(rng)) * (trial % 3 == 0 ? 1.0f : 0.5f);
      if (trial == 19)  // overflow: every distance is +inf
        for (auto& v : x) v = 3e38f;
      const float* xs[kTilePoints];
      for (int p = 0; p < kTilePoints; ++p) xs[p] = &x[static_cast<size_t>(p * D)];
      for (bool simd : {false, true}) {
        float bd[kTilePoints];
        int32_t bi[kTilePoints];
        for (int p = 0; p < kTilePoints; ++p) {
          bd[p] = std::numeric_limits<float>::infinity();
          bi[p] = kNoIndex;
        }
        scan_ascending_tile<D>(simd && cpu_has_avx2(), xs, blk, bd, bi);
        for (int p = 0; p < kTilePoints; ++p) {
          float rd = std::numeric_limits<float>::infinity();
          int32_t ri = kNoIndex;
          scan_block_portable<D>(xs[p], blk, 0.0f, rd, ri);
          INFO("D " << D << " K " << k << " trial " << trial << " point " << p << " simd " << simd);
          REQUIRE(bi[p] == ri);
          REQUIRE(std::memcmp(&bd[p], &rd, sizeof(float)) == 0);
          REQUIRE(ri != kNoIndex);
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("tiled brute-force kernel equals the one-point scan bit for bit", "[kmeans]") {
  check_tile_kernel<1>(21);
  check_tile_kernel<3>(22);
  check_tile_kernel<4>(23);
  check_tile_kernel<8>(24);
  check_tile_kernel<13>(25);
  check_tile_kernel<16>(26);
}

TEST_CASE("tiled brute-force paths (d = 8) are bit-identical across threads, SIMD and pruning", "[kmeans]") {
  // K <= 64: every point takes the tiled brute-force scan; K = 700 at d = 8: points outside the
  // shared lists are queued and scanned in tiles.
  for (int64_t k : {int64_t{48}, int64_t{700}}) {
    const std::vector<float> x = weight_like_points(8 * 9001, 8, 31 + static_cast<uint64_t>(k));
    KMeansOptions o;
    o.k = k;
    o.iterations = 4;
    INFO("K = " << k);
    const PathRuns runs = require_identical_across_paths(x, 8, o, {2, 5}, true);
    REQUIRE(runs.base.stats.brute_force_points > 0);
    check_tie_aware(x, 8, runs.base.centroids.data(), k, runs.base.codes.data());
  }
}

TEST_CASE("carried bounds: codes equal brute force at every iteration, and points are skipped", "[kmeans]") {
  // Long runs so that the bounds certify most points; weight-like data with K close to N/8 makes
  // empty clusters (split rule) and heavy-tailed drifts, the cases the bounds must survive.
  struct C {
    std::vector<float> x;
    int d;
    int64_t k;
    int iters;
  };
  const std::vector<C> cases = {{gaussian_points(30000, 4, 60, 41), 4, 300, 12},
                                {weight_like_points(24000, 4, 42), 4, 3000, 10},
                                {weight_like_points(12000, 3, 43), 3, 1500, 10},
                                {gaussian_points(12000, 8, 30, 44), 8, 200, 10},
                                {weight_like_points(9000, 2, 45), 2, 400, 10}};
  for (const C& c : cases) {
    INFO("d = " << c.d << " K = " << c.k);
    KMeansOptions o;
    o.k = c.k;
    o.iterations = c.iters;
    o.seed = 5;
    o.threads = 2;
    o.use_bounds = true;
    o.report_codes = true;
    int64_t differ = 0;
    o.progress = [&](const KMeansProgress& p) {
      differ += check_tie_aware(c.x, c.d, p.centroids.data, c.k, p.codes);
      return true;
    };
    const KMeansResult on = kmeans(view(c.x, c.d), o);
    differ += check_tie_aware(c.x, c.d, on.centroids.data(), c.k, on.codes.data());
    const int64_t n = static_cast<int64_t>(c.x.size()) / c.d;
    REQUIRE(differ * 100 <= n * (c.iters + 1));
    REQUIRE(on.stats.bound_skipped_points > 0);
    // Bounds only skip searches: the answer is the same bit for bit with them off.
    o.progress = nullptr;
    o.use_bounds = false;
    const KMeansResult off = kmeans(view(c.x, c.d), o);
    REQUIRE(off.stats.bound_skipped_points == 0);
    require_identical(on, off);
    REQUIRE(on.stats.splits == off.stats.splits);
  }
}

TEST_CASE("carried bounds stay exact through empty-cluster splits", "[kmeans]") {
  // 100 of the 600 initial centroids lie far from every point: they are empty after the first
  // assignment and re-seeded next to donors by the split rule, whose points must then be searched.
  const std::vector<float> x = weight_like_points(30000, 4, 48);
  KMeansOptions o;
  o.k = 600;
  o.iterations = 10;
  o.seed = 9;
  o.threads = 2;
  o.use_bounds = true;
  KMeansOptions io = o;
  io.k = 500;
  std::vector<float> init = kmeans_initial_centroids(view(x, 4), io);
  for (int j = 0; j < 100; ++j)
    for (int c = 0; c < 4; ++c) init.push_back(5.0f + 0.5f * static_cast<float>(j) + 0.1f * static_cast<float>(c));
  o.initial_centroids = make_matrix_view<const float>(init.data(), 600, 4);
  o.report_codes = true;
  int64_t differ = 0;
  o.progress = [&](const KMeansProgress& p) {
    differ += check_tie_aware(x, 4, p.centroids.data, 600, p.codes);
    return true;
  };
  const KMeansResult on = kmeans(view(x, 4), o);
  REQUIRE(on.stats.splits >= 100);
  REQUIRE(on.stats.bound_skipped_points > 0);
  REQUIRE(differ * 100 <= 30000 * 11);
  o.progress = nullptr;
  o.use_bounds = false;
  const KMeansResult off = kmeans(view(x, 4), o);
  require_identical(on, off);
  REQUIRE(on.stats.splits == off.stats.splits);
}

TEST_CASE("carried bounds are bit-identical across thread counts and SIMD", "[kmeans]") {
  const std::vector<float> x = weight_like_points(50000, 4, 46);
  KMeansOptions o;
  o.k = 2048;
  o.iterations = 8;
  o.use_bounds = true;
  const PathRuns runs = require_identical_across_paths(x, 4, o, {2, 3, 7}, false);
  REQUIRE(runs.base.stats.bound_skipped_points > 0);
}

TEST_CASE("second-best scan kernels give a valid lower bound and the same best", "[kmeans]") {
  using namespace cluster_detail;
  std::mt19937_64 rng(47);
  std::normal_distribution<float> g(0.0f, 1.0f);
  constexpr int D = 4;
  const int64_t m = 37, stride = 40;
  std::vector<float> soa(static_cast<size_t>(stride * D), std::numeric_limits<float>::quiet_NaN());
  std::vector<int32_t> idx(static_cast<size_t>(stride), kNoIndex);
  for (int64_t j = 0; j < m; ++j) {
    idx[static_cast<size_t>(j)] = static_cast<int32_t>(3 * j + 1);
    for (int c = 0; c < D; ++c) soa[static_cast<size_t>(c * stride + j)] = g(rng);
  }
  soa[static_cast<size_t>(5)] = soa[static_cast<size_t>(9)];  // a duplicate coordinate, not a duplicate point
  const SoaBlock blk{soa.data(), idx.data(), nullptr, stride, stride};
  for (int t = 0; t < 200; ++t) {
    float x[D];
    for (float& v : x) v = g(rng);
    for (bool simd : {false, true}) {
      float bd = std::numeric_limits<float>::infinity(), sec = std::numeric_limits<float>::infinity();
      int32_t bi = kNoIndex;
      scan_block_second<D>(simd && cpu_has_avx2(), x, blk, 0.0f, bd, bi, sec);
      float bd0 = std::numeric_limits<float>::infinity();
      int32_t bi0 = kNoIndex;
      scan_block<D>(false, x, blk, 0.0f, bd0, bi0);
      REQUIRE(bd == bd0);
      REQUIRE(bi == bi0);
      float truth = std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < m; ++j)
        if (idx[static_cast<size_t>(j)] != bi) truth = std::min(truth, squared_distance<D>(x, soa.data() + j, stride));
      REQUIRE(sec == truth);
    }
  }
}

}  // namespace test_kmeans
