// cluscomp inspect MODEL: architecture and a per-tensor summary (GGUF, safetensors, cluscomp format).
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace cli {
namespace {

struct Stats {
  double mean = 0, rms = 0, absmax = 0;
  int64_t nonfinite = 0;
};

Stats stats_of(const float* x, int64_t n) {
  Stats s;
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    if (!std::isfinite(v)) {
      ++s.nonfinite;
      continue;
    }
    sum += v;
    sq += v * v;
    s.absmax = std::max(s.absmax, std::fabs(v));
  }
  if (n > 0) {
    s.mean = sum / static_cast<double>(n);
    s.rms = std::sqrt(sq / static_cast<double>(n));
  }
  return s;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

void print_config(const cc::LlamaConfig& c) {
  fmt::print("architecture: {} | {} blocks | hidden {} | ffn {} | heads {} (kv {}) | head dim {}\n",
             c.model_type, c.num_hidden_layers, c.hidden_size, c.intermediate_size,
             c.num_attention_heads, c.num_key_value_heads, c.head_dim);
  fmt::print("              vocab {} | context {} | rope theta {} | rms eps {} | tied embeddings {}\n",
             c.vocab_size, c.max_position_embeddings, c.rope_theta, c.rms_norm_eps,
             c.tie_word_embeddings ? "yes" : "no");
}

void print_row_header() {
  fmt::print("{:<34} {:>7} {:>14} {:>9} {:>11} {:>11} {:>11}\n", "tensor", "type", "shape", "MiB",
             "mean", "rms", "absmax");
}

void print_row(const std::string& name, const std::string& type, const std::vector<int64_t>& shape,
               double bytes, const Stats& s) {
  fmt::print("{:<34} {:>7} {:>14} {:>9.3f} {:>11.4g} {:>11.4g} {:>11.4g}{}\n", name, type,
             shape_str(shape), bytes / (1 << 20), s.mean, s.rms, s.absmax,
             s.nonfinite ? fmt::format("  ({} non-finite!)", s.nonfinite) : "");
}

int inspect_gguf(const std::string& path) {
  const auto t0 = Clock::now();
  cc::GgufReader g(path);
  fmt::print("file: {} (GGUF v{}, {} metadata keys, {} tensors, alignment {})\n", path, g.version(),
             g.metadata().size(), g.tensors().size(), g.alignment());
  fmt::print("name: {}\n", g.get_string_or("general.name", "?"));
  const cc::LlamaConfig c = cc::llama_config_from_gguf(g);
  print_config(c);
  if (g.has("tokenizer.ggml.model"))
    fmt::print("tokenizer: {} (pre {}), {} tokens, {} merges\n", g.get_string("tokenizer.ggml.model"),
               g.get_string_or("tokenizer.ggml.pre", "-"),
               g.has("tokenizer.ggml.tokens") ? g.get("tokenizer.ggml.tokens").items.size() : 0,
               g.has("tokenizer.ggml.merges") ? g.get("tokenizer.ggml.merges").items.size() : 0);
  std::map<std::string, std::pair<int, double>> by_type;
  double total_bytes = 0, total_params = 0;
  print_row_header();
  std::vector<float> buf;
  for (const auto& t : g.tensors()) {
    buf.resize(t.n_elements);
    cc::dequantize_tensor_into(g, t, buf.data());
    const std::string type = cc::ggml_type_name(t.type);
    print_row(t.name, type, torch_shape(t.ne), static_cast<double>(t.n_bytes),
              stats_of(buf.data(), static_cast<int64_t>(buf.size())));
    by_type[type].first += 1;
    by_type[type].second += static_cast<double>(t.n_bytes);
    total_bytes += static_cast<double>(t.n_bytes);
    total_params += static_cast<double>(t.n_elements);
  }
  for (const auto& [type, v] : by_type)
    fmt::print("  {:>6}: {:4} tensors, {:9.3f} MiB\n", type, v.first, v.second / (1 << 20));
  fmt::print("total: {:.1f} M parameters, {:.3f} MiB of tensor data, {:.3f} bits/parameter; read and "
             "dequantised in {:.2f} s\n",
             total_params / 1e6, total_bytes / (1 << 20), 8 * total_bytes / total_params,
             seconds_since(t0));
  return 0;
}

int inspect_safetensors(const std::string& path) {
  cc::SafetensorsFile f = cc::SafetensorsFile::open(path);
  const bool is_cluscomp = f.metadata().count(cc::kCluscompVersionKey) > 0;
  fmt::print("file: {} (safetensors{}, {} tensors)\n", path, is_cluscomp ? ", cluscomp format" : "",
             f.tensors().size());
  const fs::path cfg = fs::path(path).parent_path() / "config.json";
  if (fs::exists(cfg)) print_config(cc::read_llama_config(cfg.string()));
  if (is_cluscomp) {
    cc::CluscompModel m = cc::read_cluscomp_model(path);
    fmt::print("format version {}: {} clustered matrices, {} dense tensors\n", m.format_version,
               m.clustered.size(), m.dense.size());
    const auto tok = m.metadata.find(cc::kCluscompTokenizerKey);
    if (tok != m.metadata.end()) {
      const cc::Tokenizer t = cc::Tokenizer::from_state_json(tok->second, path + " (" + cc::kCluscompTokenizerKey + ")");
      fmt::print("tokenizer: embedded, {} tokens, {}{}\n", t.vocab_size(),
                 t.model() == cc::TokenizerModel::kByteLevelBpe ? "byte-level BPE (pre " + std::string(cc::pre_tokenizer_name(t.pre_tokenizer())) + ")"
                                                                  : std::string("SentencePiece BPE"),
                 t.chat_template().empty() ? "" : ", chat template");
    } else {
      const auto src = m.metadata.find(cc::kCompressSourceKey);
      fmt::print("tokenizer: not embedded{}\n",
                 src != m.metadata.end() ? " (taken from the source, " + src->second + ")" : std::string());
    }
    fmt::print("{:<40} {:>12} {:>3} {:>6} {:>2} {:>5} {:>6} {:>8} {:>8}\n", "matrix", "shape", "d", "K",
               "S", "bits", "dtype", "bpw", "bpw(ref)");
    for (const auto& [name, t] : m.clustered) {
      const auto& s = t.shape();
      fmt::print("{:<40} {:>12} {:>3} {:>6} {:>2} {:>5} {:>6} {:>8.4f} {:>8.4f}\n", name,
                 shape_str({s.out, s.in}), s.d, s.k, s.num_codebooks, t.code_bits(),
                 cc::dtype_name(s.centroid_dtype), s.bpw_packed(), s.bpw_reference());
    }
  }
  print_row_header();
  for (const auto& t : f.tensors()) {
    Stats s;
    if (cc::is_float_dtype(t.dtype)) {
      const std::vector<float> v = cc::tensor_to_float(t);
      s = stats_of(v.data(), static_cast<int64_t>(v.size()));
    }
    print_row(t.name, cc::dtype_name(t.dtype), t.shape, static_cast<double>(t.nbytes), s);
  }
  return 0;
}

}  // namespace

int run_inspect(const Invocation& inv) {
  const std::string& model = inv.args[0];
  return cc::is_gguf_file(model) ? inspect_gguf(model) : inspect_safetensors(model);
}

}  // namespace cli
