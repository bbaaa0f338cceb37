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
/// Files: this header is the public entry and holds the driver (compress_model); it includes the
/// parts, each one job: compress/source.hpp (projection kinds, read_source_model),
/// compress/options.hpp (options, plan and report types), compress/plan.hpp (explicit plan and the
/// --bpw search), compress/cluster_matrix.hpp (k-means of one matrix), compress/rtn.hpp (the RTN
/// baseline), compress/jobs.hpp (matrices in parallel), compress/job.hpp (a matrix's job string),
/// and pipeline/work_files.hpp (work files and resume, shared with calibrate).
///
/// Errors: cluscomp::Error naming the bad value (unknown kind pattern, no projection matrices,
/// a non-finite or negative target bpw or damping, unmeetable target, k-means failures with the matrix name, I/O with the path; kCancelled when the
/// progress callback returns false). Nothing here prints.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/host/parallel.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/reference_checkpoint.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/pipeline/compress/cluster_matrix.hpp"
#include "cluscomp/pipeline/compress/job.hpp"
#include "cluscomp/pipeline/compress/jobs.hpp"
#include "cluscomp/pipeline/compress/options.hpp"
#include "cluscomp/pipeline/compress/plan.hpp"
#include "cluscomp/pipeline/compress/rtn.hpp"
#include "cluscomp/pipeline/compress/source.hpp"
#include "cluscomp/pipeline/work_files.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Compresses `m` into `out_path` (a cluscomp-format file, or with reference_layout a reference
/// checkpoint directory). See the file comment for the plan, resume and determinism. Tensors that
/// are not compressed are stored dense in options.dense_dtype (RNE); RTN matrices are stored as
/// dense F16 tensors holding the dequantised values (docs/format.md), with their true bpw in the
/// "compress.matrix.<name>" metadata. Clustered matrices store fp16-rounded (or fp32/bf16)
/// centroids. Reported errors are of the stored values, in double.
/// Throws Error (see the file comment); on any error the output path is untouched.
inline CompressReport compress_model(const SourceModel& m, const std::string& out_path, const CompressOptions& o) {
  throw_if_error(compress_detail::compress_backend_status(o.device));
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

  const fs::path work = open_work_dir(out_path, o.work_dir);
  std::error_code ec;

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
    if (std::optional<WorkFile> found = find_work_file(wf, "compress.job", job, "compress.stats")) {
      try {
        CluscompModel& cm = found->model;
        const nlohmann::json& sj = found->stats;
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
      } catch (const Error&) {
        reused = false;  // a stale work file (tensor of another dtype, stats without a field): recompute
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
                                          colw, o.device);
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
    store.push_back(encode_float_values(v.data(), v.size(), dt));
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
