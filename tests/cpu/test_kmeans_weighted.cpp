// Weighted (activation-aware) k-means: KMeansOptions::point_weights in cluster/kmeans.hpp against
// the weighted reference twin (reference/kmeans_ref.hpp), against point replication, and the
// unweighted algorithm bit for bit when every weight is 1; determinism and bad weights.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/reference/kmeans_ref.hpp"
#include "support/kmeans_test.hpp"

namespace test_kmeans_weighted {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

namespace {

using cluscomp_test::gaussian_points;
using cluscomp_test::weight_like_points;

// Activation-energy-like weights: log-normal, exp(sigma * N(0, 1)), spread over many decades.
std::vector<float> lognormal_weights(int64_t n, float sigma, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = std::exp(sigma * g(rng));
  return w;
}

MatrixView<const float> view(const std::vector<float>& x, int d) {
  return make_matrix_view<const float>(x.data(), static_cast<int64_t>(x.size()) / d, d);
}

void require_identical(const KMeansResult& a, const KMeansResult& b) {
  REQUIRE(a.centroids == b.centroids);
  REQUIRE(a.codes == b.codes);
  REQUIRE(a.counts == b.counts);
  REQUIRE(a.objective == b.objective);
  REQUIRE(a.final_objective == b.final_objective);
  REQUIRE(a.iterations_run == b.iterations_run);
  REQUIRE(a.stats.splits == b.stats.splits);
}

using cluscomp_test::check_tie_aware;

// sum_i w_i * d2(x_i, c[codes_i]) in double.
double weighted_objective(const std::vector<float>& x, int d, const std::vector<float>& c, const uint32_t* codes,
                          const std::vector<float>& w) {
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i)
    s += static_cast<double>(w[i]) * reference::distance2_ref(x, i, c, codes[i], static_cast<size_t>(d));
  return s;
}

}  // namespace

TEST_CASE("weighted kmeans: all-one weights are bit-identical to no weights", "[kmeans][weighted]") {
  struct C {
    std::vector<float> x;
    int d;
    int64_t k;
  };
  const std::vector<C> cases = {{weight_like_points(6000, 1, 1), 1, 16},
                                {weight_like_points(20000, 4, 2), 4, 512},
                                {gaussian_points(12000, 3, 20, 3), 3, 100},
                                {weight_like_points(10000, 8, 4), 8, 256},
                                {gaussian_points(4000, 16, 10, 5), 16, 64}};
  for (const C& c : cases) {
    const int64_t n = static_cast<int64_t>(c.x.size()) / c.d;
    const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
    for (bool pruning : {true, false})
      for (bool bounds : {false, true}) {
        INFO("d = " << c.d << " K = " << c.k << " pruning " << pruning << " bounds " << bounds);
        KMeansOptions o;
        o.k = c.k;
        o.iterations = 6;
        o.seed = 21;
        o.threads = 2;
        o.use_pruning = pruning;
        o.use_bounds = bounds;
        const KMeansResult plain = kmeans(view(c.x, c.d), o);
        o.point_weights = ones.data();
        const KMeansResult weighted = kmeans(view(c.x, c.d), o);
        require_identical(weighted, plain);
        if (pruning && bounds) REQUIRE(weighted.stats.bound_skipped_points == plain.stats.bound_skipped_points);
      }
    // The shared evaluator too.
    KMeansOptions o;
    o.k = c.k;
    o.iterations = 2;
    const KMeansResult r = kmeans(view(c.x, c.d), o);
    const auto cv = make_matrix_view<const float>(r.centroids.data(), c.k, c.d);
    const KMeansAssignment a0 = kmeans_assign(view(c.x, c.d), cv, 2);
    const KMeansAssignment a1 = kmeans_assign(view(c.x, c.d), cv, 2, ones.data());
    REQUIRE(a0.codes == a1.codes);
    REQUIRE(a0.objective == a1.objective);
  }
}

