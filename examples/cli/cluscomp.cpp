// cluscomp: the command line.
//   cluscomp inspect MODEL            architecture and a per-tensor summary (GGUF, safetensors,
//                                     cluscomp format)
//   cluscomp roundtrip MODEL --out D  writes a GGUF model back through our GGUF writer and, dense
//                                     fp32, through our safetensors writer (+ config.json), re-reads
//                                     both and checks every value bit for bit
//   cluscomp eval MODEL TEXT          perplexity of MODEL on a UTF-8 text file (CLUSCOMP.md §4:
//                                     non-overlapping windows of min(context, 2048) tokens unless
//                                     --window/--stride say otherwise; --max-windows N stops early)
//   cluscomp generate MODEL PROMPT    streams a continuation: greedy, or --temperature/--top-k/
//                                     --top-p with --seed; the chat template when the model declares
//                                     one (--raw: plain continuation of PROMPT)
//   cluscomp compress MODEL --out OUT clusters the projection matrices (CLUSCOMP.md §1) with explicit
//                                     --d/--k/--s (per kind via --per-kind) or a target --bpw, or
//                                     quantises them with --method rtn --bits N; resumable; writes
//                                     the cluscomp format (or --reference-layout)
//   cluscomp calibrate TEACHER STUDENT TEXT --out OUT
//                                     block-wise codebook finetuning of a compressed STUDENT
//                                     against TEACHER on a calibration text (CLUSCOMP.md §2);
//                                     resumable per block
//   cluscomp recover TEACHER STUDENT TEXT --out OUT
//                                     end-to-end training of a compressed STUDENT: KD from TEACHER
//                                     (default) or --loss ce; codebooks only or --train all
//                                     (CLUSCOMP.md §3); not resumable
//   cluscomp finetune STUDENT TEXT --out OUT
//                                     codebook-only finetuning on a text (causal LM loss)
//   cluscomp version
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
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
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/perplexity.hpp"
#include "cluscomp/model/sampling.hpp"
#include "cluscomp/pipeline/activation_stats.hpp"
#include "cluscomp/pipeline/calibrate.hpp"
#include "cluscomp/pipeline/compress.hpp"
#include "cluscomp/pipeline/recover.hpp"

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

// ---- eval / generate ------------------------------------------------------------------------------

// "--name value" options after the positional arguments; unknown names are an error.
struct Options {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
  std::string get(const std::string& k, const std::string& dflt) const {
    auto it = values.find(k);
    return it == values.end() ? dflt : it->second;
  }
  int64_t get_int(const std::string& k, int64_t dflt) const {
    auto it = values.find(k);
    if (it == values.end()) return dflt;
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != it->second.size() || it->second.empty())
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--" + k + " expects an integer, got '" + it->second + "'");
    return v;
  }
  double get_double(const std::string& k, double dflt) const {
    auto it = values.find(k);
    if (it == values.end()) return dflt;
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    // std::stod accepts "nan" and "inf"; no option of ours means anything with them (a NaN passes
    // every "<= 0" range check after this).
    if (used != it->second.size() || it->second.empty() || !std::isfinite(v))
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--" + k + " expects a finite number, got '" + it->second + "'");
    return v;
  }
  bool flag(const std::string& k) const { return flags.count(k) > 0; }
};

Options parse_options(int argc, char** argv, int first, const std::vector<std::string>& with_value,
                      const std::vector<std::string>& flags) {
  Options o;
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0) throw cc::Error(cc::StatusCode::kInvalidArgument, "unexpected argument '" + a + "'");
    const std::string name = a.substr(2);
    if (std::find(flags.begin(), flags.end(), name) != flags.end()) {
      o.flags[name] = true;
    } else if (std::find(with_value.begin(), with_value.end(), name) != with_value.end()) {
      if (i + 1 >= argc) throw cc::Error(cc::StatusCode::kInvalidArgument, a + " needs a value");
      o.values[name] = argv[++i];
    } else {
      throw cc::Error(cc::StatusCode::kInvalidArgument, "unknown option '" + a + "'");
    }
  }
  return o;
}

cc::LlamaModel load_model_timed(const std::string& path, int threads) {
  const auto t0 = Clock::now();
  cc::LlamaRuntimeOptions o;
  o.threads = threads;
  cc::LlamaModel m = cc::load_llama_model(path, o);
  const cc::MemoryReport r = m.memory_report();
  fmt::print(stderr, "loaded {} in {:.2f} s: {} blocks, hidden {}, vocab {}, {:.1f} MiB of fp32 weights, {} threads\n",
             path, seconds_since(t0), m.config().num_hidden_layers, m.config().hidden_size, m.vocab_size(),
             static_cast<double>(r.weights) / (1 << 20), m.threads());
  return m;
}

void progress_bar(int64_t done, int64_t total, const std::string& tail) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  fmt::print(stderr, "\r[{}{}] {}/{} {}", std::string(static_cast<size_t>(filled), '#'),
             std::string(static_cast<size_t>(width - filled), '.'), done, total, tail);
  std::fflush(stderr);
}

// A text file the user pointed at: it must exist, be non-empty and be valid UTF-8.
std::string read_utf8_text(const std::string& path) {
  if (!fs::exists(path)) throw cc::Error(cc::StatusCode::kNotFound, path + ": no such file");
  std::string text = cc::read_text_file(path);
  if (text.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, path + ": the text file is empty");
  const size_t bad = cc::detail::utf8_invalid_at(reinterpret_cast<const unsigned char*>(text.data()), text.size());
  if (bad != text.size())
    throw cc::Error(cc::StatusCode::kInvalidArgument,
                    path + ": not valid UTF-8 (first bad byte at offset " + std::to_string(bad) + ")");
  return text;
}

// Training text (calibrate, recover, finetune) tokenised with the model's tokenizer, no BOS: the
// windows are slices of one long token stream, as the reference's loader cuts them.
std::vector<int32_t> read_training_tokens(const std::string& model_path, const std::string& text_path) {
  const std::string text = read_utf8_text(text_path);
  const cc::Tokenizer tok = cc::load_model_tokenizer(model_path);
  const auto t0 = Clock::now();
  std::vector<int32_t> ids = tok.encode(text, false);
  fmt::print(stderr, "tokenised {} bytes into {} tokens in {:.2f} s\n", text.size(), ids.size(), seconds_since(t0));
  return ids;
}

