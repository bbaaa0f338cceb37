// The backend seam and the shared core/ math, on the CPU: Device parsing; a cuda request answered
// by a Status that names the missing piece (never a silent CPU run), with the caller's outputs
// untouched; the extracted k-means rules (segment means, the empty-cluster split) against plain
// rewrites; the lookup GEMM's per-row step against a decode; the exact distance against step-by-
// step fp32 arithmetic.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/host/kmeans_split.hpp"
#include "cluscomp/core/centroid_update.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/core/lookup_row.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/ops/lookup_gemm.hpp"

namespace test_backend_seam {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

TEST_CASE("Device: names and parsing", "[core][device]") {
  Device d = Device::kCuda;
  REQUIRE(parse_device("cpu", &d));
  REQUIRE(d == Device::kCpu);
  REQUIRE(parse_device("cuda", &d));
  REQUIRE(d == Device::kCuda);
  d = Device::kCpu;
  REQUIRE_FALSE(parse_device("gpu", &d));
  REQUIRE_FALSE(parse_device("CUDA", &d));
  REQUIRE_FALSE(parse_device("", &d));
  REQUIRE_FALSE(parse_device(nullptr, &d));
  REQUIRE(d == Device::kCpu);  // untouched on failure
  REQUIRE(std::string(device_name(Device::kCpu)) == "cpu");
  REQUIRE(std::string(device_name(Device::kCuda)) == "cuda");
}

TEST_CASE("device_status: cpu is always there; cuda says why it is not", "[core][device]") {
  REQUIRE(device_status(Device::kCpu).ok());
  REQUIRE(backend_status(Device::kCpu, "anything").ok());
  const Status s = device_status(Device::kCuda);
#if !(defined(CLUSCOMP_HAVE_CUDA) && CLUSCOMP_HAVE_CUDA)
  // This test is built without cluscomp::cuda: the build has no CUDA backend, and says so.
  REQUIRE(s.code() == StatusCode::kUnsupported);
  REQUIRE(s.message().find("no CUDA backend") != std::string::npos);
#endif
  // No CUDA operation exists yet behind the seam: whatever the machine, cuda is not ok, and the
  // message names the device.
  const Status b = backend_status(Device::kCuda, "kmeans");
  REQUIRE_FALSE(b.ok());
  REQUIRE(b.message().find("cuda") != std::string::npos);
}

TEST_CASE("kmeans, kmeans_assign and lookup_gemm refuse cuda with a Status and touch nothing", "[device]") {
  std::vector<float> pts(64 * 2);
  for (size_t i = 0; i < pts.size(); ++i) pts[i] = static_cast<float>(i % 17);
  KMeansOptions o;
  o.k = 4;
  o.iterations = 2;
  o.threads = 1;
  o.device = Device::kCuda;
  KMeansResult r;
  r.k = -7;  // sentinel: must stay
  const Status s = kmeans(make_matrix_view<const float>(pts.data(), 64, 2), o, &r);
  REQUIRE_FALSE(s.ok());
  REQUIRE(s.message().find("cuda") != std::string::npos);
  REQUIRE(r.k == -7);
  REQUIRE(r.codes.empty());
  o.device = Device::kCpu;  // the same call on the CPU works
  REQUIRE(kmeans(make_matrix_view<const float>(pts.data(), 64, 2), o, &r).ok());
  REQUIRE(r.k == 4);

  const std::vector<float> cen(r.centroids);
  REQUIRE_THROWS_AS(kmeans_assign(make_matrix_view<const float>(pts.data(), 64, 2),
                                  make_matrix_view<const float>(cen.data(), 4, 2), 1, nullptr, Device::kCuda),
                    Error);

  // lookup_gemm: a 4 x 8 matrix, d = 2, K = 2; y keeps its sentinel under cuda.
  const std::vector<float> cb = {1, 2, 3, 4};
  std::vector<uint32_t> words(1, 0);
  AnyCodebookView w;
  w.centroids = cb.data();
  w.centroid_dtype = DType::kF32;
  w.codes = words.data();
  w.out = 4;
  w.in = 8;
  w.out_pad = 4;
  w.k = 2;
  w.d = 2;
  w.code_bits = 1;
  std::vector<float> x(8, 1.0f), y(4, -5.0f);
  LookupGemmArgs a;
  a.w = w;
  a.x = x.data();
  a.ldx = 8;
  a.y = y.data();
  a.ldy = 4;
  a.m = 1;
  LookupGemmOptions opt;
  opt.device = Device::kCuda;
  REQUIRE_FALSE(lookup_gemm(a, nullptr, opt).ok());
  REQUIRE(y == std::vector<float>(4, -5.0f));
  opt.device = Device::kCpu;
  REQUIRE(lookup_gemm(a, nullptr, opt).ok());
  // every code is 0: W[o, i] = centroid 0 component (o % 2) = 1 or 2, summed over 8 inputs
  REQUIRE(y == std::vector<float>({8, 16, 8, 16}));
}

TEST_CASE("squared_distance is the step-by-step fp32 sum of fp32 squares, whatever the flags", "[core]") {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (int rep = 0; rep < 2000; ++rep) {
    float x[7], c[7];
    for (int e = 0; e < 7; ++e) {
      x[e] = g(rng);
      c[e] = g(rng);
    }
    // Each step through a volatile, so no compiler can fuse a product into the sum.
    volatile float s = (x[0] - c[0]) * (x[0] - c[0]);
    for (int e = 1; e < 7; ++e) {
      volatile float t = x[e] - c[e];
      volatile float q = t * t;
      s = s + q;
    }
    const float got = squared_distance<7>(x, c);
    REQUIRE(std::memcmp(&got, const_cast<const float*>(&s), sizeof got) == 0);
  }
  REQUIRE(precedes(1.0f, 3, 2.0f, 0));
  REQUIRE(precedes(1.0f, 2, 1.0f, 3));       // equal distance: the lower index precedes
  REQUIRE_FALSE(precedes(1.0f, 3, 1.0f, 2));
  REQUIRE_FALSE(precedes(std::nanf(""), 0, 5.0f, 9));  // NaN never precedes
}

TEST_CASE("segment_mean and segment_weighted_mean: double sums in order, one rounding", "[core][kmeans]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> g(0.0f, 3.0f);
  constexpr int D = 3;
  const int64_t n = 101;
  std::vector<float> p(static_cast<size_t>(n * D)), w(static_cast<size_t>(n));
  for (float& v : p) v = g(rng);
  for (float& v : w) v = std::fabs(g(rng));
  float got[D], want[D];
  segment_mean<D>(p.data(), 10, 90, got);
  for (int c = 0; c < D; ++c) {
    double s = 0;
    for (int64_t i = 10; i < 90; ++i) s += static_cast<double>(p[static_cast<size_t>(i * D + c)]);
    want[c] = static_cast<float>(s / 80.0);
  }
  REQUIRE(std::memcmp(got, want, sizeof got) == 0);
  REQUIRE(segment_weighted_mean<D>(p.data(), w.data(), 10, 90, got));
  for (int c = 0; c < D; ++c) {
    double s = 0, sw = 0;
    for (int64_t i = 10; i < 90; ++i) {
      sw += static_cast<double>(w[static_cast<size_t>(i)]);
      s += static_cast<double>(w[static_cast<size_t>(i)]) * static_cast<double>(p[static_cast<size_t>(i * D + c)]);
    }
    want[c] = static_cast<float>(s / sw);
  }
  REQUIRE(std::memcmp(got, want, sizeof got) == 0);
  // Zero total weight: false, output untouched (the caller takes the plain mean).
  std::vector<float> zero(static_cast<size_t>(n), 0.0f);
  float keep[D] = {-1, -2, -3};
  REQUIRE_FALSE(segment_weighted_mean<D>(p.data(), zero.data(), 0, 5, keep));
  REQUIRE(keep[0] == -1.0f);
  REQUIRE(keep[2] == -3.0f);
}

TEST_CASE("split_empty_clusters: faiss's rule on a hand-checked case", "[kmeans]") {
  // K = 3, N = 6: cluster 1 is empty; cluster 0 holds 5 points, so its probability
  // (5 - 1) / (N - K) = 4/3 exceeds 1 and it is the donor at the first try.
  const int64_t counts[3] = {5, 0, 1};
  std::vector<float> c = {1.5f, -2.0f, 9.0f, 9.0f, 0.25f, 4.0f};  // (3, 2)
  std::vector<std::pair<int64_t, int64_t>> pairs;
  const int64_t splits = cluster_detail::split_empty_clusters(counts, 3, 6, 2, 42, c.data(), &pairs);
  REQUIRE(splits == 1);
  REQUIRE(pairs == std::vector<std::pair<int64_t, int64_t>>{{1, 0}});
  const double up = 1.0 + 1.0 / 1024.0, down = 1.0 - 1.0 / 1024.0;
  // ci (1) takes the donor's values scaled up on even and down on odd coordinates; the donor the opposite.
  REQUIRE(c[2] == static_cast<float>(1.5 * up));
  REQUIRE(c[3] == static_cast<float>(-2.0 * down));
  REQUIRE(c[0] == static_cast<float>(1.5 * down));
  REQUIRE(c[1] == static_cast<float>(-2.0 * up));
  REQUIRE(c[4] == 0.25f);  // untouched
  REQUIRE(c[5] == 4.0f);
  // Nothing empty: nothing changes.
  const int64_t full[3] = {2, 2, 2};
  const std::vector<float> before = c;
  REQUIRE(cluster_detail::split_empty_clusters(full, 3, 6, 2, 42, c.data(), nullptr) == 0);
  REQUIRE(c == before);
}

TEST_CASE("lookup_row_step accumulates x[i] * Wt[i, :] with one fma per element, rows ascending", "[core][lookup]") {
  // S = 3 codebooks over 11 input rows, d = 4, out = 10 (padded to 12): small integers, so every
  // fma is exact and the result must equal sum_i x[i] * W[o, i] from CodebookView::weight.
  const int64_t in = 11, out = 10, out_pad = 12, k = 5;
  const int d = 4, s = 3;
  std::vector<float> cb(static_cast<size_t>(s * k * d));
  for (size_t e = 0; e < cb.size(); ++e) cb[e] = static_cast<float>(static_cast<int>(e * 7 % 13) - 6);
  const int64_t nv = out_pad / d;
  std::vector<uint32_t> codes(static_cast<size_t>(in * nv));
  for (size_t e = 0; e < codes.size(); ++e) codes[e] = static_cast<uint32_t>(e * 3 % k);
  std::vector<uint32_t> packed(static_cast<size_t>(packed_words(in * nv, 16)), 0u);
  pack_codes(codes.data(), in * nv, 16, packed.data());
  CodebookView<float> w{cb.data(), packed.data(), out, in, out_pad, k, d, s, 16};
  std::vector<float> x(static_cast<size_t>(in));
  for (int64_t i = 0; i < in; ++i) x[static_cast<size_t>(i)] = static_cast<float>(i % 5 - 2);
  std::vector<float> acc(static_cast<size_t>(out_pad), 0.0f);
  for (int64_t i = 0; i < in; ++i)
    lookup_row_step(w, i, &codes[static_cast<size_t>(i * nv)], nv, x[static_cast<size_t>(i)], acc.data());
  for (int64_t o = 0; o < out; ++o) {
    double want = 0;
    for (int64_t i = 0; i < in; ++i) want += static_cast<double>(x[static_cast<size_t>(i)]) * w.weight(o, i);
    INFO("o = " << o);
    REQUIRE(acc[static_cast<size_t>(o)] == static_cast<float>(want));
  }
  // codebook_for_row is the table centroid_for_row indexes.
  for (int64_t i = 0; i < in; ++i) REQUIRE(w.codebook_for_row(i) == w.centroid_for_row(i, 0));
}

}  // namespace test_backend_seam
