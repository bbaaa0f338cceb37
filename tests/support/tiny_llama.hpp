#pragma once
// A tiny random LLaMA-family model for tests (2 blocks, hidden 64, GQA 4/2 heads, FFN 96), kept in
// HF names and HF (torch) shapes, and its GGUF form written with our GGUF writer with q/k rows
// permuted as llama.cpp's converter does. Shared by the runtime and pipeline tests.
#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include <nlohmann/json.hpp>
#include "support/llama_configs.hpp"

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
  LlamaShape shape = kTinyLlamaShape;
  shape.vocab = o.vocab;
  shape.context = o.context;
  t.cfg = llama_config(shape, o.arch);
  t.cfg.tie_word_embeddings = o.tied;
  const cluscomp::LlamaConfig& c = t.cfg;
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
  const int64_t H = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  add("model.embed_tokens.weight", {V, H}, 1.0f);
  add("model.norm.weight", {H}, 0.1f, 1.0f);
  if (!o.tied) add("lm_head.weight", {V, H}, 0.2f);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
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

/// The ChatML template of SmolLM2-Instruct (a default system message when the first is not one).
inline const char* kTinyChatTemplate =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' "
    "}}{% endif %}";

/// The GPT-2 alphabet form of a byte string (" a" -> "Ġa").
inline std::string tiny_byte_level(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) cluscomp::unicode::append_utf8(out, cluscomp::unicode::kByteUnicode.to_cp[b]);
  return out;
}

/// A SmolLM-style byte-level BPE vocabulary of exactly `vocab` tokens (32..51), so that every id
/// is valid for a tiny model of that vocabulary: the byte tokens of " ", a..z, 0, 1; merges in
/// priority order; then "<|endoftext|>" (BOS and EOS, control), "<|im_start|>", "<|im_end|>"
/// (control); digits pre-tokenised one by one; the ChatML template above.
inline cluscomp::TokenizerVocab tiny_tokenizer_vocab(int64_t vocab) {
  using namespace cluscomp;
  static const std::pair<const char*, const char*> kMerges[] = {
      {"h", "e"}, {" ", "t"}, {" t", "he"}, {"i", "n"}, {" ", "a"}, {"e", "r"}, {"o", "n"},
      {" ", "s"}, {"a", "t"}, {"e", "n"}, {"o", "r"}, {" ", "w"}, {"i", "s"}, {" ", "i"},
      {"e", "s"}, {"a", "n"}, {"l", "l"}, {" ", "c"}, {"an", "d"}};
  const int64_t n_merges = vocab - 32;
  REQUIRE(n_merges >= 0);
  REQUIRE(n_merges <= static_cast<int64_t>(std::size(kMerges)));
  TokenizerVocab v;
  v.model = TokenizerModel::kByteLevelBpe;
  v.pre = PreTokenizer::kDigitsThenGpt2;
  v.add_space_prefix = false;
  v.tokens.push_back(tiny_byte_level(" "));
  for (char c = 'a'; c <= 'z'; ++c) v.tokens.push_back(tiny_byte_level(std::string(1, c)));
  v.tokens.push_back("0");
  v.tokens.push_back("1");
  for (int64_t i = 0; i < n_merges; ++i) {
    const auto& m = kMerges[i];
    v.merges.emplace_back(tiny_byte_level(m.first), tiny_byte_level(m.second));
    v.tokens.push_back(tiny_byte_level(std::string(m.first) + m.second));
  }
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  for (const char* sp : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    v.tokens.push_back(sp);
    v.types.push_back(TokenType::kControl);
  }
  v.bos_id = v.eos_id = static_cast<int32_t>(vocab - 3);
  v.chat_template = kTinyChatTemplate;
  return v;
}

/// Writes `v` (from tiny_tokenizer_vocab) as an HF tokenizer.json + tokenizer_config.json in `dir`.
inline void write_tiny_tokenizer_json(const std::filesystem::path& dir, const cluscomp::TokenizerVocab& v) {
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array(), merges = nlohmann::json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.types[i] == cluscomp::TokenType::kControl)
      added.push_back({{"id", i}, {"content", v.tokens[i]}, {"special", true}});
    else
      vocab[v.tokens[i]] = i;
  }
  for (const auto& m : v.merges) merges.push_back(m.first + " " + m.second);
  const nlohmann::json j = {
      {"version", "1.0"},
      {"normalizer", nullptr},
      {"added_tokens", added},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", nlohmann::json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                 {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                                  {"trim_offsets", true}, {"use_regex", true}}})}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  std::ofstream(dir / "tokenizer.json") << j.dump();
  const std::string special = v.tokens.at(static_cast<size_t>(v.eos_id));
  std::ofstream(dir / "tokenizer_config.json")
      << nlohmann::json({{"bos_token", special}, {"eos_token", special}, {"add_bos_token", false},
                         {"chat_template", v.chat_template}})
             .dump();
}

/// An HF model directory: config.json, model.safetensors (fp32), and with `tokenizer` the
/// tiny_tokenizer_vocab as tokenizer.json + tokenizer_config.json.
inline void write_tiny_hf(const TinyLlama& t, const std::filesystem::path& dir, bool tokenizer) {
  std::filesystem::create_directories(dir);
  cluscomp::write_llama_config((dir / "config.json").string(), t.cfg);
  cluscomp::SafetensorsWriter w;
  for (const auto& kv : t.w)
    w.add(kv.first, cluscomp::DType::kF32, t.shape.at(kv.first), kv.second.data(), kv.second.size() * 4);
  w.write((dir / "model.safetensors").string());
  if (tokenizer) write_tiny_tokenizer_json(dir, tiny_tokenizer_vocab(t.cfg.vocab_size));
}

struct TinyGgufOptions {
  std::string arch_key;                           // general.architecture (default: cfg.model_type)
  std::string skip;                               // HF name of a tensor to leave out
  std::string misshape;                           // HF name of a tensor written with a wrong shape
  cluscomp::GgmlType type = cluscomp::GgmlType::kF32;  // type of the 2-D weights
  /// Extra 1-D F32 tensors written as they are, GGUF name -> values (e.g. ones without an HF name).
  std::vector<std::pair<std::string, std::vector<float>>> extra;
  bool tokenizer = false;  // write tiny_tokenizer_vocab(vocab_size) as tokenizer.ggml.* metadata
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
  if (o.tokenizer) {
    const TokenizerVocab v = tiny_tokenizer_vocab(c.vocab_size);
    std::vector<std::string> merges;
    for (const auto& m : v.merges) merges.push_back(m.first + " " + m.second);
    std::vector<int32_t> types;
    for (TokenType x : v.types) types.push_back(static_cast<int32_t>(x));
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", "smollm");
    w.add("tokenizer.ggml.tokens", GgufValue::string_array(v.tokens));
    w.add("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    w.add("tokenizer.ggml.merges", GgufValue::string_array(merges));
    w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id));
    w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id));
    w.add_bool("tokenizer.ggml.add_bos_token", false);
    w.add_string("tokenizer.chat_template", v.chat_template);
  }
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
