#pragma once
/// LLaMA-family models stored as GGUF: the architecture read from GGUF metadata as a LlamaConfig,
/// GGUF tensor names mapped to HF names, and tensor values in HF order.
///
/// llama.cpp's converter permutes the rows of q_proj and k_proj of llama/mistral files (each head's
/// rotary halves are interleaved for its RoPE kernel). Names map one to one; gguf_tensor_hf_values
/// undoes the permutation. These are facts of the file format, so they live here and not in the
/// runtime: the runtime's loader (model/llama.hpp) and compress (pipeline/compress.hpp) both read
/// GGUF through them (io/model_source.hpp).

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/hf_config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Reads the architecture of a LLaMA-family GGUF (`general.architecture` llama/mistral/qwen2)
/// into a LlamaConfig. Throws Error naming the file and the missing or bad key.
inline LlamaConfig llama_config_from_gguf(const GgufReader& g) {
  const std::string arch = g.get_string("general.architecture");
  if (arch != "llama" && arch != "mistral" && arch != "qwen2")
    throw Error(StatusCode::kUnsupported, g.name() + ": architecture '" + arch +
                                              "' is not LLaMA-family (llama, mistral, qwen2)");
  const std::string p = arch + ".";
  LlamaConfig c;
  c.model_type = arch;
  c.hidden_size = g.get_u32(p + "embedding_length");
  c.intermediate_size = g.get_u32(p + "feed_forward_length");
  c.num_hidden_layers = g.get_u32(p + "block_count");
  c.num_attention_heads = g.get_u32(p + "attention.head_count");
  c.num_key_value_heads = g.get_u32_or(p + "attention.head_count_kv",
                                       static_cast<uint32_t>(c.num_attention_heads));
  c.head_dim = g.has(p + "attention.key_length")
                   ? static_cast<int64_t>(g.get_u32(p + "attention.key_length"))
                   : (c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.rms_norm_eps = g.get_f32(p + "attention.layer_norm_rms_epsilon");
  c.rope_theta = g.get_f32_or(p + "rope.freq_base", 10000.0f);
  if (g.has(p + "rope.scaling.type")) {
    c.rope_scaling.type = g.get_string(p + "rope.scaling.type");
    if (c.rope_scaling.type == "none") c.rope_scaling.type.clear();
    c.rope_scaling.factor = g.get_f32_or(p + "rope.scaling.factor", 1.0f);
    c.rope_scaling.original_max_position_embeddings =
        g.get_u32_or(p + "rope.scaling.original_context_length", 0);
  }
  c.max_position_embeddings = g.get_u32(p + "context_length");
  if (g.has(p + "vocab_size"))
    c.vocab_size = g.get_u32(p + "vocab_size");
  else if (g.has("tokenizer.ggml.tokens"))
    c.vocab_size = static_cast<int64_t>(g.get("tokenizer.ggml.tokens").items.size());
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  c.attention_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr && arch != "qwen2";
  if (g.has("tokenizer.ggml.bos_token_id")) c.bos_token_ids = {g.get_u32("tokenizer.ggml.bos_token_id")};
  if (g.has("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {g.get_u32("tokenizer.ggml.eos_token_id")};
  throw_if_error(c.validate());
  return c;
}

/// The HF name of a GGUF tensor of a LLaMA-family model ("blk.3.attn_q.weight" ->
/// "model.layers.3.self_attn.q_proj.weight"); "" for a name with no HF counterpart.
inline std::string hf_name_from_gguf(const std::string& name) {
  static const std::pair<const char*, const char*> kTop[] = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  for (const auto& kv : kTop)
    if (name == kv.first) return kv.second;
  static const std::pair<const char*, const char*> kBlock[] = {
      {"attn_q", "self_attn.q_proj"},     {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},     {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},      {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"},
  };
  if (name.rfind("blk.", 0) != 0) return "";
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos) return "";
  const std::string layer = name.substr(4, dot - 4);
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return "";
  const size_t dot2 = name.find('.', dot + 1);
  if (dot2 == std::string::npos) return "";
  const std::string part = name.substr(dot + 1, dot2 - dot - 1);
  const std::string suffix = name.substr(dot2);  // ".weight" or ".bias"
  for (const auto& kv : kBlock)
    if (part == kv.first) return "model.layers." + layer + "." + kv.second + suffix;
  return "";
}

/// llama.cpp's converter stores each q/k head with its rotary halves interleaved (HF row
/// j*half + i of a head becomes row 2i + j). This restores HF order, in place, for a (rows, cols)
/// matrix (cols = 1 for a bias) of `heads` heads; T is float for values, unsigned char for a
/// quantised tensor's rows (cols = its row bytes: a row's blocks move together). Error(kFormatError)
/// when the rows do not split into `heads` heads of an even size.
template <class T>
inline void unpermute_gguf_qk_rows(std::vector<T>& m, int64_t heads, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(m.size()) / cols;
  if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0)
    throw Error(StatusCode::kFormatError, "q/k rows " + std::to_string(rows) +
                                              " do not split into " + std::to_string(heads) +
                                              " heads of an even size");
  const int64_t hd = rows / heads, half = hd / 2;
  std::vector<T> out(m.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i) {
        const T* src = m.data() + (h * hd + 2 * i + j) * cols;
        T* dst = out.data() + (h * hd + j * half + i) * cols;
        std::copy(src, src + cols, dst);
      }
  m.swap(out);
}

/// The number of heads whose rows llama.cpp permuted in HF tensor `hf` of a model `c` (q_proj:
/// attention heads, k_proj: key/value heads, weights and biases of llama/mistral files), or 0
/// when the tensor is stored in HF order.
inline int64_t gguf_permuted_heads(const std::string& hf, const LlamaConfig& c) {
  if (c.model_type != "llama" && c.model_type != "mistral") return 0;
  auto ends = [&](const char* suf) {
    const std::string x(suf);
    return hf.size() >= x.size() && hf.compare(hf.size() - x.size(), x.size(), x) == 0;
  };
  if (ends("self_attn.q_proj.weight") || ends("self_attn.q_proj.bias")) return c.num_attention_heads;
  if (ends("self_attn.k_proj.weight") || ends("self_attn.k_proj.bias")) return c.num_key_value_heads;
  return 0;
}

/// The GGUF tensors of a LLaMA-family file under their HF names, in file order, and the GGUF
/// names of those without one (e.g. rope_freqs.weight), also in file order. Pointers into `g`.
struct GgufHfTensors {
  std::vector<std::pair<std::string, const GgufTensorInfo*>> tensors;  // (HF name, tensor)
  std::vector<std::string> skipped;
};

inline GgufHfTensors gguf_hf_tensors(const GgufReader& g) {
  GgufHfTensors r;
  for (const GgufTensorInfo& t : g.tensors()) {
    std::string hf = hf_name_from_gguf(t.name);
    if (hf.empty())
      r.skipped.push_back(t.name);
    else
      r.tensors.emplace_back(std::move(hf), &t);
  }
  return r;
}

/// The values of GGUF tensor `t` (HF name `hf`) as fp32 in HF order: dequantised (bit-identical
/// to ggml), q/k rows of llama/mistral files (c.model_type) restored with unpermute_gguf_qk_rows.
/// Its HF shape is t.ne reversed. Errors: those of dequantize_tensor and unpermute_gguf_qk_rows.
inline std::vector<float> gguf_tensor_hf_values(const GgufReader& g, const GgufTensorInfo& t, const std::string& hf,
                                                const LlamaConfig& c) {
  std::vector<float> v = dequantize_tensor(g, t);
  const int64_t cols = t.ne.size() == 2 ? t.ne[0] : 1;  // HF shape (rows, cols) = ne reversed
  if (const int64_t heads = gguf_permuted_heads(hf, c)) unpermute_gguf_qk_rows(v, heads, cols);
  return v;
}

/// The bytes of GGUF tensor `t` (HF name `hf`) as stored (its ggml type), rows in HF order: the
/// same row permutation as gguf_tensor_hf_values, applied to whole rows of blocks. Errors: those
/// of unpermute_gguf_qk_rows.
inline std::vector<unsigned char> gguf_tensor_hf_bytes(const GgufReader& g, const GgufTensorInfo& t,
                                                       const std::string& hf, const LlamaConfig& c) {
  const unsigned char* d = g.tensor_data(t);
  std::vector<unsigned char> v(d, d + t.n_bytes);
  const int64_t rows = t.ne.size() == 2 ? t.ne[1] : static_cast<int64_t>(t.n_elements);
  if (const int64_t heads = gguf_permuted_heads(hf, c))
    unpermute_gguf_qk_rows(v, heads, static_cast<int64_t>(t.n_bytes) / rows);
  return v;
}

CLUSCOMP_NAMESPACE_END
