// A tiny random LLaMA (2 blocks, hidden 64, GQA 4/2 heads) written with our GGUF writer (q/k rows
// permuted as llama.cpp's converter does) and as an HF directory: both load to the same logits;
// logits match a double-precision composition of the reference twins (reference/ops_ref.hpp);
// prefill == token-by-token decode bit for bit; thread counts change no bit; Qwen2 biases, llama3
// rope scaling, untied lm_head, quantised GGUF tensors, codebook layers; and every bad input
// (unknown architecture, missing / mis-shaped tensor, prompt longer than the context, bad ids)
// gives a clear error.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/perplexity.hpp"
#include "cluscomp/model/sampling.hpp"
#include "cluscomp/reference/ops_ref.hpp"
#include "support/runtime_tolerances.hpp"
#include "support/tiny_llama.hpp"
#include "support/require_error.hpp"
#include "support/test_data.hpp"

namespace test_llama_tiny {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::kTinyModelRelTol;
using cluscomp_test::require_error;
using cluscomp_test::TempDir;

namespace {

constexpr uint32_t kSeed = 777;

using Tiny = cluscomp_test::TinyLlama;
using GgufOptions = cluscomp_test::TinyGgufOptions;

Tiny make_tiny(const std::string& arch = "llama", bool tied = true, bool bias = false, uint32_t seed = kSeed) {
  cluscomp_test::TinyLlamaOptions o;
  o.arch = arch;
  o.tied = tied;
  o.bias = bias;
  o.seed = seed;
  return cluscomp_test::make_tiny_llama(o);
}

std::vector<unsigned char> write_gguf(const Tiny& t, const GgufOptions& o = {}) {
  return cluscomp_test::write_tiny_gguf(t, o);
}

void write_hf(const Tiny& t, const std::filesystem::path& dir) {
  write_llama_config((dir / "config.json").string(), t.cfg);
  SafetensorsWriter w;
  for (const auto& [hf, v] : t.w) w.add(hf, DType::kF32, t.shape.at(hf), v.data(), v.size() * 4);
  w.write((dir / "model.safetensors").string());
}

// Double-precision forward composed of the reference twins (HF LLaMA definition).
std::vector<double> reference_logits(const Tiny& t, const std::vector<int32_t>& ids) {
  const LlamaConfig& c = t.cfg;
  const int64_t n = static_cast<int64_t>(ids.size()), H = c.hidden_size;
  auto W = [&](const std::string& name) {
    const auto& v = t.w.at(name);
    return std::vector<double>(v.begin(), v.end());
  };
  auto B = [&](const std::string& name) {
    auto it = t.w.find(name);
    return it == t.w.end() ? std::vector<double>{} : std::vector<double>(it->second.begin(), it->second.end());
  };
  std::vector<double> x(static_cast<size_t>(n * H));
  const auto emb = W("model.embed_tokens.weight");
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < H; ++d) x[static_cast<size_t>(i * H + d)] = emb[static_cast<size_t>(ids[static_cast<size_t>(i)] * H + d)];
  std::vector<int64_t> pos;
  for (int64_t i = 0; i < n; ++i) pos.push_back(i);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto h = reference::rms_norm_ref(x, W(p + "input_layernorm.weight"), c.rms_norm_eps, n, H);
    auto q = reference::matmul_nt_ref(h, W(p + "self_attn.q_proj.weight"), B(p + "self_attn.q_proj.bias"), n, c.q_dim(), H);
    auto k = reference::matmul_nt_ref(h, W(p + "self_attn.k_proj.weight"), B(p + "self_attn.k_proj.bias"), n, c.kv_dim(), H);
    auto v = reference::matmul_nt_ref(h, W(p + "self_attn.v_proj.weight"), B(p + "self_attn.v_proj.bias"), n, c.kv_dim(), H);
    q = reference::rope_ref(q, pos, c.num_attention_heads, c.head_dim, c.rope_theta, c.rope_scaling.type,
                            c.rope_scaling.factor, c.rope_scaling.low_freq_factor, c.rope_scaling.high_freq_factor,
                            static_cast<double>(c.rope_scaling.original_max_position_embeddings));
    k = reference::rope_ref(k, pos, c.num_key_value_heads, c.head_dim, c.rope_theta, c.rope_scaling.type,
                            c.rope_scaling.factor, c.rope_scaling.low_freq_factor, c.rope_scaling.high_freq_factor,
                            static_cast<double>(c.rope_scaling.original_max_position_embeddings));
    const auto a = reference::causal_attention_ref(q, k, v, n, 0, c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    const auto o = reference::matmul_nt_ref(a, W(p + "self_attn.o_proj.weight"), {}, n, H, c.q_dim());
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = reference::rms_norm_ref(x, W(p + "post_attention_layernorm.weight"), c.rms_norm_eps, n, H);
    const auto g = reference::matmul_nt_ref(h, W(p + "mlp.gate_proj.weight"), {}, n, c.intermediate_size, H);
    const auto u = reference::matmul_nt_ref(h, W(p + "mlp.up_proj.weight"), {}, n, c.intermediate_size, H);
    const auto s = reference::swiglu_ref(g, u);
    const auto d = reference::matmul_nt_ref(s, W(p + "mlp.down_proj.weight"), {}, n, H, c.intermediate_size);
    for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
  }
  x = reference::rms_norm_ref(x, W("model.norm.weight"), c.rms_norm_eps, n, H);
  const auto head = c.tie_word_embeddings ? emb : W("lm_head.weight");
  return reference::matmul_nt_ref(x, head, {}, n, c.vocab_size, H);
}

double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<int32_t> prompt(int n, uint32_t seed = 5) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& i : ids) i = static_cast<int32_t>(rng() % 50);
  return ids;
}

