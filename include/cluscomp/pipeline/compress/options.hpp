#pragma once
/// Compress's options, per-matrix plan and report, and the small helpers the plan, the search and
/// the driver share (option checks, bits of an RTN matrix, the per-matrix seed, activation
/// column weights). Part of pipeline/compress.hpp, which includes it.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/host/digest.hpp"
#include "cluscomp/pipeline/compress/source.hpp"

CLUSCOMP_NAMESPACE_BEGIN

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
  /// Candidate d of the search. d = 2 is left out by default: weight MSE ranks d = 2 unfairly (a
  /// mostly d = 2 plan has the lower weight error and a far worse perplexity on the real model;
  /// docs/results.md, docs/benchmarks.md "Figures moved out of code comments").
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
  /// 0: min(threads, 2). A small matrix's k-means has serial parts and uses many threads poorly,
  /// so on many cores and small matrices more jobs pay (measurements: docs/benchmarks.md,
  /// "Figures moved out of code comments"); each job holds one matrix's k-means buffers (~50 bytes
  /// per weight at d = 4).
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
  /// Where the clustering runs: kCuda runs every k-means (the matrices' and the --bpw search's)
  /// on the GPU, the rest stays on the CPU; the same answers (cluster/kmeans.hpp). A device
  /// whose k-means backend is missing (kmeans_backend_status) is an Error before any work, never
  /// a silent CPU fallback.
  /// Last member, so that existing aggregate initialisations keep their meaning.
  Device device = Device::kCpu;
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

namespace compress_detail {

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

}  // namespace compress_detail

CLUSCOMP_NAMESPACE_END
