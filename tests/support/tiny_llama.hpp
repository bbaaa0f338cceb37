#pragma once
// A tiny random LLaMA-family model for tests (2 blocks, hidden 64, GQA 4/2 heads, FFN 96), kept in
// HF names and HF (torch) shapes, and its GGUF form written with our GGUF writer with q/k rows
// permuted as llama.cpp's converter does. Shared by the runtime and pipeline tests.
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/hf_config.hpp"

namespace cluscomp_test {

struct TinyLlama {
  cluscomp::LlamaConfig cfg;
  std::map<std::string, std::vector<float>> w;        // HF names, HF order
  std::map<std::string, std::vector<int64_t>> shape;  // HF (torch) shapes
};

struct TinyLlamaOptions {
  std::string arch = "llama";  // llama | mistral | qwen2
  bool tied = true;            // tie lm_head to the embedding
  bool bias = false;           // q/k/v biases (Qwen2 style)
  uint32_t seed = 777;
  int64_t vocab = 50;
  int64_t context = 48;
};

/// Gaussian weights drawn in a fixed order from `seed`: the same options give the same model.
inline TinyLlama make_tiny_llama(const TinyLlamaOptions& o = {}) {
  TinyLlama t;
  cluscomp::LlamaConfig& c = t.cfg;
  c.model_type = o.arch;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = o.context;
  c.vocab_size = o.vocab;
  c.tie_word_embeddings = o.tied;
  std::mt19937 rng(o.seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  auto add = [&](const std::string& name, std::vector<int64_t> sh, float scale, float offset = 0.0f) {
    int64_t n = 1;
    for (int64_t s : sh) n *= s;
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = offset + scale * nd(rng);
    t.w[name] = v;
    t.shape[name] = sh;
  };
  const int64_t H = 64, F = 96, Q = 64, KV = 32, V = o.vocab;
  add("model.embed_tokens.weight", {V, H}, 1.0f);
  add("model.norm.weight", {H}, 0.1f, 1.0f);
  if (!o.tied) add("lm_head.weight", {V, H}, 0.2f);
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {H}, 0.1f, 1.0f);
    add(p + "self_attn.q_proj.weight", {Q, H}, 0.25f);
    add(p + "self_attn.k_proj.weight", {KV, H}, 0.25f);
    add(p + "self_attn.v_proj.weight", {KV, H}, 0.15f);
    add(p + "self_attn.o_proj.weight", {H, Q}, 0.15f);
    add(p + "mlp.gate_proj.weight", {F, H}, 0.15f);
    add(p + "mlp.up_proj.weight", {F, H}, 0.15f);
    add(p + "mlp.down_proj.weight", {H, F}, 0.1f);
    if (o.bias) {
      add(p + "self_attn.q_proj.bias", {Q}, 0.5f);
      add(p + "self_attn.k_proj.bias", {KV}, 0.5f);
      add(p + "self_attn.v_proj.bias", {KV}, 0.5f);
    }
  }
  return t;
}

/// llama.cpp's converter permutation (HF -> GGUF) of q/k rows: reshape(heads, 2, hd/2, cols),
/// swap axes 1 and 2. Written independently of the runtime's inverse.
inline std::vector<float> permute_like_llama_cpp(const std::vector<float>& m, int64_t heads, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(m.size()) / cols, hd = rows / heads, half = hd / 2;
  std::vector<float> out(m.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j)
        for (int64_t c = 0; c < cols; ++c)
          out[static_cast<size_t>((h * hd + 2 * i + j) * cols + c)] =
              m[static_cast<size_t>((h * hd + j * half + i) * cols + c)];
  return out;
}

/// The GGUF name of an HF tensor name of the tiny model ("" for none); the test-side inverse of
/// cluscomp::hf_name_from_gguf, written independently of it.
inline std::string gguf_name_of(const std::string& hf) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  for (const auto& kv : kTop)
    if (hf == kv.first) return kv.second;
  static const std::pair<const char*, const char*> kBlock[] = {
      {"self_attn.q_proj", "attn_q"},      {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"},  {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},       {"input_layernorm", "attn_norm"},
      {"post_attention_layernorm", "ffn_norm"}};
  const size_t a = std::string("model.layers.").size();
  if (hf.rfind("model.layers.", 0) != 0) return "";
  const size_t dot = hf.find('.', a);
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(a, dot - a), rest = hf.substr(dot + 1);
  for (const auto& kv : kBlock) {
    const std::string k = kv.first;
    if (rest.rfind(k + ".", 0) == 0) return "blk." + layer + "." + kv.second + rest.substr(k.size());
  }
  return "";
}

struct TinyGgufOptions {
  std::string arch_key;                           // general.architecture (default: cfg.model_type)
  std::string skip;                               // HF name of a tensor to leave out
  std::string misshape;                           // HF name of a tensor written with a wrong shape
  cluscomp::GgmlType type = cluscomp::GgmlType::kF32;  // type of the 2-D weights
  /// Extra 1-D F32 tensors written as they are, GGUF name -> values (e.g. ones without an HF name).
  std::vector<std::pair<std::string, std::vector<float>>> extra;
};

/// The GGUF file bytes of a tiny model (q/k rows permuted for llama, as llama.cpp does).
inline std::vector<unsigned char> write_tiny_gguf(const TinyLlama& t, const TinyGgufOptions& o = {}) {
  using namespace cluscomp;
  const LlamaConfig& c = t.cfg;
  const std::string a = o.arch_key.empty() ? c.model_type : o.arch_key;
  GgufWriter w;
  w.add_string("general.architecture", a);
  w.add_u32(a + ".embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.add_u32(a + ".block_count", static_cast<uint32_t>(c.num_hidden_layers));
  w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(c.num_attention_heads));
  w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(c.num_key_value_heads));
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.add_f32(a + ".rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_u32(a + ".context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.add_u32(a + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  const bool permute = c.model_type == "llama";
  for (const auto& [hf, v] : t.w) {
    if (hf == o.skip) continue;
    const std::string gname = gguf_name_of(hf);
    REQUIRE(!gname.empty());
    const std::vector<int64_t>& sh = t.shape.at(hf);
    std::vector<float> data = v;
    const int64_t cols = sh.size() == 2 ? sh[1] : 1;
    if (permute && hf.find("q_proj") != std::string::npos) data = permute_like_llama_cpp(data, c.num_attention_heads, cols);
    if (permute && hf.find("k_proj") != std::string::npos) data = permute_like_llama_cpp(data, c.num_key_value_heads, cols);
    std::vector<int64_t> ne(sh.rbegin(), sh.rend());
    if (hf == o.misshape) std::swap(ne[0], ne[1]);
    if (sh.size() == 2 && o.type != GgmlType::kF32) {
      const auto q = quantize(o.type, data.data(), static_cast<int64_t>(data.size()));
      w.add_tensor(gname, o.type, ne, q.data(), q.size());
    } else {
      w.add_tensor(gname, GgmlType::kF32, ne, data.data(), data.size() * 4);
    }
  }
  for (const auto& [gname, v] : o.extra)
    w.add_tensor(gname, GgmlType::kF32, {static_cast<int64_t>(v.size())}, v.data(), v.size() * 4);
  return w.to_bytes();
}

/// Token ids with structure a tiny model can learn (i * 7 mod vocab, a third of them replaced by
/// random ids from a fixed seed): correlated, realistic-looking activations, not white noise.
inline std::vector<int32_t> pattern_tokens(int64_t n, int64_t vocab) {
  std::mt19937 rng(5);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7 + (rng() % 3 == 0 ? rng() % vocab : 0)) % vocab);
  return t;
}

}  // namespace cluscomp_test
