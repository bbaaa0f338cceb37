// LLaMA-family GGUF: the architecture as a LlamaConfig, and GGUF -> HF tensor names.
#include <catch2/catch.hpp>

#include <vector>

#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/gguf_writer.hpp"

namespace test_gguf_llama {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

namespace {

std::vector<unsigned char> tiny_llama(bool tied, const char* arch = "llama") {
  GgufWriter w;
  const std::string a = arch;
  w.add_string("general.architecture", a);
  w.add_u32(a + ".embedding_length", 64);
  w.add_u32(a + ".feed_forward_length", 160);
  w.add_u32(a + ".block_count", 2);
  w.add_u32(a + ".attention.head_count", 4);
  w.add_u32(a + ".attention.head_count_kv", 2);
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  w.add_f32(a + ".rope.freq_base", 500000.0f);
  w.add_u32(a + ".context_length", 256);
  w.add(std::string("tokenizer.ggml.tokens"), GgufValue::string_array({"a", "b", "c"}));
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  std::vector<float> norm(64, 1.0f);
  w.add_tensor("output_norm.weight", GgmlType::kF32, {64}, norm.data(), norm.size() * 4);
  if (!tied) {
    std::vector<float> out(64 * 3, 0.5f);
    w.add_tensor("output.weight", GgmlType::kF32, {64, 3}, out.data(), out.size() * 4);
  }
  return w.to_bytes();
}

}  // namespace

TEST_CASE("llama_config_from_gguf reads the architecture keys", "[gguf][llama]") {
  const auto bytes = tiny_llama(/*tied=*/true);
  GgufReader g(bytes.data(), bytes.size(), "tiny.gguf");
  const LlamaConfig c = llama_config_from_gguf(g);
  CHECK(c.model_type == "llama");
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 160);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.head_dim == 16);
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.max_position_embeddings == 256);
  CHECK(c.vocab_size == 3);  // from the token list when llama.vocab_size is absent
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_ids == std::vector<int64_t>{1});
  CHECK(c.eos_token_ids == std::vector<int64_t>{2});

  const auto untied = tiny_llama(/*tied=*/false);
  GgufReader g2(untied.data(), untied.size(), "untied.gguf");
  CHECK_FALSE(llama_config_from_gguf(g2).tie_word_embeddings);
}

TEST_CASE("llama_config_from_gguf rejects other architectures and missing keys", "[gguf][llama]") {
  const auto bytes = tiny_llama(true, "gpt2");
  GgufReader g(bytes.data(), bytes.size(), "gpt2.gguf");
  try {
    llama_config_from_gguf(g);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kUnsupported);
    CHECK_THAT(e.what(), Catch::Contains("gpt2") && Catch::Contains("gpt2.gguf"));
  }
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.embedding_length", 64);
  const auto b2 = w.to_bytes();
  GgufReader g2(b2.data(), b2.size(), "partial.gguf");
  try {
    llama_config_from_gguf(g2);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kNotFound);
    CHECK_THAT(e.what(), Catch::Contains("llama.feed_forward_length"));
  }
}

TEST_CASE("hf_name_from_gguf maps every LLaMA tensor name", "[gguf][llama]") {
  CHECK(hf_name_from_gguf("token_embd.weight") == "model.embed_tokens.weight");
  CHECK(hf_name_from_gguf("output.weight") == "lm_head.weight");
  CHECK(hf_name_from_gguf("output_norm.weight") == "model.norm.weight");
  CHECK(hf_name_from_gguf("blk.12.attn_q.weight") == "model.layers.12.self_attn.q_proj.weight");
  CHECK(hf_name_from_gguf("blk.0.attn_k.bias") == "model.layers.0.self_attn.k_proj.bias");
  CHECK(hf_name_from_gguf("blk.3.attn_v.weight") == "model.layers.3.self_attn.v_proj.weight");
  CHECK(hf_name_from_gguf("blk.3.attn_output.weight") == "model.layers.3.self_attn.o_proj.weight");
  CHECK(hf_name_from_gguf("blk.29.ffn_gate.weight") == "model.layers.29.mlp.gate_proj.weight");
  CHECK(hf_name_from_gguf("blk.29.ffn_up.weight") == "model.layers.29.mlp.up_proj.weight");
  CHECK(hf_name_from_gguf("blk.29.ffn_down.weight") == "model.layers.29.mlp.down_proj.weight");
  CHECK(hf_name_from_gguf("blk.1.attn_norm.weight") == "model.layers.1.input_layernorm.weight");
  CHECK(hf_name_from_gguf("blk.1.ffn_norm.weight") == "model.layers.1.post_attention_layernorm.weight");
  CHECK(hf_name_from_gguf("blk.x.attn_q.weight").empty());
  CHECK(hf_name_from_gguf("blk.1.rope_freqs.weight").empty());
  CHECK(hf_name_from_gguf("rope_freqs.weight").empty());
  CHECK(hf_name_from_gguf("blk.").empty());
}

}  // namespace test_gguf_llama
