// HF config.json for LLaMA-family models: parsing real-shaped configs, defaults, round trip, and
// one negative test per validation rule.
#include <catch2/catch.hpp>

#include <string>

#include "cluscomp/io/hf_config.hpp"
#include "support/test_data.hpp"

namespace test_hf_config {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

namespace {

// Shaped like meta-llama/Llama-3.2-1B's config.json.
const char* kLlama32 = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false, "attention_dropout": 0.0, "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu",
  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
  "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.45.0.dev0", "use_cache": true, "vocab_size": 128256
})";

// Shaped like HuggingFaceTB/SmolLM2-135M: no head_dim, integer rope_theta.
const char* kSmol = R"({"architectures":["LlamaForCausalLM"],"bos_token_id":0,"eos_token_id":0,
  "hidden_act":"silu","hidden_size":576,"intermediate_size":1536,"max_position_embeddings":8192,
  "model_type":"llama","num_attention_heads":9,"num_hidden_layers":30,"num_key_value_heads":3,
  "rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":100000,"tie_word_embeddings":true,
  "torch_dtype":"bfloat16","vocab_size":49152})";

const char* kMistral = R"({"model_type":"mistral","hidden_size":4096,"intermediate_size":14336,
  "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"sliding_window":4096,
  "rms_norm_eps":1e-05,"rope_theta":10000.0,"vocab_size":32000,"bos_token_id":1,"eos_token_id":2})";

const char* kQwen2 = R"({"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,
  "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"sliding_window":32768,
  "use_sliding_window":false,"max_window_layers":21,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
  "vocab_size":151936,"tie_word_embeddings":true,"torch_dtype":"bfloat16"})";

const char* kMinimal = R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,
  "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100})";

/// kMinimal with `key` set to raw JSON `value` (or removed when value is empty).
std::string minimal_with(const std::string& key, const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(kMinimal);
  if (value.empty()) j.erase(key);
  else j[key] = nlohmann::json::parse(value);
  return j.dump();
}