TEST_CASE("weighted kmeans equals the weighted reference twin on weight-like data", "[kmeans][weighted]") {
  struct C {
    int d;
    int64_t n, k;
  };
  for (const C& c : {C{1, 12000, 16}, C{4, 16000, 256}, C{8, 8000, 128}}) {
    const int d = c.d;
    const std::vector<float> x = weight_like_points(c.n, d, 100 + static_cast<uint64_t>(d));
    const std::vector<float> w = lognormal_weights(c.n, 2.0f, 200 + static_cast<uint64_t>(d));
    const auto [wmin, wmax] = std::minmax_element(w.begin(), w.end());
    REQUIRE(*wmax / *wmin > 1e4f);  // at least 4 decades, like activation energies
    const int iters = 6;
    KMeansOptions o;
    o.k = c.k;
    o.iterations = iters;
    o.seed = 7;
    o.threads = 1;
    o.point_weights = w.data();
    o.report_codes = true;
    // Every iteration on its own: codes are brute-force nearest (tie-aware), the objective is the
    // weighted sum for those codes, and the next centroids are the weighted means of those codes
    // (split donors excepted: each empty cluster changes one donor).
    std::vector<float> prev_centroids;
    std::vector<uint32_t> prev_codes;
    int64_t differ = 0;
    int calls = 0;
    auto check_update = [&](const float* now) {
      if (prev_codes.empty()) return;
      std::vector<double> s(static_cast<size_t>(c.k * d), 0.0), sa(static_cast<size_t>(c.k * d), 0.0);
      std::vector<double> sw(static_cast<size_t>(c.k), 0.0);
      std::vector<int64_t> cnt(static_cast<size_t>(c.k), 0);
      for (int64_t i = 0; i < c.n; ++i) {
        const size_t j = prev_codes[static_cast<size_t>(i)];
        sw[j] += w[static_cast<size_t>(i)];
        ++cnt[j];
        for (int e = 0; e < d; ++e) {
          const double v = x[static_cast<size_t>(i * d + e)];
          s[j * static_cast<size_t>(d) + static_cast<size_t>(e)] += static_cast<double>(w[static_cast<size_t>(i)]) * v;
          sa[j * static_cast<size_t>(d) + static_cast<size_t>(e)] += static_cast<double>(w[static_cast<size_t>(i)]) * std::fabs(v);
        }
      }
      int64_t empty = 0, off = 0;
      for (int64_t j = 0; j < c.k; ++j) {
        if (cnt[static_cast<size_t>(j)] == 0) {
          ++empty;
          continue;
        }
        bool ok = true;
        for (int e = 0; e < d; ++e) {
          const size_t q = static_cast<size_t>(j * d + e);
          const double mean = s[q] / sw[static_cast<size_t>(j)];
          const double scale = sa[q] / sw[static_cast<size_t>(j)];  // guards against cancellation
          ok = ok && std::fabs(static_cast<double>(now[q]) - mean) <= 2.5e-7 * scale + 1e-30;
        }
        off += ok ? 0 : 1;
      }
      REQUIRE(off <= empty);
    };
    o.progress = [&](const KMeansProgress& p) {
      ++calls;
      check_update(p.centroids.data);
      std::vector<float> cen(p.centroids.data, p.centroids.data + c.k * d);
      differ += check_tie_aware(x, d, cen.data(), c.k, p.codes);
      const double ref = weighted_objective(x, d, cen, p.codes, w);
      REQUIRE(std::fabs(p.objective - ref) <= 1e-6 * ref);
      prev_centroids = cen;
      prev_codes.assign(p.codes, p.codes + c.n);
      return true;
    };
    INFO("d = " << d << " K = " << c.k);
    const KMeansResult r = kmeans(view(x, d), o);
    REQUIRE(calls == iters);
    check_update(r.centroids.data());
    differ += check_tie_aware(x, d, r.centroids.data(), c.k, r.codes.data());
    REQUIRE(differ * 100 <= c.n * (iters + 1));  // ties: well under 1%
    REQUIRE(std::fabs(r.final_objective - weighted_objective(x, d, r.centroids, r.codes.data(), w)) <=
            1e-6 * r.final_objective);

    // The whole run against the twin from the same initial centroids: objectives as in
    // test_kmeans.cpp (1e-5 relative), codes equal except near-ties, centroids within fp32 rounding.
    const std::vector<float> init = kmeans_initial_centroids(view(x, d), o);
    const reference::KMeansRefResult ref =
        reference::kmeans_ref(x, static_cast<size_t>(d), init, iters, 7, w);
    REQUIRE(r.objective.size() == ref.objective.size());
    for (size_t t = 0; t < ref.objective.size(); ++t) {
      INFO("iteration " << t);
      REQUIRE(std::fabs(r.objective[t] - ref.objective[t]) <= 1e-5 * ref.objective[t]);
    }
    REQUIRE(std::fabs(r.final_objective - ref.final_objective) <= 1e-5 * ref.final_objective);
    REQUIRE(r.stats.splits == ref.splits);
    int64_t code_diff = 0;
    for (int64_t i = 0; i < c.n; ++i) {
      const uint32_t mine = r.codes[static_cast<size_t>(i)], theirs = ref.labels[static_cast<size_t>(i)];
      if (mine == theirs) continue;
      ++code_diff;
      // A tie: at the twin's centroids our code is as near as the twin's to within fp32 rounding.
      const double dm = reference::distance2_ref(x, static_cast<size_t>(i), ref.centroids, mine, static_cast<size_t>(d));
      const double dt = reference::distance2_ref(x, static_cast<size_t>(i), ref.centroids, theirs, static_cast<size_t>(d));
      INFO("point " << i << " code " << mine << " twin " << theirs << " d2 " << dm << " vs " << dt);
      REQUIRE(dm <= dt * (1.0 + 1e-4) + 1e-30);
    }
    REQUIRE(code_diff * 100 <= c.n);
    double scale = 0;
    for (float v : x) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    for (size_t q = 0; q < ref.centroids.size(); ++q) {
      INFO("centroid coordinate " << q);
      REQUIRE(std::fabs(static_cast<double>(r.centroids[q]) - ref.centroids[q]) <= 1e-5 * scale);
    }

    // Bit-identical for any thread count, and with SIMD, pruning or bounds off / on.
    o.progress = nullptr;
    o.report_codes = false;
    for (int threads : {2, 3, 8}) {
      INFO("threads " << threads);
      o.threads = threads;
      require_identical(kmeans(view(x, d), o), r);
    }
    o.threads = 2;
    o.use_simd = false;
    require_identical(kmeans(view(x, d), o), r);
    o.use_simd = true;
    o.use_bounds = true;
    require_identical(kmeans(view(x, d), o), r);
    o.use_bounds = false;
    o.use_pruning = false;
    require_identical(kmeans(view(x, d), o), r);
  }
}

