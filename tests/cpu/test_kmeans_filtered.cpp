// The filtered (two-stage) brute-force scan of cluster/distance_kernels.hpp and its box-pruned
// form (cluster/box_filter.hpp) against the exact scans, bit for bit, for every d in 1..16 and
// data where their fp32 error bounds matter; and
// kmeans() with the filtered brute force against the exact paths (portable kernels, no pruning)
// and the reference twin.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "support/kmeans_test.hpp"

namespace test_kmeans_filtered {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using namespace cluscomp::cluster_detail;

namespace {

using cluscomp_test::check_tie_aware;
using cluscomp_test::gaussian_points;
using cluscomp_test::weight_like_points;

MatrixView<const float> view(const std::vector<float>& x, int d) {
  return make_matrix_view<const float>(x.data(), static_cast<int64_t>(x.size()) / d, d);
}

// Data sets for the kernel test: centroid and point coordinates.
enum class Data {
  kGaussian,      // N(0, 1)
  kSmallInts,     // integers in [-3, 3] (points also halves): exact ties, duplicate centroids
  kOffset,        // 1e4 + 0.01 N(0, 1): ||x||^2 ~ 1e8 d, distances ~1e-4: the bound is wide
  kLarge,         // 1e12 N(0, 1): ||x||^2 ~ 1e24 (below the 1e30 guard)
  kTiny,          // 1e-20 N(0, 1): squares and distances subnormal (~1e-40)
  kTinyNormal,    // 1e-12 N(0, 1): distances ~1e-24
  kFar,           // centroids N(0, 1), points 1e4 + 1e3 N(0, 1): far from every centroid
  kMixedNorms,    // each vector N(0, 1) * 10^U(-3, 5): centroid norms over 8 decades
  kNearTies,      // centroids in pairs one ulp apart in one coordinate; points next to them
  kGuard,         // 1e17 N(0, 1): ||x||^2 above the guard, the exact scan takes over
};

const Data kAllData[] = {Data::kGaussian, Data::kSmallInts, Data::kOffset, Data::kLarge, Data::kTiny,
                         Data::kTinyNormal, Data::kFar, Data::kMixedNorms, Data::kNearTies, Data::kGuard};

const char* data_name(Data v) {
  switch (v) {
    case Data::kGaussian: return "gaussian";
    case Data::kSmallInts: return "small integers";
    case Data::kOffset: return "offset 1e4";
    case Data::kLarge: return "large 1e12";
    case Data::kTiny: return "tiny 1e-20";
    case Data::kTinyNormal: return "tiny 1e-12";
    case Data::kFar: return "far points";
    case Data::kMixedNorms: return "mixed norms";
    case Data::kNearTies: return "near ties";
    case Data::kGuard: return "guard 1e17";
  }
  return "?";
}

template <int D>
void fill(Data v, bool is_point, std::mt19937_64& rng, float* out, const std::vector<float>& cen, int64_t k) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  std::uniform_real_distribution<float> ue(-3.0f, 5.0f);
  switch (v) {
    case Data::kGaussian:
      for (int c = 0; c < D; ++c) out[c] = g(rng);
      break;
    case Data::kSmallInts:
      for (int c = 0; c < D; ++c) out[c] = static_cast<float>(small(rng)) * (is_point && (rng() & 1) ? 0.5f : 1.0f);
      break;
    case Data::kOffset:
      for (int c = 0; c < D; ++c) out[c] = 1e4f + 0.01f * g(rng);
      break;
    case Data::kLarge:
      for (int c = 0; c < D; ++c) out[c] = 1e12f * g(rng);
      break;
    case Data::kTiny:
      for (int c = 0; c < D; ++c) out[c] = 1e-20f * g(rng);
      break;
    case Data::kTinyNormal:
      for (int c = 0; c < D; ++c) out[c] = 1e-12f * g(rng);
      break;
    case Data::kFar:
      for (int c = 0; c < D; ++c) out[c] = is_point ? 1e4f + 1e3f * g(rng) : g(rng);
      break;
    case Data::kMixedNorms: {
      const float s = std::pow(10.0f, ue(rng));
      for (int c = 0; c < D; ++c) out[c] = s * g(rng);
      break;
    }
    case Data::kNearTies:
      if (!is_point) {
        // Even entries random, odd entries a copy of the previous one nudged by one ulp.
        const int64_t m = static_cast<int64_t>(cen.size()) / D;  // entries filled so far
        if (m % 2 == 1) {
          for (int c = 0; c < D; ++c) out[c] = cen[static_cast<size_t>((m - 1) * D + c)];
          const int c = static_cast<int>(rng() % D);
          out[c] = std::nextafter(out[c], (rng() & 1) ? 10.0f : -10.0f);
        } else {
          for (int c = 0; c < D; ++c) out[c] = g(rng);
        }
      } else {
        // A point next to a random pair, or halfway between the two.
        const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(k)) & ~int64_t{1};
        const int64_t j2 = std::min(j + 1, k - 1);
        for (int c = 0; c < D; ++c) {
          const float a = cen[static_cast<size_t>(j * D + c)], b = cen[static_cast<size_t>(j2 * D + c)];
          out[c] = (rng() & 1) ? 0.5f * (a + b) : a + 1e-3f * g(rng);
        }
      }
      break;
    case Data::kGuard:
      for (int c = 0; c < D; ++c) out[c] = 1e17f * g(rng);
      break;
  }
}