int eval_cmd(const std::string& model_path, const std::string& text_path, const Options& opt) {
  const std::string text = read_utf8_text(text_path);
  cc::LlamaModel m = load_model_timed(model_path, static_cast<int>(opt.get_int("threads", 0)));
  const cc::Tokenizer tok = cc::load_model_tokenizer(model_path);
  auto t0 = Clock::now();
  const std::vector<int32_t> ids = tok.encode(text, tok.add_bos_default());
  fmt::print(stderr, "tokenised {} bytes into {} tokens in {:.2f} s\n", text.size(), ids.size(), seconds_since(t0));
  cc::PerplexityOptions po;
  po.window = opt.get_int("window", 0);
  po.stride = opt.get_int("stride", 0);
  po.max_windows = opt.get_int("max-windows", 0);
  if (po.window < 0 || po.stride < 0 || po.max_windows < 0)
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--window, --stride and --max-windows must not be negative");
  const cc::PerplexityResult r = cc::evaluate_perplexity(m, ids, po, [](const cc::PerplexityResult& p) {
    const int64_t total = p.total_windows;
    progress_bar(p.windows, total, fmt::format("windows  ppl {:.4f}  {:.1f} tok/s   ", p.perplexity(),
                                               p.tokens_per_second()));
  });
  fmt::print(stderr, "\n");
  const cc::KvCache probe = m.make_cache(r.window);
  const cc::MemoryReport mem = m.memory_report(&probe, r.window);
  fmt::print("model:       {}\n", model_path);
  fmt::print("text:        {} ({} bytes)\n", text_path, text.size());
  fmt::print("tokens:      {}\n", r.tokens);
  fmt::print("window:      {} (stride {})\n", r.window, po.stride > 0 ? po.stride : r.window);
  fmt::print("windows:     {} of {}{}\n", r.windows, r.total_windows, r.windows < r.total_windows ? " (--max-windows)" : "");
  fmt::print("predictions: {}\n", r.predictions);
  fmt::print("mean NLL:    {:.6f} nats\n", r.mean_nll());
  fmt::print("perplexity:  {:.4f}\n", r.perplexity());
  fmt::print("speed:       {:.1f} tokens/s ({} tokens in {:.2f} s, {} threads)\n", r.tokens_per_second(), r.processed,
             r.seconds, m.threads());
  fmt::print("memory:      {:.1f} MiB weights + {:.1f} MiB kv cache + {:.1f} MiB activations\n",
             static_cast<double>(mem.weights) / (1 << 20), static_cast<double>(mem.kv_cache) / (1 << 20),
             static_cast<double>(mem.activations) / (1 << 20));
  return 0;
}

int generate_cmd(const std::string& model_path, const std::string& prompt, const Options& opt) {
  cc::LlamaModel m = load_model_timed(model_path, static_cast<int>(opt.get_int("threads", 0)));
  const cc::Tokenizer tok = cc::load_model_tokenizer(model_path);
  const int64_t max_tokens = opt.get_int("max-tokens", 64);
  if (max_tokens < 1) throw cc::Error(cc::StatusCode::kInvalidArgument, "--max-tokens must be at least 1");
  cc::SamplingOptions so;
  so.temperature = static_cast<float>(opt.get_double("temperature", 0.0));
  so.top_k = opt.get_int("top-k", 0);
  so.top_p = static_cast<float>(opt.get_double("top-p", 1.0));
  so.seed = static_cast<uint64_t>(opt.get_int("seed", 0));
  cc::Sampler sampler(so);

  const bool chat = !opt.flag("raw") && !tok.chat_template().empty();
  std::vector<int32_t> ids;
  if (chat) {
    const std::string text = tok.apply_chat_template({{"user", prompt}}, /*add_generation_prompt=*/true);
    ids = tok.encode(text, tok.add_bos_default(), /*parse_special=*/true);
  } else {
    ids = tok.encode(prompt, tok.add_bos_default());
  }
  if (ids.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "the prompt encodes to no tokens");
  const int64_t n_prompt = static_cast<int64_t>(ids.size());
  if (n_prompt > m.context_length())
    throw cc::Error(cc::StatusCode::kInvalidArgument, "the prompt has " + std::to_string(n_prompt) +
                                                          " tokens, longer than the model's context of " +
                                                          std::to_string(m.context_length()));
  const int64_t capacity = std::min(m.context_length(), n_prompt + max_tokens);
  cc::KvCache cache = m.make_cache(capacity);
  fmt::print(stderr, "prompt: {} tokens{}; sampling: {}\n", n_prompt, chat ? " (chat template)" : "",
             so.temperature == 0.0f ? std::string("greedy")
                                    : fmt::format("temperature {} top-k {} top-p {} seed {}", so.temperature,
                                                  so.top_k, so.top_p, so.seed));
  if (!chat) fmt::print("{}", prompt);
  std::fflush(stdout);
  auto t0 = Clock::now();
  std::vector<float> logits = m.forward(ids, cache);
  const double prefill_s = seconds_since(t0);
  t0 = Clock::now();
  int64_t generated = 0;
  std::string stop_reason = "--max-tokens";
  // A byte-level BPE (or byte-fallback) token can end inside a multi-byte character: print only
  // complete characters, hold the rest back until the next token completes it (U+FFFD if never).
  cc::unicode::Utf8StreamDecoder utf8;
  for (;;) {
    const int32_t next = sampler.sample(logits.data(), m.vocab_size());
    if (next == tok.eos_id()) {
      stop_reason = "end of sequence";
      break;
    }
    fmt::print("{}", utf8.feed(tok.token_to_piece(next)));
    std::fflush(stdout);
    ++generated;
    if (generated >= max_tokens) break;
    if (cache.length() >= cache.capacity()) {
      stop_reason = "context full";
      break;
    }
    logits = m.forward(&next, 1, cache);
  }
  const double decode_s = seconds_since(t0);
  fmt::print("{}\n", utf8.flush());
  const cc::MemoryReport mem = m.memory_report(&cache, n_prompt);
  fmt::print(stderr,
             "[{} prompt tokens: {:.1f} tok/s prefill | {} generated: {:.1f} tok/s decode | stop: {} | memory "
             "{:.1f} MiB weights + {:.1f} MiB kv cache]\n",
             n_prompt, static_cast<double>(n_prompt) / prefill_s, generated,
             decode_s > 0 ? static_cast<double>(std::max<int64_t>(generated - 1, 0)) / decode_s : 0.0, stop_reason,
             static_cast<double>(mem.weights) / (1 << 20), static_cast<double>(mem.kv_cache) / (1 << 20));
  return 0;
}

