#pragma once
/// LLaMA-family models stored as GGUF: the architecture read from GGUF metadata as a LlamaConfig,
/// and GGUF tensor names mapped to HF names.
///
/// Note for the runtime: llama.cpp's converter permutes the rows of q_proj and k_proj (each head's
/// rotary halves are interleaved for its RoPE kernel). Names map one to one; values of
/// attn_q / attn_k are in that permuted order.

#include <string>

#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"
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

CLUSCOMP_NAMESPACE_END