LlamaModel load_bytes(const std::vector<unsigned char>& bytes, int threads = 1) {
  GgufReader g(bytes.data(), bytes.size(), "tiny.gguf");
  LlamaRuntimeOptions o;
  o.threads = threads;
  return load_llama_gguf(g, o);
}

// All-position logits by one prefill, and by one token at a time.
std::vector<float> prefill_all(LlamaModel& m, const std::vector<int32_t>& ids) {
  KvCache cache = m.make_cache();
  return m.forward(ids, cache, /*all=*/true);
}
std::vector<float> decode_all(LlamaModel& m, const std::vector<int32_t>& ids) {
  KvCache cache = m.make_cache();
  std::vector<float> out;
  for (int32_t id : ids) {
    const auto l = m.forward(&id, 1, cache);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

}  // namespace

TEST_CASE("tiny llama: GGUF (permuted q/k) and HF load to the same model; logits match the reference", "[model][tiny]") {
  for (bool tied : {true, false}) {
    INFO("seed " << kSeed << " tied " << tied);
    const Tiny t = make_tiny("llama", tied);
    LlamaModel g = load_bytes(write_gguf(t));
    TempDir dir;
    write_hf(t, dir.path());
    LlamaModel h = load_llama_hf(dir.path().string());
    CHECK(load_llama_model(dir.path().string()).config().hidden_size == 64);
    const auto ids = prompt(20);
    const auto lg = prefill_all(g, ids), lh = prefill_all(h, ids);
    CHECK(same_bits(lg, lh));
    const double err = rel_err(lg, reference_logits(t, ids));
    INFO("relative error vs reference " << err);
    CHECK(err < kTinyModelRelTol);
    const MemoryReport mr = g.memory_report();
    int64_t params = 0;
    for (const auto& kv : t.w) params += static_cast<int64_t>(kv.second.size());
    CHECK(mr.weights == params * 4);
  }
}

TEST_CASE("tiny llama: prefill == token-by-token decode == split prefill, bit for bit; threads", "[model][tiny]") {
  const Tiny t = make_tiny("llama", true);
  const auto bytes = write_gguf(t);
  LlamaModel m1 = load_bytes(bytes, 1);
  LlamaModel m3 = load_bytes(bytes, 3);
  const auto ids = prompt(40);
  const auto pre = prefill_all(m1, ids);
  CHECK(same_bits(pre, decode_all(m1, ids)));
  CHECK(same_bits(pre, prefill_all(m3, ids)));
  CHECK(same_bits(pre, decode_all(m3, ids)));
  // Two chunks (17 + 23).
  KvCache cache = m1.make_cache();
  auto a = m1.forward(ids.data(), 17, cache, true);
  const auto b = m1.forward(ids.data() + 17, 23, cache, true);
  a.insert(a.end(), b.begin(), b.end());
  CHECK(same_bits(pre, a));
  CHECK(cache.length() == 40);
  // Truncating the cache and re-running gives the same last logits.
  cache.truncate(30);
  const auto again = m1.forward(ids.data() + 30, 10, cache, true);
  CHECK(std::memcmp(again.data(), pre.data() + 30 * 50, 10 * 50 * sizeof(float)) == 0);
}

TEST_CASE("tiny qwen2 (q/k/v biases, no permutation) and llama3 rope scaling match the reference", "[model][tiny]") {
  {
    const Tiny t = make_tiny("qwen2", true, /*bias=*/true);
    LlamaModel m = load_bytes(write_gguf(t));
    const auto ids = prompt(25);
    CHECK(rel_err(prefill_all(m, ids), reference_logits(t, ids)) < kTinyModelRelTol);
    TempDir dir;
    write_hf(t, dir.path());
    LlamaModel h = load_llama_hf(dir.path().string());
    CHECK(same_bits(prefill_all(m, ids), prefill_all(h, ids)));
  }
  {
    Tiny t = make_tiny("llama", false);
    t.cfg.rope_scaling.type = "llama3";
    t.cfg.rope_scaling.factor = 8.0;
    t.cfg.rope_scaling.low_freq_factor = 1.0;
    t.cfg.rope_scaling.high_freq_factor = 4.0;
    t.cfg.rope_scaling.original_max_position_embeddings = 16;
    t.cfg.rope_theta = 500.0;  // so that the tiny head spans all three llama3 bands
    TempDir dir;
    write_hf(t, dir.path());
    LlamaModel m = load_llama_hf(dir.path().string());
    const auto ids = prompt(45);
    CHECK(rel_err(prefill_all(m, ids), reference_logits(t, ids)) < kTinyModelRelTol);
  }
}

TEST_CASE("tiny llama: quantised GGUF weights and codebook layers", "[model][tiny]") {
  const Tiny t = make_tiny("llama", true);
  GgufOptions q8;
  q8.type = GgmlType::kQ8_0;
  LlamaModel m = load_bytes(write_gguf(t, q8));
  const auto ids = prompt(12);
  // Q8_0 of Gaussian weights: ~0.5% relative error per weight; logits a few times that.
  CHECK(rel_err(prefill_all(m, ids), reference_logits(t, ids)) < 5e-2);

  // A codebook layer forwards exactly as the dense layer of its decoded weight.
  CodebookShape sh;
  sh.out = 10;
  sh.in = 12;
  sh.d = 4;
  sh.k = 5;
  CodebookTensor cb(sh);
  std::mt19937 rng(3);
  for (int64_t c = 0; c < 5; ++c)
    for (int d = 0; d < 4; ++d) cb.set_centroid(0, c, d, static_cast<float>(static_cast<int>(rng() % 7) - 3));
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  for (auto& c : codes) c = rng() % 5;
  REQUIRE(cb.set_codes(codes.data(), static_cast<int64_t>(codes.size())).ok());
  const Linear lc = Linear::from_codebook("cb", cb);
  CHECK(lc.kind() == LinearKind::kCodebook);
  CHECK(lc.codebook_bytes() == cb.storage_bytes());
  const Linear ld = Linear::dense("dense", 10, 12, decode_dense(cb, DecodeLayout::kW));
  std::vector<float> x(24);
  for (auto& v : x) v = static_cast<float>(static_cast<int>(rng() % 5) - 2);
  std::vector<float> y1(20), y2(20);
  REQUIRE(lc.forward(x.data(), 12, 2, y1.data(), 10).ok());
  REQUIRE(ld.forward(x.data(), 12, 2, y2.data(), 10).ok());
  CHECK(same_bits(y1, y2));
  CHECK_THROWS_AS(Linear::from_codebook("cb", cb, std::vector<float>(3)), Error);
}

TEST_CASE("tiny llama: stored dense weights (GGUF Q8_0/Q4_1/F16, HF F16/BF16) give the fp32 runtime's logits",
          "[model][tiny][stored]") {
  // Untied with Qwen2 biases and tied llama (q/k rows permuted in the GGUF: un-permuted as whole
  // rows of blocks). On AVX2+FMA CPUs both runtimes run fused lanes: the logits are equal bit for
  // bit; elsewhere matmul_nt's portable path rounds its products separately, so within budget.
  for (const Tiny& t : {make_tiny("llama", true), make_tiny("qwen2", false, true)}) {
    for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_1, GgmlType::kF16}) {
      INFO(t.cfg.model_type << ", ggml type " << ggml_type_name(type));
      GgufOptions o;
      o.type = type;
      const auto bytes = write_gguf(t, o);
      GgufReader g(bytes.data(), bytes.size(), "tiny.gguf");
      LlamaRuntimeOptions ro;
      ro.threads = 2;
      LlamaModel f = load_llama_gguf(g, ro);
      ro.dense = DenseWeights::kStored;
      LlamaModel s = load_llama_gguf(g, ro);
      REQUIRE(s.weights().embed_stored);
      CHECK(static_cast<uint32_t>(s.weights().embed_stored->type()) == static_cast<uint32_t>(type));
      CHECK(s.weights().blocks[0].q.kind() == LinearKind::kStored);
      CHECK(s.weights().lm_head.kind() == LinearKind::kStored);
      CHECK(s.weights().lm_head.shares_weight_with(s.weights().embed_stored.get()) == t.cfg.tie_word_embeddings);
      // Resident weights are exactly the file's tensor bytes (norms and biases are F32 there).
      int64_t file_bytes = 0;
      for (const GgufTensorInfo& ti : g.tensors()) file_bytes += static_cast<int64_t>(ti.n_bytes);
      CHECK(s.memory_report().weights == file_bytes);
      CHECK(f.memory_report().weights > file_bytes);
      const auto ids = prompt(12);
      const auto lf = prefill_all(f, ids), ls = prefill_all(s, ids);
      if (matmul_uses_avx2()) CHECK(same_bits(ls, lf));
      else CHECK(rel_err(ls, std::vector<double>(lf.begin(), lf.end())) < kTinyModelRelTol);
      CHECK(same_bits(decode_all(s, ids), ls));
      // Calibration and training read the embedding as fp32: a stored one is a clear error.
      require_error([&] { (void)s.weights().embed_fp32("calibrate (teacher)"); }, StatusCode::kInvalidArgument,
                    "calibrate (teacher) needs the fp32 embedding");
      CHECK(f.weights().embed_fp32("calibrate").size() == static_cast<size_t>(t.cfg.vocab_size * t.cfg.hidden_size));
    }
    for (DType dt : {DType::kF16, DType::kBF16}) {
      INFO(t.cfg.model_type << ", HF " << dtype_name(dt));
      TempDir dir;
      write_llama_config((dir.path() / "config.json").string(), t.cfg);
      SafetensorsWriter w;
      std::vector<std::vector<uint16_t>> keep;
      for (const auto& [hf, v] : t.w) {
        keep.emplace_back(v.size());
        for (size_t i = 0; i < v.size(); ++i)
          keep.back()[i] = dt == DType::kF16 ? float_to_half_bits(v[i]) : float_to_bf16_bits(v[i]);
        w.add(hf, dt, t.shape.at(hf), keep.back().data(), v.size() * 2);
      }
      w.write((dir.path() / "model.safetensors").string());
      LlamaRuntimeOptions ro;
      LlamaModel f = load_llama_hf(dir.path().string(), ro);
      ro.dense = DenseWeights::kStored;
      LlamaModel s = load_llama_hf(dir.path().string(), ro);
      REQUIRE(s.weights().embed_stored);
      CHECK(s.weights().blocks[1].down.kind() == LinearKind::kStored);
      const auto ids = prompt(9);
      const auto lf = prefill_all(f, ids), ls = prefill_all(s, ids);
      if (matmul_uses_avx2()) CHECK(same_bits(ls, lf));
      else CHECK(rel_err(ls, std::vector<double>(lf.begin(), lf.end())) < kTinyModelRelTol);
    }
  }
  // A stored matrix whose bytes disagree with its shape is refused with its name.
  require_error([] { StoredMatrix("blk.0.q", StoredType::kQ8_0, 4, 64, std::vector<unsigned char>(100)); },
                StatusCode::kInvalidArgument, "blk.0.q: 100 bytes, expected 272");
  require_error([] { StoredMatrix("blk.0.k", StoredType::kQ4_1, 4, 48, std::vector<unsigned char>(40)); },
                StatusCode::kInvalidArgument, "blk.0.k: stored matrix: Q4_1 rows of 48");
}

