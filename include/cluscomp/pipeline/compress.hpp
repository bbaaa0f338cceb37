#pragma once
/// Compressing a model's projection matrices (CLUSCOMP.md §1): every selected q/k/v/o/gate/up/down
/// matrix is either clustered (one k-means per codebook, kmeans.hpp) or, as a baseline, quantised
/// round-to-nearest (RTN: uniform, asymmetric, groups of 128 input columns). The result is one
/// cluscomp-format file (io/cluscomp_format.hpp) or the reference layout.
///
/// Settings: explicit per-kind ClusterSettings, or a target bits-per-weight. For a target, the
/// per-matrix (d, K) comes from a cheap search (plan_compression; docs/results.md, "How --bpw chooses"):
///  1. per matrix and per candidate d, one small k-means on a deterministic subsample (every
///     (N / n_s)-th d-vector, n_s = search_sample) with K_s = search_k centroids gives the mean
///     squared error per vector D_s;
///  2. the error at any K is extrapolated with the high-rate law D(K) = D_s * (K / K_s)^(-2/d)
///     (Zador), so total error of candidate (d, K) is N * D(K); its cost is the true packed bits
///     (ceil(log2 K)-bit codes plus the fp16 codebook, CodebookShape::bpw_packed);
///  3. allocation: a Lagrangian sweep (each matrix minimises error + lambda * bits, lambda
///     bisected to the smallest value that meets the budget), then greedy upgrades by best error
///     drop per added bit while the budget allows. The plan never exceeds the target.
/// S = 1 in the search (S > 1 only with explicit settings); d from CompressOptions::search_d.
///
/// Activation-aware clustering (optional, CompressOptions::input_importance; not in the
/// reference): with h_i the mean squared input activation of column i on calibration text
/// (pipeline/activation_stats.hpp), every d-vector of column i enters k-means with weight
/// h_i + damp * mean(h), so centroids minimise E||(W - W^) x||^2 instead of ||W - W^||^2 (the
/// assignment is still plain nearest-centroid: a d-vector lies in one column). The weights are
/// normalised to mean 1 per matrix, so the search's (weighted) subsample errors stay in weight
/// units across matrices: within a matrix they follow its activations, across matrices they do
/// not favour the ones fed by large activations (raw output errors did, and ruined the plan:
/// docs/architecture.md, "Activation-aware clustering").
///
/// Resume: each finished matrix is written atomically to `<work_dir>/<name>.safetensors` with the
/// job description it was made for; a later run with the same job reuses it instead of
/// recomputing. The job holds a digest of the matrix's own source values (not the source's path
/// or size), so a model changed in place recomputes exactly the matrices that changed. The output
/// is written atomically once every matrix is done, then the work directory is removed. Because
/// k-means is deterministic per seed (any thread count) and the output holds no timings, a resumed
/// run writes a byte-identical file. A run killed while writing the output leaves
/// `<out>.tmp.XXXXXX` (io/file.hpp); the next run to the same output removes such orphans of its
/// own output name before it starts (remove_stale_temporaries: only that exact pattern, only files
/// older than the run and not locked by a live writer) and lists them in
/// CompressReport::removed_temporaries.
///
/// GGUF tensors without an HF name (hf_name_from_gguf, e.g. rope_freqs.weight) are not carried
/// into the output: read_source_model lists them in SourceModel::skipped, and compress_model
/// passes them on as a kWarning progress event and CompressReport::skipped_tensors.
///
/// Errors: cluscomp::Error naming the bad value (unknown kind pattern, no projection matrices,
/// a non-finite or negative target bpw or damping, unmeetable target, k-means failures with the matrix name, I/O with the path; kCancelled when the
/// progress callback returns false). Nothing here prints.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/cluster/weight_vectors.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/host/digest.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "cluscomp/io/reference_checkpoint.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/model/llama.hpp"

CLUSCOMP_NAMESPACE_BEGIN

// ---------------------------------------------------------------------------------------------
// Which matrices

