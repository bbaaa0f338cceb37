#pragma once
/// Hugging Face `config.json` of a LLaMA-family decoder (model_type llama, mistral, qwen2) as a
/// plain struct, with validation and an atomic writer.
///
/// Keys cluscomp does not model are kept in `LlamaConfig::extra` and written back unchanged, so a
/// config survives read -> write (keys sorted, 2-space indentation).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/safetensors.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// RoPE scaling. `type` is "" (none), "linear" (positions divided by factor) or "llama3"
/// (frequency-dependent, uses all fields).
struct RopeScaling {
  std::string type;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
  bool operator==(const RopeScaling& o) const {
    return type == o.type && factor == o.factor && low_freq_factor == o.low_freq_factor &&
           high_freq_factor == o.high_freq_factor &&
           original_max_position_embeddings == o.original_max_position_embeddings;
  }
};

/// The fields of a LLaMA-family config that the model code needs.
struct LlamaConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;   // default: num_attention_heads
  int64_t head_dim = 0;              // default: hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  int64_t vocab_size = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // llama: bias on q, k, v and o
  bool mlp_bias = false;
  std::vector<int64_t> bos_token_ids;  // HF allows an int or a list
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype;  // "bfloat16", "float16", "float32" or ""
  std::string hidden_act = "silu";
  /// Effective sliding attention window, 0 = full attention (mistral: `sliding_window`; qwen2:
  /// `sliding_window` when `use_sliding_window`). Derived on read; the source keys stay in extra.
  int64_t sliding_window = 0;
  /// The reference ClusComp's clustered-checkpoint extras; 0 when absent.
  int64_t num_clusters = 0;
  int64_t cluster_dim = 0;
  /// Every other key of the source file, written back unchanged.
  nlohmann::json extra = nlohmann::json::object();

  /// q, k, v projections carry a bias (llama: attention_bias; qwen2: always).
  bool qkv_bias() const { return attention_bias || model_type == "qwen2"; }
  /// o projection carries a bias (llama attention_bias; never for qwen2).
  bool o_bias() const { return attention_bias && model_type != "qwen2"; }
  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }

  /// Checks the fields; the message names the bad value. kUnsupported for an unknown
  /// model_type, activation or rope scaling, kInvalidArgument for inconsistent numbers.
  Status validate() const {
    auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "config: " + m); };
    if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2")
      return Status(StatusCode::kUnsupported, "config: unknown architecture model_type '" + model_type +
                                                  "' (supported: llama, mistral, qwen2)");
    if (hidden_act != "silu")
      return Status(StatusCode::kUnsupported, "config: hidden_act '" + hidden_act + "' (only silu)");
    const std::pair<const char*, int64_t> pos[] = {
        {"hidden_size", hidden_size}, {"intermediate_size", intermediate_size},
        {"num_hidden_layers", num_hidden_layers}, {"num_attention_heads", num_attention_heads},
        {"num_key_value_heads", num_key_value_heads}, {"head_dim", head_dim},
        {"max_position_embeddings", max_position_embeddings}, {"vocab_size", vocab_size}};
    for (const auto& p : pos)
      if (p.second <= 0) return bad(std::string(p.first) + " must be positive, got " + std::to_string(p.second));
    if (num_attention_heads % num_key_value_heads != 0)
      return bad("num_key_value_heads " + std::to_string(num_key_value_heads) +
                 " does not divide num_attention_heads " + std::to_string(num_attention_heads));
    if (!(rms_norm_eps > 0.0)) return bad("rms_norm_eps must be positive, got " + std::to_string(rms_norm_eps));
    if (!(rope_theta > 0.0)) return bad("rope_theta must be positive, got " + std::to_string(rope_theta));
    if (!rope_scaling.type.empty()) {
      if (rope_scaling.type != "linear" && rope_scaling.type != "llama3")
        return Status(StatusCode::kUnsupported,
                      "config: rope_scaling type '" + rope_scaling.type + "' (supported: linear, llama3)");
      if (!(rope_scaling.factor > 0.0))
        return bad("rope_scaling.factor must be positive, got " + std::to_string(rope_scaling.factor));
      if (rope_scaling.type == "llama3") {
        if (!(rope_scaling.low_freq_factor > 0.0) ||
            !(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor))
          return bad("rope_scaling llama3 needs 0 < low_freq_factor < high_freq_factor, got " +
                     std::to_string(rope_scaling.low_freq_factor) + ", " +
                     std::to_string(rope_scaling.high_freq_factor));
        if (rope_scaling.original_max_position_embeddings <= 0)
          return bad("rope_scaling llama3 needs a positive original_max_position_embeddings");
      }
    }
    if (num_clusters < 0 || num_clusters > 65536)
      return bad("num_clusters must be in 1..65536, got " + std::to_string(num_clusters));
    if (cluster_dim < 0 || cluster_dim > 16)
      return bad("cluster_dim must be in 1..16, got " + std::to_string(cluster_dim));
    if ((num_clusters == 0) != (cluster_dim == 0))
      return bad("num_clusters and cluster_dim must be given together");
    return Status();
  }
};