struct KernelCounts {
  int64_t tiles = 0, filtered_tiles = 0, rechecks = 0, pairs = 0;
  // Box-pruned AVX2 path: tiles, entries scanned of all; and the same for gaussian data, K = 700,
  // d <= 4, seeded with the answer (where the boxes must prune: 4 random points per tile).
  int64_t box_tiles = 0, box_opened = 0, box_total = 0, seeded_opened = 0, seeded_total = 0;
  int64_t wide_tile_pairs = 0, wide_point_pairs = 0;  // d >= kBoxPerPointMinD: P x max and sum of visited
};

// One D: for every data set, several K and incoming bests, scan_filtered_tile (AVX2 when the CPU
// has it, and the portable dispatch) and scan_filtered_tile_portable (the bound with std::fma)
// against kFilterTilePoints one-point exact scans (scan_block_portable, which scan_ascending_tile
// equals bit for bit): same fp32 distance bits and the same index.
template <int D>
void check_filtered_kernel(uint64_t seed, KernelCounts& counts) {
  std::mt19937_64 rng(seed);
  for (Data v : kAllData) {
    for (int64_t k : {int64_t{1}, int64_t{6}, int64_t{8}, int64_t{61}, int64_t{333}, int64_t{700}}) {
      std::vector<float> cen;
      cen.reserve(static_cast<size_t>(k * D));
      for (int64_t j = 0; j < k; ++j) {
        float c[D];
        fill<D>(v, false, rng, c, cen, k);
        cen.insert(cen.end(), c, c + D);
      }
      const int64_t stride = (k + 7) / 8 * 8;
      std::vector<float> soa(static_cast<size_t>(stride * D), std::numeric_limits<float>::quiet_NaN());
      std::vector<int32_t> idx(static_cast<size_t>(stride), kNoIndex);
      for (int64_t j = 0; j < k; ++j) {
        idx[static_cast<size_t>(j)] = static_cast<int32_t>(j);
        for (int c = 0; c < D; ++c) soa[static_cast<size_t>(c * stride + j)] = cen[static_cast<size_t>(j * D + c)];
      }
      const SoaBlock blk{soa.data(), idx.data(), nullptr, stride, stride};
      std::vector<float> fbuf;
      const FilterBlock fb = make_filter_block<D>(blk, fbuf);
      BoxFilter bf;
      build_box_filter<D>(cen.data(), k, bf, 2);
      for (int trial = 0; trial < 12; ++trial) {
        std::vector<float> x(static_cast<size_t>(kFilterTilePoints * D));
        for (int p = 0; p < kFilterTilePoints; ++p) fill<D>(v, true, rng, &x[static_cast<size_t>(p * D)], cen, k);
        if (trial == 11 && kFilterTilePoints > 1)  // a tile holding the same point twice
          std::copy(x.begin(), x.begin() + D, x.begin() + D);
        const float* xs[kFilterTilePoints];
        for (int p = 0; p < kFilterTilePoints; ++p) xs[p] = &x[static_cast<size_t>(p * D)];
        // The exact answer without a seed, per point.
        float ex_d[kFilterTilePoints];
        int32_t ex_i[kFilterTilePoints];
        for (int p = 0; p < kFilterTilePoints; ++p) {
          ex_d[p] = std::numeric_limits<float>::infinity();
          ex_i[p] = kNoIndex;
          scan_block_portable<D>(xs[p], SoaBlock{soa.data(), idx.data(), nullptr, stride, stride}, 0.0f, ex_d[p], ex_i[p]);
        }
        // Incoming bests: none; a random entry (as k-means seeds with the current centroid); the
        // answer itself; the answer's distance with the highest index that has it (a tie the
        // lower index must win); a strictly better value than any entry (nothing may replace it).
        for (int mode = 0; mode < 5; ++mode) {
          float in_d[kFilterTilePoints];
          int32_t in_i[kFilterTilePoints];
          for (int p = 0; p < kFilterTilePoints; ++p) {
            in_d[p] = std::numeric_limits<float>::infinity();
            in_i[p] = kNoIndex;
            if (mode == 1) {
              const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(k));
              in_d[p] = squared_distance<D>(xs[p], &cen[static_cast<size_t>(j * D)]);
              in_i[p] = static_cast<int32_t>(j);
            } else if (mode == 2) {
              in_d[p] = ex_d[p];
              in_i[p] = ex_i[p];
            } else if (mode == 3) {
              in_d[p] = ex_d[p];
              for (int64_t j = 0; j < k; ++j)
                if (squared_distance<D>(xs[p], soa.data() + j, stride) == ex_d[p]) in_i[p] = static_cast<int32_t>(j);
            } else if (mode == 4) {
              in_d[p] = ex_d[p] > 0.0f ? ex_d[p] * 0.5f : -1.0f;
              in_i[p] = static_cast<int32_t>(k);
            }
          }
          // Reference: the one-point exact scan from the same incoming best, which the tiled
          // exact scan (scan_ascending_tile, AVX2 where the CPU has it) equals.
          float rd[kFilterTilePoints], td[kFilterTilePoints];
          int32_t ri[kFilterTilePoints], ti[kFilterTilePoints];
          for (int p = 0; p < kFilterTilePoints; ++p) {
            rd[p] = td[p] = in_d[p];
            ri[p] = ti[p] = in_i[p];
            scan_block_portable<D>(xs[p], blk, 0.0f, rd[p], ri[p]);
          }
          for (int p = 0; p < kFilterTilePoints; p += kTilePoints)
            scan_ascending_tile<D>(cpu_has_avx2(), xs + p, blk, td + p, ti + p);
          for (int p = 0; p < kFilterTilePoints; ++p) {
            REQUIRE(ti[p] == ri[p]);
            REQUIRE(std::memcmp(&td[p], &rd[p], sizeof(float)) == 0);
          }
          // Paths: 0 filter (portable dispatch), 1 filter (AVX2 dispatch), 2 portable filter,
          // 3 box-pruned filter (AVX2 dispatch), 4 portable box-pruned filter.
          for (int path = 0; path < 5; ++path) {
            float bd[kFilterTilePoints];
            int32_t bi[kFilterTilePoints];
            int64_t rc[kFilterTilePoints] = {};
            for (int p = 0; p < kFilterTilePoints; ++p) {
              bd[p] = in_d[p];
              bi[p] = in_i[p];
            }
            bool filtered = false;
            if (path < 2) {
              const int64_t visited = scan_filtered_tile<D>(path == 1 && cpu_has_avx2(), xs, blk, fb, bd, bi, rc, &filtered);
              REQUIRE(visited == stride);
              if (path == 1) {
                ++counts.tiles;
                if (filtered) ++counts.filtered_tiles;
                for (int p = 0; p < kFilterTilePoints; ++p) counts.rechecks += rc[p];
                counts.pairs += visited * kFilterTilePoints;
                // The filter runs wherever it can: the CPU has AVX2 + FMA and no value is too large.
                REQUIRE(filtered == (cpu_has_avx2() && cpu_has_avx2_fma() && v != Data::kGuard));
              } else {
                REQUIRE_FALSE(filtered);
              }
            } else if (path == 3) {
              int64_t visited[kFilterTilePoints] = {};
              scan_box_filtered_tile<D>(cpu_has_avx2(), xs, bf, blk, bd, bi, rc, visited, &filtered);
              REQUIRE(filtered == (cpu_has_avx2() && cpu_has_avx2_fma() && v != Data::kGuard));
              const int64_t opened = *std::max_element(visited, visited + kFilterTilePoints);
              if (filtered) {
                for (int p = 0; p < kFilterTilePoints; ++p) REQUIRE(visited[p] % kBoxLeaf == 0);  // whole leaves
                REQUIRE(opened <= bf.leaves * kBoxLeaf);
                if (D >= kBoxPerPointMinD) {  // leaves only some points open run for them alone
                  counts.wide_tile_pairs += kFilterTilePoints * opened;
                  counts.wide_point_pairs += std::accumulate(visited, visited + kFilterTilePoints, int64_t{0});
                }
                ++counts.box_tiles;
                counts.box_opened += opened;
                counts.box_total += bf.leaves * kBoxLeaf;
                if (v == Data::kGaussian && k == 700 && D <= 4 && mode == 2) {
                  counts.seeded_opened += opened;
                  counts.seeded_total += bf.leaves * kBoxLeaf;
                }
              } else {
                REQUIRE(opened == stride);
              }
            } else {
              if (v == Data::kGuard) continue;  // the portable forms have no guard of their own
              if (path == 2)
                scan_filtered_tile_portable<D>(xs, blk, fb, bd, bi, rc);
              else {
                int64_t visited_portable[kFilterTilePoints] = {};
                scan_box_filtered_tile_portable<D>(xs, bf, bd, bi, rc, visited_portable);
              }
            }
            for (int p = 0; p < kFilterTilePoints; ++p) {
              INFO("D " << D << " data " << data_name(v) << " K " << k << " trial " << trial << " mode " << mode
                        << " path " << path << " point " << p << " got (" << bd[p] << ", " << bi[p] << ") want ("
                        << rd[p] << ", " << ri[p] << ")");
              REQUIRE(bi[p] == ri[p]);
              REQUIRE(std::memcmp(&bd[p], &rd[p], sizeof(float)) == 0);
            }
          }
        }
      }
    }
  }
}