std::string format_seconds(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{:.1f}s", s);
}

cc::DType parse_float_dtype(const std::string& s, const std::string& what) {
  if (s == "f16" || s == "F16" || s == "fp16") return cc::DType::kF16;
  if (s == "bf16" || s == "BF16") return cc::DType::kBF16;
  if (s == "f32" || s == "F32" || s == "fp32") return cc::DType::kF32;
  throw cc::Error(cc::StatusCode::kInvalidArgument, what + ": unknown dtype '" + s + "' (f16, bf16, f32)");
}

// --per-kind "gate,up,down:d=8,k=16384,s=2;k,v:k=2048": settings that override --d/--k/--s for the
// named kinds (patterns as --matrices).
void apply_per_kind(const std::string& spec, cc::CompressOptions* o) {
  size_t pos = 0;
  while (pos < spec.size()) {
    const size_t semi = std::min(spec.find(';', pos), spec.size());
    const std::string part = spec.substr(pos, semi - pos);
    pos = semi + 1;
    if (part.empty()) continue;
    const size_t colon = part.find(':');
    if (colon == std::string::npos)
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--per-kind: '" + part + "' lacks ':' (KINDS:d=N,k=N,s=N)");
    const std::vector<cc::ProjectionKind> kinds = cc::parse_projection_patterns(part.substr(0, colon));
    size_t p2 = colon + 1;
    while (p2 <= part.size()) {
      const size_t comma = std::min(part.find(',', p2), part.size());
      const std::string kv = part.substr(p2, comma - p2);
      p2 = comma + 1;
      if (kv.empty()) continue;
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) throw cc::Error(cc::StatusCode::kInvalidArgument, "--per-kind: '" + kv + "' is not key=value");
      const std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
      for (cc::ProjectionKind k : kinds) {
        cc::ClusterSettings& cs = o->per_kind[static_cast<size_t>(k)];
        if (key == "centroid-dtype") {
          cs.centroid_dtype = parse_float_dtype(val, "--per-kind");
          continue;
        }
        size_t used = 0;
        int64_t v = 0;
        try {
          v = std::stoll(val, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != val.size() || val.empty())
          throw cc::Error(cc::StatusCode::kInvalidArgument, "--per-kind: '" + kv + "' needs an integer");
        if (key == "d") cs.d = static_cast<int>(v);
        else if (key == "k") cs.k = v;
        else if (key == "s") cs.num_codebooks = static_cast<int>(v);
        else if (key == "code-bits") cs.code_bits = static_cast<int>(v);
        else throw cc::Error(cc::StatusCode::kInvalidArgument, "--per-kind: unknown key '" + key + "' (d, k, s, code-bits, centroid-dtype)");
      }
    }
  }
}

