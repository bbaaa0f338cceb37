// Autograd ops (include/cluscomp/autograd/ops.hpp, losses.hpp, adamw.hpp): every backward against
// central finite differences in double on small random inputs (fixed seeds); the float forwards
// (runtime kernels) and backwards against the double ones; thread-count independence; AdamW against
// a hand-computed two-step trajectory; bad input gives an Error naming the problem.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/autograd/adamw.hpp"
#include "cluscomp/autograd/losses.hpp"
#include "cluscomp/autograd/ops.hpp"

namespace test_autograd_ops {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using namespace cluscomp::autograd;

namespace {

// ---- Tolerances (why) --------------------------------------------------------------------------
// Central differences in double with step kFdStep: truncation error ~ h^2 |f'''| / 6 ~ 1e-11 and
// cancellation ~ 1e-16 |L| / h ~ 1e-11 relative for these O(1) smooth losses. Budget on
// max|analytic - fd| / max|fd| over a whole gradient: 1e-7, four orders above both, while a wrong
// index, sign or factor gives an error of order 1. Measured values are printed (INFO) on failure
// and listed in docs/architecture.md.
constexpr double kFdStep = 1e-5;
constexpr double kFdRelTol = 1e-7;
// Float ops (runtime kernels, fp32 sums over <= ~40 terms) against the double ops, relative
// 2-norm error: fp32 rounding is ~6e-8 per op; 1e-5 leaves a wide margin.
constexpr double kFloatVsDoubleRelTol = 1e-5;
// AdamW in fp32 against the double evaluation of the same two steps: a few fp32 ulps.
constexpr double kAdamWRelTol = 1e-6;

constexpr uint32_t kSeed = 20250713;

std::vector<double> randn(size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

double dot(const std::vector<double>& a, const double* b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// max|analytic - numeric| / max|numeric| over every element of `param`, with the numeric
// gradient of loss() by central differences (param is perturbed in place and restored).
double fd_rel_error(std::vector<double>& param, const std::vector<double>& analytic, const std::function<double()>& loss) {
  REQUIRE(param.size() == analytic.size());
  double max_err = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < param.size(); ++i) {
    const double keep = param[i];
    param[i] = keep + kFdStep;
    const double lp = loss();
    param[i] = keep - kFdStep;
    const double lm = loss();
    param[i] = keep;
    const double num = (lp - lm) / (2 * kFdStep);
    max_err = std::max(max_err, std::abs(num - analytic[i]));
    max_ref = std::max(max_ref, std::abs(num));
  }
  REQUIRE(max_ref > 0.0);
  return max_err / max_ref;
}

double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double e = 0.0, r = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    e += (got[i] - ref[i]) * (got[i] - ref[i]);
    r += ref[i] * ref[i];
  }
  return std::sqrt(e / std::max(r, 1e-300));
}

template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A clustered matrix with random codes (< K), fp32 storage (the centroid values live in the
// caller's master buffer).
CodebookTensor random_codes(int64_t out, int64_t in, int d, int64_t k, int s, std::mt19937& rng) {
  CodebookShape sh;
  sh.out = out;
  sh.in = in;
  sh.d = d;
  sh.k = k;
  sh.num_codebooks = s;
  CodebookTensor t(sh);
  std::uniform_int_distribution<int64_t> pick(0, k - 1);
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  for (auto& c : codes) c = static_cast<uint32_t>(pick(rng));
  throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

}  // namespace

TEST_CASE("dense linear backward matches finite differences", "[autograd][fd]") {
  std::mt19937 rng(kSeed);
  const int64_t n = 5, in = 7, out = 6;
  auto x = randn(n * in, rng), w = randn(out * in, rng, 0.5), b = randn(out, rng), G = randn(n * out, rng);
  auto loss = [&] {
    std::vector<double> y(n * out);
    dense_linear_forward(DenseLinearWeight<double>{w.data(), nullptr, b.data(), out, in}, x.data(), n, y.data());
    return dot(G, y.data());
  };
  std::vector<double> y(n * out), dx(n * in), dw(out * in, 0.0), db(out, 0.0);
  const auto ctx =
      dense_linear_forward(DenseLinearWeight<double>{w.data(), nullptr, b.data(), out, in}, x.data(), n, y.data());
  DenseLinearGrads<double> g;
  g.dx = dx.data();
  g.dw = dw.data();
  g.db = db.data();
  dense_linear_backward(ctx, G.data(), g);
  const double ex = fd_rel_error(x, dx, loss), ew = fd_rel_error(w, dw, loss), eb = fd_rel_error(b, db, loss);
  INFO("dx " << ex << " dW " << ew << " db " << eb);
  CHECK(ex < kFdRelTol);
  CHECK(ew < kFdRelTol);
  CHECK(eb < kFdRelTol);
}

TEST_CASE("lookup linear backward matches finite differences (S > 1, padded out)", "[autograd][fd]") {
  std::mt19937 rng(kSeed + 1);
  struct Case {
    int64_t out, in;
    int d;
    int64_t k;
    int s;
  };
  // out 10 with d = 4 pads to 12; out 8 with d = 3 pads to 9; 3 and 2 codebooks split the rows.
  for (const Case cs : {Case{10, 9, 4, 5, 3}, Case{8, 7, 3, 4, 2}, Case{6, 5, 2, 3, 1}}) {
    const int64_t n = 4;
    CodebookTensor t = random_codes(cs.out, cs.in, cs.d, cs.k, cs.s, rng);
    auto cent = randn(static_cast<size_t>(t.shape().num_centroid_values()), rng, 0.5);
    auto x = randn(n * cs.in, rng), b = randn(cs.out, rng), G = randn(n * cs.out, rng);
    auto loss = [&] {
      std::vector<double> y(n * cs.out);
      lookup_linear_forward(lookup_linear_weight(t, cent.data(), b.data()), x.data(), n, y.data());
      return dot(G, y.data());
    };
    std::vector<double> y(n * cs.out), dx(n * cs.in), dc(cent.size(), 0.0), db(cs.out, 0.0);
    const auto ctx = lookup_linear_forward(lookup_linear_weight(t, cent.data(), b.data()), x.data(), n, y.data());
    LookupLinearGrads<double> g;
    g.dx = dx.data();
    g.dcentroids = dc.data();
    g.db = db.data();
    lookup_linear_backward(ctx, G.data(), g);
    const double ex = fd_rel_error(x, dx, loss), ec = fd_rel_error(cent, dc, loss), eb = fd_rel_error(b, db, loss);
    INFO("out " << cs.out << " in " << cs.in << " d " << cs.d << " S " << cs.s << ": dx " << ex << " dC " << ec
                << " db " << eb);
    CHECK(ex < kFdRelTol);
    CHECK(ec < kFdRelTol);
    CHECK(eb < kFdRelTol);
  }
}

TEST_CASE("lookup linear: float (lookup_gemm) forward and backward agree with double", "[autograd]") {
  std::mt19937 rng(kSeed + 2);
  const int64_t n = 21, out = 30, in = 17, k = 7;
  const int d = 4, s = 2;
  CodebookTensor t = random_codes(out, in, d, k, s, rng);
  auto cent = randn(static_cast<size_t>(t.shape().num_centroid_values()), rng, 0.5);
  auto x = randn(n * in, rng), G = randn(n * out, rng), b = randn(out, rng);
  const auto centf = to_float(cent), xf = to_float(x), Gf = to_float(G), bf = to_float(b);
  std::vector<double> y(n * out), dx(n * in), dc(cent.size(), 0.0);
  std::vector<float> yf(n * out), dxf(n * in), dcf(cent.size(), 0.0f);
  const auto c64 = lookup_linear_forward(lookup_linear_weight(t, cent.data(), b.data()), x.data(), n, y.data());
  ThreadPool pool(3);
  const auto c32 = lookup_linear_forward(lookup_linear_weight(t, centf.data(), bf.data()), xf.data(), n, yf.data(), &pool);
  CHECK(rel_l2(yf, y) < kFloatVsDoubleRelTol);
  lookup_linear_backward(c64, G.data(), LookupLinearGrads<double>{dx.data(), false, dc.data(), nullptr, nullptr});
  lookup_linear_backward(c32, Gf.data(), LookupLinearGrads<float>{dxf.data(), false, dcf.data(), nullptr, nullptr}, &pool);
  CHECK(rel_l2(dxf, dx) < kFloatVsDoubleRelTol);
  CHECK(rel_l2(dcf, dc) < kFloatVsDoubleRelTol);
  // Thread count changes no bit.
  std::vector<float> dxf1(n * in), dcf1(cent.size(), 0.0f);
  lookup_linear_backward(c32, Gf.data(), LookupLinearGrads<float>{dxf1.data(), false, dcf1.data(), nullptr, nullptr});
  CHECK(dxf1 == dxf);
  CHECK(dcf1 == dcf);
}

TEST_CASE("codebook gradient is the scatter-add of dWt over the codes", "[autograd]") {
  // Hand-checkable: out 3, in 2, d 2 (pads to 4), K 2, S 1. Wt rows [c(0,0) c(0,1)], [c(1,0) c(1,1)].
  CodebookShape sh;
  sh.out = 3;
  sh.in = 2;
  sh.d = 2;
  sh.k = 2;
  CodebookTensor t(sh);
  const uint32_t codes[4] = {1, 0, 1, 1};
  throw_if_error(t.set_codes(codes, 4));
  std::vector<double> cent(4, 0.0);
  const std::vector<double> dwt = {1, 2, 3, 4, 5, 6};  // (in 2, out 3)
  std::vector<double> dc(4, 0.0);
  codebook_scatter_add(lookup_linear_weight(t, cent.data()), dwt.data(), dc.data());
  // Centroid 1 takes row 0 components (1, 2), row 1 vector 0 (4, 5) and row 1 vector 1's live
  // component 6 (its second component is padding: no gradient). Centroid 0 takes row 0 vector 1: (3).
  CHECK(dc == std::vector<double>{3, 0, 1 + 4 + 6, 2 + 5});
}

TEST_CASE("RMSNorm backward matches finite differences; float forward equals the runtime", "[autograd][fd]") {
  std::mt19937 rng(kSeed + 3);
  const int64_t rows = 4, dim = 8;
  const float eps = 1e-5f;
  auto x = randn(rows * dim, rng), w = randn(dim, rng, 0.3), G = randn(rows * dim, rng);
  for (auto& v : w) v += 1.0;
  auto loss = [&] {
    std::vector<double> y(rows * dim);
    rms_norm_forward(x.data(), w.data(), eps, rows, dim, y.data());
    return dot(G, y.data());
  };
  std::vector<double> y(rows * dim), dx(rows * dim), dw(dim, 0.0);
  const auto c = rms_norm_forward(x.data(), w.data(), eps, rows, dim, y.data());
  rms_norm_backward(c, G.data(), dx.data(), false, dw.data());
  const double ex = fd_rel_error(x, dx, loss), ew = fd_rel_error(w, dw, loss);
  INFO("dx " << ex << " dweight " << ew);
  CHECK(ex < kFdRelTol);
  CHECK(ew < kFdRelTol);

  const auto xf = to_float(x), wf = to_float(w), Gf = to_float(G);
  std::vector<float> yf(rows * dim), yr(rows * dim), dxf(rows * dim), dwf(dim, 0.0f);
  const auto cf = rms_norm_forward(xf.data(), wf.data(), eps, rows, dim, yf.data());
  throw_if_error(rms_norm(xf.data(), dim, wf.data(), eps, rows, dim, yr.data(), dim));
  CHECK(yf == yr);
  CHECK(rel_l2(yf, y) < kFloatVsDoubleRelTol);
  rms_norm_backward(cf, Gf.data(), dxf.data(), false, dwf.data());
  CHECK(rel_l2(dxf, dx) < kFloatVsDoubleRelTol);
  CHECK(rel_l2(dwf, dw) < kFloatVsDoubleRelTol);
}

TEST_CASE("RoPE backward matches finite differences", "[autograd][fd]") {
  std::mt19937 rng(kSeed + 4);
  const int64_t n = 5, heads = 3, hd = 6;
  RopeParams p;
  p.head_dim = hd;
  const RopeTable tab = make_rope_table(rope_inverse_frequencies(p), 0, n);
  auto x = randn(n * heads * hd, rng), G = randn(n * heads * hd, rng);
  auto loss = [&] {
    std::vector<double> y = x;
    rope_forward(y.data(), heads * hd, heads, tab);
    return dot(G, y.data());
  };
  std::vector<double> dx = G;
  rope_backward(dx.data(), heads * hd, heads, tab);
  const double e = fd_rel_error(x, dx, loss);
  INFO("dx " << e);
  CHECK(e < kFdRelTol);
}

TEST_CASE("attention backward matches finite differences (GQA, several blocks, window)", "[autograd][fd]") {
  std::mt19937 rng(kSeed + 5);
  for (const int64_t window : {int64_t{0}, int64_t{5}}) {
    AttentionShape s;
    s.n = 37;  // three query/key blocks of 16
    s.heads = 4;
    s.kv_heads = 2;
    s.head_dim = 4;
    s.window = window;
    const int64_t Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim;
    auto q = randn(s.n * Q, rng), k = randn(s.n * KV, rng), v = randn(s.n * KV, rng), G = randn(s.n * Q, rng);
    auto loss = [&] {
      std::vector<double> o(s.n * Q);
      attention_forward(s, q.data(), k.data(), v.data(), o.data());
      return dot(G, o.data());
    };
    std::vector<double> o(s.n * Q), dq(s.n * Q), dk(s.n * KV), dv(s.n * KV);
    const auto c = attention_forward(s, q.data(), k.data(), v.data(), o.data());
    attention_backward(c, G.data(), dq.data(), dk.data(), dv.data());
    const double eq = fd_rel_error(q, dq, loss), ek = fd_rel_error(k, dk, loss), ev = fd_rel_error(v, dv, loss);
    INFO("window " << window << ": dq " << eq << " dk " << ek << " dv " << ev);
    CHECK(eq < kFdRelTol);
    CHECK(ek < kFdRelTol);
    CHECK(ev < kFdRelTol);

    // Float: forward is the runtime's causal_attention, backward agrees with double and is
    // independent of the thread count.
    const auto qf = to_float(q), kf = to_float(k), vf = to_float(v), Gf = to_float(G);
    std::vector<float> of(s.n * Q), dqf(s.n * Q), dkf(s.n * KV), dvf(s.n * KV);
    ThreadPool pool(3);
    const auto cf = attention_forward(s, qf.data(), kf.data(), vf.data(), of.data(), &pool);
    CHECK(rel_l2(of, o) < kFloatVsDoubleRelTol);
    attention_backward(cf, Gf.data(), dqf.data(), dkf.data(), dvf.data(), &pool);
    CHECK(rel_l2(dqf, dq) < kFloatVsDoubleRelTol);
    CHECK(rel_l2(dkf, dk) < kFloatVsDoubleRelTol);
    CHECK(rel_l2(dvf, dv) < kFloatVsDoubleRelTol);
    std::vector<float> dq1(s.n * Q), dk1(s.n * KV), dv1(s.n * KV);
    attention_backward(cf, Gf.data(), dq1.data(), dk1.data(), dv1.data());
    CHECK(dq1 == dqf);
    CHECK(dk1 == dkf);
    CHECK(dv1 == dvf);
  }
}

TEST_CASE("SwiGLU, residual add and embedding backwards match finite differences", "[autograd][fd]") {
  std::mt19937 rng(kSeed + 6);
  {
    const int64_t count = 24;
    auto g = randn(count, rng, 3.0), u = randn(count, rng), G = randn(count, rng);
    g[0] = 30.0;  // saturated sigmoid on both sides
    g[1] = -30.0;
    auto loss = [&] {
      std::vector<double> o(count);
      swiglu_forward(g.data(), u.data(), o.data(), count);
      return dot(G, o.data());
    };
    std::vector<double> dg(count), du(count);
    swiglu_backward(g.data(), u.data(), G.data(), dg.data(), du.data(), count);
    const double eg = fd_rel_error(g, dg, loss), eu = fd_rel_error(u, du, loss);
    INFO("dgate " << eg << " dup " << eu);
    CHECK(eg < kFdRelTol);
    CHECK(eu < kFdRelTol);
    const auto gf = to_float(g), uf = to_float(u);
    std::vector<float> of(count), orr(count);
    swiglu_forward(gf.data(), uf.data(), of.data(), count);
    swiglu(gf.data(), uf.data(), orr.data(), count);
    CHECK(of == orr);
  }
  {
    const int64_t count = 6;
    auto a = randn(count, rng), b = randn(count, rng), G = randn(count, rng);
    auto loss = [&] {
      std::vector<double> y(count);
      residual_add_forward(a.data(), b.data(), y.data(), count);
      return dot(G, y.data()) + 0.5 * dot(a, a.data());  // a also feeds a second branch
    };
    std::vector<double> da = a, db(count);  // da already holds the second branch's gradient
    residual_add_backward(G.data(), da.data(), static_cast<double*>(nullptr), count, true);
    residual_add_backward(G.data(), static_cast<double*>(nullptr), db.data(), count, false);
    CHECK(fd_rel_error(a, da, loss) < kFdRelTol);
    CHECK(fd_rel_error(b, db, loss) < kFdRelTol);
  }
  {
    const int64_t vocab = 6, dim = 5, n = 7;
    const std::vector<int32_t> ids = {3, 0, 3, 5, 1, 3, 0};  // repeats sum
    auto table = randn(vocab * dim, rng), G = randn(n * dim, rng);
    auto loss = [&] {
      std::vector<double> y(n * dim);
      embedding_forward(table.data(), vocab, dim, ids.data(), n, y.data());
      return dot(G, y.data());
    };
    std::vector<double> y(n * dim), dt(vocab * dim, 0.0);
    const EmbeddingCtx c = embedding_forward(table.data(), vocab, dim, ids.data(), n, y.data());
    embedding_backward(c, G.data(), dt.data());
    const double e = fd_rel_error(table, dt, loss);
    INFO("dtable " << e);
    CHECK(e < kFdRelTol);
    CHECK(dt[2 * dim] == 0.0);  // id 2 never appears
  }
}

TEST_CASE("losses: values and gradients (MSE, cross-entropy, KL)", "[autograd][fd]") {
  std::mt19937 rng(kSeed + 7);
  const int64_t rows = 4, vocab = 7;
  {
    auto p = randn(rows * vocab, rng), t = randn(rows * vocab, rng);
    std::vector<double> dp(p.size());
    const double l = mse_loss(p.data(), t.data(), rows * vocab, dp.data());
    double ref = 0.0;
    for (size_t i = 0; i < p.size(); ++i) ref += (p[i] - t[i]) * (p[i] - t[i]);
    CHECK(l == Approx(ref / static_cast<double>(p.size())).epsilon(1e-14));
    CHECK(fd_rel_error(p, dp, [&] { return mse_loss(p.data(), t.data(), rows * vocab); }) < kFdRelTol);
  }
  {
    auto z = randn(rows * vocab, rng, 2.0);
    const std::vector<int32_t> tg = {3, -1, 0, 6};  // row 1 ignored
    std::vector<double> dz(z.size());
    const double l = cross_entropy_loss(z.data(), rows, vocab, tg.data(), dz.data());
    double ref = 0.0;
    for (int64_t r : {0, 2, 3}) {
      double se = 0.0;
      for (int64_t i = 0; i < vocab; ++i) se += std::exp(z[r * vocab + i]);
      ref += std::log(se) - z[r * vocab + tg[r]];
    }
    CHECK(l == Approx(ref / 3.0).epsilon(1e-12));
    const double e = fd_rel_error(z, dz, [&] { return cross_entropy_loss(z.data(), rows, vocab, tg.data()); });
    INFO("dlogits " << e);
    CHECK(e < kFdRelTol);
    for (int64_t i = 0; i < vocab; ++i) CHECK(dz[vocab + i] == 0.0);
  }
  {
    auto zt = randn(rows * vocab, rng, 2.0), zs = randn(rows * vocab, rng, 2.0);
    std::vector<double> dz(zs.size());
    const double l = kl_div_loss(zt.data(), zs.data(), rows, vocab, dz.data());
    CHECK(l > 0.0);
    CHECK(kl_div_loss(zt.data(), zt.data(), rows, vocab) == Approx(0.0).margin(1e-12));
    // A broken teacher (a NaN logit) gives a NaN loss, not a silent finite one.
    {
      auto bad = zt;
      bad[3] = std::numeric_limits<double>::quiet_NaN();
      CHECK(std::isnan(kl_div_loss(bad.data(), zs.data(), rows, vocab)));
    }
    const double e = fd_rel_error(zs, dz, [&] { return kl_div_loss(zt.data(), zs.data(), rows, vocab); });
    INFO("dstudent " << e);
    CHECK(e < kFdRelTol);
    // Gradient rows sum to zero (softmax invariance to a constant shift).
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t i = 0; i < vocab; ++i) s += dz[r * vocab + i];
      CHECK(std::abs(s) < 1e-15);
    }
  }
}

