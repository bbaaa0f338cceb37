// The GPU Lloyd run (cuda/kmeans_gpu.cuh) replayed on the CPU: every kernel of its sort, update
// and objective steps thread by thread over its launch grid, through the same core/ per-item
// functions (core/kmeans_update_map.hpp) the kernels call, with std::stable_sort standing in for
// CUB's stable radix sort, under the same control loop (host/kmeans_lloyd_loop.hpp) and the same
// host-side split. Checks: every output written exactly once, every read in bounds; and the whole
// replayed run gives cluster/kmeans.hpp's CPU answers bit for bit (centroids, codes, objective at
// every iteration), weighted and unweighted, Gaussian and weight-like data, d = 1..16.
// This is what CI can check without a GPU; tests/gpu/test_kmeans_gpu.cu runs the real thing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/core/kmeans_assign_tile.hpp"
#include "cluscomp/core/kmeans_update_map.hpp"
#include "cluscomp/host/cpu_features.hpp"
#include "cluscomp/host/kmeans_lloyd_loop.hpp"
#include "cluscomp/host/kmeans_split.hpp"
#include "support/kmeans_test.hpp"

namespace test_kmeans_gpu_replay {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace um = cluscomp::kmeans_update_map;

namespace {

// Runs `body(item)` for every thread of a launch over `items` items, as the kernels do (the
// `item < items` guard included), and checks the mapping covers each item exactly once.
template <class F>
void launch(int64_t items, F&& body) {
  std::vector<int> seen(static_cast<size_t>(items), 0);
  for (int64_t b = 0; b < um::blocks_for(items); ++b)
    for (int t = 0; t < um::kThreads; ++t) {
      const int64_t i = um::item_index(b, t);
      if (i >= items) continue;
      REQUIRE(i >= 0);
      ++seen[static_cast<size_t>(i)];
      body(i);
    }
  for (int64_t i = 0; i < items; ++i) REQUIRE(seen[static_cast<size_t>(i)] == 1);
}

// Initial contents of the arrays the replay fills: an element still holding it was not written.
constexpr float kGuard = -12345.0f;
constexpr uint32_t kUnwritten = 0xffffffffu;

// The GPU run, step by step on the host (the GpuLloyd of cuda/kmeans_gpu.cuh, kernel by kernel).
template <int D, class Key>
struct ReplayLloyd {
  int64_t n, k;
  const std::vector<float>& input;    // (n, D) input order
  const float* weights;               // (n) or null
  std::vector<float> pts[2];
  std::vector<uint32_t> ids[2];
  std::vector<float> w[2];
  std::vector<Key> keys_cur, keys_alt;
  std::vector<uint32_t> vals;
  std::vector<uint32_t> label, begin, end, counts;
  std::vector<float> dist, cen;
  std::vector<double> parts;
  int cur = 0;
  bool changed = false;

  ReplayLloyd(int64_t nn, int64_t kk, const std::vector<float>& x, const float* wts, const std::vector<float>& init)
      : n(nn), k(kk), input(x), weights(wts), keys_cur(static_cast<size_t>(nn)), keys_alt(static_cast<size_t>(nn)),
        vals(static_cast<size_t>(nn)), label(static_cast<size_t>(nn)), begin(static_cast<size_t>(kk)),
        end(static_cast<size_t>(kk)), counts(static_cast<size_t>(kk)), dist(static_cast<size_t>(nn)), cen(init),
        parts(static_cast<size_t>(um::objective_chunks(nn))) {
    for (int b = 0; b < 2; ++b) {
      pts[b].assign(static_cast<size_t>(n * D), kGuard);
      ids[b].assign(static_cast<size_t>(n), kUnwritten);
      if (weights) w[b].assign(static_cast<size_t>(n), kGuard);
    }
  }

  void prepare(const uint32_t* labels, const Key* compare) {
    changed = false;
    std::vector<int> wk(static_cast<size_t>(n), 0);
    launch(n, [&](int64_t j) {
      ++wk[static_cast<size_t>(j)];
      if (um::prepare_sort_item<Key>(j, labels, compare, keys_alt.data(), vals.data())) changed = true;
    });
    for (int c : wk) REQUIRE(c == 1);
  }