int compress_cmd(const std::string& model_path, const Options& opt) {
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "compress needs --out OUT");
  cc::CompressOptions o;
  const std::string method = opt.values.count("method") ? opt.values.at("method") : "cluscomp";
  if (method == "rtn") {
    o.method = cc::CompressMethod::kRtn;
  } else if (method != "cluscomp") {
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--method must be cluscomp or rtn, got '" + method + "'");
  }
  o.rtn.bits = static_cast<int>(opt.get_int("bits", 4));
  o.rtn.group_size = static_cast<int>(opt.get_int("group-size", 128));
  if (opt.values.count("matrices")) o.kinds = cc::parse_projection_patterns(opt.values.at("matrices"));
  cc::ClusterSettings base;
  base.d = static_cast<int>(opt.get_int("d", 4));
  base.k = opt.get_int("k", 4096);
  base.num_codebooks = static_cast<int>(opt.get_int("s", 1));
  base.code_bits = static_cast<int>(opt.get_int("code-bits", 0));
  if (opt.values.count("centroid-dtype")) base.centroid_dtype = parse_float_dtype(opt.values.at("centroid-dtype"), "--centroid-dtype");
  for (auto& s : o.per_kind) s = base;
  if (opt.values.count("per-kind")) apply_per_kind(opt.values.at("per-kind"), &o);
  if (opt.values.count("search-d")) {
    o.search_d.clear();
    const std::string v = opt.values.at("search-d");
    size_t pos = 0;
    while (pos <= v.size()) {
      const size_t comma = std::min(v.find(',', pos), v.size());
      const std::string item = v.substr(pos, comma - pos);
      pos = comma + 1;
      size_t used = 0;
      int d = 0;
      try {
        d = std::stoi(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (item.empty() || used != item.size() || d < 1 || d > 16)
        throw cc::Error(cc::StatusCode::kInvalidArgument, "--search-d: '" + item + "' is not a d in 1..16");
      o.search_d.push_back(d);
    }
  }
  o.target_bpw = opt.get_double("bpw", 0.0);
  if (opt.values.count("bpw") && !(o.target_bpw > 0))
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--bpw must be positive");
  if (opt.values.count("bpw") && (opt.values.count("d") || opt.values.count("k") || opt.values.count("s") || opt.values.count("per-kind")))
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--bpw chooses d, K and S itself: drop --d/--k/--s/--per-kind");
  if (o.method == cc::CompressMethod::kRtn && opt.values.count("bpw"))
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--bpw applies to --method cluscomp; rtn takes --bits");
  const int64_t iters = opt.get_int("iterations", 20);
  if (iters < 0 || iters > 1000) throw cc::Error(cc::StatusCode::kInvalidArgument, "--iterations must be in 0..1000");
  o.iterations = static_cast<int>(iters);
  o.seed = static_cast<uint64_t>(opt.get_int("seed", 1234));
  o.threads = static_cast<int>(opt.get_int("threads", 0));
  const int64_t jobs = opt.get_int("jobs", 0);
  if (jobs < 0 || jobs > 4096) throw cc::Error(cc::StatusCode::kInvalidArgument, "--jobs must be in 0..4096 (0: automatic)");
  o.jobs = static_cast<int>(jobs);
  if (opt.values.count("dense-dtype")) o.dense_dtype = parse_float_dtype(opt.values.at("dense-dtype"), "--dense-dtype");
  o.reference_layout = opt.flag("reference-layout");
  if (opt.values.count("work-dir")) o.work_dir = opt.values.at("work-dir");

  if (opt.values.count("activations")) {
    if (o.method == cc::CompressMethod::kRtn)
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--activations applies to --method cluscomp (RTN is data-free)");
    if (o.reference_layout)
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--activations cannot be combined with --reference-layout");
    const std::string text_path = opt.values.at("activations");
    cc::ActivationStatsOptions ao;
    ao.samples = opt.get_int("act-samples", 16);
    ao.window = opt.get_int("act-window", 256);
    ao.seed = static_cast<uint64_t>(opt.get_int("seed", 1234));  // the windows follow --seed
    ao.threads = o.threads;
    if (ao.samples < 1 || ao.window < 2)
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--act-samples must be >= 1 and --act-window >= 2");
    o.importance_damp = opt.get_double("importance-damp", 0.01);
    if (!(o.importance_damp >= 0) || !std::isfinite(o.importance_damp))
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--importance-damp must be finite and >= 0");
    const std::vector<int32_t> ids = read_training_tokens(model_path, text_path);
    const auto ts = Clock::now();
    cc::ActivationStats st;
    {
      cc::LlamaModel teacher = load_model_timed(model_path, o.threads);
      st = cc::collect_activation_stats(teacher, ids, ao, [&](int64_t b, int64_t n) {
        progress_bar(b + 1, n, fmt::format("activation statistics: block {}/{}   ", b + 1, n));
        return true;
      });
    }
    fmt::print(stderr, "\nactivation statistics: {} tokens ({} windows of {}) in {:.1f} s\n", st.tokens, ao.samples,
               ao.window, seconds_since(ts));
    nlohmann::json aj;
    aj["text"] = text_path;
    aj["samples"] = ao.samples;
    aj["window"] = ao.window;
    aj["seed"] = ao.seed;
    aj["tokens"] = st.tokens;
    o.metadata["compress.activations"] = aj.dump();
    o.input_importance = std::move(st.mean_sq);
  } else if (opt.values.count("act-samples") || opt.values.count("act-window") || opt.values.count("importance-damp")) {
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--act-samples/--act-window/--importance-damp need --activations TEXT");
  }

  auto t0 = Clock::now();
  fmt::print(stderr, "reading {} ...\n", model_path);
  const cc::SourceModel src = cc::read_source_model(model_path);
  fmt::print(stderr, "read {} tensors in {:.2f} s\n", src.tensors.size(), seconds_since(t0));
  if (!src.tokenizer)
    fmt::print(stderr, "warning: no tokenizer is embedded in the output ({}); eval/generate will need the source model\n",
               src.tokenizer_note);
  const bool tty = isatty(2) != 0;
  auto last_draw = Clock::now();
  o.progress = [&](const cc::CompressProgress& p) {
    using S = cc::CompressProgress::Stage;
    if (p.stage == S::kSearch) {
      if (tty || p.done == 0 || p.done + 1 == p.matrices) {
        progress_bar(p.done + 1, p.matrices, fmt::format("bpw search: {}          ", p.name));
        if (!tty) fmt::print(stderr, "\n");
      }
      return true;
    }
    if (p.stage == S::kWriting) {
      fmt::print(stderr, "\nwriting {} ...\n", out);
      return true;
    }
    if (p.stage == S::kWarning) {
      fmt::print(stderr, "warning: {}\n", p.message);
      return true;
    }
    const bool done = p.stage == S::kMatrixDone;
    // On a terminal redraw at most 10 times a second; in a log, one line per finished matrix.
    if (!tty && !done) return true;
    if (tty && !done && seconds_since(last_draw) < 0.1) return true;
    last_draw = Clock::now();
    const std::string what = done ? (p.resumed ? "resumed" : fmt::format("done {}", format_seconds(p.matrix_elapsed_s)))
                                  : p.stage == S::kIteration
                                        ? fmt::format("it {}/{} {} eta {}", p.iteration + 1, p.iterations + 1,
                                                      format_seconds(p.matrix_elapsed_s), format_seconds(p.matrix_eta_s))
                                        : std::string("start");
    progress_bar(p.done, p.matrices,
                 fmt::format("{} [{}] | total {} eta {}      ", p.name, what, format_seconds(p.total_elapsed_s),
                             p.done == p.matrices ? format_seconds(0)
                             : p.total_eta_s > 0  ? format_seconds(p.total_eta_s)
                                                  : std::string("?")));
    if (!tty) fmt::print(stderr, "\n");
    return true;
  };
  const cc::CompressReport rep = cc::compress_model(src, out, o);
  fmt::print(stderr, "\n");

  struct KindRow {
    int n = 0;
    double bits = 0, weights = 0, err = 0, norm = 0, out_err = 0, out_norm = 0, seconds = 0;
    std::map<std::string, int> settings;
  };
  std::map<int, KindRow> rows;
  KindRow all;
  for (const cc::MatrixReport& r : rep.matrices) {
    for (KindRow* k : {&rows[static_cast<int>(r.plan.kind)], &all}) {
      const double n = static_cast<double>(r.plan.out) * static_cast<double>(r.plan.in);
      k->n += 1;
      k->bits += r.plan.bpw * n;
      k->weights += n;
      k->err += r.sq_error;
      k->norm += r.sq_norm;
      k->out_err += r.out_sq_error;
      k->out_norm += r.out_sq_norm;
      k->seconds += r.seconds;
      const std::string set = r.plan.method == cc::CompressMethod::kRtn
                                  ? fmt::format("rtn{}/g{}", r.plan.rtn.bits, r.plan.rtn.group_size)
                                  : fmt::format("d{}/K{}/S{}", r.plan.cluster.d, r.plan.cluster.k, r.plan.cluster.num_codebooks);
      k->settings[set] += 1;
    }
  }
  auto settings_str = [](const KindRow& k) {
    std::string s;
    for (const auto& kv : k.settings) s += (s.empty() ? "" : " ") + kv.first + "x" + std::to_string(kv.second);
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
  };
  // out.err (with --activations): sqrt(sum h_i ||dW[:, i]||^2 / sum h_i ||W[:, i]||^2), the
  // relative output error for inputs with the calibration text's per-column energies.
  const bool aware = !o.input_importance.empty();
  auto out_err = [&](const KindRow& k) {
    return aware ? fmt::format(" {:>10.5f}", k.out_norm > 0 ? std::sqrt(k.out_err / k.out_norm) : 0.0) : std::string();
  };
  fmt::print("{:<6} {:>5} {:>8} {:>10}{} {:>9}  {}\n", "kind", "count", "bpw", "rel.err",
             aware ? fmt::format(" {:>10}", "out.err") : std::string(), "time", "settings (xcount)");
  for (const auto& [kind, k] : rows)
    fmt::print("{:<6} {:>5} {:>8.4f} {:>10.5f}{} {:>9}  {}\n", cc::projection_kind_name(static_cast<cc::ProjectionKind>(kind)),
               k.n, k.bits / k.weights, std::sqrt(k.err / k.norm), out_err(k), format_seconds(k.seconds), settings_str(k));
  fmt::print("{:<6} {:>5} {:>8.4f} {:>10.5f}{} {:>9}\n", "all", all.n, all.bits / all.weights, std::sqrt(all.err / all.norm),
             out_err(all), format_seconds(all.seconds));
  fmt::print("method:      {}{}\n", cc::compress_method_name(o.method),
             o.method == cc::CompressMethod::kRtn ? fmt::format(" ({} bits, group {})", o.rtn.bits, o.rtn.group_size)
                                                  : fmt::format(" ({} k-means iterations, seed {}{})", o.iterations, o.seed,
                                                                aware ? fmt::format(", activation-aware, damp {}", o.importance_damp)
                                                                      : std::string()));
  if (o.target_bpw > 0) fmt::print("target bpw:  {}\n", o.target_bpw);
  fmt::print("overall bpw: {:.4f} (projection matrices: packed codes + codebooks, or RTN codes + fp16 scales/mins)\n", rep.bpw);
  fmt::print("output:      {} ({:.2f} MiB{})\n", out, static_cast<double>(rep.output_bytes) / (1 << 20),
             o.reference_layout ? ", reference layout" : "");
  fmt::print("time:        {} ({} of {} matrices resumed from {}; {} job{} of {} thread{} at a time{})\n",
             format_seconds(rep.seconds), rep.resumed, rep.matrices.size(), o.work_dir.empty() ? out + ".work" : o.work_dir,
             rep.jobs, rep.jobs == 1 ? "" : "s", rep.job_threads, rep.job_threads == 1 ? "" : "s",
             rep.jobs > 1 ? ": the per-kind times overlap" : "");
  if (!rep.skipped_tensors.empty()) {
    std::string names;
    for (const std::string& t : rep.skipped_tensors) names += " " + t;
    fmt::print("skipped:     {} source tensor{} without an HF name, not in the output:{}\n", rep.skipped_tensors.size(),
               rep.skipped_tensors.size() == 1 ? "" : "s", names);
  }
  for (const std::string& t : rep.removed_temporaries) fmt::print("removed:     {} (left by a killed run)\n", t);
  return 0;
}

// Adds the tokenizer of SOURCE to a compressed file written before tokenizers were embedded.
int embed_tokenizer_cmd(const std::string& model_path, const std::string& source_path, const Options& opt) {
  const std::string out = opt.values.count("out") ? opt.values.at("out") : model_path;
  const cc::Tokenizer tok = cc::load_model_tokenizer(source_path);
  cc::embed_model_tokenizer(model_path, tok, out);
  fmt::print("{}: embedded the tokenizer of {} ({} tokens{})\n", out, source_path, tok.vocab_size(),
             tok.chat_template().empty() ? "" : ", chat template");
  return 0;
}

int calibrate_cmd(const std::string& teacher_path, const std::string& student_path, const std::string& text_path,
                  const Options& opt) {
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "calibrate needs --out OUT");
  if (!fs::exists(student_path)) throw cc::Error(cc::StatusCode::kNotFound, student_path + ": no such file");
  cc::CalibrateOptions o;
  o.samples = opt.get_int("samples", o.samples);
  o.window = opt.get_int("window", o.window);
  const int64_t epochs = opt.get_int("epochs", o.epochs);
  if (epochs < 1 || epochs > 10000) throw cc::Error(cc::StatusCode::kInvalidArgument, "--epochs must be in 1..10000");
  o.epochs = static_cast<int>(epochs);
  o.lr = static_cast<float>(opt.get_double("lr", o.lr));
  o.weight_decay = static_cast<float>(opt.get_double("weight-decay", o.weight_decay));
  o.aug_loss = opt.flag("aug-loss");
  o.seed = static_cast<uint64_t>(opt.get_int("seed", 1234));
  o.threads = static_cast<int>(opt.get_int("threads", 0));
  if (opt.values.count("work-dir")) o.work_dir = opt.values.at("work-dir");

  const std::vector<int32_t> ids = read_training_tokens(teacher_path, text_path);
  cc::LlamaModel teacher = load_model_timed(teacher_path, o.threads);
  fmt::print(stderr, "calibrating {}: {} samples x {} tokens, {} epochs, lr {}, weight decay {}{}\n", student_path,
             o.samples, o.window, o.epochs, o.lr, o.weight_decay, o.aug_loss ? ", aug_loss" : "");
  const bool tty = isatty(2) != 0;
  auto last_draw = Clock::now();
  const cc::CalibrateReport rep = cc::calibrate_model(
      teacher, teacher_path, student_path, ids, out, o, [&](const cc::CalibrateProgress& p) {
        using S = cc::CalibrateProgress::Stage;
        const std::string eta = p.total_eta_s > 0 ? format_seconds(p.total_eta_s) : std::string("?");
        // Lines that stay (block and epoch results) first clear the progress bar on a terminal.
        const char* line_start = tty ? "\r\033[K" : "";
        if (p.stage == S::kBlockDone) {
          const std::string resumed =
              p.lr != o.lr ? fmt::format(" (resumed; trained at lr {})", p.lr) : std::string(" (resumed)");
          fmt::print(stderr, "{}block {:>3}/{}: loss {:.4g} -> {:.4g}{} | total {} eta {}\n", line_start, p.block + 1,
                     p.blocks, p.loss_before, p.loss_after,
                     (p.resumed ? resumed : fmt::format(" in {}", format_seconds(p.block_elapsed_s))) +
                         (p.reverted ? " (training did not lower it: untrained codebooks kept)" : ""),
                     format_seconds(p.total_elapsed_s), eta);
        } else if (p.stage == S::kEpochDone) {
          // On a terminal too, so the loss curve stays on screen after the bar moves on.
          fmt::print(stderr, "{}block {:>3}/{} epoch {}/{}: mean loss {:.4g}\n", line_start, p.block + 1, p.blocks,
                     p.epoch + 1, p.epochs, p.loss);
        } else if (tty && (p.stage != S::kStep || seconds_since(last_draw) >= 0.1)) {
          last_draw = Clock::now();
          progress_bar(p.block, p.blocks,
                       p.stage == S::kTargets
                           ? fmt::format("block {} targets              ", p.block + 1)
                           : fmt::format("block {} epoch {}/{} step {}/{} loss {:.4g} | eta {}   ", p.block + 1,
                                         p.epoch + 1, p.epochs, p.step + 1, p.steps, p.loss, eta));
        }
        return true;
      });
  double before = 0, after = 0, train_s = 0;
  int64_t other_lr = 0;  // resumed blocks trained at another lr by an earlier run
  for (const cc::CalibrateBlockReport& b : rep.blocks) {
    before += b.loss_before;
    after += b.loss_after;
    train_s += b.seconds;
    other_lr += b.lr != o.lr;
  }
  const double nb = static_cast<double>(rep.blocks.size());
  fmt::print("teacher:     {}\n", teacher_path);
  fmt::print("student:     {}\n", student_path);
  fmt::print("text:        {} ({} tokens; {} windows of {} at seeded offsets, seed {})\n", text_path, ids.size(),
             o.samples, o.window, o.seed);
  fmt::print("blocks:      {} ({} resumed from {}{})\n", rep.blocks.size(), rep.resumed,
             o.work_dir.empty() ? out + ".work" : o.work_dir,
             other_lr > 0 ? fmt::format("; {} of them trained at another lr, see calibrate.settings block_lr", other_lr)
                          : std::string());
  fmt::print("block loss:  mean {:.4g} before -> {:.4g} after (MSE against the teacher's block outputs)\n",
             before / nb, after / nb);
  fmt::print("trainable:   {} codebook values = {:.3f}% of {} parameters\n", rep.trainable,
             100.0 * static_cast<double>(rep.trainable) / static_cast<double>(rep.parameters), rep.parameters);
  fmt::print("memory:      {:.1f} MiB streams + {:.1f} MiB saved activations per step; peak RSS {:.1f} MiB\n",
             static_cast<double>(rep.stream_bytes) / (1 << 20), static_cast<double>(rep.saved_bytes) / (1 << 20),
             static_cast<double>(rep.peak_rss_bytes) / (1 << 20));
  const int64_t trained_blocks = static_cast<int64_t>(rep.blocks.size()) - rep.resumed;
  fmt::print("time:        {} ({:.2f} s per trained block, {} threads)\n", format_seconds(rep.seconds),
             trained_blocks > 0 ? train_s / static_cast<double>(trained_blocks) : 0.0, teacher.threads());
  fmt::print("output:      {} ({:.2f} MiB)\n", out, static_cast<double>(rep.output_bytes) / (1 << 20));
  return 0;
}