TEST_CASE("weighted kmeans: empty clusters split by point counts, as the twin does", "[kmeans][weighted]") {
  // 40 of the 240 initial centroids lie far from every point: empty after the first assignment,
  // re-seeded by the split rule (which counts points, not weights) next to donors.
  const int d = 4;
  const int64_t n = 16000, k = 240;
  const std::vector<float> x = weight_like_points(n, d, 61);
  const std::vector<float> w = lognormal_weights(n, 2.0f, 62);
  KMeansOptions io;
  io.k = k - 40;
  io.seed = 3;
  std::vector<float> init = kmeans_initial_centroids(view(x, d), io);
  for (int j = 0; j < 40; ++j)
    for (int c = 0; c < d; ++c) init.push_back(5.0f + 0.5f * static_cast<float>(j) + 0.1f * static_cast<float>(c));
  KMeansOptions o;
  o.k = k;
  o.iterations = 4;
  o.seed = 8;
  o.threads = 2;
  o.initial_centroids = make_matrix_view<const float>(init.data(), k, d);
  o.point_weights = w.data();
  const KMeansResult r = kmeans(view(x, d), o);
  const reference::KMeansRefResult ref = reference::kmeans_ref(x, static_cast<size_t>(d), init, 4, 8, w);
  REQUIRE(r.stats.splits >= 40);
  REQUIRE(r.stats.splits == ref.splits);
  for (int64_t c : r.counts) REQUIRE(c > 0);
  for (size_t t = 0; t < ref.objective.size(); ++t) {
    INFO("iteration " << t);
    REQUIRE(std::fabs(r.objective[t] - ref.objective[t]) <= 1e-5 * ref.objective[t]);
  }
  REQUIRE(std::fabs(r.final_objective - ref.final_objective) <= 1e-5 * ref.final_objective);
  check_tie_aware(x, d, r.centroids.data(), k, r.codes.data());
  // Carried bounds survive weighted splits: same answer bit for bit; so do other thread counts.
  o.use_bounds = true;
  require_identical(kmeans(view(x, d), o), r);
  o.use_bounds = false;
  o.threads = 5;
  require_identical(kmeans(view(x, d), o), r);
}

