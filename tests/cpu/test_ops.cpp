// CPU runtime ops (ops/*.hpp) against their reference twins (reference/ops_ref.hpp: naive, double):
// matmul_nt, rms_norm, apply_rope (none / linear / llama3), softmax, swiglu, causal_attention
// (GQA, sliding window, cached prefix). Plus the properties the model relies on: a batch and
// its rows one at a time give bit-identical results, and thread counts do not change any bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "cluscomp/ops/attention.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/rmsnorm.hpp"
#include "cluscomp/ops/rope.hpp"
#include "cluscomp/ops/softmax.hpp"
#include "cluscomp/ops/swiglu.hpp"
#include "cluscomp/reference/ops_ref.hpp"
#include "support/runtime_tolerances.hpp"

namespace test_ops {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::kAttentionRelTol;
using cluscomp_test::kElementwiseRelTol;
using cluscomp_test::kMatmulRelTol;

namespace {

constexpr uint32_t kSeed = 20240605;

std::vector<float> random_vec(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("matmul_nt matches matmul_nt_ref; rows are batch- and thread-independent", "[ops][matmul]") {
  std::mt19937 rng(kSeed);
  INFO("seed " << kSeed << ", avx2 path " << matmul_uses_avx2());
  ThreadPool pool3(3);
  for (int64_t m : {1, 2, 3, 5, 67})
    for (int64_t n : {1, 4, 50, 101})
      for (int64_t k : {1, 7, 8, 64, 77})
        for (bool with_bias : {false, true}) {
          INFO("m " << m << " n " << n << " k " << k << " bias " << with_bias);
          const int64_t ldx = k + 3, ldw = k + 1, ldy = n + 2;
          auto x = random_vec(rng, static_cast<size_t>(m * ldx));
          auto w = random_vec(rng, static_cast<size_t>(n * ldw));
          auto bias = with_bias ? random_vec(rng, static_cast<size_t>(n)) : std::vector<float>{};
          std::vector<float> y(static_cast<size_t>(m * ldy), -1.0f);
          MatmulArgs a{x.data(), ldx, w.data(), ldw, with_bias ? bias.data() : nullptr, y.data(), ldy, m, n, k};
          REQUIRE(matmul_nt(a).ok());
          // Dense copies for the reference.
          std::vector<double> xd(static_cast<size_t>(m * k)), wd(static_cast<size_t>(n * k));
          for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < k; ++p) xd[static_cast<size_t>(i * k + p)] = x[static_cast<size_t>(i * ldx + p)];
          for (int64_t j = 0; j < n; ++j)
            for (int64_t p = 0; p < k; ++p) wd[static_cast<size_t>(j * k + p)] = w[static_cast<size_t>(j * ldw + p)];
          const auto ref = reference::matmul_nt_ref(xd, wd, to_double(bias), m, n, k);
          std::vector<float> got(static_cast<size_t>(m * n));
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) got[static_cast<size_t>(i * n + j)] = y[static_cast<size_t>(i * ldy + j)];
          CHECK(rel_err(got, ref) < kMatmulRelTol);
          // Padding columns of y untouched.
          for (int64_t i = 0; i < m; ++i) CHECK(y[static_cast<size_t>(i * ldy + n)] == -1.0f);

          // Each row alone, and the whole product on 3 threads: bit-identical.
          std::vector<float> y1(y.size(), -1.0f), y3(y.size(), -1.0f);
          for (int64_t i = 0; i < m; ++i) {
            MatmulArgs r = a;
            r.x = x.data() + i * ldx;
            r.y = y1.data() + i * ldy;
            r.m = 1;
            REQUIRE(matmul_nt(r).ok());
          }
          MatmulArgs t = a;
          t.y = y3.data();
          REQUIRE(matmul_nt(t, &pool3).ok());
          CHECK(same_bits(y, y1));
          CHECK(same_bits(y, y3));
        }
}

TEST_CASE("matmul_nt: a large product split over threads is bit-identical", "[ops][matmul]") {
  std::mt19937 rng(kSeed + 1);
  const int64_t m = 37, n = 300, k = 200;
  auto x = random_vec(rng, static_cast<size_t>(m * k));
  auto w = random_vec(rng, static_cast<size_t>(n * k));
  std::vector<float> y1(static_cast<size_t>(m * n)), y2(y1.size());
  MatmulArgs a{x.data(), k, w.data(), k, nullptr, y1.data(), n, m, n, k};
  REQUIRE(matmul_nt(a).ok());
  ThreadPool pool(2);
  a.y = y2.data();
  REQUIRE(matmul_nt(a, &pool).ok());
  CHECK(same_bits(y1, y2));
}

TEST_CASE("matmul_nt rejects bad arguments", "[ops][matmul][errors]") {
  float buf[16] = {};
  MatmulArgs a{buf, 2, buf, 2, nullptr, buf, 2, 2, 2, 2};
  REQUIRE(matmul_nt(a).ok());
  MatmulArgs neg = a;
  neg.m = -1;
  CHECK(matmul_nt(neg).code() == StatusCode::kInvalidArgument);
  MatmulArgs ld = a;
  ld.ldw = 1;
  CHECK(matmul_nt(ld).code() == StatusCode::kInvalidArgument);
  MatmulArgs null = a;
  null.x = nullptr;
  CHECK(matmul_nt(null).code() == StatusCode::kInvalidArgument);
  MatmulArgs empty = a;
  empty.m = 0;
  empty.x = nullptr;
  CHECK(matmul_nt(empty).ok());
}

TEST_CASE("rms_norm matches rms_norm_ref", "[ops][rmsnorm]") {
  std::mt19937 rng(kSeed + 2);
  for (int64_t dim : {1, 7, 64, 576}) {
    const int64_t rows = 5;
    auto x = random_vec(rng, static_cast<size_t>(rows * dim), 3.0f);
    auto w = random_vec(rng, static_cast<size_t>(dim));
    std::vector<float> y(x.size());
    REQUIRE(rms_norm(x.data(), dim, w.data(), 1e-5f, rows, dim, y.data(), dim).ok());
    CHECK(rel_err(y, reference::rms_norm_ref(to_double(x), to_double(w), 1e-5, rows, dim)) < kElementwiseRelTol);
    // In place and with a pool: same bits.
    ThreadPool pool(2);
    std::vector<float> z = x;
    REQUIRE(rms_norm(z.data(), dim, w.data(), 1e-5f, rows, dim, z.data(), dim, &pool).ok());
    CHECK(same_bits(y, z));
  }
  float v = 1;
  CHECK(rms_norm(&v, 1, &v, 0.0f, 1, 1, &v, 1).code() == StatusCode::kInvalidArgument);
  CHECK(rms_norm(&v, 1, &v, 1e-5f, 1, 2, &v, 2).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("apply_rope matches rope_ref (none, linear, llama3)", "[ops][rope]") {
  std::mt19937 rng(kSeed + 3);
  struct Case {
    RopeScalingType type;
    const char* name;
    int64_t head_dim;
    double theta;
  };
  for (const Case& cs : {Case{RopeScalingType::kNone, "", 64, 1e5}, Case{RopeScalingType::kLinear, "linear", 32, 1e4},
                         Case{RopeScalingType::kLlama3, "llama3", 128, 5e5}}) {
    INFO("scaling '" << cs.name << "'");
    RopeParams p;
    p.head_dim = cs.head_dim;
    p.theta = cs.theta;
    p.scaling = cs.type;
    p.factor = cs.type == RopeScalingType::kLlama3 ? 8.0 : 4.0;
    p.low_freq_factor = 1.0;
    p.high_freq_factor = 4.0;
    p.original_context = 8192;
    const auto inv = rope_inverse_frequencies(p);
    const int64_t heads = 3, n = 6;
    for (int64_t pos0 : {int64_t{0}, int64_t{4093}}) {
      auto x = random_vec(rng, static_cast<size_t>(n * heads * cs.head_dim));
      std::vector<float> y = x;
      const RopeTable t = make_rope_table(inv, pos0, n);
      REQUIRE(apply_rope(y.data(), heads * cs.head_dim, heads, t).ok());
      std::vector<int64_t> pos;
      for (int64_t r = 0; r < n; ++r) pos.push_back(pos0 + r);
      const auto ref = reference::rope_ref(to_double(x), pos, heads, cs.head_dim, cs.theta, cs.name, p.factor,
                                           p.low_freq_factor, p.high_freq_factor, p.original_context);
      CHECK(rel_err(y, ref) < kElementwiseRelTol);
    }
  }
  RopeParams bad;
  bad.head_dim = 7;
  CHECK_THROWS_AS(rope_inverse_frequencies(bad), Error);
  RopeTable t = make_rope_table(std::vector<double>(4, 1.0), 0, 1);
  float v[8] = {};
  CHECK(apply_rope(v, 7, 1, t).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("softmax, log_sum_exp and swiglu match their twins", "[ops][softmax][swiglu]") {
  std::mt19937 rng(kSeed + 4);
  auto x = random_vec(rng, 1000, 10.0f);
  std::vector<float> s = x;
  softmax_inplace(s.data(), static_cast<int64_t>(s.size()));
  CHECK(rel_err(s, reference::softmax_ref(to_double(x))) < kElementwiseRelTol);
  double lse = 0, mx = -1e300;
  for (float v : x) mx = std::max(mx, static_cast<double>(v));
  for (float v : x) lse += std::exp(v - mx);
  CHECK(std::fabs(log_sum_exp(x.data(), 1000) - (mx + std::log(lse))) < 1e-9 * std::fabs(mx + std::log(lse)) + 1e-12);

  auto g = random_vec(rng, 300, 4.0f), u = random_vec(rng, 300);
  std::vector<float> out(300);
  swiglu(g.data(), u.data(), out.data(), 300);
  CHECK(rel_err(out, reference::swiglu_ref(to_double(g), to_double(u))) < kElementwiseRelTol);
}

TEST_CASE("causal_attention matches causal_attention_ref; batch == token by token; threads", "[ops][attention]") {
  std::mt19937 rng(kSeed + 5);
  const int64_t heads = 4, kvh = 2;
  // head_dim 16 / 64 / 100 / 3 exercise every chunk of the vectorised value sum (64, 32, 16, 8
  // lanes and the scalar tail).
  for (int64_t hd : {int64_t{16}, int64_t{64}, int64_t{100}, int64_t{3}})
  for (int64_t window : {int64_t{0}, int64_t{7}})
    for (int64_t pos0 : {int64_t{0}, int64_t{5}}) {
      const int64_t qw = heads * hd, kw = kvh * hd;
      const int64_t n = 37, total = pos0 + n;
      INFO("head_dim " << hd << " window " << window << " pos0 " << pos0);
      auto q = random_vec(rng, static_cast<size_t>(n * qw));
      auto k = random_vec(rng, static_cast<size_t>(total * kw));
      auto v = random_vec(rng, static_cast<size_t>(total * kw));
      std::vector<float> out(static_cast<size_t>(n * qw));
      AttentionArgs a;
      a.q = q.data();
      a.ldq = qw;
      a.k = k.data();
      a.v = v.data();
      a.ldkv = kw;
      a.out = out.data();
      a.ldo = qw;
      a.n = n;
      a.pos0 = pos0;
      a.heads = heads;
      a.kv_heads = kvh;
      a.head_dim = hd;
      a.window = window;
      a.scale = 0.25f;
      REQUIRE(causal_attention(a).ok());
      const auto ref = reference::causal_attention_ref(to_double(q), to_double(k), to_double(v), n, pos0, heads,
                                                       kvh, hd, window, 0.25);
      CHECK(rel_err(out, ref) < kAttentionRelTol);

      // Token by token (decode), and the batch on 3 threads: bit-identical.
      std::vector<float> one(out.size()), threaded(out.size());
      for (int64_t r = 0; r < n; ++r) {
        AttentionArgs s = a;
        s.q = q.data() + r * qw;
        s.out = one.data() + r * qw;
        s.n = 1;
        s.pos0 = pos0 + r;
        REQUIRE(causal_attention(s).ok());
      }
      CHECK(same_bits(out, one));
      ThreadPool pool(3);
      AttentionArgs t = a;
      t.out = threaded.data();
      REQUIRE(causal_attention(t, &pool).ok());
      CHECK(same_bits(out, threaded));
    }
  AttentionArgs bad;
  bad.heads = 3;
  bad.kv_heads = 2;
  bad.head_dim = 4;
  bad.ldq = bad.ldo = 12;
  bad.ldkv = 8;
  CHECK(causal_attention(bad).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("attention value sum: portable and AVX2 paths against a double sum", "[ops][attention]") {
  // Both paths are tested on every machine that has AVX2 (the portable one is otherwise only
  // reached on other CPUs): each within fp32 accumulation error of the double sum in key order.
  std::mt19937 rng(kSeed + 6);
  for (int64_t hd : {int64_t{1}, int64_t{7}, int64_t{64}, int64_t{120}, int64_t{136}})
    for (int64_t len : {int64_t{1}, int64_t{5}, int64_t{300}}) {
      INFO("head_dim " << hd << " keys " << len);
      const int64_t ldv = hd + 3;
      auto p = random_vec(rng, static_cast<size_t>(len));
      auto v = random_vec(rng, static_cast<size_t>(len * ldv));
      std::vector<double> ref(static_cast<size_t>(hd), 0.0);
      for (int64_t j = 0; j < len; ++j)
        for (int64_t d = 0; d < hd; ++d) ref[static_cast<size_t>(d)] += static_cast<double>(p[j]) * v[j * ldv + d];
      for (bool avx2 : {false, true}) {
        if (avx2 && !matmul_uses_avx2()) continue;
        INFO("avx2 " << avx2);
        std::vector<float> o(static_cast<size_t>(hd), -1.0f), o2(o.size());
        ops_detail::attention_value_sum(p.data(), len, v.data(), ldv, hd, o.data(), avx2);
        ops_detail::attention_value_sum(p.data(), len, v.data(), ldv, hd, o2.data(), avx2);
        CHECK(same_bits(o, o2));
        double num = 0, den = 0;
        for (size_t d = 0; d < o.size(); ++d) {
          num += (o[d] - ref[d]) * (o[d] - ref[d]);
          den += ref[d] * ref[d];
        }
        CHECK(std::sqrt(num / den) < 1e-5);
      }
    }
}

TEST_CASE("ThreadPool runs every task once, rethrows, and runs nested regions serially", "[ops][pool]") {
  ThreadPool pool(3);
  CHECK(pool.size() >= 1);
  std::vector<int> hits(1000, 0);
  pool.parallel_for(1000, [&](int64_t i) { hits[static_cast<size_t>(i)] += 1; });
  for (int h : hits) REQUIRE(h == 1);
  CHECK_THROWS_AS(pool.parallel_for(100,
                                    [&](int64_t i) {
                                      if (i == 42) throw std::runtime_error("task 42");
                                    }),
                  std::runtime_error);
  std::vector<int> nested(64, 0);
  pool.parallel_for(8, [&](int64_t i) {
    pool.parallel_for(8, [&](int64_t j) { nested[static_cast<size_t>(i * 8 + j)] += 1; });
  });
  for (int h : nested) REQUIRE(h == 1);
  // Still usable after an exception.
  int count = 0;
  std::mutex m;
  pool.parallel_for(10, [&](int64_t) {
    std::lock_guard<std::mutex> lock(m);
    ++count;
  });
  CHECK(count == 10);
}

}  // namespace test_ops