// ---- recover / finetune ---------------------------------------------------------------------------

cc::RecoverOptions recover_options(const Options& opt) {
  cc::RecoverOptions o;
  o.samples = opt.get_int("samples", o.samples);
  o.window = opt.get_int("window", o.window);
  const int64_t epochs = opt.get_int("epochs", o.epochs);
  if (epochs < 1 || epochs > 10000) throw cc::Error(cc::StatusCode::kInvalidArgument, "--epochs must be in 1..10000");
  o.epochs = static_cast<int>(epochs);
  o.max_steps = opt.get_int("steps", 0);
  if (o.max_steps < 0) throw cc::Error(cc::StatusCode::kInvalidArgument, "--steps must not be negative");
  o.accumulation = opt.get_int("grad-accum", 1);
  o.lr = static_cast<float>(opt.get_double("lr", o.lr));
  o.weight_decay = static_cast<float>(opt.get_double("weight-decay", o.weight_decay));
  o.seed = static_cast<uint64_t>(opt.get_int("seed", 1234));
  o.threads = static_cast<int>(opt.get_int("threads", 0));
  o.recompute = opt.flag("recompute");
  o.evaluate = !opt.flag("no-eval");
  return o;
}

// Shared by recover and finetune: runs `train` with a progress display, prints the report and
// writes the loss curve CSV (--loss-csv).
template <class Train>
int run_training(const std::string& out, const Options& opt, const cc::RecoverOptions& o,
                 Train&& train) {
  const bool tty = isatty(2) != 0;
  auto last_draw = Clock::now();
  const cc::RecoverReport rep = train([&](const cc::RecoverProgress& p) {
    using S = cc::RecoverProgress::Stage;
    if (p.stage == S::kEvalBefore || p.stage == S::kEvalAfter) {
      if (tty) progress_bar(p.window, p.windows, p.stage == S::kEvalBefore ? "evaluating before   " : "evaluating after   ");
      if (tty && p.window == p.windows) fmt::print(stderr, "\n");
    } else if (p.stage == S::kStep) {
      if (!tty) {
        fmt::print(stderr, "step {:>5}/{} epoch {}/{}: loss {:.5f}\n", p.step + 1, p.steps, p.epoch + 1, p.epochs, p.loss);
      } else if (p.step + 1 == p.steps || seconds_since(last_draw) >= 0.1) {
        last_draw = Clock::now();
        progress_bar(p.step + 1, p.steps,
                     fmt::format("steps  epoch {}/{} loss {:.5f} | eta {}   ", p.epoch + 1, p.epochs, p.loss,
                                 format_seconds(p.eta_s)));
      }
    } else if (p.stage == S::kEpochDone) {
      fmt::print(stderr, "{}epoch {}/{}: mean loss {:.5f}\n", tty ? "\n" : "", p.epoch + 1, p.epochs, p.loss);
    }
    return true;
  });
  const char* lname = rep.loss == cc::RecoverLoss::kKd ? "KL(teacher || student) per token" : "cross-entropy per token";
  fmt::print("loss:        {}\n", lname);
  fmt::print("trainable:   {} values ({}) = {:.4f}% of {} parameters{}\n", rep.trainable,
             rep.train == cc::RecoverTrain::kAll ? "codebooks, norms, embedding, lm_head if untied" : "codebooks",
             100.0 * rep.trainable_share(), rep.parameters,
             rep.train == cc::RecoverTrain::kAll ? "; dense projection matrices and projection biases stay frozen" : "");
  fmt::print("steps:       {} optimiser steps, {} windows of {} tokens ({} per step), lr {}, weight decay {}\n",
             rep.steps, rep.windows_seen, o.window, o.accumulation, o.lr, o.weight_decay);
  std::string curve;
  for (size_t i = 0; i < rep.epoch_loss.size(); ++i) curve += fmt::format("{}{:.5f}", i ? " " : "", rep.epoch_loss[i]);
  fmt::print("epoch loss:  {}\n", curve);
  if (!rep.step_loss.empty())
    fmt::print("step loss:   first {:.5f}, last {:.5f}\n", rep.step_loss.front(), rep.step_loss.back());
  if (o.evaluate) {
    if (std::isfinite(rep.kl_before))
      fmt::print("KL train:    {:.5f} -> {:.5f} nats/token (training windows, stored values)\n", rep.kl_before,
                 rep.kl_after);
    fmt::print("CE train:    {:.5f} -> {:.5f} nats/token (ppl {:.3f} -> {:.3f}; training windows)\n", rep.ce_before,
               rep.ce_after, std::exp(rep.ce_before), std::exp(rep.ce_after));
  }
  fmt::print("memory:      {:.1f} MiB saved activations + {:.1f} MiB logits per window{}, {:.1f} MiB AdamW state; "
             "peak RSS {:.1f} MiB\n",
             static_cast<double>(rep.saved_bytes) / (1 << 20), static_cast<double>(rep.logits_bytes) / (1 << 20),
             o.recompute ? " (recompute)" : "", static_cast<double>(rep.optimizer_bytes) / (1 << 20),
             static_cast<double>(rep.peak_rss_bytes) / (1 << 20));
  fmt::print("time:        {} ({:.2f} s per window, training {})\n", format_seconds(rep.seconds), rep.seconds_per_window,
             format_seconds(rep.train_seconds));
  fmt::print("output:      {} ({:.2f} MiB)\n", out, static_cast<double>(rep.output_bytes) / (1 << 20));
  if (opt.values.count("loss-csv")) {
    const std::string path = opt.values.at("loss-csv");
    std::string csv = "step,epoch,loss\n";
    for (size_t i = 0; i < rep.step_loss.size(); ++i)
      csv += fmt::format("{},{},{:.8g}\n", i + 1, rep.step_epoch[i] + 1, rep.step_loss[i]);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(csv.data(), 1, csv.size(), f) != csv.size() || std::fclose(f) != 0)
      throw cc::Error(cc::StatusCode::kIoError, path + ": cannot write the loss curve");
    fmt::print("loss curve:  {} ({} steps)\n", path, rep.step_loss.size());
  }
  return 0;
}