template <int... Ds>
void check_all_d(std::integer_sequence<int, Ds...>, KernelCounts& counts) {
  (check_filtered_kernel<Ds + 1>(1000 + static_cast<uint64_t>(Ds), counts), ...);
}

}  // namespace

TEST_CASE("filtered brute-force scan equals the exact scan bit for bit, every d in 1..16", "[kmeans][filter]") {
  KernelCounts counts;
  check_all_d(std::make_integer_sequence<int, 16>{}, counts);
  INFO("filtered tiles " << counts.filtered_tiles << " of " << counts.tiles << ", re-checks " << counts.rechecks
                          << " of " << counts.pairs << " pairs");
  if (cpu_has_avx2() && cpu_has_avx2_fma()) {
    // Not vacuous: the filter ran, and re-checked far fewer pairs than it screened.
    REQUIRE(counts.filtered_tiles > counts.tiles / 2);
    REQUIRE(counts.rechecks * 4 < counts.pairs);
    // The boxes pruned where they can.
    INFO("box-pruned: " << counts.box_opened << " of " << counts.box_total << " entries scanned; seeded gaussian "
                        << counts.seeded_opened << " of " << counts.seeded_total);
    REQUIRE(counts.box_tiles > 0);
    REQUIRE(counts.box_opened < counts.box_total);
    INFO("d >= " << kBoxPerPointMinD << ": " << counts.wide_point_pairs << " point-entry pairs, " << counts.wide_tile_pairs
                 << " if every point ran every leaf its tile opened");
    REQUIRE(counts.wide_point_pairs < counts.wide_tile_pairs);
    REQUIRE(counts.seeded_opened * 2 < counts.seeded_total);
  }
}