TEST_CASE("AdamW follows PyTorch's update over two hand-computed steps", "[autograd][adamw]") {
  std::vector<float> a = {0.5f, -1.25f, 2.0f}, ga(3), b = {0.0f, 3.0f}, gb(2);
  AdamWOptions opt;  // reference defaults: lr 5e-3, wd 0.1, betas 0.9/0.999, eps 1e-8
  AdamW adam({Parameter{"a", a.data(), ga.data(), 3}, Parameter{"b", b.data(), gb.data(), 2}}, opt);
  CHECK(opt.lr == 5e-3);
  CHECK(opt.weight_decay == 0.1);
  const std::vector<std::vector<double>> grads1 = {{0.1, -0.2, 0.0}, {1e-3, -4.0}};
  const std::vector<std::vector<double>> grads2 = {{-0.3, 0.05, 2.0}, {0.5, 0.25}};
  // Hand evaluation in double of torch.optim.AdamW's step (decoupled decay first).
  std::vector<std::vector<double>> p = {{0.5, -1.25, 2.0}, {0.0, 3.0}}, m = {{0, 0, 0}, {0, 0}}, v = m;
  auto ref_step = [&](const std::vector<std::vector<double>>& g, int t) {
    for (size_t i = 0; i < p.size(); ++i)
      for (size_t e = 0; e < p[i].size(); ++e) {
        p[i][e] *= 1.0 - 5e-3 * 0.1;
        m[i][e] = 0.9 * m[i][e] + 0.1 * g[i][e];
        v[i][e] = 0.999 * v[i][e] + 0.001 * g[i][e] * g[i][e];
        const double mhat = m[i][e] / (1.0 - std::pow(0.9, t));
        const double vhat = v[i][e] / (1.0 - std::pow(0.999, t));
        // PyTorch: denom = sqrt(v)/sqrt(bc2) + eps, i.e. sqrt(vhat) + eps.
        p[i][e] -= 5e-3 * mhat / (std::sqrt(vhat) + 1e-8);
      }
  };
  auto set_grads = [&](const std::vector<std::vector<double>>& g) {
    for (size_t e = 0; e < 3; ++e) ga[e] = static_cast<float>(g[0][e]);
    for (size_t e = 0; e < 2; ++e) gb[e] = static_cast<float>(g[1][e]);
  };
  set_grads(grads1);
  adam.step();
  ref_step(grads1, 1);
  set_grads(grads2);
  adam.step();
  ref_step(grads2, 2);
  CHECK(adam.steps() == 2);
  for (size_t e = 0; e < 3; ++e) CHECK(a[e] == Approx(p[0][e]).epsilon(kAdamWRelTol));
  for (size_t e = 0; e < 2; ++e) CHECK(b[e] == Approx(p[1][e]).epsilon(kAdamWRelTol));
  // A zero gradient still decays the weight (decoupled) and moves by the momentum.
  CHECK(a[2] != 2.0f);
  adam.zero_grad();
  CHECK(ga == std::vector<float>(3, 0.0f));
  CHECK(adam.state_bytes() == 5 * 8);
}