int recover_cmd(const std::string& teacher_path, const std::string& student_path, const std::string& text_path,
                const Options& opt) {
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "recover needs --out OUT");
  if (!fs::exists(student_path)) throw cc::Error(cc::StatusCode::kNotFound, student_path + ": no such file");
  cc::RecoverOptions o = recover_options(opt);
  o.loss = cc::parse_recover_loss(opt.get("loss", "kd"));
  o.train = cc::parse_recover_train(opt.get("train", "codebooks"));
  const std::vector<int32_t> ids = read_training_tokens(teacher_path, text_path);
  cc::LlamaModel teacher = load_model_timed(teacher_path, o.threads);
  fmt::print(stderr, "recovering {}: loss {}, train {}, {} windows x {} tokens, {} epochs{}, lr {}\n", student_path,
             cc::recover_loss_name(o.loss), cc::recover_train_name(o.train), o.samples, o.window, o.epochs,
             o.max_steps > 0 ? fmt::format(" (at most {} steps)", o.max_steps) : std::string(), o.lr);
  fmt::print("teacher:     {}\n", teacher_path);
  fmt::print("student:     {}\n", student_path);
  fmt::print("text:        {} ({} tokens; {} windows of {} at seeded offsets, seed {})\n", text_path, ids.size(),
             o.samples, o.window, o.seed);
  return run_training(out, opt, o, [&](const cc::RecoverCallback& cb) {
    return cc::recover_model(&teacher, teacher_path, student_path, ids, out, o, cb);
  });
}