TEST_CASE("filter threshold: exact-distance ordering survives the GEMM form's rounding", "[kmeans][filter]") {
  // Tight groups at many scales: 64 sites spread over ~1e3 (so ||x'||^2 ~ 1e6 even after
  // centring), each holding 8 centroids within ~1e-3 of one another, points among them. The GEMM
  // form's absolute error (~1e6 * 2^-24 ~ 0.1) is far above the gaps between the distances
  // (~1e-6): its own argmin is mostly wrong, and only a correct threshold keeps every centroid
  // that the exact kernel could rank first.
  constexpr int D = 8;
  std::mt19937_64 rng(77);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int64_t sites = 64, per_site = 8, k = sites * per_site, stride = k;
  std::vector<float> site(static_cast<size_t>(sites * D));
  for (auto& v : site) v = 1e3f * g(rng);
  std::vector<float> soa(static_cast<size_t>(stride * D));
  std::vector<int32_t> idx(static_cast<size_t>(stride));
  for (int64_t j = 0; j < k; ++j) {
    idx[static_cast<size_t>(j)] = static_cast<int32_t>(j);
    for (int c = 0; c < D; ++c)
      soa[static_cast<size_t>(c * stride + j)] = site[static_cast<size_t>(j / per_site * D + c)] + 1e-3f * g(rng);
  }
  const SoaBlock blk{soa.data(), idx.data(), nullptr, stride, stride};
  std::vector<float> fbuf;
  const FilterBlock fb = make_filter_block<D>(blk, fbuf);
  int64_t differ_from_gemm = 0, points = 0;
  for (int t = 0; t < 1000; ++t) {
    float x[kFilterTilePoints * D];
    const float* xs[kFilterTilePoints];
    const int64_t s0 = static_cast<int64_t>(rng() % static_cast<uint64_t>(sites));
    for (int p = 0; p < kFilterTilePoints; ++p) {
      for (int c = 0; c < D; ++c) x[p * D + c] = site[static_cast<size_t>(s0 * D + c)] + 1e-3f * g(rng);
      xs[p] = &x[p * D];
    }
    float bd[kFilterTilePoints], rd[kFilterTilePoints], pd[kFilterTilePoints];
    int32_t bi[kFilterTilePoints], ri[kFilterTilePoints], pi[kFilterTilePoints];
    for (int p = 0; p < kFilterTilePoints; ++p) {
      // Seeded as k-means seeds: the exact distance to some centroid of the site.
      const int64_t j = s0 * per_site + static_cast<int64_t>(rng() % per_site);
      bd[p] = rd[p] = pd[p] = squared_distance<D>(xs[p], soa.data() + j, stride);
      bi[p] = ri[p] = pi[p] = static_cast<int32_t>(j);
      scan_block_portable<D>(xs[p], blk, 0.0f, rd[p], ri[p]);
      // The GEMM form's own argmin (what an unfiltered GEMM scan would answer).
      float xc[D];
      center_point<D>(xs[p], fb.center, xc);
      float best = std::numeric_limits<float>::infinity();
      int32_t gi = -1;
      for (int64_t jj = 0; jj < k; ++jj) {
        const float* gblk = fb.data + jj / 8 * (D + 1) * 8 + jj % 8;
        float acc = gblk[0];
        for (int c = 0; c < D; ++c) acc = std::fma(xc[c], gblk[(c + 1) * 8], acc);
        if (acc < best) {
          best = acc;
          gi = static_cast<int32_t>(jj);
        }
      }
      if (gi != ri[p]) ++differ_from_gemm;
      ++points;
    }
    int64_t rc[kFilterTilePoints] = {}, rc2[kFilterTilePoints] = {};
    bool filtered = false;
    scan_filtered_tile<D>(cpu_has_avx2(), xs, blk, fb, bd, bi, rc, &filtered);
    scan_filtered_tile_portable<D>(xs, blk, fb, pd, pi, rc2);
    for (int p = 0; p < kFilterTilePoints; ++p) {
      INFO("tile " << t << " point " << p);
      REQUIRE(bi[p] == ri[p]);
      REQUIRE(std::memcmp(&bd[p], &rd[p], sizeof(float)) == 0);
      REQUIRE(pi[p] == ri[p]);
      REQUIRE(std::memcmp(&pd[p], &rd[p], sizeof(float)) == 0);
      // Only the site's centroids (and none of the other sites') need a re-check.
      REQUIRE(rc2[p] <= per_site);
    }
  }
  // The case is hard: the GEMM form alone picks a different centroid for many points.
  REQUIRE(differ_from_gemm * 4 > points);
}

