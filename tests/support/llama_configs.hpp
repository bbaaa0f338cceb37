#pragma once
// The LLaMA shapes that tests and benchmarks build models of, and the one function that turns a
// shape into a LlamaConfig. No Catch2 here: bench/ includes it too (its targets have tests/ on
// the include path but do not link Catch2).
#include <cstdint>
#include <string>

#include "cluscomp/io/hf_config.hpp"

namespace cluscomp_test {

/// The fields of a LlamaConfig that give a model its shape; every other field keeps LlamaConfig's
/// default.
struct LlamaShape {
  int64_t hidden;
  int64_t intermediate;
  int64_t layers;
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t vocab;
  int64_t context;  // max_position_embeddings
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
};

/// The tiny random model of tiny_llama.hpp: 2 blocks, hidden 64, GQA 4/2 heads of 16, FFN 96.
inline constexpr LlamaShape kTinyLlamaShape{64, 96, 2, 4, 2, 16, 50, 48};
/// The autograd block tests: GQA 4/2 heads of 4, hidden 16, FFN 24, small enough for finite
/// differences in double.
inline constexpr LlamaShape kTinyBlockShape{16, 24, 1, 4, 2, 4, 10, 64};
/// The checkpoint-format tests: 2 blocks of hidden 8; rms_norm_eps stays LlamaConfig's default.
inline constexpr LlamaShape kTinyCheckpointShape{8, 12, 2, 2, 1, 4, 16, 64, 1e-6};
/// One block of the real model (SmolLM2-135M: hidden 576, 9/3 heads of 64, FFN 1536), for timings.
inline constexpr LlamaShape kSmolLM2BlockShape{576, 1536, 1, 9, 3, 64, 16, 2048, 1e-5, 100000.0};

/// A LlamaConfig of shape `s` and family `arch` (llama | mistral | qwen2).
inline cluscomp::LlamaConfig llama_config(const LlamaShape& s, const std::string& arch = "llama") {
  cluscomp::LlamaConfig c;
  c.model_type = arch;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.rms_norm_eps = s.rms_norm_eps;
  c.rope_theta = s.rope_theta;
  c.max_position_embeddings = s.context;
  c.vocab_size = s.vocab;
  return c;
}

}  // namespace cluscomp_test
