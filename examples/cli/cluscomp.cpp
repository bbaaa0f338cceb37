// cluscomp: the command line.
//   cluscomp inspect MODEL            architecture and a per-tensor summary (GGUF, safetensors,
//                                     cluscomp format)
//   cluscomp roundtrip MODEL --out D  writes a GGUF model back through our GGUF writer and, dense
//                                     fp32, through our safetensors writer (+ config.json), re-reads
//                                     both and checks every value bit for bit
//   cluscomp version
// Later issues add compress, eval, generate, calibrate.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "cluscomp/core/error.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

// GGUF ne (fastest first) -> PyTorch order (slowest first).
std::vector<int64_t> torch_shape(const std::vector<int64_t>& ne) {
  return std::vector<int64_t>(ne.rbegin(), ne.rend());
}

bool has_magic(const std::string& path, const char* magic) {
  cc::MappedFile f(path);
  return f.size() >= 4 && std::memcmp(f.data(), magic, 4) == 0;
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

bool same_value(const cc::GgufValue& a, const cc::GgufValue& b) {
  if (a.type != b.type || a.bits != b.bits || a.str != b.str || a.items.size() != b.items.size())
    return false;
  for (size_t i = 0; i < a.items.size(); ++i)
    if (!same_value(a.items[i], b.items[i])) return false;
  return true;
}

int roundtrip_gguf(const std::string& path, const fs::path& out) {
  fs::create_directories(out);
  cc::GgufReader g(path);

  // 1. GGUF -> our GGUF writer -> our reader: metadata and tensor bytes identical.
  auto t0 = Clock::now();
  const std::string gguf_out = (out / "model.gguf").string();
  {
    cc::GgufWriter w;
    for (const auto& kv : g.metadata()) w.add(kv.key, kv.value);
    for (const auto& t : g.tensors())
      w.add_tensor_view(t.name, t.type, t.ne, g.tensor_data(t), t.n_bytes);
    w.write_file(gguf_out);
  }
  const double gguf_write_s = seconds_since(t0);
  {
    cc::GgufReader r(gguf_out);
    if (r.metadata().size() != g.metadata().size() || r.tensors().size() != g.tensors().size())
      throw cc::Error(cc::StatusCode::kFormatError, gguf_out + ": key or tensor count differs");
    for (size_t i = 0; i < g.metadata().size(); ++i)
      if (r.metadata()[i].key != g.metadata()[i].key ||
          !same_value(r.metadata()[i].value, g.metadata()[i].value))
        throw cc::Error(cc::StatusCode::kFormatError,
                        gguf_out + ": metadata '" + g.metadata()[i].key + "' differs after round trip");
    for (size_t i = 0; i < g.tensors().size(); ++i) {
      const auto &a = g.tensors()[i], &b = r.tensors()[i];
      if (a.name != b.name || a.type != b.type || a.ne != b.ne ||
          std::memcmp(g.tensor_data(a), r.tensor_data(b), a.n_bytes) != 0)
        throw cc::Error(cc::StatusCode::kFormatError,
                        gguf_out + ": tensor '" + a.name + "' differs after round trip");
    }
  }
  fmt::print("GGUF        -> {} ({:.1f} MiB, written in {:.2f} s): {} keys and {} tensors identical\n",
             gguf_out, static_cast<double>(fs::file_size(gguf_out)) / (1 << 20), gguf_write_s,
             g.metadata().size(), g.tensors().size());

  // 2. GGUF -> dequantised fp32, HF names and shapes -> our safetensors writer + config.json.
  t0 = Clock::now();
  const std::string st_out = (out / "model.safetensors").string();
  const cc::LlamaConfig cfg = cc::llama_config_from_gguf(g);
  {
    cc::SafetensorsWriter w;
    for (const auto& t : g.tensors()) {
      std::string hf = cc::hf_name_from_gguf(t.name);
      if (hf.empty()) hf = t.name;
      const cc::GgufTensorInfo* info = &t;
      w.add_streamed(hf, cc::DType::kF32, torch_shape(t.ne), [&g, info](const auto& sink) {
        const std::vector<float> v = cc::dequantize_tensor(g, *info);
        sink(v.data(), v.size() * sizeof(float));
      });
    }
    w.set_metadata("format", "pt");
    w.set_metadata("cluscomp.source", fs::path(path).filename().string());
    w.write(st_out);
  }
  cc::write_llama_config((out / "config.json").string(), cfg);
  const double st_write_s = seconds_since(t0);
  {
    cc::SafetensorsFile f = cc::SafetensorsFile::open(st_out);
    if (f.tensors().size() != g.tensors().size())
      throw cc::Error(cc::StatusCode::kFormatError, st_out + ": tensor count differs");
    for (const auto& t : g.tensors()) {
      std::string hf = cc::hf_name_from_gguf(t.name);
      if (hf.empty()) hf = t.name;
      const cc::TensorRef& r = f.at(hf);
      const std::vector<float> v = cc::dequantize_tensor(g, t);
      if (r.dtype != cc::DType::kF32 || r.shape != torch_shape(t.ne) ||
          r.nbytes != v.size() * sizeof(float) || std::memcmp(r.data, v.data(), r.nbytes) != 0)
        throw cc::Error(cc::StatusCode::kFormatError,
                        st_out + ": tensor '" + hf + "' differs from the dequantised GGUF tensor");
    }
    const cc::LlamaConfig back = cc::read_llama_config((out / "config.json").string());
    if (back.hidden_size != cfg.hidden_size || back.num_hidden_layers != cfg.num_hidden_layers)
      throw cc::Error(cc::StatusCode::kFormatError, "config.json differs after round trip");
  }
  fmt::print("fp32 HF     -> {} ({:.1f} MiB, written in {:.2f} s) + config.json: {} tensors bit-identical "
             "to the dequantised GGUF\n",
             st_out, static_cast<double>(fs::file_size(st_out)) / (1 << 20), st_write_s,
             g.tensors().size());
  return 0;
}

int usage(int rc) {
  fmt::print(rc ? stderr : stdout,
             "usage: cluscomp inspect MODEL\n"
             "       cluscomp roundtrip MODEL.gguf --out DIR\n"
             "       cluscomp version\n"
             "MODEL: a .gguf file, a .safetensors file (HF or cluscomp format)\n");
  return rc;
}

int run(int argc, char** argv) {
  if (argc < 2) return usage(2);
  const std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") return usage(0);
  if (cmd == "version" || cmd == "--version") {
    fmt::print("cluscomp {}\n", CLUSCOMP_VERSION_STRING);
    return 0;
  }
  if (argc < 3) return usage(2);
  const std::string model = argv[2];
  if (!fs::exists(model)) {
    fmt::print(stderr, "cluscomp: {}: no such file\n", model);
    return 1;
  }
  if (cmd == "inspect") return has_magic(model, "GGUF") ? inspect_gguf(model) : inspect_safetensors(model);
  if (cmd == "roundtrip") {
    std::string out;
    for (int i = 3; i + 1 < argc; ++i)
      if (std::string(argv[i]) == "--out") out = argv[i + 1];
    if (out.empty()) return usage(2);
    if (!has_magic(model, "GGUF")) {
      fmt::print(stderr, "cluscomp roundtrip: {} is not a GGUF file\n", model);
      return 2;
    }
    return roundtrip_gguf(model, out);
  }
  fmt::print(stderr, "cluscomp: unknown command '{}'\n", cmd);
  return usage(2);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const cc::Error& e) {
    fmt::print(stderr, "cluscomp: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "cluscomp: error: {}\n", e.what());
    return 1;
  }
}