TEST_CASE("autograd ops: bad input gives an Error naming the problem", "[autograd][errors]") {
  std::vector<double> x(8, 1.0), y(8);
  CHECK_THAT(error_message([&] { gemm_nt(x.data(), 2, x.data(), 2, y.data(), 2, -1, 2, 2, false); }),
             Catch::Contains("negative extent"));
  {
    AttentionShape s;
    s.n = 2;
    s.heads = 3;
    s.kv_heads = 2;
    s.head_dim = 2;
    CHECK_THAT(error_message([&] { attention_forward(s, x.data(), x.data(), x.data(), y.data()); }),
               Catch::Contains("do not divide heads 3"));
  }
  {
    const std::vector<int32_t> ids = {0, 9};
    std::vector<double> table(3 * 2), out(4);
    CHECK_THAT(error_message([&] { embedding_forward(table.data(), 3, 2, ids.data(), 2, out.data()); }),
               Catch::Contains("id 9 at row 1"));
  }
  {
    const std::vector<int32_t> tg = {7};
    CHECK_THAT(error_message([&] { cross_entropy_loss(x.data(), 1, 7, tg.data()); }), Catch::Contains("target 7"));
    const std::vector<int32_t> none = {-1};
    CHECK_THAT(error_message([&] { cross_entropy_loss(x.data(), 1, 7, none.data()); }), Catch::Contains("ignored"));
    CHECK_THAT(error_message([&] { mse_loss(x.data(), x.data(), 0); }), Catch::Contains("count"));
  }
  {
    // A code >= K in a hand-built weight: the backward refuses it instead of writing out of bounds.
    CodebookShape sh;
    sh.out = 4;
    sh.in = 2;
    sh.d = 2;
    sh.k = 3;  // 2-bit codes can hold 3
    CodebookTensor t(sh);
    t.set_code(2, 3);
    std::vector<double> cent(6, 0.5), xin(2 * 2, 1.0), dy(2 * 4, 1.0), yo(2 * 4), dc(6, 0.0);
    auto w = lookup_linear_weight(t, cent.data());
    CHECK_THAT(error_message([&] {
                 const auto c = lookup_linear_forward(w, xin.data(), 2, yo.data());
                 lookup_linear_backward(c, dy.data(), LookupLinearGrads<double>{nullptr, false, dc.data(), nullptr, nullptr});
               }),
               Catch::Contains("code 3 of vector 2 is not below K = 3"));
    w.view.num_codebooks = 5;
    CHECK_THAT(error_message([&] { lookup_linear_forward(w, xin.data(), 2, yo.data()); }),
               Catch::Contains("S must be in 1..in"));
  }
  {
    std::vector<float> v(3), g(3);
    AdamWOptions o;
    o.lr = -1.0;
    CHECK_THAT(error_message([&] { AdamW a({Parameter{"p", v.data(), g.data(), 3}}, o); }), Catch::Contains("lr"));
    CHECK_THAT(error_message([&] { AdamW a({Parameter{"cb", v.data(), nullptr, 3}}); }),
               Catch::Contains("parameter 'cb'"));
    o = AdamWOptions();
    o.beta2 = 1.0;
    CHECK_THAT(error_message([&] { AdamW a({Parameter{"p", v.data(), g.data(), 3}}, o); }), Catch::Contains("beta2"));
  }
}

}  // namespace test_autograd_ops