TEST_CASE("weighted kmeans: an integer weight w acts like w copies of the point", "[kmeans][weighted]") {
  for (int d : {2, 4}) {
    const int64_t n = 3000, k = 24;
    const std::vector<float> x = gaussian_points(n, d, 20, 300 + static_cast<uint64_t>(d));
    std::mt19937_64 rng(400 + static_cast<uint64_t>(d));
    std::vector<float> w(static_cast<size_t>(n));
    std::vector<float> rep;
    std::vector<int64_t> first_copy(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int copies = 1 + static_cast<int>(rng() % 6);
      w[static_cast<size_t>(i)] = static_cast<float>(copies);
      first_copy[static_cast<size_t>(i)] = static_cast<int64_t>(rep.size()) / d;
      for (int r = 0; r < copies; ++r)
        for (int e = 0; e < d; ++e) rep.push_back(x[static_cast<size_t>(i * d + e)]);
    }
    KMeansOptions io;
    io.k = k;
    io.seed = 5;
    const std::vector<float> init = kmeans_initial_centroids(view(x, d), io);
    KMeansOptions o;
    o.k = k;
    o.iterations = 8;
    o.threads = 2;
    o.initial_centroids = make_matrix_view<const float>(init.data(), k, d);
    const KMeansResult copies = kmeans(view(rep, d), o);
    o.point_weights = w.data();
    const KMeansResult weighted = kmeans(view(x, d), o);
    INFO("d = " << d);
    // The split rule counts points, so the equivalence holds only without empty clusters.
    REQUIRE(copies.stats.splits == 0);
    REQUIRE(weighted.stats.splits == 0);
    for (size_t q = 0; q < init.size(); ++q) {
      const double a = weighted.centroids[q], b = copies.centroids[q];
      REQUIRE(std::fabs(a - b) <= 1e-6 * std::max(std::fabs(b), 1.0));
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t f = first_copy[static_cast<size_t>(i)];
      for (int64_t r = 0; r < static_cast<int64_t>(w[static_cast<size_t>(i)]); ++r)
        REQUIRE(copies.codes[static_cast<size_t>(f + r)] == weighted.codes[static_cast<size_t>(i)]);
    }
    REQUIRE(weighted.objective.size() == copies.objective.size());
    for (size_t t = 0; t < copies.objective.size(); ++t)
      REQUIRE(std::fabs(weighted.objective[t] - copies.objective[t]) <= 1e-6 * copies.objective[t]);
    REQUIRE(std::fabs(weighted.final_objective - copies.final_objective) <= 1e-6 * copies.final_objective);
  }
}