namespace detail {

struct ConfigReader {
  const nlohmann::json& j;
  const std::string& src;

  [[noreturn]] void fail(const std::string& key, const std::string& m) const {
    throw Error(StatusCode::kFormatError, src + ": '" + key + "' " + m);
  }
  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }
  int64_t get_int(const char* key, bool required, int64_t dflt) const {
    if (!has(key)) {
      if (required)
        throw Error(StatusCode::kFormatError, src + ": missing required key '" + std::string(key) + "'");
      return dflt;
    }
    const auto& v = j.at(key);
    if (!v.is_number_integer()) fail(key, std::string("must be an integer, got ") + detail::json_excerpt(v));
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      fail(key, "is too large");
    return v.get<int64_t>();
  }
  double get_double(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    const auto& v = j.at(key);
    if (!v.is_number()) fail(key, std::string("must be a number, got ") + detail::json_excerpt(v));
    return v.get<double>();
  }
  bool get_bool(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    const auto& v = j.at(key);
    if (!v.is_boolean()) fail(key, std::string("must be true or false, got ") + detail::json_excerpt(v));
    return v.get<bool>();
  }
  std::string get_string(const char* key, const std::string& dflt) const {
    if (!has(key)) return dflt;
    const auto& v = j.at(key);
    if (!v.is_string()) fail(key, std::string("must be a string, got ") + detail::json_excerpt(v));
    return v.get<std::string>();
  }
  std::vector<int64_t> get_ids(const char* key) const {
    std::vector<int64_t> ids;
    if (!has(key)) return ids;
    const auto& v = j.at(key);
    auto one = [&](const nlohmann::json& x) {
      if (!x.is_number_integer()) fail(key, std::string("must be an integer or a list of integers, got ") + detail::json_excerpt(v));
      ids.push_back(x.get<int64_t>());
    };
    if (v.is_array()) {
      for (const auto& x : v) one(x);
    } else {
      one(v);
    }
    return ids;
  }
};

inline const char* const kModelledConfigKeys[] = {
    "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "rope_scaling",
    "max_position_embeddings", "vocab_size", "tie_word_embeddings", "attention_bias", "mlp_bias",
    "bos_token_id", "eos_token_id", "torch_dtype", "hidden_act", "num_clusters", "cluster_dim"};

}  // namespace detail

