#pragma once
/// The per-matrix plan: explicit settings, or the --bpw search described in pipeline/compress.hpp's
/// file comment (subsample k-means, Zador extrapolation, Lagrangian allocation, greedy upgrades).
/// Part of pipeline/compress.hpp, which includes it.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/pipeline/compress/cluster_matrix.hpp"
#include "cluscomp/cluster/weight_vectors.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/pipeline/compress/jobs.hpp"
#include "cluscomp/pipeline/compress/options.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The per-matrix plan: explicit settings (options.per_kind / options.rtn), or for a target bpw
/// the search described in the file comment. The subsample k-means runs are deterministic (fixed
/// seed, stride subsample), so the plan is too. Throws Error: kInvalidArgument when no matrix of
/// the selected kinds exists ("no projection matrices"), when the target cannot be met (naming
/// the smallest reachable bpw), or for a bad search setting.
inline std::vector<MatrixPlan> plan_compression(const SourceModel& m, const CompressOptions& o) {
  throw_if_error(compress_detail::compress_backend_status(o.device));
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
      ko.device = o.device;
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

CLUSCOMP_NAMESPACE_END