TEST_CASE("weighted kmeans: heavy points pull their centroids and lower the weighted objective", "[kmeans][weighted]") {
  // 8 blobs on the diagonal, 10 apart, 200 unit-weight points each, plus one point of weight 1000
  // per blob, offset perpendicular to the diagonal by (3, -3).
  const int d = 2;
  const int64_t k = 8, per = 200;
  const float heavy = 1000.0f;
  std::mt19937_64 rng(17);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x, w, init;
  for (int64_t j = 0; j < k; ++j) {
    const float cx = 10.0f * static_cast<float>(j), cy = cx;
    init.push_back(cx);
    init.push_back(cy);
    for (int64_t i = 0; i < per; ++i) {
      x.push_back(cx + g(rng));
      x.push_back(cy + g(rng));
      w.push_back(1.0f);
    }
    x.push_back(cx + 3.0f);
    x.push_back(cy - 3.0f);
    w.push_back(heavy);
  }
  const int64_t n = static_cast<int64_t>(w.size());
  KMeansOptions o;
  o.k = k;
  o.iterations = 10;
  o.threads = 2;
  o.initial_centroids = make_matrix_view<const float>(init.data(), k, d);
  const KMeansResult plain = kmeans(view(x, d), o);
  o.point_weights = w.data();
  const KMeansResult weighted = kmeans(view(x, d), o);
  // Same clustering (one blob per centroid), different centroids: the weighted one sits near
  // (sum of the blob + 1000 * heavy) / 1200, about 2.5 along (1, -1) from the blob's centre.
  REQUIRE(weighted.codes == plain.codes);
  for (int64_t j = 0; j < k; ++j) {
    double s[2] = {0, 0}, sw = 0;
    for (int64_t i = 0; i < n; ++i)
      if (weighted.codes[static_cast<size_t>(i)] == static_cast<uint32_t>(j)) {
        sw += w[static_cast<size_t>(i)];
        for (int e = 0; e < d; ++e) s[e] += static_cast<double>(w[static_cast<size_t>(i)]) * x[static_cast<size_t>(i * d + e)];
      }
    for (int e = 0; e < d; ++e)
      REQUIRE(std::fabs(weighted.centroids[static_cast<size_t>(j * d + e)] - s[e] / sw) <= 1e-5);
    const float dx = weighted.centroids[static_cast<size_t>(j * d)] - plain.centroids[static_cast<size_t>(j * d)];
    const float dy = weighted.centroids[static_cast<size_t>(j * d + 1)] - plain.centroids[static_cast<size_t>(j * d + 1)];
    REQUIRE(dx > 2.0f);
    REQUIRE(dy < -2.0f);
  }
  // One evaluator for both: the weighted objective of the weighted centroids is far lower, and the
  // unweighted objective of the unweighted centroids is the lower one.
  auto eval = [&](const KMeansResult& r, const float* pw) {
    return kmeans_assign(view(x, d), make_matrix_view<const float>(r.centroids.data(), k, d), 2, pw).objective;
  };
  const double ww = eval(weighted, w.data()), pwo = eval(plain, w.data());
  INFO("weighted objective: weighted centroids " << ww << ", unweighted centroids " << pwo);
  REQUIRE(ww < 0.5 * pwo);
  REQUIRE(eval(plain, nullptr) < eval(weighted, nullptr));
  REQUIRE(std::fabs(weighted.final_objective - ww) <= 1e-6 * ww);
  REQUIRE(std::fabs(plain.final_objective - eval(plain, nullptr)) <= 1e-6 * plain.final_objective);
}