/// The seven projections of a LLaMA-family decoder block.
enum class ProjectionKind { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumProjectionKinds = 7;

inline const char* projection_kind_name(ProjectionKind k) {
  static const char* const kNames[] = {"q", "k", "v", "o", "gate", "up", "down"};
  return kNames[static_cast<int>(k)];
}

/// The kind of an HF weight name "model.layers.<i>.{self_attn.{q,k,v,o}_proj|mlp.{gate,up,down}_proj}.weight";
/// false for any other name.
inline bool projection_kind_of(const std::string& name, ProjectionKind* kind) {
  static const std::pair<const char*, ProjectionKind> kSuffix[] = {
      {".self_attn.q_proj.weight", ProjectionKind::kQ},  {".self_attn.k_proj.weight", ProjectionKind::kK},
      {".self_attn.v_proj.weight", ProjectionKind::kV},  {".self_attn.o_proj.weight", ProjectionKind::kO},
      {".mlp.gate_proj.weight", ProjectionKind::kGate}, {".mlp.up_proj.weight", ProjectionKind::kUp},
      {".mlp.down_proj.weight", ProjectionKind::kDown}};
  if (name.rfind("model.layers.", 0) != 0) return false;
  for (const auto& s : kSuffix) {
    const std::string suf = s.first;
    if (name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0) {
      if (kind) *kind = s.second;
      return true;
    }
  }
  return false;
}

/// Parses a comma-separated list of kind patterns: q, k, v, o, gate, up, down, attn (q,k,v,o),
/// mlp (gate,up,down), all. Returns the kinds in canonical order without duplicates. Throws
/// Error(kInvalidArgument) naming an unknown pattern or an empty list.
inline std::vector<ProjectionKind> parse_projection_patterns(const std::string& list) {
  std::array<bool, kNumProjectionKinds> on{};
  size_t pos = 0;
  bool any = false;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string p = list.substr(pos, comma - pos);
    pos = comma + 1;
    if (p.empty()) continue;
    any = true;
    bool found = false;
    for (int k = 0; k < kNumProjectionKinds; ++k)
      if (p == projection_kind_name(static_cast<ProjectionKind>(k))) on[static_cast<size_t>(k)] = found = true;
    if (p == "attn" || p == "all") on[0] = on[1] = on[2] = on[3] = found = true;
    if (p == "mlp" || p == "all") on[4] = on[5] = on[6] = found = true;
    if (!found)
      throw Error(StatusCode::kInvalidArgument, "unknown matrix pattern '" + p +
                                                    "' (known: q, k, v, o, gate, up, down, attn, mlp, all)");
  }
  if (!any) throw Error(StatusCode::kInvalidArgument, "the matrix pattern list '" + list + "' names no matrix");
  std::vector<ProjectionKind> out;
  for (int k = 0; k < kNumProjectionKinds; ++k)
    if (on[static_cast<size_t>(k)]) out.push_back(static_cast<ProjectionKind>(k));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Source model

/// One tensor of the source model: HF name, HF (torch) shape, fp32 values in HF order.
struct SourceTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// A whole model in fp32 with HF names and HF row order (llama.cpp's q/k permutation undone).
struct SourceModel {
  LlamaConfig config;
  std::string path;                   // where it was read from (recorded in the output metadata)
  std::vector<SourceTensor> tensors;  // source order
  /// GGUF names of the tensors read_source_model left out (no HF name: hf_name_from_gguf), in file
  /// order; compress_model warns about them.
  std::vector<std::string> skipped;
  /// The model's tokenizer, embedded in the output so that it tokenises without the source;
  /// empty when the source has none cluscomp reads (then `tokenizer_note` says why).
  std::optional<Tokenizer> tokenizer;
  std::string tokenizer_note;
};

/// Reads a LLaMA-family GGUF file (every tensor dequantised to fp32, bit-identical to ggml; q/k
/// rows of llama/mistral files restored to HF order, as load_llama_gguf does) or an HF directory
/// with config.json + one model.safetensors (fp32/fp16/bf16 converted exactly), and its tokenizer
/// (load_model_tokenizer: GGUF metadata, tokenizer.json). GGUF tensors without an HF name are
/// left out and listed in SourceModel::skipped. Throws Error naming the file: kNotFound,
/// kFormatError, kUnsupported (sharded HF checkpoints, architectures); a missing or unsupported
/// tokenizer is not an error (SourceModel::tokenizer_note).
inline SourceModel read_source_model(const std::string& path) {
  namespace fs = std::filesystem;
  SourceModel m;
  m.path = path;
  if (!fs::exists(path)) throw Error(StatusCode::kNotFound, path + ": no such file or directory");
  try {
    m.tokenizer = load_model_tokenizer(path);
  } catch (const Error& e) {
    m.tokenizer_note = e.what();
  }
  if (fs::is_directory(path)) {
    m.config = read_llama_config((fs::path(path) / "config.json").string());
    const fs::path st = fs::path(path) / "model.safetensors";
    if (!fs::exists(st))
      throw Error(StatusCode::kUnsupported, path + ": compress reads a single model.safetensors (sharded checkpoints are not supported)");
    SafetensorsFile f = SafetensorsFile::open(st.string());
    for (const TensorRef& t : f.tensors()) m.tensors.push_back({t.name, t.shape, tensor_to_float(t)});
    return m;
  }
  GgufReader g(path);
  m.config = llama_config_from_gguf(g);
  const bool permuted = m.config.model_type == "llama" || m.config.model_type == "mistral";
  for (const GgufTensorInfo& t : g.tensors()) {
    const std::string hf = hf_name_from_gguf(t.name);
    if (hf.empty()) {
      m.skipped.push_back(t.name);
      continue;
    }
    SourceTensor s;
    s.name = hf;
    s.shape.assign(t.ne.rbegin(), t.ne.rend());
    s.values = dequantize_tensor(g, t);
    if (permuted) {
      const int64_t cols = s.shape.size() == 2 ? s.shape[1] : 1;
      auto ends = [&](const char* suf) {
        const std::string x(suf);
        return hf.size() >= x.size() && hf.compare(hf.size() - x.size(), x.size(), x) == 0;
      };
      if (ends("self_attn.q_proj.weight") || ends("self_attn.q_proj.bias"))
        unpermute_gguf_qk_rows(s.values, m.config.num_attention_heads, cols);
      if (ends("self_attn.k_proj.weight") || ends("self_attn.k_proj.bias"))
        unpermute_gguf_qk_rows(s.values, m.config.num_key_value_heads, cols);
    }
    m.tensors.push_back(std::move(s));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Options, plan, report

enum class CompressMethod { kCluster, kRtn };

inline const char* compress_method_name(CompressMethod m) { return m == CompressMethod::kRtn ? "rtn" : "cluscomp"; }

/// Clustering settings of one matrix (CLUSCOMP.md §1).
struct ClusterSettings {
  int d = 4;
  int64_t k = 4096;
  int num_codebooks = 1;  // S
  int code_bits = 0;      // 0: ceil(log2 K)
  DType centroid_dtype = DType::kF16;
};

/// Round-to-nearest settings: per output row, groups of `group_size` consecutive input columns,
/// each with an fp16 scale and an fp16 minimum (asymmetric). True bpw = bits + 32 * groups / in.
struct RtnSettings {
  int bits = 4;
  int group_size = 128;
};

/// What the progress callback sees.
struct CompressProgress {
  /// kWarning: something the user should know that does not stop the run (`message`), e.g. source
  /// tensors left out of the output; sent before any other stage.
  enum class Stage { kSearch, kMatrixStart, kIteration, kMatrixDone, kWriting, kWarning };
  Stage stage = Stage::kSearch;
  int64_t matrix = 0;    // 0-based index of the current matrix
  int64_t matrices = 0;  // total
  std::string name;
  bool resumed = false;  // kMatrixDone: taken from the work directory
  int64_t done = 0;      // matrices finished so far (with `jobs` > 1 they finish out of order)
  int iteration = 0, iterations = 0;
  double matrix_elapsed_s = 0, total_elapsed_s = 0;
  double matrix_eta_s = 0, total_eta_s = 0;  // estimates; 0 when unknown
  std::string message;  // kWarning: what happened, in words
};
/// Return false to cancel: compress_model then throws Error(kCancelled) and keeps the work files.
/// Never called by two threads at once, also with CompressOptions::jobs > 1.
using CompressCallback = std::function<bool(const CompressProgress&)>;

struct CompressOptions {
  CompressMethod method = CompressMethod::kCluster;
  std::vector<ProjectionKind> kinds = parse_projection_patterns("all");
  std::array<ClusterSettings, kNumProjectionKinds> per_kind{};  // explicit settings (target_bpw == 0)
  double target_bpw = 0;  // > 0: search per-matrix (d, K) instead of per_kind (finite, >= 0)
  /// Candidate d of the search. d = 2 is left out by default: on SmolLM2-135M at ~4 bpw a mostly
  /// d = 2 plan had lower weight error (0.106) than a d = 4 one (0.137) but far worse perplexity
  /// (101.6 vs 23.4 with d in {4, 8}; 2 windows, docs/results.md): weight MSE ranks d = 2 unfairly.
  std::vector<int> search_d = {4, 8};
  int64_t search_sample = 8192;  // subsample size of the error estimate
  int64_t search_k = 128;        // K_s of the estimate
  int search_iterations = 8;
  int search_max_code_bits = 16;
  RtnSettings rtn;
  int iterations = 20;  // Lloyd iterations of the final k-means (the reference: 20)
  uint64_t seed = 1234;
  int threads = 0;  // 0: all hardware threads
  /// Matrices compressed at the same time, each by threads / jobs threads (at least 1); the
  /// output is the same bytes for any value (k-means is deterministic for any thread count).
  /// 0: min(threads, 2). A small matrix's k-means uses many threads poorly (SmolLM2-135M, 2
  /// threads: 1 job 30 s, 2 jobs of 1 thread 24 s; docs/results.md), so on many cores and small
  /// matrices more jobs pay; each job holds one matrix's k-means buffers (~50 bytes per weight
  /// at d = 4).
  int jobs = 0;
  DType dense_dtype = DType::kF16;  // storage of the tensors that stay dense (embeddings, norms)
  bool reference_layout = false;    // write the reference's layout (a directory; S = 1, one K and d)
  std::string work_dir;             // "" : <out>.work
  CompressCallback progress;
  /// Activation-aware clustering (empty: data-free, the reference's method). HF weight name ->
  /// (in) mean squared input activation h of that matrix (pipeline/activation_stats.hpp). A
  /// matrix listed here is clustered with k-means weighted per d-vector by its input column's
  /// normalised weight (compress_detail::column_weights: h_i + importance_damp * mean(h), scaled
  /// to mean 1), and the bpw search ranks candidates by that weighted error instead of the plain
  /// weight error; RTN matrices ignore it. Every clustered matrix must be listed (checked before
  /// any work; Error otherwise).
  std::map<std::string, std::vector<float>> input_importance;
  /// Added to every column weight as a fraction of the mean (GPTQ's 1% Hessian dampening): keeps
  /// columns that were quiet on the calibration text from being ignored entirely.
  double importance_damp = 0.01;
  /// Extra metadata entries written to the output (e.g. where input_importance came from).
  std::map<std::string, std::string> metadata;
};

/// The decision for one matrix.
struct MatrixPlan {
  std::string name;
  ProjectionKind kind = ProjectionKind::kQ;
  int64_t out = 0, in = 0;
  CompressMethod method = CompressMethod::kCluster;
  ClusterSettings cluster;
  RtnSettings rtn;
  double bpw = 0;              // true bits per weight (packed codes + codebooks, or RTN with scales)
  double predicted_error = -1;  // search estimate of ||W - W^||^2 (-1 without a search)
};

struct MatrixReport {
  MatrixPlan plan;
  double sq_error = 0;  // ||W - W^||_F^2 of what is stored (double)
  double sq_norm = 0;   // ||W||_F^2
  /// With input_importance (clustered matrices): the same with column i weighted by its
  /// normalised weight (compress_detail::column_weights), i.e. E||(W - W^) x||^2 and E||W x||^2
  /// for uncorrelated inputs up to one common factor per matrix (only their ratio,
  /// out_rel_error, is meaningful); else 0.
  double out_sq_error = 0, out_sq_norm = 0;
  double seconds = 0;   // compute time (of the run that made it, when resumed)
  bool resumed = false;
  double rel_error() const { return sq_norm > 0 ? std::sqrt(sq_error / sq_norm) : 0.0; }
  double out_rel_error() const { return out_sq_norm > 0 ? std::sqrt(out_sq_error / out_sq_norm) : 0.0; }
};

struct CompressReport {
  std::vector<MatrixReport> matrices;  // output order
  double bpw = 0;                      // over all compressed matrices: total bits / total weights
  int64_t output_bytes = 0;            // size of the output (file, or directory total)
  double seconds = 0;
  int64_t resumed = 0;  // matrices taken from the work directory
  int jobs = 1;         // matrices that were compressed at the same time (their `seconds` overlap)
  int job_threads = 1;  // threads of each
  std::vector<std::string> skipped_tensors;      // SourceModel::skipped: not in the output
  std::vector<std::string> removed_temporaries;  // orphaned temporaries of the output, removed
};

// ---------------------------------------------------------------------------------------------

namespace compress_detail {

/// Runs task(i) for i in [0, n) on `jobs` threads (the caller's among them), which take the
/// indices in order. The first exception a task throws, or the first fail(), stops the other jobs:
/// they take no new index, and tasks poll stopped() at their progress points to leave early (what
/// they throw then is ignored). run() rethrows that first exception.
class JobRunner {
 public:
  explicit JobRunner(int jobs) : jobs_(std::max(1, jobs)) {}
  template <class F>
  void run(size_t n, F&& task) {
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next++; i < n && !stop_.load(); i = next++) {
        try {
          task(i);
        } catch (...) {
          fail(std::current_exception());
        }
      }
    };
    std::vector<std::thread> pool;
    for (int j = 1; j < jobs_ && static_cast<size_t>(j) < n; ++j) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    if (failure_) std::rethrow_exception(failure_);
  }
  /// Records e as the outcome unless another came first, and stops the jobs.
  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return;  // jobs leaving because of the first one
    failure_ = std::move(e);
    stop_.store(true);
  }
  bool stopped() const { return stop_.load(); }

 private:
  int jobs_;
  std::mutex mu_;
  std::atomic<bool> stop_{false};
  std::exception_ptr failure_;
};

/// The option checks that need no model (plan_compression and compress_model both run them):
/// Error(kInvalidArgument) naming the option and its value. NaN fails every comparison, so each
/// check is written to accept only the valid range.
inline void check_options(const CompressOptions& o) {
  auto bad = [](const std::string& what, double v, const char* need) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    throw Error(StatusCode::kInvalidArgument, "compress: " + what + " = " + buf + " (must be " + need + ")");
  };
  if (!(std::isfinite(o.target_bpw) && o.target_bpw >= 0))
    bad("target bpw", o.target_bpw, "finite and > 0, or 0 for explicit settings");
  if (!(std::isfinite(o.importance_damp) && o.importance_damp >= 0))
    bad("importance damping", o.importance_damp, "finite and >= 0");
  if (o.iterations < 0) throw Error(StatusCode::kInvalidArgument, "compress: iterations must not be negative");
}