TEST_CASE("tiny llama: bad input gives clear errors", "[model][tiny][errors]") {
  const Tiny t = make_tiny("llama", true);
  {
    GgufOptions o;
    o.arch_key = "gpt2";
    const auto bytes = write_gguf(t, o);
    require_error([&] { load_bytes(bytes); }, StatusCode::kUnsupported, "gpt2");
  }
  {
    GgufOptions o;
    o.skip = "model.layers.1.mlp.up_proj.weight";
    const auto bytes = write_gguf(t, o);
    require_error([&] { load_bytes(bytes); }, StatusCode::kNotFound, "model.layers.1.mlp.up_proj.weight");
  }
  {
    GgufOptions o;
    o.misshape = "model.layers.0.self_attn.o_proj.weight";
    Tiny t2 = make_tiny("llama", true);
    // o_proj is square (64 x 64) here; mis-shape a non-square one instead.
    o.misshape = "model.layers.0.mlp.down_proj.weight";
    const auto bytes = write_gguf(t2, o);
    require_error([&] { load_bytes(bytes); }, StatusCode::kFormatError, "blk.0.ffn_down.weight");
  }
  {
    TempDir dir;
    Tiny t3 = make_tiny("llama", false);
    t3.w.erase("lm_head.weight");
    write_hf(t3, dir.path());
    require_error([&] { load_llama_hf(dir.path().string()); }, StatusCode::kNotFound, "lm_head.weight");
    std::filesystem::remove(dir / "config.json");
    CHECK_THROWS_AS(load_llama_hf(dir.path().string()), Error);
    require_error([&] { load_llama_model((dir / "nothing.gguf").string()); }, StatusCode::kNotFound, "nothing.gguf");
  }
  LlamaModel m = load_bytes(write_gguf(t));
  {
    KvCache cache = m.make_cache();
    const auto ids = prompt(49);  // context is 48
    require_error([&] { m.forward(ids, cache); }, StatusCode::kOutOfRange, "do not fit the context of 48");
    CHECK(cache.length() == 0);
    const auto ok = prompt(40);
    m.forward(ok, cache);
    const auto more = prompt(9);
    require_error([&] { m.forward(more, cache); }, StatusCode::kOutOfRange, "after 40 cached");
    CHECK(cache.length() == 40);
  }
  {
    KvCache cache = m.make_cache();
    const std::vector<int32_t> bad = {1, 2, 50};
    require_error([&] { m.forward(bad, cache); }, StatusCode::kOutOfRange, "token id 50");
    const std::vector<int32_t> neg = {-1};
    require_error([&] { m.forward(neg, cache); }, StatusCode::kOutOfRange, "token id -1");
  }
  require_error([&] { m.make_cache(49); }, StatusCode::kInvalidArgument, "exceeds the model's context of 48");
}