  void sort_and_gather(const float* pts_in, const uint32_t* ids_in, const float* w_in) {
    // CUB's stable radix sort on keys_alt with values = positions: a stable sort by key.
    std::vector<uint32_t> perm(vals);
    std::stable_sort(perm.begin(), perm.end(), [&](uint32_t x, uint32_t y) {
      return keys_alt[x] < keys_alt[y];
    });
    std::vector<Key> sorted(static_cast<size_t>(n));
    for (int64_t o = 0; o < n; ++o) sorted[static_cast<size_t>(o)] = keys_alt[perm[static_cast<size_t>(o)]];
    keys_cur = sorted;
    // The kernel's begin/end start zeroed (cudaMemsetAsync); here from kUnwritten, so that every
    // write shows: each entry may change once, from kUnwritten, and only the two entries of the
    // position's own key may change. Entries left unwritten are the empty clusters: then 0.
    std::fill(begin.begin(), begin.end(), kUnwritten);
    std::fill(end.begin(), end.end(), kUnwritten);
    std::vector<int> wb(static_cast<size_t>(k), 0), we(static_cast<size_t>(k), 0);
    launch(n, [&](int64_t o) {
      const Key key = keys_cur[static_cast<size_t>(o)];
      REQUIRE(static_cast<int64_t>(key) < k);
      const uint32_t b0 = begin[key], e0 = end[key];
      um::segment_bounds_item<Key>(o, n, keys_cur.data(), begin.data(), end.data());
      if (begin[key] != b0) {
        REQUIRE(b0 == kUnwritten);
        ++wb[key];
      }
      if (end[key] != e0) {
        REQUIRE(e0 == kUnwritten);
        ++we[key];
      }
    });
    std::vector<int64_t> hist(static_cast<size_t>(k), 0);
    for (Key key : keys_cur) ++hist[key];
    for (int64_t a = 0; a < k; ++a) {
      const bool nonempty = hist[static_cast<size_t>(a)] > 0;
      REQUIRE(wb[static_cast<size_t>(a)] == (nonempty ? 1 : 0));
      REQUIRE(we[static_cast<size_t>(a)] == (nonempty ? 1 : 0));
      if (!nonempty) begin[static_cast<size_t>(a)] = end[static_cast<size_t>(a)] = 0;
      REQUIRE(end[static_cast<size_t>(a)] - begin[static_cast<size_t>(a)] == static_cast<uint32_t>(hist[static_cast<size_t>(a)]));
    }
    const int to = 1 - cur;
    std::vector<int> wg(static_cast<size_t>(n), 0);
    launch(n, [&](int64_t o) {
      REQUIRE(perm[static_cast<size_t>(o)] < static_cast<uint64_t>(n));
      ++wg[static_cast<size_t>(o)];
      um::gather_item<D>(o, perm.data(), pts_in, ids_in, w_in, pts[to].data(), ids[to].data(),
                         weights ? w[to].data() : nullptr);
    });
    for (int c : wg) REQUIRE(c == 1);
    // The gather is a permutation: every input id lands once.
    std::vector<uint32_t> sorted_ids(ids[to]);
    std::sort(sorted_ids.begin(), sorted_ids.end());
    for (int64_t i = 0; i < n; ++i) REQUIRE(sorted_ids[static_cast<size_t>(i)] == static_cast<uint32_t>(i));
    cur = to;
  }

  void start(const std::vector<uint32_t>& first) {
    prepare(first.data(), nullptr);
    cur = 1;
    sort_and_gather(input.data(), nullptr, weights);
  }

  double assign() {
    // The assignment kernel's own replay is tests/cpu/test_kmeans_assign_map.cpp; here its answer
    // (scan_tile over all centroids: the same distance and tie-break).
    namespace km = cluscomp::kmeans_assign_map;
    for (int64_t i = 0; i < n; ++i) {
      float x[1][D];
      bool live[1] = {true};
      float bd[1] = {std::numeric_limits<float>::infinity()};
      int32_t bi[1] = {km::kNoCentroid};
      for (int e = 0; e < D; ++e) x[0][e] = pts[cur][static_cast<size_t>(i * D + e)];
      km::scan_tile<D, 1>(x, live, cen.data(), static_cast<int>(k), 0, bd, bi);
      label[static_cast<size_t>(i)] = static_cast<uint32_t>(bi[0]);
      dist[static_cast<size_t>(i)] = bd[0];
    }
    const int64_t chunks = um::objective_chunks(n);
    std::vector<double> p(static_cast<size_t>(chunks), std::numeric_limits<double>::quiet_NaN());
    launch(chunks, [&](int64_t c) { um::objective_item(c, n, dist.data(), weights ? w[cur].data() : nullptr, p.data()); });
    for (double v : p) REQUIRE(v == v);  // every chunk written
    prepare(label.data(), keys_cur.data());
    return um::objective_total(p.data(), chunks);
  }

  bool labels_unchanged() const { return !changed; }
  bool report(int, double) { return true; }