/// Matrices at once for CompressOptions::jobs (0: min(threads, 2)), at most `matrices`.
inline int resolve_jobs(int requested, int threads, size_t matrices) {
  const int64_t j = requested > 0 ? requested : std::min(threads, 2);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(j, static_cast<int64_t>(matrices))));
}

inline double rtn_bpw(const RtnSettings& r, int64_t in) {
  const int64_t groups = (in + r.group_size - 1) / r.group_size;
  return r.bits + 32.0 * static_cast<double>(groups) / static_cast<double>(in);
}

inline CodebookShape shape_of(const MatrixPlan& p) {
  CodebookShape s;
  s.out = p.out;
  s.in = p.in;
  s.d = p.cluster.d;
  s.k = p.cluster.k;
  s.num_codebooks = p.cluster.num_codebooks;
  s.code_bits = p.cluster.code_bits;
  s.centroid_dtype = p.cluster.centroid_dtype;
  return s;
}

inline const SourceTensor& find_tensor(const SourceModel& m, const std::string& name) {
  for (const auto& t : m.tensors)
    if (t.name == name) return t;
  throw Error(StatusCode::kNotFound, m.path + ": no tensor '" + name + "'");
}

/// Per-matrix seed: the run seed mixed with the matrix name and codebook (splitmix64), so each
/// matrix's k-means does not depend on which other matrices are compressed.
inline uint64_t matrix_seed(uint64_t seed, const std::string& name, int s) {
  const uint64_t h = fnv1a(name.data(), name.size());
  uint64_t z = seed + h + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(s + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

inline double sq_norm_of(const std::vector<float>& w) {
  double s = 0;
  for (float x : w) s += static_cast<double>(x) * x;
  return s;
}

/// The column weights of matrix `name`: w_i = (h_i + damp * mean(h)) / ((1 + damp) * mean(h)),
/// i.e. damped and normalised to mean 1 (all 1 when h is all 0), or an empty vector when the
/// options carry no importance. Error(kInvalidArgument) naming the matrix for a missing entry,
/// a wrong length, or a negative / non-finite value.
inline std::vector<float> column_weights(const CompressOptions& o, const std::string& name, int64_t in) {
  if (o.input_importance.empty()) return {};
  auto it = o.input_importance.find(name);
  if (it == o.input_importance.end())
    throw Error(StatusCode::kInvalidArgument, "compress: no input importance for " + name);
  const std::vector<float>& h = it->second;
  if (static_cast<int64_t>(h.size()) != in)
    throw Error(StatusCode::kInvalidArgument, "compress: the input importance of " + name + " has " +
                                                  std::to_string(h.size()) + " values, the matrix has " +
                                                  std::to_string(in) + " input columns");
  if (!(o.importance_damp >= 0) || !std::isfinite(o.importance_damp))
    throw Error(StatusCode::kInvalidArgument, "compress: importance damping must be finite and >= 0");
  double mean = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    if (!std::isfinite(h[i]) || h[i] < 0)
      throw Error(StatusCode::kInvalidArgument, "compress: input importance of " + name + " column " +
                                                    std::to_string(i) + " is " + fmt_g(h[i]) +
                                                    " (must be finite and >= 0)");
    mean += h[i];
  }
  mean /= static_cast<double>(h.size());
  std::vector<float> w(h.size());
  // Normalised to mean 1 so errors stay in weight units across matrices (see CompressOptions).
  const double scale = mean > 0 ? 1.0 / ((1.0 + o.importance_damp) * mean) : 0.0;
  for (size_t i = 0; i < h.size(); ++i)
    w[i] = mean > 0 ? static_cast<float>((h[i] + o.importance_damp * mean) * scale) : 1.0f;
  return w;
}

/// A 64-bit digest of a float vector (FNV-1a over its bytes, core/digest.hpp) for job strings.
inline std::string digest_of(const std::vector<float>& v) {
  return digest_hex(fnv1a(v.data(), v.size() * sizeof(float)));
}

/// sum over (o, i) of colw[i] * W[o, i]^2 (colw empty: 0).
inline double weighted_sq_norm(const std::vector<float>& w, int64_t out, int64_t in, const std::vector<float>& colw) {
  if (colw.empty()) return 0.0;
  double s = 0;
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      const double x = w[static_cast<size_t>(o * in + i)];
      s += static_cast<double>(colw[static_cast<size_t>(i)]) * x * x;
    }
  return s;
}

