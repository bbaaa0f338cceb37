// TrainBlock (include/cluscomp/model/train_block.hpp) on tiny random LLaMA blocks (hidden 16,
// 4 heads / 2 kv heads of 4, intermediate 24) whose projections are codebooks of various d, K, S
// (S > 1, output dimensions that need padding) next to frozen dense ones:
//  - the float forward equals the runtime (LlamaModel::forward_hidden) bit for bit;
//  - the double block's codebook (and norm, and input) gradients match central finite differences;
//  - float gradients agree with double ones and do not depend on the thread count; recompute mode
//    gives the same bits;
//  - a short AdamW loop lowers the MSE to a target block's output below a fixed fraction;
//  - write_back restores the storage dtype (fp16/bf16 RNE) with the same codes;
//  - bad input: an Error naming the problem.
// A hidden benchmark ([.bench]) times forward + backward at the real model's block shape.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/autograd/adamw.hpp"
#include "cluscomp/autograd/losses.hpp"
#include "cluscomp/model/train_block.hpp"
#include "cluscomp/model/llama.hpp"
#include "support/llama_configs.hpp"

namespace test_autograd_block {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using namespace cluscomp::autograd;

namespace {

// ---- Tolerances (why) --------------------------------------------------------------------------
// Central differences in double, step 1e-5, on a whole block (loss = <y, G>): truncation and
// cancellation errors ~1e-10 relative (measured up to ~1e-9 here); 1e-7 leaves a wide margin
// while a wrong index, sign or factor anywhere in the block gives an error of order 1.
constexpr double kFdStep = 1e-5;
constexpr double kBlockFdRelTol = 1e-7;
// Float block gradients (fp32 activations and products through ~10 ops, attention softmax, two
// norms) against the double block, relative 2-norm per tensor: measured ~1e-6; budget 1e-4.
constexpr double kBlockFloatRelTol = 1e-4;

constexpr uint32_t kSeed = 4242;

struct LayerSpec {
  bool codebook = true;
  int d = 4;
  int64_t k = 6;
  int s = 1;
  DType dtype = DType::kF16;
};

// Specs for q, k, v, o, gate, up, down: S = 1, 2, 3; k_proj out 8 with d = 3 and gate out 24 with
// d = 5 need padding; up stays dense.
std::vector<LayerSpec> default_specs(DType dt = DType::kF16) {
  return {{true, 4, 6, 1, dt}, {true, 3, 5, 2, dt}, {true, 4, 4, 3, dt}, {true, 4, 7, 1, dt},
          {true, 5, 8, 2, dt}, {false, 4, 0, 1, dt}, {true, 4, 6, 2, dt}};
}

LlamaConfig tiny_config(int64_t layers = 1) {
  cluscomp_test::LlamaShape s = cluscomp_test::kTinyBlockShape;
  s.layers = layers;
  return cluscomp_test::llama_config(s);
}

CodebookTensor random_codebook(int64_t out, int64_t in, const LayerSpec& sp, std::mt19937& rng, float scale) {
  CodebookShape sh;
  sh.out = out;
  sh.in = in;
  sh.d = sp.d;
  sh.k = sp.k;
  sh.num_codebooks = sp.s;
  sh.centroid_dtype = sp.dtype;
  CodebookTensor t(sh);
  std::normal_distribution<float> nd(0.0f, scale);
  for (int64_t s = 0; s < sp.s; ++s)
    for (int64_t c = 0; c < sp.k; ++c)
      for (int e = 0; e < sp.d; ++e) t.set_centroid(s, c, e, nd(rng));
  std::uniform_int_distribution<int64_t> pick(0, sp.k - 1);
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  for (auto& c : codes) c = static_cast<uint32_t>(pick(rng));
  throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

LlamaBlock random_block(const LlamaConfig& c, const std::vector<LayerSpec>& specs, std::mt19937& rng,
                        bool qkv_bias = false, float scale = 0.3f) {
  const int64_t H = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  const int64_t outs[7] = {Q, KV, KV, H, F, F, H};
  const int64_t ins[7] = {H, H, H, Q, H, H, F};
  const char* names[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  std::normal_distribution<float> nd(0.0f, 1.0f);
  LlamaBlock b;
  b.attn_norm.resize(static_cast<size_t>(H));
  b.ffn_norm.resize(static_cast<size_t>(H));
  for (auto& v : b.attn_norm) v = 1.0f + 0.1f * nd(rng);
  for (auto& v : b.ffn_norm) v = 1.0f + 0.1f * nd(rng);
  Linear* dst[7] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
  for (int l = 0; l < 7; ++l) {
    std::vector<float> bias;
    if (qkv_bias && l < 3) {
      bias.resize(static_cast<size_t>(outs[l]));
      for (auto& v : bias) v = 0.2f * nd(rng);
    }
    if (specs[static_cast<size_t>(l)].codebook) {
      *dst[l] = Linear::from_codebook(names[l], random_codebook(outs[l], ins[l], specs[static_cast<size_t>(l)], rng, scale),
                                      std::move(bias));
    } else {
      std::vector<float> w(static_cast<size_t>(outs[l] * ins[l]));
      for (auto& v : w) v = scale * nd(rng);
      *dst[l] = Linear::dense(names[l], outs[l], ins[l], std::move(w), std::move(bias));
    }
  }
  return b;
}

template <class T>
std::vector<T> randn(size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(nd(rng));
  return v;
}

template <class T>
double inner(const std::vector<T>& a, const std::vector<T>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
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

double rel_l2(const float* got, const double* ref, int64_t n) {
  double e = 0.0, r = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    e += (got[i] - ref[i]) * (got[i] - ref[i]);
    r += ref[i] * ref[i];
  }
  return std::sqrt(e / std::max(r, 1e-300));
}

// max|analytic - fd| / max|fd| over `count` values at `p`, loss() re-evaluated after each nudge.
double fd_rel_error(double* p, const double* analytic, int64_t count, const std::function<double()>& loss) {
  double max_err = 0.0, max_ref = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    const double keep = p[i];
    p[i] = keep + kFdStep;
    const double lp = loss();
    p[i] = keep - kFdStep;
    const double lm = loss();
    p[i] = keep;
    const double num = (lp - lm) / (2 * kFdStep);
    max_err = std::max(max_err, std::abs(num - analytic[i]));
    max_ref = std::max(max_ref, std::abs(num));
  }
  REQUIRE(max_ref > 0.0);
  return max_err / max_ref;
}

}  // namespace

TEST_CASE("float TrainBlock forward equals the runtime's blocks bit for bit", "[autograd][block]") {
  for (const bool window : {false, true}) {
    std::mt19937 rng(kSeed);
    LlamaConfig c = tiny_config(2);
    if (window) {
      c.model_type = "mistral";
      c.sliding_window = 7;
    }
    LlamaWeights w;
    const int64_t H = c.hidden_size, V = c.vocab_size;
    w.embed = std::make_shared<const std::vector<float>>(randn<float>(static_cast<size_t>(V * H), rng));
    w.final_norm = randn<float>(static_cast<size_t>(H), rng, 0.1);
    for (auto& v : w.final_norm) v += 1.0f;
    w.lm_head = Linear::dense("lm_head", V, H, w.embed);
    w.blocks.push_back(random_block(c, default_specs(DType::kF16), rng, /*qkv_bias=*/true));
    std::vector<LayerSpec> mixed = default_specs(DType::kBF16);
    mixed[3].codebook = false;  // dense o_proj
    mixed[6].dtype = DType::kF32;
    w.blocks.push_back(random_block(c, mixed, rng));
    const std::vector<LlamaBlock> blocks = w.blocks;
    LlamaRuntimeOptions ro;
    ro.threads = 2;
    LlamaModel model(c, std::move(w), ro);
    const int64_t n = 23;  // two attention blocks of 16 queries
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) ids[static_cast<size_t>(t)] = static_cast<int32_t>((7 * t + 3) % V);
    KvCache cache = model.make_cache();
    std::vector<float> want(static_cast<size_t>(n * H));
    model.forward_hidden(ids.data(), n, cache, want.data());

    std::vector<float> x(static_cast<size_t>(n * H));
    for (int64_t t = 0; t < n; ++t)
      std::copy(model.weights().embed->data() + ids[static_cast<size_t>(t)] * H,
                model.weights().embed->data() + (ids[static_cast<size_t>(t)] + 1) * H, x.data() + t * H);
    ThreadPool pool(3);
    for (const LlamaBlock& b : blocks) {
      TrainBlock tb(c, b);
      TrainBlock::Saved s;
      tb.forward(x.data(), n, x.data(), &s, &pool);  // in place
    }
    std::vector<float> got(static_cast<size_t>(n * H));
    throw_if_error(rms_norm(x.data(), H, model.weights().final_norm.data(), static_cast<float>(c.rms_norm_eps), n, H,
                            got.data(), H));
    INFO("sliding window " << window);
    REQUIRE(std::any_of(want.begin(), want.end(), [](float v) { return v != 0.0f; }));
    CHECK(std::memcmp(got.data(), want.data(), got.size() * 4) == 0);
  }
}

TEST_CASE("double TrainBlock gradients match finite differences", "[autograd][block][fd]") {
  std::mt19937 rng(kSeed + 1);
  const LlamaConfig c = tiny_config();
  const LlamaBlock b = random_block(c, default_specs(), rng, /*qkv_bias=*/true, 0.5f);
  TrainBlockOptions opt;
  opt.train_norms = true;
  BasicTrainBlock<double> tb(c, b, opt);
  const int64_t n = 18, H = c.hidden_size;
  auto x = randn<double>(static_cast<size_t>(n * H), rng), G = randn<double>(static_cast<size_t>(n * H), rng);
  auto loss = [&] {
    std::vector<double> y(x.size());
    tb.forward(x.data(), n, y.data(), nullptr);
    return inner(y, G);
  };
  BasicTrainBlock<double>::Saved s;
  std::vector<double> y(x.size()), dx(x.size());
  tb.forward(x.data(), n, y.data(), &s);
  tb.zero_grad();
  tb.backward(s, G.data(), dx.data());
  auto params = tb.parameters();
  REQUIRE(params.size() == 6 + 2);  // six codebook layers, two norms
  int64_t count = 0;
  for (auto& p : params) {
    count += p.size;
    const double e = fd_rel_error(p.value, p.grad, p.size, loss);
    INFO(p.name << ": max |grad - fd| / max |fd| = " << e);
    CHECK(e < kBlockFdRelTol);
  }
  CHECK(count == tb.trainable_count());
  const double ex = fd_rel_error(x.data(), dx.data(), static_cast<int64_t>(x.size()), loss);
  INFO("dx: " << ex);
  CHECK(ex < kBlockFdRelTol);

  // Recompute mode: same gradients, bit for bit, with only x saved.
  std::vector<std::vector<double>> g1;
  for (auto& p : params) g1.emplace_back(p.grad, p.grad + p.size);
  tb.set_recompute(true);
  BasicTrainBlock<double>::Saved sr;
  tb.forward(x.data(), n, y.data(), &sr);
  CHECK(sr.bytes() == tb.saved_bytes(n));
  CHECK(sr.bytes() == n * H * 8);
  tb.zero_grad();
  std::vector<double> dx2(x.size());
  tb.backward(sr, G.data(), dx2.data());
  CHECK(dx2 == dx);
  for (size_t i = 0; i < params.size(); ++i)
    CHECK(std::vector<double>(params[i].grad, params[i].grad + params[i].size) == g1[i]);
}

TEST_CASE("float TrainBlock gradients agree with double and are independent of threads", "[autograd][block]") {
  std::mt19937 rng(kSeed + 2);
  const LlamaConfig c = tiny_config();
  const LlamaBlock b = random_block(c, default_specs(DType::kBF16), rng, false, 0.5f);
  const int64_t n = 33, H = c.hidden_size;
  const auto xd = randn<double>(static_cast<size_t>(n * H), rng), Gd = randn<double>(static_cast<size_t>(n * H), rng);
  const std::vector<float> xf(xd.begin(), xd.end()), Gf(Gd.begin(), Gd.end());
  BasicTrainBlock<double> t64(c, b);
  BasicTrainBlock<double>::Saved s64;
  std::vector<double> y64(xd.size()), dx64(xd.size());
  t64.forward(xd.data(), n, y64.data(), &s64);
  t64.backward(s64, Gd.data(), dx64.data());

  std::vector<std::vector<float>> grads_by_threads[2];
  std::vector<float> dx_by_threads[2];
  for (int run = 0; run < 2; ++run) {
    std::unique_ptr<ThreadPool> pool = run ? std::make_unique<ThreadPool>(3) : nullptr;
    TrainBlock t32(c, b);
    TrainBlock::Saved s32;
    std::vector<float> y32(xf.size()), dx32(xf.size());
    t32.forward(xf.data(), n, y32.data(), &s32, pool.get());
    CHECK(s32.bytes() == t32.saved_bytes(n));
    t32.backward(s32, Gf.data(), dx32.data(), pool.get());
    CHECK(rel_l2(y32.data(), y64.data(), n * H) < kBlockFloatRelTol);
    CHECK(rel_l2(dx32.data(), dx64.data(), n * H) < kBlockFloatRelTol);
    auto p32 = t32.parameters();
    auto p64 = t64.parameters();
    REQUIRE(p32.size() == p64.size());
    for (size_t i = 0; i < p32.size(); ++i) {
      const double e = rel_l2(p32[i].grad, p64[i].grad, p32[i].size);
      INFO(p32[i].name << ": float vs double " << e);
      CHECK(e < kBlockFloatRelTol);
      grads_by_threads[run].emplace_back(p32[i].grad, p32[i].grad + p32[i].size);
    }
    dx_by_threads[run] = dx32;
  }
  CHECK(grads_by_threads[0] == grads_by_threads[1]);
  CHECK(dx_by_threads[0] == dx_by_threads[1]);
}

TEST_CASE("AdamW on a TrainBlock lowers the MSE to a target block", "[autograd][block][train]") {
  std::mt19937 rng(kSeed + 3);
  const LlamaConfig c = tiny_config();
  std::vector<LayerSpec> specs = default_specs(DType::kF32);
  const LlamaBlock target = random_block(c, specs, rng, false, 0.4f);
  // The student: same codes, centroids perturbed by N(0, 0.1).
  LlamaBlock student = target;
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (Linear* l : {&student.q, &student.k, &student.v, &student.o, &student.gate, &student.up, &student.down}) {
    if (!l->codebook()) continue;
    CodebookTensor t = *l->codebook();
    for (int64_t s = 0; s < t.shape().num_codebooks; ++s)
      for (int64_t k = 0; k < t.shape().k; ++k)
        for (int e = 0; e < t.shape().d; ++e) t.set_centroid(s, k, e, t.centroid(s, k, e) + nd(rng));
    *l = Linear::from_codebook(l->name(), std::move(t), l->bias());
  }
  const int64_t n = 12, H = c.hidden_size, samples = 4;
  std::vector<std::vector<float>> xs, ys;
  TrainBlock tgt(c, target);
  for (int64_t i = 0; i < samples; ++i) {
    xs.push_back(randn<float>(static_cast<size_t>(n * H), rng));
    ys.emplace_back(static_cast<size_t>(n * H));
    tgt.forward(xs.back().data(), n, ys.back().data(), nullptr);
  }
  TrainBlock tb(c, student);
  AdamW opt(tb.parameters());  // reference defaults (lr 5e-3, wd 0.1)
  auto epoch_loss = [&] {
    double l = 0.0;
    std::vector<float> y(static_cast<size_t>(n * H));
    for (int64_t i = 0; i < samples; ++i) {
      tb.forward(xs[static_cast<size_t>(i)].data(), n, y.data(), nullptr);
      l += mse_loss(y.data(), ys[static_cast<size_t>(i)].data(), n * H);
    }
    return l / samples;
  };
  const double l0 = epoch_loss();
  TrainBlock::Saved s;
  std::vector<float> y(static_cast<size_t>(n * H)), dy(static_cast<size_t>(n * H));
  for (int epoch = 0; epoch < 40; ++epoch)
    for (int64_t i = 0; i < samples; ++i) {
      tb.forward(xs[static_cast<size_t>(i)].data(), n, y.data(), &s);
      mse_loss(y.data(), ys[static_cast<size_t>(i)].data(), n * H, dy.data());
      opt.zero_grad();
      tb.backward(s, dy.data(), nullptr);
      opt.step();
    }
  const double l1 = epoch_loss();
  INFO("MSE before " << l0 << ", after 160 AdamW steps " << l1);
  CHECK(l1 < 0.05 * l0);
}

TEST_CASE("write_back restores the storage dtype with the same codes", "[autograd][block]") {
  std::mt19937 rng(kSeed + 4);
  const LlamaConfig c = tiny_config();
  std::vector<LayerSpec> specs = default_specs(DType::kF16);
  specs[1].dtype = DType::kBF16;
  specs[2].dtype = DType::kF32;
  specs[6].dtype = DType::kBF16;
  const LlamaBlock b = random_block(c, specs, rng, true);
  TrainBlock tb(c, b);
  // Untouched: byte-identical centroids and codes.
  LlamaBlock same = b;
  tb.write_back(same);
  const Linear* before[7] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
  const Linear* after[7] = {&same.q, &same.k, &same.v, &same.o, &same.gate, &same.up, &same.down};
  for (int l = 0; l < 7; ++l) {
    REQUIRE((before[l]->codebook() != nullptr) == (after[l]->codebook() != nullptr));
    if (!before[l]->codebook()) continue;
    CHECK(after[l]->codebook()->shape() == before[l]->codebook()->shape());
    CHECK(after[l]->codebook()->centroid_bytes() == before[l]->codebook()->centroid_bytes());
    CHECK(after[l]->codebook()->code_words() == before[l]->codebook()->code_words());
    CHECK(after[l]->name() == before[l]->name());
    CHECK(after[l]->bias() == before[l]->bias());
  }
  // Changed masters: each stored value is the RNE rounding of the master.
  auto params = tb.parameters();
  for (auto& p : params)
    for (int64_t e = 0; e < p.size; ++e) p.value[e] = p.value[e] * 1.0009765f + 1e-4f * static_cast<float>(e % 7);
  LlamaBlock trained = b;
  tb.write_back(trained);
  const Linear* out[7] = {&trained.q, &trained.k, &trained.v, &trained.o, &trained.gate, &trained.up, &trained.down};
  size_t pi = 0;
  for (int l = 0; l < 7; ++l) {
    if (!out[l]->codebook()) continue;
    const CodebookTensor& t = *out[l]->codebook();
    CHECK(t.code_words() == before[l]->codebook()->code_words());
    const float* master = params[pi++].value;
    const int64_t nv = t.shape().num_centroid_values();
    int64_t bad = 0;
    for (int64_t e = 0; e < nv; ++e) {
      uint16_t h = 0;
      float f = 0.0f;
      switch (t.shape().centroid_dtype) {
        case DType::kF16:
          std::memcpy(&h, t.centroid_bytes().data() + 2 * e, 2);
          bad += h != float_to_half_bits(master[e]);
          break;
        case DType::kBF16:
          std::memcpy(&h, t.centroid_bytes().data() + 2 * e, 2);
          bad += h != float_to_bf16_bits(master[e]);
          break;
        default:
          std::memcpy(&f, t.centroid_bytes().data() + 4 * e, 4);
          bad += f != master[e];
      }
    }
    INFO("layer " << out[l]->name() << " dtype " << dtype_name(t.shape().centroid_dtype));
    CHECK(bad == 0);
  }
}

TEST_CASE("TrainBlock: bad input gives an Error naming the problem", "[autograd][block][errors]") {
  std::mt19937 rng(kSeed + 5);
  const LlamaConfig c = tiny_config();
  const LlamaBlock b = random_block(c, default_specs(), rng);
  {
    LlamaConfig other = c;
    other.num_key_value_heads = 4;  // k_proj should then be (16, 16)
    CHECK_THAT(error_message([&] { TrainBlock t(other, b); }), Catch::Contains("k_proj' is (8, 16), expected (16, 16)"));
    other = c;
    other.hidden_size = 20;
    CHECK_THAT(error_message([&] { TrainBlock t(other, b); }), Catch::Contains("input_layernorm.weight has 16 values"));
  }
  TrainBlock tb(c, b);
  std::vector<float> x(16 * 4), y(16 * 4);
  CHECK_THAT(error_message([&] { tb.forward(x.data(), 0, y.data(), nullptr); }), Catch::Contains("token count"));
  TrainBlock::Saved empty;
  CHECK_THAT(error_message([&] { tb.backward(empty, y.data(), nullptr); }), Catch::Contains("saved activations"));
  TrainBlock::Saved s;
  tb.forward(x.data(), 4, y.data(), &s);
  CHECK_THAT(error_message([&] { tb.backward(s, nullptr, nullptr); }), Catch::Contains("null dy"));
  TrainBlock::Saved cut = s;
  cut.gate.pop_back();
  CHECK_THAT(error_message([&] { tb.backward(cut, y.data(), nullptr); }),
             Catch::Contains("do not match this block's widths for n 4"));
  LlamaConfig wide = c;
  wide.intermediate_size = 32;
  LlamaBlock other = random_block(wide, default_specs(), rng);
  CHECK_THAT(error_message([&] { tb.write_back(other); }), Catch::Contains("gate_proj' is (32, 16), expected (24, 16)"));
  CHECK_THAT(error_message([&] { (void)tb.codebook_tensor(5); }), Catch::Contains("not a codebook layer"));
  // A device without a backend is an error at construction, never a CPU block in disguise.
  TrainBlockOptions on_cuda;
  on_cuda.device = Device::kCuda;
  CHECK_THAT(error_message([&] { TrainBlock t(c, b, on_cuda); }), Catch::Contains("cuda"));
}

// Timing at the real model's block shape (SmolLM-135M: hidden 576, 9/3 heads of 64, intermediate
// 1536), every projection a codebook (d 4, K 4096, fp16). Run with: test_autograd_block "[.bench]".
TEST_CASE("TrainBlock forward + backward timing at the real block shape", "[.bench]") {
  std::mt19937 rng(kSeed + 6);
  const LlamaConfig c = cluscomp_test::llama_config(cluscomp_test::kSmolLM2BlockShape);
  std::vector<LayerSpec> specs(7, LayerSpec{true, 4, 4096, 1, DType::kF16});
  const LlamaBlock b = random_block(c, specs, rng, false, 0.05f);
  TrainBlock tb(c, b);
  ThreadPool pool(2);
  for (const int64_t n : {int64_t{256}, int64_t{512}}) {
    const auto x = randn<float>(static_cast<size_t>(n * c.hidden_size), rng);
    std::vector<float> y(x.size()), dy(x.size(), 1e-3f), dx(x.size());
    TrainBlock::Saved s;
    double best_f = 1e30, best_b = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      tb.forward(x.data(), n, y.data(), &s, &pool);
      const auto t1 = std::chrono::steady_clock::now();
      tb.backward(s, dy.data(), dx.data(), &pool);
      const auto t2 = std::chrono::steady_clock::now();
      best_f = std::min(best_f, std::chrono::duration<double>(t1 - t0).count());
      best_b = std::min(best_b, std::chrono::duration<double>(t2 - t1).count());
    }
    WARN("n " << n << ": forward " << best_f * 1e3 << " ms, backward " << best_b * 1e3 << " ms, saved "
              << tb.saved_bytes(n) / 1048576.0 << " MiB, backward workspace <= "
              << tb.backward_workspace_bytes(n) / 1048576.0 << " MiB (2 threads, best of 3)");
  }
}

}  // namespace test_autograd_block