int finetune_cmd(const std::string& student_path, const std::string& text_path, const Options& opt) {
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "finetune needs --out OUT");
  const cc::RecoverOptions o = recover_options(opt);
  const std::vector<int32_t> ids = read_training_tokens(student_path, text_path);
  fmt::print(stderr, "finetuning the codebooks of {}: {} windows x {} tokens, {} epochs{}, lr {}\n", student_path,
             o.samples, o.window, o.epochs,
             o.max_steps > 0 ? fmt::format(" (at most {} steps)", o.max_steps) : std::string(), o.lr);
  fmt::print("student:     {}\n", student_path);
  fmt::print("text:        {} ({} tokens; {} windows of {} at seeded offsets, seed {})\n", text_path, ids.size(),
             o.samples, o.window, o.seed);
  return run_training(out, opt, o, [&](const cc::RecoverCallback& cb) {
    return cc::finetune_model(student_path, ids, out, o, cb);
  });
}

int usage(int rc) {
  fmt::print(rc ? stderr : stdout,
             "usage: cluscomp inspect MODEL\n"
             "       cluscomp roundtrip MODEL.gguf --out DIR\n"
             "       cluscomp eval MODEL TEXT [--window N] [--stride N] [--max-windows N] [--threads N]\n"
             "       cluscomp generate MODEL PROMPT [--max-tokens N] [--temperature T] [--top-k K]\n"
             "                         [--top-p P] [--seed S] [--raw] [--threads N]\n"
             "       cluscomp compress MODEL --out OUT [--bpw B | --d N --k N --s N --per-kind SPEC]\n"
             "                         [--search-d 4,8] [--method cluscomp|rtn] [--bits N] [--group-size N] [--matrices PATTERNS]\n"
             "                         [--iterations N] [--seed N] [--code-bits N] [--centroid-dtype f16|bf16|f32]\n"
             "                         [--dense-dtype f16|bf16|f32] [--reference-layout] [--work-dir D] [--threads N]\n"
             "                         [--jobs N] [--activations TEXT [--act-samples N] [--act-window N] [--importance-damp X]]\n"
             "         --jobs: matrices compressed at once, threads / N threads each (default min(threads, 2));\n"
             "                 the output is the same for any N\n"
             "         --activations: activation-aware clustering, input statistics from N windows of the text\n"
             "                        (default 16 x 256 tokens at offsets from --seed; damping 0.01)\n"
             "         PATTERNS: q,k,v,o,gate,up,down,attn,mlp,all; SPEC: \"KINDS:d=N,k=N,s=N;KINDS:...\"\n"
             "       cluscomp calibrate TEACHER STUDENT TEXT --out OUT [--samples N] [--window N] [--epochs N]\n"
             "                         [--lr X] [--weight-decay X] [--aug-loss] [--seed N] [--work-dir D] [--threads N]\n"
             "         STUDENT: a cluscomp-format file compressed from TEACHER; TEXT: calibration text\n"
             "         an interrupted run resumes from OUT.work's finished blocks, also at another --lr\n"
             "       cluscomp recover TEACHER STUDENT TEXT --out OUT [--loss kd|ce] [--train codebooks|all]\n"
             "                         [--samples N] [--window N] [--epochs N] [--steps N] [--grad-accum N] [--lr X]\n"
             "                         [--weight-decay X] [--seed N] [--recompute] [--no-eval] [--loss-csv FILE] [--threads N]\n"
             "         end-to-end training of STUDENT (KD from TEACHER by default); no resume, output written at the end\n"
             "         --train all: codebooks, norms, embedding, untied lm_head; projection biases (e.g. Qwen2 q/k/v)\n"
             "                      and unclustered (dense) projection matrices stay frozen\n"
             "       cluscomp finetune STUDENT TEXT --out OUT [--samples N] [--window N] [--epochs N] [--steps N]\n"
             "                         [--grad-accum N] [--lr X] [--weight-decay X] [--seed N] [--recompute] [--no-eval]\n"
             "                         [--loss-csv FILE] [--threads N]\n"
             "         codebook-only finetuning of STUDENT on TEXT (causal LM loss); no resume\n"
             "       cluscomp embed-tokenizer COMPRESSED SOURCE [--out OUT]\n"
             "         stores SOURCE's tokenizer in COMPRESSED (in place unless --out), for files compressed\n"
             "         before tokenizers were embedded; tensors and other metadata unchanged\n"
             "       cluscomp version\n"
             "MODEL: a .gguf file, a .safetensors file (HF or cluscomp format); eval/generate also\n"
             "       take an HF model directory (config.json + model.safetensors + tokenizer.json)\n");
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
  if (cmd == "eval") {
    if (argc < 4) return usage(2);
    return eval_cmd(model, argv[3], parse_options(argc, argv, 4, {"window", "stride", "max-windows", "threads"}, {}));
  }
  if (cmd == "generate") {
    if (argc < 4) return usage(2);
    return generate_cmd(model, argv[3],
                        parse_options(argc, argv, 4, {"max-tokens", "temperature", "top-k", "top-p", "seed", "threads"},
                                      {"raw"}));
  }
  if (cmd == "compress")
    return compress_cmd(model, parse_options(argc, argv, 3,
                                             {"out", "bpw", "d", "k", "s", "per-kind", "method", "bits", "group-size",
                                              "matrices", "iterations", "seed", "code-bits", "search-d", "centroid-dtype",
                                              "dense-dtype", "work-dir", "threads", "jobs", "activations", "act-samples",
                                              "act-window", "importance-damp"},
                                             {"reference-layout"}));
  if (cmd == "embed-tokenizer") {
    if (argc < 4) return usage(2);
    return embed_tokenizer_cmd(model, argv[3], parse_options(argc, argv, 4, {"out"}, {}));
  }
  if (cmd == "calibrate") {
    if (argc < 5) return usage(2);
    return calibrate_cmd(model, argv[3], argv[4],
                         parse_options(argc, argv, 5,
                                       {"out", "samples", "window", "epochs", "lr", "weight-decay", "seed", "work-dir",
                                        "threads"},
                                       {"aug-loss"}));
  }
  if (cmd == "recover") {
    if (argc < 5) return usage(2);
    return recover_cmd(model, argv[3], argv[4],
                       parse_options(argc, argv, 5,
                                     {"out", "loss", "train", "samples", "window", "epochs", "steps", "grad-accum", "lr",
                                      "weight-decay", "seed", "threads", "loss-csv"},
                                     {"recompute", "no-eval"}));
  }
  if (cmd == "finetune") {
    if (argc < 4) return usage(2);
    return finetune_cmd(model, argv[3],
                        parse_options(argc, argv, 4,
                                      {"out", "samples", "window", "epochs", "steps", "grad-accum", "lr", "weight-decay",
                                       "seed", "threads", "loss-csv"},
                                      {"recompute", "no-eval"}));
  }
  if (cmd == "inspect") return cc::is_gguf_file(model) ? inspect_gguf(model) : inspect_safetensors(model);
  if (cmd == "roundtrip") {
    std::string out;
    for (int i = 3; i + 1 < argc; ++i)
      if (std::string(argv[i]) == "--out") out = argv[i + 1];
    if (out.empty()) return usage(2);
    if (!cc::is_gguf_file(model)) {
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