/// Parses and validates config.json text; `source` names it in messages. Throws Error:
/// kFormatError (not JSON, missing required key, wrong JSON type), kUnsupported (unknown
/// model_type, activation, rope scaling), kInvalidArgument (inconsistent numbers).
/// Required keys: model_type, hidden_size, intermediate_size, num_hidden_layers,
/// num_attention_heads, vocab_size. When head_dim is absent, num_attention_heads must divide
/// hidden_size.
inline LlamaConfig parse_llama_config(const std::string& text, const std::string& source = "config.json") {
  const nlohmann::json j = detail::parse_json_strict(text.data(), text.data() + text.size(), source);
  if (!j.is_object()) throw Error(StatusCode::kFormatError, source + ": not a JSON object");
  detail::ConfigReader r{j, source};
  LlamaConfig c;
  if (!r.has("model_type")) throw Error(StatusCode::kFormatError, source + ": missing required key 'model_type'");
  c.model_type = r.get_string("model_type", "");
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2")
    throw Error(StatusCode::kUnsupported, source + ": unknown architecture model_type '" + c.model_type +
                                              "' (supported: llama, mistral, qwen2)");
  c.hidden_size = r.get_int("hidden_size", true, 0);
  c.intermediate_size = r.get_int("intermediate_size", true, 0);
  c.num_hidden_layers = r.get_int("num_hidden_layers", true, 0);
  c.num_attention_heads = r.get_int("num_attention_heads", true, 0);
  c.vocab_size = r.get_int("vocab_size", true, 0);
  c.num_key_value_heads = r.get_int("num_key_value_heads", false, c.num_attention_heads);
  if (r.has("head_dim")) {
    c.head_dim = r.get_int("head_dim", true, 0);
  } else {
    if (c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads != 0)
      throw Error(StatusCode::kInvalidArgument,
                  source + ": num_attention_heads " + std::to_string(c.num_attention_heads) +
                      " does not divide hidden_size " + std::to_string(c.hidden_size));
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  c.rms_norm_eps = r.get_double("rms_norm_eps", 1e-6);
  c.rope_theta = r.get_double("rope_theta", 10000.0);
  c.max_position_embeddings = r.get_int("max_position_embeddings", false, 2048);
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);
  c.attention_bias = r.get_bool("attention_bias", false);
  c.mlp_bias = r.get_bool("mlp_bias", false);
  c.bos_token_ids = r.get_ids("bos_token_id");
  c.eos_token_ids = r.get_ids("eos_token_id");
  c.torch_dtype = r.get_string("torch_dtype", r.get_string("dtype", ""));
  c.hidden_act = r.get_string("hidden_act", "silu");
  c.num_clusters = r.get_int("num_clusters", false, 0);
  c.cluster_dim = r.get_int("cluster_dim", false, 0);
  if (r.has("rope_scaling")) {
    const auto& rs = j.at("rope_scaling");
    if (!rs.is_object())
      throw Error(StatusCode::kFormatError, source + ": 'rope_scaling' must be an object or null");
    const std::string rsrc = source + ": rope_scaling";
    detail::ConfigReader rr{rs, rsrc};
    std::string type = rr.get_string("rope_type", rr.get_string("type", ""));
    if (type == "default") type.clear();
    c.rope_scaling.type = type;
    c.rope_scaling.factor = rr.get_double("factor", 1.0);
    c.rope_scaling.low_freq_factor = rr.get_double("low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = rr.get_double("high_freq_factor", 4.0);
    c.rope_scaling.original_max_position_embeddings =
        rr.get_int("original_max_position_embeddings", false, 0);
  }
  if (c.model_type == "mistral") {
    c.sliding_window = r.get_int("sliding_window", false, 0);
  } else if (c.model_type == "qwen2" && r.get_bool("use_sliding_window", false)) {
    c.sliding_window = r.get_int("sliding_window", false, 0);
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool modelled = it.key() == "dtype" && !r.has("torch_dtype");
    for (const char* k : detail::kModelledConfigKeys) modelled = modelled || it.key() == k;
    if (!modelled) c.extra[it.key()] = it.value();
  }
  const Status s = c.validate();
  if (!s.ok()) throw Error(s.code(), source + ": " + s.message());
  return c;
}

/// Reads and parses a config.json file (see parse_llama_config).
inline LlamaConfig read_llama_config(const std::string& path) {
  return parse_llama_config(read_text_file(path), path);
}

/// The config as JSON: `extra` plus every modelled key (optional ones only when set:
/// rope_scaling null when none, torch_dtype when non-empty, num_clusters/cluster_dim when > 0,
/// bos/eos as an int when one id, a list when several, absent when none).
inline nlohmann::json llama_config_to_json(const LlamaConfig& c) {
  nlohmann::json j = c.extra.is_object() ? c.extra : nlohmann::json::object();
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    nlohmann::json rs = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      rs["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["mlp_bias"] = c.mlp_bias;
  j["hidden_act"] = c.hidden_act;
  auto ids = [&j](const char* key, const std::vector<int64_t>& v) {
    if (v.size() == 1) j[key] = v[0];
    else if (!v.empty()) j[key] = v;
  };
  ids("bos_token_id", c.bos_token_ids);
  ids("eos_token_id", c.eos_token_ids);
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  if (c.num_clusters > 0) j["num_clusters"] = c.num_clusters;
  if (c.cluster_dim > 0) j["cluster_dim"] = c.cluster_dim;
  return j;
}

/// Validates `c` and returns the text of its config.json (keys sorted, 2-space indent, trailing
/// newline: deterministic). Throws Error from validate().
inline std::string llama_config_text(const LlamaConfig& c) {
  throw_if_error(c.validate());
  return llama_config_to_json(c).dump(2) + "\n";
}

/// Validates and writes config.json atomically (keys sorted, 2-space indent, trailing newline:
/// deterministic). Throws Error from validate() or kIoError.
inline void write_llama_config(const std::string& path, const LlamaConfig& c) {
  write_text_file_atomic(path, llama_config_text(c));
}

/// (out, in) of the HF weight of a decoder-block projection named like
/// "model.layers.3.self_attn.q_proj" (with or without a trailing ".weight"): q (q_dim, hidden),
/// k/v (kv_dim, hidden), o (hidden, q_dim), gate/up (intermediate, hidden), down (hidden,
/// intermediate). Returns false for any other name.
inline bool llama_projection_shape(const LlamaConfig& c, std::string name, int64_t* out, int64_t* in) {
  const std::string w = ".weight";
  if (name.size() > w.size() && name.compare(name.size() - w.size(), w.size(), w) == 0)
    name.resize(name.size() - w.size());
  auto ends = [&name](const char* s) {
    const std::string t = std::string(".") + s;
    return name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0;
  };
  if (ends("self_attn.q_proj")) { *out = c.q_dim(); *in = c.hidden_size; return true; }
  if (ends("self_attn.k_proj") || ends("self_attn.v_proj")) { *out = c.kv_dim(); *in = c.hidden_size; return true; }
  if (ends("self_attn.o_proj")) { *out = c.hidden_size; *in = c.q_dim(); return true; }
  if (ends("mlp.gate_proj") || ends("mlp.up_proj")) { *out = c.intermediate_size; *in = c.hidden_size; return true; }
  if (ends("mlp.down_proj")) { *out = c.hidden_size; *in = c.intermediate_size; return true; }
  return false;
}

CLUSCOMP_NAMESPACE_END