void expect_error(const std::string& text, StatusCode code, std::initializer_list<const char*> fragments) {
  try {
    (void)parse_llama_config(text, "cfg.json");
    FAIL("parsed without error: " << text);
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(e.code() == code);
    const std::string msg = e.what();
    CHECK(msg.find("cfg.json") != std::string::npos);
    for (const char* f : fragments) {
      INFO("expected fragment: " << f);
      CHECK(msg.find(f) != std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("a Llama-3.2 config parses with llama3 rope scaling and eos list", "[hf_config]") {
  const LlamaConfig c = parse_llama_config(kLlama32);
  REQUIRE(c.model_type == "llama");
  REQUIRE(c.hidden_size == 2048);
  REQUIRE(c.intermediate_size == 8192);
  REQUIRE(c.num_hidden_layers == 16);
  REQUIRE(c.num_attention_heads == 32);
  REQUIRE(c.num_key_value_heads == 8);
  REQUIRE(c.head_dim == 64);
  REQUIRE(c.rms_norm_eps == 1e-5);
  REQUIRE(c.rope_theta == 500000.0);
  REQUIRE(c.rope_scaling.type == "llama3");
  REQUIRE(c.rope_scaling.factor == 32.0);
  REQUIRE(c.rope_scaling.low_freq_factor == 1.0);
  REQUIRE(c.rope_scaling.high_freq_factor == 4.0);
  REQUIRE(c.rope_scaling.original_max_position_embeddings == 8192);
  REQUIRE(c.max_position_embeddings == 131072);
  REQUIRE(c.vocab_size == 128256);
  REQUIRE(c.tie_word_embeddings);
  REQUIRE(!c.attention_bias);
  REQUIRE(!c.mlp_bias);
  REQUIRE(c.bos_token_ids == std::vector<int64_t>{128000});
  REQUIRE(c.eos_token_ids == std::vector<int64_t>{128001, 128008, 128009});
  REQUIRE(c.torch_dtype == "bfloat16");
  REQUIRE(c.num_clusters == 0);
  REQUIRE(c.extra.at("transformers_version") == "4.45.0.dev0");
  REQUIRE(!c.extra.contains("hidden_size"));
  REQUIRE(c.q_dim() == 2048);
  REQUIRE(c.kv_dim() == 512);
}

TEST_CASE("defaults: head_dim, kv heads, rope, linear scaling, mistral, qwen2", "[hf_config]") {
  const LlamaConfig s = parse_llama_config(kSmol);
  REQUIRE(s.head_dim == 64);
  REQUIRE(s.rope_theta == 100000.0);
  REQUIRE(s.rope_scaling.type.empty());
  REQUIRE(s.eos_token_ids == std::vector<int64_t>{0});

  const LlamaConfig m = parse_llama_config(kMinimal);
  REQUIRE(m.num_key_value_heads == 4);
  REQUIRE(m.head_dim == 16);
  REQUIRE(m.rms_norm_eps == 1e-6);
  REQUIRE(m.rope_theta == 10000.0);
  REQUIRE(m.max_position_embeddings == 2048);
  REQUIRE(!m.tie_word_embeddings);
  REQUIRE(m.bos_token_ids.empty());
  REQUIRE(m.sliding_window == 0);

  const LlamaConfig lin = parse_llama_config(minimal_with("rope_scaling", R"({"type":"linear","factor":2})"));
  REQUIRE(lin.rope_scaling.type == "linear");
  REQUIRE(lin.rope_scaling.factor == 2.0);
  REQUIRE(parse_llama_config(minimal_with("rope_scaling", R"({"rope_type":"default"})")).rope_scaling.type.empty());

  const LlamaConfig mi = parse_llama_config(kMistral);
  REQUIRE(mi.sliding_window == 4096);
  REQUIRE(!mi.qkv_bias());

  const LlamaConfig q = parse_llama_config(kQwen2);
  REQUIRE(q.head_dim == 64);
  REQUIRE(q.sliding_window == 0);  // use_sliding_window false
  REQUIRE(q.qkv_bias());
  REQUIRE(!q.o_bias());

  nlohmann::json cj = nlohmann::json::parse(kMinimal);
  cj["num_clusters"] = 65500;
  cj["cluster_dim"] = 4;
  const LlamaConfig cl = parse_llama_config(cj.dump());
  REQUIRE(cl.num_clusters == 65500);
  REQUIRE(cl.cluster_dim == 4);
}

TEST_CASE("config round-trips through the writer, keeping unknown keys", "[hf_config]") {
  cluscomp_test::TempDir dir;
  for (const char* text : {kLlama32, kSmol, kMistral, kQwen2, kMinimal}) {
    LlamaConfig c = parse_llama_config(text);
    c.num_clusters = 256;
    c.cluster_dim = 8;
    const std::string p = (dir / "config.json").string();
    write_llama_config(p, c);
    const LlamaConfig r = read_llama_config(p);
    REQUIRE(r.model_type == c.model_type);
    REQUIRE(r.hidden_size == c.hidden_size);
    REQUIRE(r.intermediate_size == c.intermediate_size);
    REQUIRE(r.num_hidden_layers == c.num_hidden_layers);
    REQUIRE(r.num_attention_heads == c.num_attention_heads);
    REQUIRE(r.num_key_value_heads == c.num_key_value_heads);
    REQUIRE(r.head_dim == c.head_dim);
    REQUIRE(r.rms_norm_eps == c.rms_norm_eps);
    REQUIRE(r.rope_theta == c.rope_theta);
    REQUIRE(r.rope_scaling == c.rope_scaling);
    REQUIRE(r.max_position_embeddings == c.max_position_embeddings);
    REQUIRE(r.vocab_size == c.vocab_size);
    REQUIRE(r.tie_word_embeddings == c.tie_word_embeddings);
    REQUIRE(r.attention_bias == c.attention_bias);
    REQUIRE(r.mlp_bias == c.mlp_bias);
    REQUIRE(r.bos_token_ids == c.bos_token_ids);
    REQUIRE(r.eos_token_ids == c.eos_token_ids);
    REQUIRE(r.torch_dtype == c.torch_dtype);
    REQUIRE(r.sliding_window == c.sliding_window);
    REQUIRE(r.num_clusters == 256);
    REQUIRE(r.cluster_dim == 8);
    REQUIRE(r.extra == c.extra);
    // Deterministic bytes.
    REQUIRE(llama_config_to_json(r).dump(2) == llama_config_to_json(c).dump(2));
  }
}

TEST_CASE("projection shapes come from the config", "[hf_config]") {
  const LlamaConfig c = parse_llama_config(kLlama32);
  int64_t out = 0, in = 0;
  REQUIRE(llama_projection_shape(c, "model.layers.3.self_attn.q_proj.weight", &out, &in));
  REQUIRE((out == 2048 && in == 2048));
  REQUIRE(llama_projection_shape(c, "model.layers.3.self_attn.k_proj", &out, &in));
  REQUIRE((out == 512 && in == 2048));
  REQUIRE(llama_projection_shape(c, "model.layers.0.self_attn.v_proj", &out, &in));
  REQUIRE((out == 512 && in == 2048));
  REQUIRE(llama_projection_shape(c, "model.layers.0.self_attn.o_proj", &out, &in));
  REQUIRE((out == 2048 && in == 2048));
  REQUIRE(llama_projection_shape(c, "model.layers.0.mlp.gate_proj", &out, &in));
  REQUIRE((out == 8192 && in == 2048));
  REQUIRE(llama_projection_shape(c, "model.layers.0.mlp.up_proj", &out, &in));
  REQUIRE((out == 8192 && in == 2048));
  REQUIRE(llama_projection_shape(c, "model.layers.0.mlp.down_proj.weight", &out, &in));
  REQUIRE((out == 2048 && in == 8192));
  REQUIRE(!llama_projection_shape(c, "model.embed_tokens.weight", &out, &in));
  REQUIRE(!llama_projection_shape(c, "lm_head", &out, &in));
}

TEST_CASE("one negative test per config validation rule", "[hf_config]") {
  const auto F = StatusCode::kFormatError;
  const auto I = StatusCode::kInvalidArgument;
  const auto U = StatusCode::kUnsupported;
  SECTION("not JSON / not an object") {
    expect_error("{\"model_type\":", F, {"not valid JSON"});
    expect_error("[1]", F, {"not a JSON object"});
  }
  SECTION("unknown architecture") {
    expect_error(minimal_with("model_type", "\"gpt2\""), U, {"unknown architecture", "'gpt2'"});
    expect_error(minimal_with("model_type", ""), F, {"missing required key 'model_type'"});
  }
  SECTION("missing required keys") {
    for (const char* k : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"})
      expect_error(minimal_with(k, ""), F, {"missing required key", k});
  }
  SECTION("wrong JSON types") {
    expect_error(minimal_with("hidden_size", "\"64\""), F, {"'hidden_size'", "must be an integer"});
    expect_error(minimal_with("hidden_size", "64.5"), F, {"'hidden_size'", "must be an integer"});
    expect_error(minimal_with("rms_norm_eps", "\"x\""), F, {"'rms_norm_eps'", "must be a number"});
    expect_error(minimal_with("tie_word_embeddings", "1"), F, {"'tie_word_embeddings'", "true or false"});
    expect_error(minimal_with("torch_dtype", "16"), F, {"'torch_dtype'", "must be a string"});
    expect_error(minimal_with("eos_token_id", R"(["a"])"), F, {"'eos_token_id'", "list of integers"});
    expect_error(minimal_with("rope_scaling", "3"), F, {"'rope_scaling' must be an object"});
  }
  SECTION("non-positive sizes") {
    expect_error(minimal_with("num_hidden_layers", "0"), I, {"num_hidden_layers must be positive"});
    expect_error(minimal_with("vocab_size", "-3"), I, {"vocab_size must be positive, got -3"});
    expect_error(minimal_with("rms_norm_eps", "0"), I, {"rms_norm_eps must be positive"});
  }
  SECTION("heads not dividing hidden") {
    expect_error(minimal_with("num_attention_heads", "5"), I, {"num_attention_heads 5 does not divide hidden_size 64"});
    // With an explicit head_dim the division is not required (Mistral-Nemo style).
    nlohmann::json j = nlohmann::json::parse(kMinimal);
    j["num_attention_heads"] = 5;
    j["head_dim"] = 16;
    REQUIRE(parse_llama_config(j.dump()).q_dim() == 80);
  }
  SECTION("kv heads not dividing heads") {
    expect_error(minimal_with("num_key_value_heads", "3"), I,
                 {"num_key_value_heads 3 does not divide num_attention_heads 4"});
  }
  SECTION("unsupported activation and rope scaling") {
    expect_error(minimal_with("hidden_act", "\"gelu\""), U, {"hidden_act 'gelu'"});
    expect_error(minimal_with("rope_scaling", R"({"type":"yarn","factor":4})"), U, {"rope_scaling type 'yarn'"});
    expect_error(minimal_with("rope_scaling", R"({"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1,"original_max_position_embeddings":8192})"),
                 I, {"low_freq_factor < high_freq_factor"});
    expect_error(minimal_with("rope_scaling", R"({"rope_type":"llama3","factor":8})"), I,
                 {"original_max_position_embeddings"});
    expect_error(minimal_with("rope_scaling", R"({"type":"linear","factor":0})"), I, {"rope_scaling.factor"});
  }
  SECTION("clustered extras") {
    expect_error(minimal_with("num_clusters", "16"), I, {"num_clusters and cluster_dim must be given together"});
    nlohmann::json j = nlohmann::json::parse(kMinimal);
    j["num_clusters"] = 70000;
    j["cluster_dim"] = 4;
    expect_error(j.dump(), I, {"num_clusters must be in 1..65536, got 70000"});
    j["num_clusters"] = 16;
    j["cluster_dim"] = 17;
    expect_error(j.dump(), I, {"cluster_dim must be in 1..16, got 17"});
  }
  SECTION("writer validates too") {
    LlamaConfig c = parse_llama_config(kMinimal);
    c.num_key_value_heads = 3;
    cluscomp_test::TempDir dir;
    REQUIRE_THROWS_AS(write_llama_config((dir / "config.json").string(), c), Error);
    REQUIRE(!std::filesystem::exists(dir / "config.json"));
  }
}

}  // namespace test_hf_config