  int64_t update(uint64_t seed) {
    sort_and_gather(pts[cur].data(), ids[cur].data(), weights ? w[cur].data() : nullptr);
    std::vector<int> wc(static_cast<size_t>(k), 0);
    launch(k, [&](int64_t a) {
      REQUIRE(end[static_cast<size_t>(a)] <= static_cast<uint64_t>(n));
      REQUIRE(begin[static_cast<size_t>(a)] <= end[static_cast<size_t>(a)]);
      ++wc[static_cast<size_t>(a)];
      um::centroid_item<D>(a, begin.data(), end.data(), pts[cur].data(), weights ? w[cur].data() : nullptr, cen.data(),
                           counts.data());
    });
    for (int c : wc) REQUIRE(c == 1);
    std::vector<int64_t> c64(counts.begin(), counts.end());
    return cluster_detail::split_empty_clusters(c64.data(), k, n, D, seed, cen.data(), nullptr);
  }

  std::vector<uint32_t> codes() {
    std::vector<uint32_t> c(static_cast<size_t>(n), 0xffffffffu);
    std::vector<int> wc(static_cast<size_t>(n), 0);
    launch(n, [&](int64_t j) {
      REQUIRE(ids[cur][static_cast<size_t>(j)] < static_cast<uint64_t>(n));
      ++wc[ids[cur][static_cast<size_t>(j)]];
      um::scatter_code_item(j, ids[cur].data(), label.data(), c.data());
    });
    for (int x : wc) REQUIRE(x == 1);
    return c;
  }
};

template <int D>
void replay_against_cpu(const std::vector<float>& x, int64_t k, const float* weights, int iterations, uint64_t seed) {
  const int64_t n = static_cast<int64_t>(x.size()) / D;
  KMeansOptions o;
  o.k = k;
  o.iterations = iterations;
  o.seed = seed;
  o.threads = 2;
  o.point_weights = weights;
  std::vector<double> cpu_obj;
  std::vector<std::vector<float>> cpu_cen;
  o.progress = [&](const KMeansProgress& p) {
    cpu_obj.push_back(p.objective);
    cpu_cen.emplace_back(p.centroids.data, p.centroids.data + k * D);
    return true;
  };
  const auto view = make_matrix_view<const float>(x.data(), n, D);
  const KMeansResult cpu = kmeans(view, o);

  // The GPU backend's host side (kernels/kmeans_gpu.cu): the CPU path's initial centroids and first labels.
  o.progress = nullptr;
  const std::vector<float> init = kmeans_initial_centroids(view, o);
  std::vector<uint32_t> first(static_cast<size_t>(n));
  cluster_detail::kmeans_first_labels<D>(cpu_has_avx2(), init.data(), k, x.data(), n, 2, first.data());

  auto run = [&](auto key_tag) {
    using Key = decltype(key_tag);
    ReplayLloyd<D, Key> g(n, k, x, weights, init);
    g.start(first);
    struct Ops {
      ReplayLloyd<D, Key>& g;
      std::vector<std::vector<float>> cen;
      double assign() { return g.assign(); }
      bool labels_unchanged() const { return g.labels_unchanged(); }
      bool report(int, double) {
        cen.push_back(g.cen);
        return true;
      }
      int64_t update(uint64_t s) { return g.update(s); }
    } ops{g, {}};
    cluster_detail::LloydLoopResult r;
    cluster_detail::lloyd_loop(ops, iterations, 0.0, seed, r);
    INFO("n " << n << " d " << D << " k " << k << " weighted " << (weights != nullptr) << " seed " << seed
              << " key bytes " << sizeof(Key));
    REQUIRE(r.objective.size() == cpu_obj.size());
    for (size_t t = 0; t < cpu_obj.size(); ++t) {
      INFO("iteration " << t);
      REQUIRE(r.objective[t] == cpu_obj[t]);
      REQUIRE(std::memcmp(ops.cen[t].data(), cpu_cen[t].data(), cpu_cen[t].size() * sizeof(float)) == 0);
    }
    REQUIRE(r.final_objective == cpu.final_objective);
    REQUIRE(r.iterations_run == cpu.iterations_run);
    REQUIRE(r.splits == cpu.stats.splits);
    REQUIRE(r.fixed_point_iteration == cpu.stats.fixed_point_iteration);
    REQUIRE(std::memcmp(g.cen.data(), cpu.centroids.data(), cpu.centroids.size() * sizeof(float)) == 0);
    REQUIRE(g.codes() == cpu.codes);
  };
  if (k <= 65536) run(uint16_t{});
  run(uint32_t{});
}

}  // namespace

TEST_CASE("GPU update mapping: bounds write begin/end once per non-empty cluster, none for empty ones",
          "[kmeans_gpu_replay]") {
  // Keys with empty clusters at the start, middle and end, and runs crossing block boundaries.
  for (int64_t n : {1, 255, 256, 257, 1000}) {
    const int64_t k = 7;
    std::vector<uint16_t> keys(static_cast<size_t>(n));
    for (int64_t o = 0; o < n; ++o) keys[static_cast<size_t>(o)] = static_cast<uint16_t>(1 + (o * 3 / std::max<int64_t>(n, 1)) * 2);
    std::vector<uint32_t> b(static_cast<size_t>(k), 0), e(static_cast<size_t>(k), 0);
    launch(n, [&](int64_t o) { um::segment_bounds_item<uint16_t>(o, n, keys.data(), b.data(), e.data()); });
    for (int64_t a = 0; a < k; ++a) {
      const auto lo = std::lower_bound(keys.begin(), keys.end(), static_cast<uint16_t>(a)) - keys.begin();
      const auto hi = std::upper_bound(keys.begin(), keys.end(), static_cast<uint16_t>(a)) - keys.begin();
      INFO("n " << n << " cluster " << a);
      if (lo == hi) {
        REQUIRE(b[static_cast<size_t>(a)] == 0u);
        REQUIRE(e[static_cast<size_t>(a)] == 0u);
      } else {
        REQUIRE(b[static_cast<size_t>(a)] == static_cast<uint32_t>(lo));
        REQUIRE(e[static_cast<size_t>(a)] == static_cast<uint32_t>(hi));
      }
    }
  }
}

TEST_CASE("GPU update mapping: sort key bits and objective chunks", "[kmeans_gpu_replay]") {
  REQUIRE(um::sort_key_bits(1) == 1);
  REQUIRE(um::sort_key_bits(2) == 1);
  REQUIRE(um::sort_key_bits(3) == 2);
  REQUIRE(um::sort_key_bits(256) == 8);
  REQUIRE(um::sort_key_bits(257) == 9);
  REQUIRE(um::sort_key_bits(65536) == 16);
  REQUIRE(um::sort_key_bits(65537) == 17);
  REQUIRE(um::objective_chunks(1) == 1);
  REQUIRE(um::objective_chunks(kObjectiveChunk) == 1);
  REQUIRE(um::objective_chunks(kObjectiveChunk + 1) == 2);
}

TEST_CASE("GPU Lloyd replayed on the CPU equals the CPU k-means bit for bit: Gaussian", "[kmeans_gpu_replay]") {
  const int iters = 6;
  SECTION("d = 1, K = 2") { replay_against_cpu<1>(cluscomp_test::gaussian_points(3000, 1, 5, 11), 2, nullptr, iters, 3); }
  SECTION("d = 2, K = 37") { replay_against_cpu<2>(cluscomp_test::gaussian_points(5000, 2, 20, 12), 37, nullptr, iters, 4); }
  SECTION("d = 4, K = 300") { replay_against_cpu<4>(cluscomp_test::gaussian_points(70000, 4, 50, 13), 300, nullptr, iters, 5); }
  SECTION("d = 8, K = 1024") { replay_against_cpu<8>(cluscomp_test::gaussian_points(9000, 8, 64, 14), 1024, nullptr, iters, 6); }
  SECTION("d = 16, K = 64") { replay_against_cpu<16>(cluscomp_test::gaussian_points(4000, 16, 16, 15), 64, nullptr, iters, 7); }
}

TEST_CASE("GPU Lloyd replayed on the CPU equals the CPU k-means bit for bit: weight-like, splits, weights",
          "[kmeans_gpu_replay]") {
  const int iters = 6;
  // Weight-like data (bf16-rounded: duplicates, exact ties) with K near the distinct count, so
  // clusters empty out and the split runs.
  SECTION("d = 4, K = 2000, splits") {
    const auto x = cluscomp_test::weight_like_points(8000, 4, 21);
    replay_against_cpu<4>(x, 2000, nullptr, iters, 8);
  }
  SECTION("d = 3, K = 500, weighted") {
    const auto x = cluscomp_test::weight_like_points(6000, 3, 22);
    std::vector<float> w(x.size() / 3);
    std::mt19937_64 rng(5);
    std::uniform_real_distribution<float> u(0.0f, 3.0f);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i % 17 == 0) ? 0.0f : u(rng);  // zero weights too
    replay_against_cpu<3>(x, 500, w.data(), iters, 9);
  }
  SECTION("d = 8, K = 256, weighted Gaussian") {
    const auto x = cluscomp_test::gaussian_points(6000, 8, 40, 23);
    std::vector<float> w(x.size() / 8);
    std::mt19937_64 rng(6);
    std::exponential_distribution<float> ex(1.0f);
    for (auto& v : w) v = ex(rng);
    replay_against_cpu<8>(x, 256, w.data(), iters, 10);
  }
}

}  // namespace test_kmeans_gpu_replay