/// The job one matrix was made for: equal strings mean a work file may be reused. `w` is the
/// matrix's source values: the job keys on their digest, the content itself, so a model edited or
/// replaced in place (same path, even the same size) recomputes the matrices that changed, and a
/// moved model keeps its work. Cost: one digest_of pass (byte-wise FNV-1a, core/digest.hpp, about
/// 0.45 GB/s) over the matrix's fp32 values, in the job that compresses it: ~1 s of CPU for
/// SmolLM2-135M (424 MB of projection values, against ~50 CPU-s of k-means); for a 70B model
/// (~270 GB) ~10 CPU-minutes spread over the jobs, against many CPU-hours of k-means (and
/// read_source_model holds those values in memory anyway). A cheaper key (size + mtime + the
/// first/last MB) would miss in-place edits that keep the size and touch the middle, the failure
/// this guards against, so it is not used (docs/architecture.md, "Compression").
inline std::string job_string(const MatrixPlan& p, const CompressOptions& o, const std::vector<float>& w) {
  nlohmann::json j;
  j["name"] = p.name;
  j["out"] = p.out;
  j["in"] = p.in;
  j["method"] = compress_method_name(p.method);
  if (p.method == CompressMethod::kRtn) {
    j["bits"] = p.rtn.bits;
    j["group_size"] = p.rtn.group_size;
  } else {
    j["d"] = p.cluster.d;
    j["k"] = p.cluster.k;
    j["s"] = p.cluster.num_codebooks;
    j["code_bits"] = shape_of(p).effective_code_bits();
    j["centroid_dtype"] = dtype_name(p.cluster.centroid_dtype);
    j["iterations"] = o.iterations;
    j["seed"] = o.seed;
    if (!o.input_importance.empty()) {  // compress_model checked that every clustered matrix has one
      auto imp = o.input_importance.find(p.name);
      j["importance"] = imp != o.input_importance.end() ? digest_of(imp->second) : std::string("missing");
      j["importance_damp"] = o.importance_damp;
    }
  }
  j["weights"] = digest_of(w);
  return j.dump();
}

}  // namespace compress_detail

/// Round-to-nearest uniform quantisation of W (out, in) row-major; returns the dequantised values
/// (what a decoder reproduces). Per row and group of `group_size` input columns: min m and max M
/// in fp32, scale = (M - m) / (2^bits - 1); scale and m are rounded to fp16 (as stored), then
/// q = clamp(round((w - m16) / s16), 0, 2^bits - 1) and w^ = s16 * q + m16 in fp32.
/// Error bound per element: |w - w^| <= s16 / 2 + |m - m16| + (2^bits - 1) * |s - s16| (fp16
/// rounding of the scale and minimum; the clamp only helps). Deterministic, single-threaded.
/// Throws Error(kInvalidArgument) for bits outside 1..8, group_size < 1 or a bad size.
inline std::vector<float> rtn_quantize(const std::vector<float>& w, int64_t out, int64_t in, const RtnSettings& r) {
  if (r.bits < 1 || r.bits > 8)
    throw Error(StatusCode::kInvalidArgument, "rtn: bits = " + std::to_string(r.bits) + " is outside 1..8");
  if (r.group_size < 1)
    throw Error(StatusCode::kInvalidArgument, "rtn: group size " + std::to_string(r.group_size) + " is below 1");
  if (out < 1 || in < 1 || static_cast<int64_t>(w.size()) != out * in)
    throw Error(StatusCode::kInvalidArgument, "rtn: " + std::to_string(w.size()) + " values for (" +
                                                  std::to_string(out) + ", " + std::to_string(in) + ")");
  const float qmax = static_cast<float>((1 << r.bits) - 1);
  std::vector<float> q(w.size());
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g0 = 0; g0 < in; g0 += r.group_size) {
      const int64_t g1 = std::min<int64_t>(in, g0 + r.group_size);
      const float* x = w.data() + o * in;
      float lo = x[g0], hi = x[g0];
      for (int64_t i = g0; i < g1; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
      }
      const float m16 = half_bits_to_float(float_to_half_bits(lo));
      const float s16 = half_bits_to_float(float_to_half_bits((hi - lo) / qmax));
      for (int64_t i = g0; i < g1; ++i) {
        float level = 0.0f;
        if (s16 > 0.0f) level = std::min(qmax, std::max(0.0f, std::nearbyint((x[i] - m16) / s16)));
        q[static_cast<size_t>(o * in + i)] = s16 * level + m16;
      }
    }
  return q;
}