namespace {

// The property exactness rests on, pair by pair: an entry whose exact fp32 distance equals the
// best so far must pass the filter (a_j <= tau(f_j)); tau is monotone in f_best, so every entry
// at least as close passes too. Returns the largest observed (a_j - (f_j - X')) / (tau(f_j) -
// (f_j - X')): the share of the threshold's slack that the rounding actually used.
template <int D>
double check_threshold_pairs(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int64_t k = 512, stride = k;
  double worst = 0.0;
  for (int scale = 0; scale < 3; ++scale) {
    std::vector<float> soa(static_cast<size_t>(stride * D));
    std::vector<int32_t> idx(static_cast<size_t>(stride));
    for (int64_t j = 0; j < k; ++j) {
      idx[static_cast<size_t>(j)] = static_cast<int32_t>(j);
      const float s = scale == 0 ? 1.0f : scale == 1 ? 1e3f : std::pow(10.0f, static_cast<float>(rng() % 7) - 3.0f);
      for (int c = 0; c < D; ++c) soa[static_cast<size_t>(c * stride + j)] = s * g(rng);
    }
    const SoaBlock blk{soa.data(), idx.data(), nullptr, stride, stride};
    std::vector<float> fbuf;
    const FilterBlock fb = make_filter_block<D>(blk, fbuf);
    for (int t = 0; t < 200; ++t) {
      float x[D], xc[D];
      const int64_t near = static_cast<int64_t>(rng() % static_cast<uint64_t>(k));
      for (int c = 0; c < D; ++c)
        x[c] = soa[static_cast<size_t>(c * stride + near)] * (1.0f + 1e-3f * g(rng)) + (t % 2 ? 0.0f : g(rng));
      const double xx = center_point<D>(x, fb.center, xc);
      for (int64_t j = 0; j < k; ++j) {
        const float* gb = fb.data + j / 8 * (D + 1) * 8 + j % 8;
        float a = gb[0];
        for (int c = 0; c < D; ++c) a = std::fma(xc[c], gb[(c + 1) * 8], a);
        const float f = squared_distance<D>(x, soa.data() + j, stride);
        const float tau = filter_threshold<D>(f, xx);
        INFO("D " << D << " scale " << scale << " point " << t << " entry " << j << " a " << a << " tau " << tau);
        REQUIRE(a <= tau);
        const double base = static_cast<double>(f) - xx;
        worst = std::max(worst, (static_cast<double>(a) - base) / (static_cast<double>(tau) - base));
      }
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("filter threshold admits every entry as close as the best, pair by pair", "[kmeans][filter]") {
  const double w[] = {check_threshold_pairs<1>(1), check_threshold_pairs<2>(2), check_threshold_pairs<3>(3),
                      check_threshold_pairs<4>(4), check_threshold_pairs<8>(8), check_threshold_pairs<16>(16)};
  // Rounding used at most this share of the slack (d = 1, 2, 3, 4, 8, 16): the worst-case bound
  // is ~4x (d = 1) to ~30x (d = 16) above what random data reaches.
  INFO("slack used: " << w[0] << " " << w[1] << " " << w[2] << " " << w[3] << " " << w[4] << " " << w[5]);
  for (double v : w) REQUIRE(v < 1.0);
}

namespace {

// Which path kmeans() is expected to take for every point (the rules in kmeans.hpp).
enum class Path {
  kLists,      // shared candidate lists, the uncovered points by the filtered brute force
  kFilterAll,  // every point by the filtered brute force
  kBox,        // every point by the box-pruned filtered brute force
  kBoxFirst,   // the first assignment by the box-pruned scan, the later ones as kLists
};

// kmeans() against the exact paths: portable kernels (no filter: lists, tree search and exact
// scans), no pruning, box pruning forced off and on, and across thread counts: codes, centroids
// and objectives bit for bit; the codes also against the tie-aware reference twin.
void check_kmeans_filtered(const std::vector<float>& x, int d, int64_t k, int iters, Path expect) {
  KMeansOptions o;
  o.k = k;
  o.iterations = iters;
  o.seed = 321;
  o.threads = 1;
  o.report_codes = true;
  int64_t differ = 0;
  o.progress = [&](const KMeansProgress& p) {
    differ += check_tie_aware(x, d, p.centroids.data, k, p.codes);
    return true;
  };
  INFO("d = " << d << " K = " << k << " N = " << x.size() / static_cast<size_t>(d));
  const KMeansResult base = kmeans(view(x, d), o);
  differ += check_tie_aware(x, d, base.centroids.data(), k, base.codes.data());
  REQUIRE(differ * 100 <= static_cast<int64_t>(x.size()) / d * (iters + 1));
  auto same = [&](const KMeansResult& r) {
    REQUIRE(r.codes == base.codes);
    REQUIRE(r.centroids == base.centroids);
    REQUIRE(r.objective == base.objective);
    REQUIRE(r.final_objective == base.final_objective);
  };
  const bool fma = cpu_has_avx2() && cpu_has_avx2_fma();
  if (fma) {
    REQUIRE(base.stats.filter_evaluations > 0);
    REQUIRE(base.stats.filter_rechecks > 0);
    REQUIRE(base.stats.filter_rechecks < base.stats.assignments * 8);
    // Box mode: a point whose centroid did not move scans only the moved centroids (unmoved_points).
    if (expect != Path::kLists && expect != Path::kBoxFirst) {
      REQUIRE(base.stats.tree_search_points == 0);
      REQUIRE(base.stats.brute_force_points + base.stats.unmoved_points == base.stats.assignments);
    }
    if (expect == Path::kBox) {
      REQUIRE(base.stats.box_points + base.stats.unmoved_points == base.stats.assignments);
      REQUIRE(base.stats.unmoved_points > 0);
      // The boxes pruned: fewer first-stage pairs than K per point (few, wide boxes at K <= 1100
      // and d >= 5 prune only 15-50% here; the kernel test checks the pruning on its own).
      REQUIRE(base.stats.filter_evaluations < base.stats.assignments * k);
    } else if (expect == Path::kBoxFirst) {
      REQUIRE(base.stats.box_points == static_cast<int64_t>(x.size()) / d);  // the first assignment only
      REQUIRE(base.stats.assignments > base.stats.box_points);
    } else {
      REQUIRE(base.stats.box_points == 0);
    }
    if (expect != Path::kBox) REQUIRE(base.stats.unmoved_points == 0);
  }
  o.progress = nullptr;
  o.report_codes = false;
  for (int threads : {2, 3}) {
    o.threads = threads;
    const KMeansResult r = kmeans(view(x, d), o);
    INFO("threads " << threads);
    same(r);
    REQUIRE(r.stats.filter_evaluations == base.stats.filter_evaluations);
    REQUIRE(r.stats.box_points == base.stats.box_points);
    REQUIRE(r.stats.unmoved_points == base.stats.unmoved_points);
  }
  o.threads = 2;
  {
    // The other side of the box rule: forced off where it is on, forced on where it is off.
    o.box_pruning = expect == Path::kBox ? KMeansBoxPruning::kNever : KMeansBoxPruning::kAlways;
    const KMeansResult r = kmeans(view(x, d), o);
    INFO("box pruning forced " << (expect == Path::kBox ? "off" : "on"));
    same(r);
    // (No boxes at K <= 64, where every point takes the plain brute force.)
    if (fma)
      REQUIRE((r.stats.box_points + r.stats.unmoved_points == r.stats.assignments) == (expect != Path::kBox && k > 64));
    o.box_pruning = KMeansBoxPruning::kAuto;
  }
  o.use_simd = false;  // the exact path of before: portable kernels, no filter
  const KMeansResult portable = kmeans(view(x, d), o);
  REQUIRE(portable.stats.filter_evaluations == 0);
  REQUIRE(portable.stats.box_points == 0);
  same(portable);
  o.use_simd = true;
  o.use_pruning = false;
  const KMeansResult brute = kmeans(view(x, d), o);
  REQUIRE(brute.stats.box_points == 0);
  same(brute);
  // The shared evaluator agrees with the codes.
  const KMeansAssignment as = kmeans_assign(view(x, d), make_matrix_view<const float>(base.centroids.data(), k, d), 2);
  REQUIRE(as.codes == base.codes);
}

}  // namespace

TEST_CASE("kmeans with the filtered brute force is bit-identical to the exact paths (d = 8)", "[kmeans][filter]") {
  SECTION("weight-like, 60 points per cluster") { check_kmeans_filtered(weight_like_points(24000, 8, 51), 8, 400, 5, Path::kBox); }
  SECTION("gaussian blobs") { check_kmeans_filtered(gaussian_points(20000, 8, 30, 52), 8, 250, 5, Path::kBox); }
  SECTION("offset 1e3 (wide bound)") {
    std::vector<float> x = weight_like_points(16000, 8, 53);
    for (auto& v : x) v += 1000.0f;
    check_kmeans_filtered(x, 8, 300, 4, Path::kBox);
  }
  SECTION("bf16 weights with duplicates, K near N/8 (empty-cluster splits)") {
    check_kmeans_filtered(weight_like_points(8 * 1200, 8, 54), 8, 1100, 4, Path::kBox);
  }
  SECTION("one cluster larger than a run of the box path (split into pieces)") {
    std::vector<float> x = weight_like_points(30000, 8, 55);
    for (size_t i = 0; i < 3000; ++i) std::copy(x.begin(), x.begin() + 8, x.begin() + static_cast<std::ptrdiff_t>(8 * (1 + 7 * i)));
    check_kmeans_filtered(x, 8, 300, 4, Path::kBox);
  }
}

TEST_CASE("kmeans with the filtered brute force is bit-identical to the exact paths (other d)", "[kmeans][filter]") {
  SECTION("d = 4, box") { check_kmeans_filtered(weight_like_points(40000, 4, 60), 4, 1000, 4, Path::kBox); }
  SECTION("d = 5") { check_kmeans_filtered(weight_like_points(20000, 5, 61), 5, 300, 4, Path::kBox); }
  // 200 points per cluster at d = 4: lists, but the first assignment takes the boxes.
  SECTION("d = 4, boxes first") { check_kmeans_filtered(weight_like_points(60000, 4, 68), 4, 300, 3, Path::kBoxFirst); }
  SECTION("d = 3, box (few points per cluster)") { check_kmeans_filtered(weight_like_points(12000, 3, 67), 3, 1000, 3, Path::kBox); }
  // d >= 12 below K = 16384: the plain filtered scan for every point.
  SECTION("d = 12") { check_kmeans_filtered(gaussian_points(9000, 12, 20, 62), 12, 150, 4, Path::kFilterAll); }
  SECTION("d = 16") { check_kmeans_filtered(weight_like_points(6000, 16, 63), 16, 100, 3, Path::kFilterAll); }
  // Many points per cluster: shared lists, the uncovered points by the filtered brute force.
  SECTION("d = 8, lists") { check_kmeans_filtered(gaussian_points(60000, 8, 40, 64), 8, 100, 3, Path::kLists); }
  SECTION("d = 4, lists") { check_kmeans_filtered(weight_like_points(60000, 4, 65), 4, 200, 3, Path::kLists); }
  // K <= 64: every point brute force (no boxes), also at d < 5.
  SECTION("d = 3, small K") { check_kmeans_filtered(gaussian_points(20000, 3, 10, 66), 3, 40, 4, Path::kFilterAll); }
}

namespace {
// The split tree of the box k-d order (first labels of the box path) must mirror kd_order: with
// distinct coordinates, every centroid descends to its own leaf and is its own guess. Coordinates
// from a bf16 grid (ties) still give a real centroid index.
template <int D>
void check_box_guess(int64_t k, bool ties, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> st(4.0f);
  std::vector<float> cen(static_cast<size_t>(k * D));
  for (auto& v : cen) v = ties ? std::round(st(rng) * 8.0f) / 8.0f : st(rng);
  BoxFilter bf;
  build_box_filter<D>(cen.data(), k, bf, 2);
  build_box_guess<D>(bf);
  REQUIRE(static_cast<int64_t>(bf.guess.nodes.size()) == 2 * bf.leaves - 1);
  int64_t own = 0;
  for (int64_t j = 0; j < k; ++j) {
    for (bool simd : {false, true}) {
      const int32_t g = box_region_guess<D>(simd && cpu_has_avx2(), bf, &cen[static_cast<size_t>(j * D)]);
      REQUIRE(g >= 0);
      REQUIRE(g < k);
      if (!ties) REQUIRE(g == j);
      if (g == j && simd) ++own;
    }
  }
  INFO("k = " << k << ", own guesses " << own);
  if (ties) CHECK(own > k / 2);  // most grid points are unique enough to find themselves
}
}  // namespace

TEST_CASE("box split tree: each centroid's first guess is itself", "[kmeans][filter][box]") {
  for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{32}, int64_t{33}, int64_t{257}, int64_t{1000}, int64_t{5000}}) {
    check_box_guess<4>(k, false, 71 + static_cast<uint64_t>(k));
    check_box_guess<8>(k, false, 72 + static_cast<uint64_t>(k));
  }
  check_box_guess<4>(3000, true, 73);
  check_box_guess<2>(700, false, 74);
}

namespace {
// Batched first guesses (box_region_guess_many: descents advanced together with branch-free
// selects, AVX2 region scans four points at a time) against a plain twin written here: descend
// the split tree one point at a time, then the lexicographic minimum of (exact distance, index)
// over the aligned region of `leaves` leaves. Grid coordinates make distance ties, so the index
// order of the minimum is checked too; the point counts leave partial batches and partial tiles.
template <int D>
void check_guess_batches(int64_t k, int64_t n, int64_t leaves, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::student_t_distribution<float> st(4.0f);
  std::vector<float> cen(static_cast<size_t>(k * D)), pts(static_cast<size_t>(n * D));
  for (auto& v : cen) v = std::round(st(rng) * 4.0f) / 4.0f;
  for (auto& v : pts) v = std::round(st(rng) * 4.0f) / 4.0f;
  BoxFilter bf;
  build_box_filter<D>(cen.data(), k, bf, 1);
  build_box_guess<D>(bf);
  std::vector<uint32_t> want(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float* x = &pts[static_cast<size_t>(i * D)];
    int32_t node = 0;
    while (bf.guess.nodes[static_cast<size_t>(node)].dim >= 0) {
      const auto& nd = bf.guess.nodes[static_cast<size_t>(node)];
      node = x[nd.dim] < nd.split ? nd.left : nd.right;
    }
    const int64_t first = bf.guess.nodes[static_cast<size_t>(node)].left / leaves * leaves * kBoxLeaf;
    const int64_t last = std::min(first + leaves * kBoxLeaf, bf.blk.stride);
    float bd = std::numeric_limits<float>::infinity();
    int32_t bi = kNoIndex;
    for (int64_t m = first; m < last; ++m) {
      const int32_t id = bf.idx[static_cast<size_t>(m)];
      if (id == kNoIndex) continue;
      float d2 = 0.0f;
      for (int c = 0; c < D; ++c) {
        const float t = x[c] - cen[static_cast<size_t>(id) * D + static_cast<size_t>(c)];
        float q = t * t;
        CLUSCOMP_NO_CONTRACT(q);  // the library's evaluation order: no FMA
        d2 += q;
      }
      if (d2 < bd || (d2 == bd && id < bi)) {
        bd = d2;
        bi = id;
      }
    }
    want[static_cast<size_t>(i)] = static_cast<uint32_t>(bi);
  }
  for (bool simd : {false, true}) {
    std::vector<uint32_t> got(static_cast<size_t>(n), 0xffffffffu);
    box_region_guess_many<D>(simd && cpu_has_avx2(), bf, pts.data(), n, leaves, got.data());
    INFO("k = " << k << ", n = " << n << ", leaves = " << leaves << ", simd = " << simd);
    REQUIRE(got == want);
  }
}
}  // namespace

TEST_CASE("box split tree: batched first guesses equal a one-point twin", "[kmeans][filter][box]") {
  for (int64_t leaves : {int64_t{1}, int64_t{2}, int64_t{8}}) {
    check_guess_batches<4>(1000, 1237, leaves, 81);
    check_guess_batches<8>(333, 1001, leaves, 82);
    check_guess_batches<2>(4096, 2051, leaves, 83);
    check_guess_batches<3>(90, 515, leaves, 84);
  }
  check_guess_batches<4>(5, 13, 2, 85);  // one short leaf
}

}  // namespace test_kmeans_filtered
