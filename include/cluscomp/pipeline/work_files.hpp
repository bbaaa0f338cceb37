#pragma once
/// Work files: how compress (one file per finished matrix) and calibrate (one per finished block)
/// resume. Each unit of work is written atomically to `<work_dir>/<unit>.safetensors`, a
/// cluscomp-format file whose metadata holds the job it was made for (a JSON string of every input
/// and setting that determines it) and its statistics (JSON). A later run reuses a file only when
/// its job string equals the one it would write now; a file that is missing, unreadable, stale or
/// lacks its statistics is recomputed and overwritten, never an error, because a killed run can
/// leave anything behind. What a job holds is the caller's decision (compress keys on the
/// matrix's values, calibrate on the teacher's weights and the student file; see their files).
///
/// Errors: open_work_dir throws Error(kIoError) naming the directory; find_work_file never throws.

#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/cluscomp_format.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// `work_dir`, or `<out_path>.work` when empty, created (with parents) if missing.
inline std::filesystem::path open_work_dir(const std::string& out_path, const std::string& work_dir) {
  namespace fs = std::filesystem;
  const fs::path work = work_dir.empty() ? fs::path(out_path + ".work") : fs::path(work_dir);
  std::error_code ec;
  fs::create_directories(work, ec);
  if (ec) throw Error(StatusCode::kIoError, work.string() + ": cannot create the work directory: " + ec.message());
  return work;
}

/// A work file whose job matched: its contents and parsed statistics.
struct WorkFile {
  CluscompModel model;
  nlohmann::json stats;
};

/// The work file at `path` when it exists, reads as a cluscomp file, holds metadata `job_key`
/// equal to `job` and parseable JSON under `stats_key`; otherwise nullopt. The caller still checks
/// that the tensors it needs are there with the right shapes, and reads the statistics fields it
/// needs (nlohmann::json::exception when one is missing: treat that as nullopt too).
inline std::optional<WorkFile> find_work_file(const std::filesystem::path& path, const std::string& job_key,
                                              const std::string& job, const std::string& stats_key) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  try {
    CluscompModel cm = read_cluscomp_model(path.string());
    auto jt = cm.metadata.find(job_key);
    auto st = cm.metadata.find(stats_key);
    if (jt == cm.metadata.end() || jt->second != job || st == cm.metadata.end()) return std::nullopt;
    nlohmann::json stats = nlohmann::json::parse(st->second);
    return WorkFile{std::move(cm), std::move(stats)};
  } catch (const Error&) {
    return std::nullopt;  // unreadable or truncated: recompute and overwrite
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

/// The window and optimiser settings every training run records (calibrate's job string and
/// settings, recover's settings): samples, window, epochs, weight_decay, seed, and with `adamw`
/// also betas and eps. A template over the options struct so each key keeps its member's type
/// (float stays float in the JSON text). nlohmann::json sorts keys, so the order of the writes
/// does not change the bytes.
template <class Options>
void put_run_settings(nlohmann::json& j, const Options& o, bool adamw) {
  j["samples"] = o.samples;
  j["window"] = o.window;
  j["epochs"] = o.epochs;
  j["weight_decay"] = o.weight_decay;
  j["seed"] = o.seed;
  if (adamw) {
    j["betas"] = {o.beta1, o.beta2};
    j["eps"] = o.eps;
  }
}

CLUSCOMP_NAMESPACE_END