/// Clusters W (out, in) row-major with settings `c`: per codebook s, exact k-means (kmeans.hpp;
/// `iterations` Lloyd updates, seed compress_detail::matrix_seed(seed, name, s)) of the d-vectors
/// of its input rows; centroids are then rounded to the storage dtype (RNE) and the codes are the
/// k-means codes (against the fp32 centroids). Deterministic for any thread count. `on_iteration`
/// (may be empty) sees each k-means iteration; returning false cancels (Error kCancelled).
/// Throws Error naming `name` when k-means refuses (e.g. K above the number of distinct vectors).
/// `column_weight` (empty, or (in) values >= 0): activation-aware clustering, every d-vector of
/// input column i weighted by column_weight[i] in the k-means (KMeansOptions::point_weights).
inline CodebookTensor cluster_matrix(const std::vector<float>& w, int64_t out, int64_t in, const ClusterSettings& c,
                                     const std::string& name, int iterations, uint64_t seed, int threads,
                                     const std::function<bool(int s, int iteration)>& on_iteration = {},
                                     const std::vector<float>& column_weight = {}) {
  CodebookShape shape;
  shape.out = out;
  shape.in = in;
  shape.d = c.d;
  shape.k = c.k;
  shape.num_codebooks = c.num_codebooks;
  shape.code_bits = c.code_bits;
  shape.centroid_dtype = c.centroid_dtype;
  const Status sv = shape.validate();
  if (!sv.ok()) throw Error(sv.code(), name + ": " + sv.message());
  if (static_cast<int64_t>(w.size()) != out * in)
    throw Error(StatusCode::kInvalidArgument, name + ": " + std::to_string(w.size()) + " values for (" +
                                                  std::to_string(out) + ", " + std::to_string(in) + ")");
  if (!column_weight.empty() && static_cast<int64_t>(column_weight.size()) != in)
    throw Error(StatusCode::kInvalidArgument, name + ": " + std::to_string(column_weight.size()) +
                                                  " column weights for " + std::to_string(in) + " input columns");
  const std::vector<float> vec = weight_vectors<float>(make_matrix_view(w.data(), out, in), c.d);  // (in*out_pad/d, d)
  CodebookTensor t(shape);
  const int64_t per_row = shape.vectors_per_row();
  std::vector<uint32_t> codes(static_cast<size_t>(shape.num_vectors()));
  std::vector<float> point_weight;  // (num_vectors): the weight of each vector's input column
  if (!column_weight.empty()) {
    point_weight.resize(codes.size());
    for (size_t v = 0; v < point_weight.size(); ++v)
      point_weight[v] = column_weight[v / static_cast<size_t>(per_row)];
  }
  for (int s = 0; s < c.num_codebooks; ++s) {
    const int64_t r0 = codebook_row_begin(s, c.num_codebooks, in), r1 = codebook_row_begin(s + 1, c.num_codebooks, in);
    const int64_t v0 = r0 * per_row, n = (r1 - r0) * per_row;
    KMeansOptions ko;
    ko.k = c.k;
    ko.iterations = iterations;
    ko.seed = compress_detail::matrix_seed(seed, name, s);
    ko.threads = threads;
    if (!point_weight.empty()) ko.point_weights = point_weight.data() + v0;
    if (on_iteration) ko.progress = [&](const KMeansProgress& p) { return on_iteration(s, p.iteration); };
    KMeansResult r;
    const Status st = kmeans(MatrixView<const float>{vec.data() + v0 * c.d, n, c.d, c.d, 1}, ko, &r);
    if (!st.ok())
      throw Error(st.code(), name + (c.num_codebooks > 1 ? " codebook " + std::to_string(s) : std::string()) +
                                 ": k-means (d = " + std::to_string(c.d) + ", K = " + std::to_string(c.k) +
                                 ", " + std::to_string(n) + " vectors): " + st.message());
    for (int64_t kk = 0; kk < c.k; ++kk)
      for (int e = 0; e < c.d; ++e) t.set_centroid(s, kk, e, r.centroids[static_cast<size_t>(kk * c.d + e)]);
    std::copy(r.codes.begin(), r.codes.end(), codes.begin() + v0);
  }
  throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

/// ||W - decode(t)||_F^2 in double (the stored, dtype-rounded centroids); with `column_weight`
/// ((in) values) every input column's squared error is multiplied by its weight.
inline double codebook_sq_error(const CodebookTensor& t, const std::vector<float>& w,
                                const std::vector<float>& column_weight = {}) {
  const CodebookShape& s = t.shape();
  const std::vector<uint32_t> codes = t.codes();
  const int64_t per_row = s.vectors_per_row();
  double e = 0;
  for (int64_t i = 0; i < s.in; ++i) {
    const int64_t cb = codebook_of_row(i, s.num_codebooks, s.in);
    const bool weighted = !column_weight.empty();
    double ei = 0;  // weighted: this column's error, scaled once (unweighted sums straight into e)
    double& acc = weighted ? ei : e;
    for (int64_t o = 0; o < s.out; ++o) {
      const uint32_t c = codes[static_cast<size_t>(i * per_row + o / s.d)];
      const double diff = static_cast<double>(w[static_cast<size_t>(o * s.in + i)]) -
                          t.centroid(cb, c, static_cast<int>(o % s.d));
      acc += diff * diff;
    }
    if (weighted) e += ei * static_cast<double>(column_weight[static_cast<size_t>(i)]);
  }
  return e;
}

/// The per-matrix plan: explicit settings (options.per_kind / options.rtn), or for a target bpw
/// the search described in the file comment. The subsample k-means runs are deterministic (fixed
/// seed, stride subsample), so the plan is too. Throws Error: kInvalidArgument when no matrix of
/// the selected kinds exists ("no projection matrices"), when the target cannot be met (naming
/// the smallest reachable bpw), or for a bad search setting.
inline std::vector<MatrixPlan> plan_compression(const SourceModel& m, const CompressOptions& o) {
  compress_detail::check_options(o);
  std::vector<MatrixPlan> plans;
  for (const SourceTensor& t : m.tensors) {
    ProjectionKind kind;
    if (!projection_kind_of(t.name, &kind)) continue;
    if (std::find(o.kinds.begin(), o.kinds.end(), kind) == o.kinds.end()) continue;
    if (t.shape.size() != 2)
      throw Error(StatusCode::kFormatError, m.path + ": projection '" + t.name + "' is not a matrix");
    MatrixPlan p;
    p.name = t.name;
    p.kind = kind;
    p.out = t.shape[0];
    p.in = t.shape[1];
    p.method = o.method;
    p.rtn = o.rtn;
    p.cluster = o.per_kind[static_cast<size_t>(kind)];
    plans.push_back(p);
  }
  if (plans.empty()) {
    std::string kinds;
    for (ProjectionKind k : o.kinds) kinds += (kinds.empty() ? "" : ",") + std::string(projection_kind_name(k));
    throw Error(StatusCode::kInvalidArgument, m.path + ": no projection matrices of the selected kinds (" + kinds +
                                                  ") in the model (expected HF names model.layers.N.self_attn.*_proj.weight / mlp.*_proj.weight)");
  }
  for (MatrixPlan& p : plans) {
    if (p.method == CompressMethod::kRtn) {
      if (p.rtn.bits < 1 || p.rtn.bits > 8)
        throw Error(StatusCode::kInvalidArgument, "rtn: bits = " + std::to_string(p.rtn.bits) + " is outside 1..8");
      if (p.rtn.group_size < 1) throw Error(StatusCode::kInvalidArgument, "rtn: group size must be at least 1");
      p.bpw = compress_detail::rtn_bpw(p.rtn, p.in);
    } else {
      const Status s = compress_detail::shape_of(p).validate();
      if (!s.ok()) throw Error(s.code(), p.name + ": " + s.message());
      p.bpw = compress_detail::shape_of(p).bpw_packed();
    }
  }
  if (o.target_bpw <= 0 || o.method == CompressMethod::kRtn) return plans;

  // --- search: candidates with estimated error and exact bits ---
  if (o.search_sample < 16 || o.search_k < 2 || o.search_iterations < 0 || o.search_max_code_bits < 1 ||
      o.search_max_code_bits > 16 || o.search_d.empty())
    throw Error(StatusCode::kInvalidArgument, "bpw search: bad search settings");
  struct Candidate {
    ClusterSettings cs;
    double bits = 0, err = 0;
  };
  std::vector<std::vector<Candidate>> cands(plans.size());
  double total_weights = 0;
  for (const MatrixPlan& p : plans) total_weights += static_cast<double>(p.out) * static_cast<double>(p.in);
  // Matrices in parallel as compress_model runs them (the estimates do not depend on it).
  const int threads = resolve_thread_count(o.threads);
  const int jobs = compress_detail::resolve_jobs(o.jobs, threads, plans.size());
  compress_detail::JobRunner runner(jobs);
  std::mutex mu;
  int64_t searched = 0;
  runner.run(plans.size(), [&](size_t mi) {
    const MatrixPlan& p = plans[mi];
    {
      std::lock_guard<std::mutex> lock(mu);
      if (runner.stopped()) return;
      CompressProgress pr;
      pr.stage = CompressProgress::Stage::kSearch;
      pr.matrix = static_cast<int64_t>(mi);
      pr.matrices = static_cast<int64_t>(plans.size());
      pr.done = searched++;
      pr.name = p.name;
      if (o.progress && !o.progress(pr)) {
        const Error e(StatusCode::kCancelled, "compress: cancelled during the bpw search");
        runner.fail(std::make_exception_ptr(e));
        throw e;
      }
    }
    const std::vector<float>& w = compress_detail::find_tensor(m, p.name).values;
    const std::vector<float> colw = compress_detail::column_weights(o, p.name, p.in);
    for (int d : o.search_d) {
      if (d < 1 || d > 16) throw Error(StatusCode::kInvalidArgument, "bpw search: d = " + std::to_string(d) + " is outside 1..16");
      const std::vector<float> vec = weight_vectors<float>(make_matrix_view(w.data(), p.out, p.in), d);
      const int64_t n = static_cast<int64_t>(vec.size()) / d;
      const int64_t ns = std::min(n, o.search_sample);
      std::vector<float> sub(static_cast<size_t>(ns * d)), sub_w(colw.empty() ? 0 : static_cast<size_t>(ns));
      const int64_t per_row = (p.out + d - 1) / d;  // d-vectors per input column
      for (int64_t i = 0; i < ns; ++i) {
        const int64_t src = i * n / ns;  // deterministic stride subsample
        std::copy(vec.begin() + src * d, vec.begin() + (src + 1) * d, sub.begin() + i * d);
        if (!colw.empty()) sub_w[static_cast<size_t>(i)] = colw[static_cast<size_t>(src / per_row)];
      }
      KMeansOptions ko;
      ko.k = std::min<int64_t>(o.search_k, std::max<int64_t>(2, ns / 8));
      ko.iterations = o.search_iterations;
      ko.seed = compress_detail::matrix_seed(o.seed, p.name, 1000 + d);
      ko.threads = std::max(1, threads / jobs);
      if (!sub_w.empty()) ko.point_weights = sub_w.data();  // D_s becomes the weighted (output) error
      KMeansResult r;
      const Status st = kmeans(make_matrix_view<const float>(sub.data(), ns, d), ko, &r);
      if (!st.ok()) continue;  // e.g. too few distinct vectors for this d: not a candidate
      const double ds = r.final_objective / static_cast<double>(ns);
      for (int b = 1; b <= o.search_max_code_bits; ++b) {
        const int64_t k = int64_t{1} << b;
        if (k > n / 4) break;
        Candidate c;
        c.cs.d = d;
        c.cs.k = k;
        c.cs.num_codebooks = 1;
        c.cs.code_bits = 0;
        c.cs.centroid_dtype = DType::kF16;
        MatrixPlan q = p;
        q.cluster = c.cs;
        c.bits = compress_detail::shape_of(q).bpw_packed() * static_cast<double>(p.out) * static_cast<double>(p.in);
        c.err = static_cast<double>(n) * ds * std::pow(static_cast<double>(k) / static_cast<double>(ko.k), -2.0 / d);
        cands[mi].push_back(c);
      }
    }
    if (cands[mi].empty())
      throw Error(StatusCode::kInvalidArgument, "bpw search: no candidate settings for " + p.name);
  });
  const double budget = o.target_bpw * total_weights;
  double min_bits = 0;
  for (const auto& cs : cands) {
    double b = std::numeric_limits<double>::infinity();
    for (const Candidate& c : cs) b = std::min(b, c.bits);
    min_bits += b;
  }
  if (min_bits > budget)
    throw Error(StatusCode::kInvalidArgument,
                "target of " + std::to_string(o.target_bpw) + " bpw cannot be met: the smallest candidate settings (d in {" +
                    [&] {
                      std::string s;
                      for (int d : o.search_d) s += (s.empty() ? "" : ",") + std::to_string(d);
                      return s;
                    }() + "}, K >= 2) need " + std::to_string(min_bits / total_weights) + " bpw");
  auto pick = [&](double lambda, std::vector<size_t>* choice) {
    double bits = 0;
    for (size_t mi = 0; mi < cands.size(); ++mi) {
      size_t best = 0;
      double bv = std::numeric_limits<double>::infinity();
      for (size_t ci = 0; ci < cands[mi].size(); ++ci) {
        const double v = cands[mi][ci].err + lambda * cands[mi][ci].bits;
        if (v < bv || (v == bv && cands[mi][ci].bits < cands[mi][best].bits)) {
          bv = v;
          best = ci;
        }
      }
      (*choice)[mi] = best;
      bits += cands[mi][best].bits;
    }
    return bits;
  };
  std::vector<size_t> choice(cands.size()), trial(cands.size());
  double lo = -60, hi = 60;  // log10 lambda
  if (pick(std::pow(10.0, hi), &choice) > budget) {
    // Even the largest lambda overshoots: take the cheapest candidate everywhere.
    for (size_t mi = 0; mi < cands.size(); ++mi) {
      size_t best = 0;
      for (size_t ci = 0; ci < cands[mi].size(); ++ci)
        if (cands[mi][ci].bits < cands[mi][best].bits) best = ci;
      choice[mi] = best;
    }
  } else {
    for (int it = 0; it < 200; ++it) {
      const double mid = 0.5 * (lo + hi);
      if (pick(std::pow(10.0, mid), &trial) <= budget)
        hi = mid;
      else
        lo = mid;
    }
    pick(std::pow(10.0, hi), &choice);
  }
  double used = 0;
  for (size_t mi = 0; mi < cands.size(); ++mi) used += cands[mi][choice[mi]].bits;
  for (;;) {  // greedy upgrades: best error drop per added bit that still fits
    double best_ratio = 0;
    size_t bm = 0, bc = 0;
    for (size_t mi = 0; mi < cands.size(); ++mi) {
      const Candidate& cur = cands[mi][choice[mi]];
      for (size_t ci = 0; ci < cands[mi].size(); ++ci) {
        const Candidate& c = cands[mi][ci];
        const double db = c.bits - cur.bits, de = cur.err - c.err;
        if (de <= 0 || used + db > budget) continue;
        const double ratio = db <= 0 ? std::numeric_limits<double>::infinity() : de / db;
        if (ratio > best_ratio) {
          best_ratio = ratio;
          bm = mi;
          bc = ci;
        }
      }
    }
    if (best_ratio <= 0) break;
    used += cands[bm][bc].bits - cands[bm][choice[bm]].bits;
    choice[bm] = bc;
  }
  for (size_t mi = 0; mi < plans.size(); ++mi) {
    plans[mi].cluster = cands[mi][choice[mi]].cs;
    plans[mi].bpw = compress_detail::shape_of(plans[mi]).bpw_packed();
    plans[mi].predicted_error = cands[mi][choice[mi]].err;
  }
  return plans;
}

/// Compresses `m` into `out_path` (a cluscomp-format file, or with reference_layout a reference
/// checkpoint directory). See the file comment for the plan, resume and determinism. Tensors that
/// are not compressed are stored dense in options.dense_dtype (RNE); RTN matrices are stored as
/// dense F16 tensors holding the dequantised values (docs/format.md), with their true bpw in the
/// "compress.matrix.<name>" metadata. Clustered matrices store fp16-rounded (or fp32/bf16)
/// centroids. Reported errors are of the stored values, in double.
/// Throws Error (see the file comment); on any error the output path is untouched.
inline CompressReport compress_model(const SourceModel& m, const std::string& out_path, const CompressOptions& o) {
  namespace fs = std::filesystem;
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  const auto file_start = fs::file_time_type::clock::now();  // orphaned temporaries are older
  if (out_path.empty()) throw Error(StatusCode::kInvalidArgument, "compress: empty output path");
  compress_detail::check_options(o);
  if (o.dense_dtype != DType::kF16 && o.dense_dtype != DType::kF32 && o.dense_dtype != DType::kBF16)
    throw Error(StatusCode::kInvalidArgument, std::string("compress: dense dtype ") + dtype_name(o.dense_dtype) + " is not F32/F16/BF16");
  if (o.reference_layout && (o.method != CompressMethod::kCluster || o.target_bpw > 0))
    throw Error(StatusCode::kInvalidArgument,
                "compress: the reference layout holds one K and d for all matrices and S = 1: use explicit --d/--k (no --bpw, no rtn)");
  CompressReport rep;
  rep.skipped_tensors = m.skipped;
  if (!m.skipped.empty() && o.progress) {
    CompressProgress pr;
    pr.stage = CompressProgress::Stage::kWarning;
    pr.message = std::to_string(m.skipped.size()) + " source tensor" + (m.skipped.size() == 1 ? "" : "s") +
                 " without an HF name left out of the output:";
    for (size_t i = 0; i < m.skipped.size() && i < 8; ++i) pr.message += " " + m.skipped[i];
    if (m.skipped.size() > 8) pr.message += " ... (" + std::to_string(m.skipped.size() - 8) + " more)";
    if (!o.progress(pr)) throw Error(StatusCode::kCancelled, "compress: cancelled");
  }
  std::vector<MatrixPlan> plans = plan_compression(m, o);
  for (const MatrixPlan& p : plans)  // importance problems surface now, not hours into the run
    if (p.method == CompressMethod::kCluster) compress_detail::column_weights(o, p.name, p.in);
  for (const auto& kv : o.metadata)
    if (kv.first.rfind("compress.", 0) == 0 && kv.first != "compress.activations")
      throw Error(StatusCode::kInvalidArgument, "compress: metadata key '" + kv.first + "' is reserved");
  if (o.reference_layout)
    for (const MatrixPlan& p : plans)
      if (p.cluster.num_codebooks != 1 || p.cluster.d != plans[0].cluster.d || p.cluster.k != plans[0].cluster.k)
        throw Error(StatusCode::kInvalidArgument, "compress: the reference layout needs S = 1 and one K and d for every matrix (" +
                                                      p.name + " has d = " + std::to_string(p.cluster.d) + ", K = " +
                                                      std::to_string(p.cluster.k) + ", S = " + std::to_string(p.cluster.num_codebooks) + ")");

  // Orphans of an earlier run killed while writing this output: their space is needed now.
  if (o.reference_layout) {
    for (const char* f : {"config.json", "model.safetensors"}) {  // what write_reference_checkpoint writes
      const std::vector<std::string> r = remove_stale_temporaries((fs::path(out_path) / f).string(), file_start);
      rep.removed_temporaries.insert(rep.removed_temporaries.end(), r.begin(), r.end());
    }
  } else {
    rep.removed_temporaries = remove_stale_temporaries(out_path, file_start);
  }

  const fs::path work = o.work_dir.empty() ? fs::path(out_path + ".work") : fs::path(o.work_dir);
  std::error_code ec;
  fs::create_directories(work, ec);
  if (ec) throw Error(StatusCode::kIoError, work.string() + ": cannot create the work directory: " + ec.message());

  // Cost model for the ETA: k-means ~ vectors * K * (iterations + 1), RTN ~ weights.
  std::vector<double> cost(plans.size());
  double total_cost = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    const MatrixPlan& p = plans[i];
    cost[i] = p.method == CompressMethod::kRtn
                  ? static_cast<double>(p.out * p.in)
                  : static_cast<double>(compress_detail::shape_of(p).num_vectors()) * static_cast<double>(p.cluster.k) *
                        (o.iterations + 1) / p.cluster.num_codebooks;
    total_cost += cost[i];
  }
  double done_cost = 0, computed_cost = 0;

  rep.matrices.resize(plans.size());
  std::map<std::string, CodebookTensor> clustered;
  std::map<std::string, std::vector<float>> rtn_values;
  const int threads = resolve_thread_count(o.threads);
  const int jobs = compress_detail::resolve_jobs(o.jobs, threads, plans.size());
  const int job_threads = std::max(1, threads / jobs);
  rep.jobs = jobs;
  rep.job_threads = job_threads;
  compress_detail::JobRunner runner(jobs);
  std::mutex mu;  // the callback, the maps, the cost counters
  int64_t finished = 0;
  const auto t_compute = Clock::now();

  auto process = [&](size_t mi) {
    const MatrixPlan& p = plans[mi];
    const std::vector<float>& w = compress_detail::find_tensor(m, p.name).values;
    const std::string job = compress_detail::job_string(p, o, w);
    const fs::path wf = work / (p.name + ".safetensors");
    MatrixReport mr;
    mr.plan = p;
    auto notify = [&](CompressProgress::Stage stage, int it, double mat_s, double mat_eta) {
      std::lock_guard<std::mutex> lock(mu);
      if (runner.stopped()) throw Error(StatusCode::kCancelled, "compress: stopped");  // another job failed or cancelled
      if (stage == CompressProgress::Stage::kMatrixDone) ++finished;
      if (!o.progress) return;
      CompressProgress pr;
      pr.stage = stage;
      pr.matrix = static_cast<int64_t>(mi);
      pr.matrices = static_cast<int64_t>(plans.size());
      pr.done = finished;
      pr.name = p.name;
      pr.resumed = mr.resumed;
      pr.iteration = it;
      pr.iterations = o.iterations;
      pr.matrix_elapsed_s = mat_s;
      pr.total_elapsed_s = since(t_start);
      pr.matrix_eta_s = mat_eta;
      // Wall seconds per unit of cost over the computed matrices (the jobs overlap).
      const double rate = computed_cost > 0 ? since(t_compute) / computed_cost : 0.0;
      const double frac = stage == CompressProgress::Stage::kMatrixDone ? 1.0
                          : (p.method == CompressMethod::kCluster && o.iterations > 0)
                              ? std::min(1.0, (it + 1.0) / (o.iterations + 1.0))
                              : 0.0;
      const double left = total_cost - done_cost - (stage == CompressProgress::Stage::kMatrixDone ? 0.0 : frac * cost[mi]);
      pr.total_eta_s = rate > 0 ? rate * std::max(0.0, left) : 0.0;
      if (!o.progress(pr)) {
        const Error e(StatusCode::kCancelled, "compress: cancelled at matrix " + std::to_string(mi + 1) + " of " +
                                                  std::to_string(plans.size()) + "; finished matrices are kept in " +
                                                  work.string());
        runner.fail(std::make_exception_ptr(e));  // before any job can see stopped() and throw its own
        throw e;
      }
    };
    bool reused = false;
    CodebookTensor reused_t;
    std::vector<float> reused_rtn;
    if (fs::exists(wf)) {
      try {
        CluscompModel cm = read_cluscomp_model(wf.string());
        auto jt = cm.metadata.find("compress.job");
        auto st = cm.metadata.find("compress.stats");
        if (jt != cm.metadata.end() && jt->second == job && st != cm.metadata.end()) {
          const nlohmann::json sj = nlohmann::json::parse(st->second);
          if (p.method == CompressMethod::kRtn) {
            const TensorRef* t = cm.find_dense(p.name);
            if (t && t->shape == std::vector<int64_t>{p.out, p.in}) {
              reused_rtn = tensor_to_float(*t);
              reused = true;
            }
          } else {
            auto it = cm.clustered.find(p.name);
            if (it != cm.clustered.end() && it->second.shape() == compress_detail::shape_of(p)) {
              reused_t = std::move(it->second);
              reused = true;
            }
          }
          if (reused) {
            mr.sq_error = sj.at("sq_error").get<double>();
            mr.sq_norm = sj.at("sq_norm").get<double>();
            mr.out_sq_error = sj.value("out_sq_error", 0.0);
            mr.out_sq_norm = sj.value("out_sq_norm", 0.0);
            mr.seconds = sj.at("seconds").get<double>();
          }
        }
      } catch (const Error&) {
        reused = false;  // unreadable or stale work file: recompute and overwrite
      } catch (const nlohmann::json::exception&) {
        reused = false;
      }
    }
    if (reused) {
      mr.resumed = true;
      notify(CompressProgress::Stage::kMatrixStart, 0, 0, 0);
      std::lock_guard<std::mutex> lock(mu);
      ++rep.resumed;
      if (p.method == CompressMethod::kRtn)
        rtn_values[p.name] = std::move(reused_rtn);
      else
        clustered[p.name] = std::move(reused_t);
    } else {
      const auto t0 = Clock::now();
      notify(CompressProgress::Stage::kMatrixStart, 0, 0, 0);
      mr.sq_norm = compress_detail::sq_norm_of(w);
      const std::vector<float> colw = p.method == CompressMethod::kCluster
                                          ? compress_detail::column_weights(o, p.name, p.in)
                                          : std::vector<float>();
      mr.out_sq_norm = compress_detail::weighted_sq_norm(w, p.out, p.in, colw);
      std::vector<TensorRef> dense_refs;
      std::map<std::string, CodebookTensor> one;
      std::vector<uint16_t> half;
      std::vector<float> q;
      if (p.method == CompressMethod::kRtn) {
        q = rtn_quantize(w, p.out, p.in, p.rtn);
        half.resize(q.size());
        double e = 0;
        for (size_t i = 0; i < q.size(); ++i) {
          half[i] = float_to_half_bits(q[i]);
          q[i] = half_bits_to_float(half[i]);
          const double diff = static_cast<double>(w[i]) - q[i];
          e += diff * diff;
        }
        mr.sq_error = e;
        dense_refs.push_back(TensorRef{p.name, DType::kF16, {p.out, p.in},
                                       reinterpret_cast<const unsigned char*>(half.data()), half.size() * 2});
      } else {
        const int nsub = p.cluster.num_codebooks;
        CodebookTensor t = cluster_matrix(w, p.out, p.in, p.cluster, p.name, o.iterations, o.seed, job_threads,
                                          [&](int s, int it) {
                                            const double el = since(t0);
                                            const double frac = (s * (o.iterations + 1.0) + it + 1.0) /
                                                                (nsub * (o.iterations + 1.0));
                                            notify(CompressProgress::Stage::kIteration, it, el, el / frac * (1.0 - frac));
                                            return true;
                                          },
                                          colw);
        mr.sq_error = codebook_sq_error(t, w);
        if (!colw.empty()) mr.out_sq_error = codebook_sq_error(t, w, colw);
        one.emplace(p.name, std::move(t));
      }
      mr.seconds = since(t0);
      nlohmann::json sj;
      sj["sq_error"] = mr.sq_error;
      sj["sq_norm"] = mr.sq_norm;
      if (mr.out_sq_norm > 0) {
        sj["out_sq_error"] = mr.out_sq_error;
        sj["out_sq_norm"] = mr.out_sq_norm;
      }
      sj["seconds"] = mr.seconds;
      write_cluscomp_model(wf.string(), dense_refs, one, {{"compress.job", job}, {"compress.stats", sj.dump()}});
      std::lock_guard<std::mutex> lock(mu);
      if (p.method == CompressMethod::kRtn)
        rtn_values[p.name] = std::move(q);
      else
        clustered[p.name] = std::move(one.begin()->second);
      computed_cost += cost[mi];
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      done_cost += cost[mi];
    }
    rep.matrices[mi] = mr;
    notify(CompressProgress::Stage::kMatrixDone, o.iterations, mr.seconds, 0);
  };
  // The first error (or a cancel) stops the other jobs at their next progress point and is what
  // compress_model throws; finished matrices are in the work directory either way.
  runner.run(plans.size(), process);

  // --- assemble the output ---
  if (o.progress) {
    CompressProgress pr;
    pr.stage = CompressProgress::Stage::kWriting;
    pr.matrix = pr.matrices = pr.done = static_cast<int64_t>(plans.size());
    pr.total_elapsed_s = since(t_start);
    if (!o.progress(pr)) throw Error(StatusCode::kCancelled, "compress: cancelled before writing the output");
  }
  std::vector<std::vector<unsigned char>> store;
  store.reserve(m.tensors.size());
  std::vector<TensorRef> dense;
  for (const SourceTensor& t : m.tensors) {
    if (clustered.count(t.name)) continue;
    auto rv = rtn_values.find(t.name);
    const std::vector<float>& v = rv != rtn_values.end() ? rv->second : t.values;
    const DType dt = rv != rtn_values.end() ? DType::kF16 : o.dense_dtype;
    std::vector<unsigned char> bytes(v.size() * static_cast<size_t>(dtype_size(dt)));
    for (size_t i = 0; i < v.size(); ++i) {
      if (dt == DType::kF32) {
        std::memcpy(bytes.data() + 4 * i, &v[i], 4);
      } else {
        const uint16_t b = dt == DType::kF16 ? float_to_half_bits(v[i]) : float_to_bf16_bits(v[i]);
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      }
    }
    store.push_back(std::move(bytes));
    dense.push_back(TensorRef{t.name, dt, t.shape, store.back().data(), store.back().size()});
  }
  double bits = 0, weights = 0;
  std::map<std::string, std::string> meta;
  for (const MatrixReport& r : rep.matrices) {
    const double n = static_cast<double>(r.plan.out) * static_cast<double>(r.plan.in);
    bits += r.plan.bpw * n;
    weights += n;
    nlohmann::json j;
    j["method"] = compress_method_name(r.plan.method);
    j["kind"] = projection_kind_name(r.plan.kind);
    j["bpw"] = r.plan.bpw;
    j["rel_error"] = r.rel_error();
    if (r.out_sq_norm > 0) j["out_rel_error"] = r.out_rel_error();
    if (r.plan.method == CompressMethod::kRtn) {
      j["bits"] = r.plan.rtn.bits;
      j["group_size"] = r.plan.rtn.group_size;
      j["stored_as"] = "dense F16 dequantised values";
    } else {
      j["iterations"] = o.iterations;
    }
    meta["compress.matrix." + r.plan.name] = j.dump();
  }
  rep.bpw = weights > 0 ? bits / weights : 0.0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", rep.bpw);
  meta["compress.bpw"] = buf;
  meta["compress.method"] = compress_method_name(o.method);
  meta["compress.seed"] = std::to_string(o.seed);
  // Absolute, so that it names the source from any working directory. Informational: the output
  // embeds the tokenizer (below) and needs nothing else from the source.
  const fs::path source_abs = fs::absolute(fs::path(m.path), ec);
  meta[kCompressSourceKey] = ec ? m.path : source_abs.lexically_normal().string();
  if (o.target_bpw > 0) {
    std::snprintf(buf, sizeof buf, "%.6g", o.target_bpw);
    meta["compress.target_bpw"] = buf;
  }
  if (!o.input_importance.empty()) {
    std::snprintf(buf, sizeof buf, "%.6g", o.importance_damp);
    meta["compress.importance_damp"] = buf;
  }
  for (const auto& kv : o.metadata) meta[kv.first] = kv.second;
  meta[kCluscompConfigKey] = llama_config_to_json(m.config).dump(2);
  if (m.tokenizer) meta[kCluscompTokenizerKey] = m.tokenizer->to_state_json();
  if (o.reference_layout) {
    write_reference_checkpoint(out_path, m.config, dense, clustered);
    rep.output_bytes = 0;
    for (const auto& e : fs::directory_iterator(out_path))
      if (e.is_regular_file()) rep.output_bytes += static_cast<int64_t>(e.file_size());
  } else {
    write_cluscomp_model(out_path, dense, clustered, meta);
    rep.output_bytes = static_cast<int64_t>(fs::file_size(out_path));
  }
  fs::remove_all(work, ec);  // best effort: the output is complete
  rep.seconds = since(t_start);
  return rep;
}

CLUSCOMP_NAMESPACE_END
