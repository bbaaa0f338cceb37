#pragma once
/// The job string of one compressed matrix: what its work file (pipeline/work_files.hpp) is
/// reused for. Part of pipeline/compress.hpp, which includes it.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/host/digest.hpp"
#include "cluscomp/pipeline/compress/options.hpp"

CLUSCOMP_NAMESPACE_BEGIN

namespace compress_detail {

/// A 64-bit digest of a float vector (FNV-1a over its bytes, host/digest.hpp) for job strings.
inline std::string digest_of(const std::vector<float>& v) {
  return digest_hex(fnv1a(v.data(), v.size() * sizeof(float)));
}

/// The job one matrix was made for: equal strings mean a work file may be reused. `w` is the
/// matrix's source values: the job keys on their digest, the content itself, so a model edited or
/// replaced in place (same path, even the same size) recomputes the matrices that changed, and a
/// moved model keeps its work. Cost: one digest_of pass (byte-wise FNV-1a, host/digest.hpp, about
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

CLUSCOMP_NAMESPACE_END