TEST_CASE("weighted kmeans: zero weights, a zero-weight cluster, and bad weights", "[kmeans][weighted]") {
  const std::vector<float> x = gaussian_points(2000, 4, 12, 51);
  const int64_t n = 2000;
  KMeansOptions o;
  o.k = 16;
  o.iterations = 5;
  o.threads = 2;
  const KMeansResult plain = kmeans(view(x, 4), o);

  SECTION("all-zero weights give the unweighted centroids and codes, objective 0") {
    std::vector<float> zero(static_cast<size_t>(n), 0.0f);
    zero[7] = -0.0f;  // >= 0: allowed
    o.point_weights = zero.data();
    const KMeansResult r = kmeans(view(x, 4), o);
    REQUIRE(r.centroids == plain.centroids);
    REQUIRE(r.codes == plain.codes);
    REQUIRE(r.counts == plain.counts);
    REQUIRE(r.objective == std::vector<double>(plain.objective.size(), 0.0));
    REQUIRE(r.final_objective == 0.0);
  }

  SECTION("a cluster whose weights are all 0 takes the plain mean (bit for bit with the twin)") {
    // Small-integer points and weights: every sum is exact, so centroids match the twin exactly.
    std::mt19937_64 rng(52);
    const int d = 4;
    std::vector<float> p(1200 * d), pw(1200);
    for (auto& v : p) v = static_cast<float>(static_cast<int>(rng() % 16));
    std::vector<float> init = {0, 0, 0, 0, 15, 15, 15, 15, 8, 8, 8, 8, 15, 0, 15, 0};
    // The points nearest to centroid 0 weigh 0, the others 0..4.
    const reference::AssignmentRef a0 = reference::assign_ref(p, init, d);
    for (size_t i = 0; i < pw.size(); ++i) pw[i] = a0.labels[i] == 0 ? 0.0f : static_cast<float>(rng() % 5);
    KMeansOptions q;
    q.k = 4;
    q.iterations = 1;
    q.threads = 3;
    q.initial_centroids = make_matrix_view<const float>(init.data(), 4, d);
    q.point_weights = pw.data();
    const KMeansResult r = kmeans(view(p, d), q);
    const reference::KMeansRefResult ref = reference::kmeans_ref(p, d, init, 1, q.seed, pw);
    REQUIRE(r.centroids == ref.centroids);
    REQUIRE(r.objective == ref.objective);
    // Cluster 0 really had zero total weight and its centroid is its plain mean.
    double s[4] = {0, 0, 0, 0}, tw = 0;
    int64_t c0 = 0;
    for (size_t i = 0; i < pw.size(); ++i)
      if (a0.labels[i] == 0) {
        ++c0;
        tw += pw[i];
        for (int e = 0; e < d; ++e) s[e] += p[i * d + static_cast<size_t>(e)];
      }
    REQUIRE(c0 > 0);
    REQUIRE(tw == 0.0);
    for (int e = 0; e < d; ++e) REQUIRE(r.centroids[static_cast<size_t>(e)] == static_cast<float>(s[e] / static_cast<double>(c0)));
  }

  SECTION("NaN, Inf and negative weights are rejected, naming the first bad index") {
    auto status_with = [&](const std::vector<float>& bw) {
      KMeansOptions b = o;
      b.point_weights = bw.data();
      KMeansResult r;
      return kmeans(view(x, 4), b, &r);
    };
    auto has = [](const Status& s, const std::string& what) {
      INFO(s.to_string());
      REQUIRE(s.code() == StatusCode::kInvalidArgument);
      REQUIRE(s.message().find(what) != std::string::npos);
    };
    std::vector<float> bw(static_cast<size_t>(n), 1.0f);
    bw[17] = std::numeric_limits<float>::quiet_NaN();
    has(status_with(bw), "point_weights[17]");
    bw[17] = 1.0f;
    bw[1500] = std::numeric_limits<float>::infinity();
    has(status_with(bw), "point_weights[1500]");
    has(status_with(bw), "not finite");
    bw[1500] = 1.0f;
    bw[n - 1] = -std::numeric_limits<float>::infinity();
    has(status_with(bw), "point_weights[1999]");
    bw[n - 1] = 1.0f;
    bw[99] = -0.5f;
    has(status_with(bw), "point_weights[99]");
    has(status_with(bw), "negative");
    bw[42] = -1e-30f;  // the lowest bad index is named
    has(status_with(bw), "point_weights[42]");
    // The shared evaluator checks them too.
    REQUIRE_THROWS_AS(kmeans_assign(view(x, 4), make_matrix_view<const float>(plain.centroids.data(), 16, 4), 1, bw.data()),
                      Error);
  }
}

}  // namespace test_kmeans_weighted