TEST_CASE("perplexity windows and sampling on the tiny model", "[model][tiny][eval]") {
  const Tiny t = make_tiny("llama", true);
  LlamaModel m = load_bytes(write_gguf(t), 2);
  const auto ids = prompt(100, 9);
  PerplexityOptions o;
  o.window = 32;
  const PerplexityResult r = evaluate_perplexity(m, ids, o);
  CHECK(r.windows == 3);        // 100 / 32, the partial tail dropped
  CHECK(r.predictions == 3 * 31);
  // The same NLL from the reference logits.
  double nll = 0;
  for (int w = 0; w < 3; ++w) {
    const std::vector<int32_t> win(ids.begin() + w * 32, ids.begin() + (w + 1) * 32);
    const auto ref = reference_logits(t, win);
    for (int i = 0; i + 1 < 32; ++i) {
      double mx = -1e300, s = 0;
      for (int v = 0; v < 50; ++v) mx = std::max(mx, ref[static_cast<size_t>(i * 50 + v)]);
      for (int v = 0; v < 50; ++v) s += std::exp(ref[static_cast<size_t>(i * 50 + v)] - mx);
      nll += mx + std::log(s) - ref[static_cast<size_t>(i * 50 + win[static_cast<size_t>(i + 1)])];
    }
  }
  CHECK(std::fabs(r.nll_sum - nll) < 1e-4 * nll);
  CHECK(std::fabs(r.perplexity() - std::exp(nll / 93)) < 1e-3 * r.perplexity());

  // A stride scores every token after the first exactly once.
  o.stride = 16;
  const PerplexityResult s = evaluate_perplexity(m, ids, o);
  CHECK(s.windows == 5);  // starts 0, 16, 32, 48, 64 (64 + 32 <= 100)
  CHECK(s.predictions == 31 + 4 * 16);
  o.stride = 0;
  o.max_windows = 1;
  CHECK(evaluate_perplexity(m, ids, o).windows == 1);
  o.max_windows = 0;
  o.window = 200;
  CHECK_THROWS_AS(evaluate_perplexity(m, ids, o), Error);  // window > context
  o.window = 48;
  const std::vector<int32_t> few(ids.begin(), ids.begin() + 10);
  CHECK_THROWS_AS(evaluate_perplexity(m, few, o), Error);  // fewer tokens than one window

  // Sampling: greedy is the argmax; seeded sampling repeats; top-k 1 is greedy.
  KvCache cache = m.make_cache();
  const auto logits = m.forward(ids.data(), 5, cache);
  SamplingOptions g;
  Sampler greedy(g);
  const int32_t best = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  CHECK(greedy.sample(logits.data(), 50) == best);
  SamplingOptions so;
  so.temperature = 1.0f;
  so.top_p = 0.9f;
  so.seed = 11;
  Sampler a(so), b(so);
  for (int i = 0; i < 20; ++i) CHECK(a.sample(logits.data(), 50) == b.sample(logits.data(), 50));
  so.top_k = 1;
  Sampler k1(so);
  CHECK(k1.sample(logits.data(), 50) == best);
}

}  // namespace test_llama_tiny
