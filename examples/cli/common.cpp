// Helpers several verbs print with: durations, the progress bar, model and text loading.
#include <fmt/core.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "cluscomp/model/llama.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace cli {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_seconds(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{:.1f}s", s);
}

void progress_bar(int64_t done, int64_t total, const std::string& tail) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  fmt::print(stderr, "\r[{}{}] {}/{} {}", std::string(static_cast<size_t>(filled), '#'),
             std::string(static_cast<size_t>(width - filled), '.'), done, total, tail);
  std::fflush(stderr);
}

void print_loaded(const std::string& path, double seconds, const cc::LlamaModel& m) {
  const cc::MemoryReport r = m.memory_report();
  fmt::print(stderr, "loaded {} in {:.2f} s: {} blocks, hidden {}, vocab {}, {:.1f} MiB of weights, {} threads\n",
             path, seconds, m.config().num_hidden_layers, m.config().hidden_size, m.vocab_size(),
             static_cast<double>(r.weights) / (1 << 20), m.threads());
}

std::vector<int64_t> torch_shape(const std::vector<int64_t>& ne) {
  return std::vector<int64_t>(ne.rbegin(), ne.rend());
}

cc::DenseWeights dense_weights_for(const Options& opt) {
  return opt.flag("dense-fp32") ? cc::DenseWeights::kFp32 : cc::DenseWeights::kStored;
}

cc::LlamaModel load_model_timed(const std::string& path, int threads, cc::Device device, cc::DenseWeights dense) {
  const auto t0 = Clock::now();
  cc::LlamaRuntimeOptions o;
  o.threads = threads;
  o.device = device;
  o.dense = dense;
  cc::LlamaModel m = cc::load_llama_model(path, o);
  print_loaded(path, seconds_since(t0), m);
  return m;
}

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

std::vector<int32_t> read_training_tokens(const std::string& model_path, const std::string& text_path) {
  const std::string text = read_utf8_text(text_path);
  const cc::Tokenizer tok = cc::load_model_tokenizer(model_path);
  const auto t0 = Clock::now();
  std::vector<int32_t> ids = tok.encode(text, false);
  fmt::print(stderr, "tokenised {} bytes into {} tokens in {:.2f} s\n", text.size(), ids.size(), seconds_since(t0));
  return ids;
}

}  // namespace cli
