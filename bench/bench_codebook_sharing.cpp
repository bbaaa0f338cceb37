// scripts/bench.sh codebook-sharing: would one codebook shared by several matrices beat one
// codebook per matrix (CLUSCOMP.md §1) at the same true bits per weight, on the real model?
//
// On a 135M model the per-matrix codebooks are expensive: a 576x576 matrix at d = 4, K = 4096
// spends 0.79 bpw on fp16 centroids next to 3 bpw of codes. Sharing one codebook over a group of
// matrices spreads that cost. Each matrix of a group is divided by its own RMS (one scalar per
// matrix, 16 bits, counted), the group's d-vectors are pooled, and one weighted k-means (weights
// = RMS^2, so the objective is the squared error of the original weights) clusters them.
// Per-matrix codebooks are measured at K in {256, ..., 8192} and the best allocation under the
// shared setting's bit budget is found by a Lagrangian sweep (what a --bpw search does).
// Data-free weight error only (no activations, no perplexity): a lead for the format, not a
// quality claim.
//
// Groups: the 7 projections of one block (what block-wise calibration could still train, since
// the codebook stays inside the block) and one kind (attn_q) over all layers.
// Environment: CLUSCOMP_DATA (default ~/.cache/cluscomp), SHARING_BLOCK (default 5),
// SHARING_ITERS (default 20, the reference's), SHARING_D (default 4).
//
// Perplexity (not run by bench.sh: it needs a compressed model and two evaluations):
//   bench_codebook_sharing emulate SOURCE.gguf BASE.safetensors OUT.safetensors K|bpw=B [d [TEXT]]
// writes OUT: BASE (a `cluscomp compress` output; only its dense tensors and metadata are used)
// with every block's projections re-clustered with one fp16 codebook of K centroids per block,
// each matrix scaled by its fp16 RMS. cluscomp's format has no shared codebooks, so each matrix
// gets fp32 centroids fp16(c) * fp16(rms) (exact products): `cluscomp eval OUT` then measures
// what a shared codebook would give. OUT's own file size and stored bpw are NOT the shared
// format's; the shared-equivalent bpw is printed. bpw=B instead of K gives each group the largest
// K whose shared bpw is <= B. SHARING_GROUP=kind groups one projection kind over all layers
// (q_proj of every block, ...) instead of one block's projections. With TEXT the k-means is activation-aware as
// `compress --activations TEXT` is (16 windows of 256 tokens, damping 0.01: each vector's weight
// is also its input column's normalised activation energy).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <map>
#include <regex>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/cluster/weight_vectors.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/activation_stats.hpp"
#include "cluscomp/pipeline/compress.hpp"

using namespace cluscomp;

namespace {

std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : def;
}

struct Matrix {
  std::string name;
  int64_t out = 0, in = 0;
  std::vector<float> w;  // (out, in)
  double sq = 0;         // sum of squares
  double rms = 0;
};

// A matrix's scale as it would be stored: its RMS rounded to fp16.
double stored_rms(double sq, size_t n) {
  return half_bits_to_float(float_to_half_bits(static_cast<float>(std::sqrt(sq / static_cast<double>(n)))));
}

Matrix load(const GgufReader& rd, const std::string& name) {
  const GgufTensorInfo& t = rd.tensor(name);
  Matrix m;
  m.name = name;
  m.in = t.ne[0];
  m.out = t.ne[1];
  m.w = dequantize_tensor(rd, t);
  m.sq = compress_detail::sq_norm_of(m.w);
  m.rms = stored_rms(m.sq, m.w.size());
  return m;
}

int code_bits(int64_t k) {
  int b = 0;
  while ((int64_t{1} << b) < k) ++b;
  return b;
}

// Squared error of the final assignment, each point times its weight (1 when none), in double.
double weighted_sq_error(const std::vector<float>& pts, int d, const KMeansResult& r, const std::vector<float>* wts) {
  double e = 0;
  const int64_t n = static_cast<int64_t>(pts.size()) / d;
  for (int64_t i = 0; i < n; ++i) {
    const float* c = &r.centroids[static_cast<size_t>(r.codes[static_cast<size_t>(i)]) * d];
    double s = 0;
    for (int t = 0; t < d; ++t) {
      const double diff = static_cast<double>(pts[static_cast<size_t>(i * d + t)]) - c[t];
      s += diff * diff;
    }
    e += wts != nullptr ? s * (*wts)[static_cast<size_t>(i)] : s;
  }
  return e;
}

KMeansResult cluster(const std::vector<float>& pts, int d, int64_t k, int iters, const std::vector<float>* wts) {
  KMeansOptions o;
  o.k = k;
  o.iterations = iters;
  o.point_weights = wts != nullptr ? wts->data() : nullptr;
  const int64_t n = static_cast<int64_t>(pts.size()) / d;
  return kmeans(make_matrix_view<const float>(pts.data(), n, d), o);
}

struct Option {
  int64_t k = 0;
  double bits = 0, err = 0;
};

// Per-matrix options: K from 256 up to 8192 while K <= vectors / 8.
std::vector<Option> per_matrix_options(const Matrix& m, int d, int iters) {
  const std::vector<float> pts = weight_vectors(make_matrix_view<const float>(m.w.data(), m.out, m.in), d);
  const int64_t n = static_cast<int64_t>(pts.size()) / d;
  std::vector<Option> opts;
  for (int64_t k = 256; k <= 8192 && k <= n / 8; k *= 2) {
    const KMeansResult r = cluster(pts, d, k, iters, nullptr);
    opts.push_back({k, static_cast<double>(n) * code_bits(k) + static_cast<double>(k) * d * 16,
                    weighted_sq_error(pts, d, r, nullptr)});
  }
  return opts;
}

struct Allocation {
  double bits = 0, err = 0;
  std::vector<int64_t> ks;
};

// The least total error with total bits <= budget among the Lagrangian solutions (each matrix
// takes the option minimising err + lambda * bits).
Allocation best_allocation(const std::vector<std::vector<Option>>& opts, double budget) {
  Allocation best;
  best.err = -1;
  for (double lambda = 1e-14; lambda < 1e2; lambda *= 1.05) {
    Allocation a;
    for (const auto& o : opts) {
      const Option* pick = &o[0];
      for (const Option& x : o)
        if (x.err + lambda * x.bits < pick->err + lambda * pick->bits) pick = &x;
      a.bits += pick->bits;
      a.err += pick->err;
      a.ks.push_back(pick->k);
    }
    if (a.bits <= budget && (best.err < 0 || a.err < best.err)) best = a;
  }
  return best;
}

std::string ks_text(const std::vector<int64_t>& ks) {
  std::vector<int64_t> s = ks;
  std::sort(s.begin(), s.end());
  std::string t;
  for (size_t i = 0; i < s.size();) {
    size_t j = i;
    while (j < s.size() && s[j] == s[i]) ++j;
    t += (t.empty() ? "" : " ") + std::to_string(s[i]) + (j - i > 1 ? "x" + std::to_string(j - i) : "");
    i = j;
  }
  return t;
}

// The per-group pooling both modes use: each matrix divided by `scale[q]`, its d-vectors
// appended to `pts` and `scale[q]^2` per vector to `wts` (times the vector's input-column weight
// colw[q][i] when colw is given and colw[q] is not empty).
void pool(const std::vector<const std::vector<float>*>& ws, const std::vector<int64_t>& outs,
          const std::vector<int64_t>& ins, const std::vector<double>& scale, int d, std::vector<float>* pts,
          std::vector<float>* wts, const std::vector<std::vector<float>>* colw = nullptr) {
  for (size_t q = 0; q < ws.size(); ++q) {
    std::vector<float> scaled(ws[q]->size());
    for (size_t i = 0; i < scaled.size(); ++i) scaled[i] = static_cast<float>((*ws[q])[i] / scale[q]);
    const std::vector<float> v = weight_vectors(make_matrix_view<const float>(scaled.data(), outs[q], ins[q]), d);
    pts->insert(pts->end(), v.begin(), v.end());
    const size_t nv = v.size() / d, per_row = nv / static_cast<size_t>(ins[q]);
    for (size_t u = 0; u < nv; ++u) {
      const double cw = (colw != nullptr && !(*colw)[q].empty()) ? (*colw)[q][u / per_row] : 1.0;
      wts->push_back(static_cast<float>(scale[q] * scale[q] * cw));
    }
  }
}

// One group: shared codebooks at each K against the best per-matrix allocation at the same bits.
// Returns the error ratio (shared / per-matrix, relative errors) at the shared K whose bpw is
// nearest 4.
double run_group(const char* label, const std::vector<Matrix>& mats, const std::vector<std::vector<Option>>& opts,
                 const std::vector<int64_t>& shared_ks, int d, int iters) {
  double weights = 0, sq = 0;
  std::vector<const std::vector<float>*> ws;
  std::vector<int64_t> outs, ins;
  std::vector<double> scale;
  for (const Matrix& m : mats) {
    weights += static_cast<double>(m.w.size());
    sq += m.sq;
    ws.push_back(&m.w);
    outs.push_back(m.out);
    ins.push_back(m.in);
    scale.push_back(m.rms);
  }
  std::vector<float> pts, wts;
  pool(ws, outs, ins, scale, d, &pts, &wts);
  const int64_t n = static_cast<int64_t>(pts.size()) / d;
  std::printf("\n%s: %zu matrices, %lld weights, %lld %d-vectors\n", label, mats.size(),
              static_cast<long long>(weights), static_cast<long long>(n), d);
  std::printf("%-9s %8s %10s | %-28s %8s %10s | %9s %8s\n", "shared K", "bpw", "rel_err", "per-matrix Ks (best alloc)",
              "bpw", "rel_err", "err ratio", "time s");
  double ratio_at_4 = 0, best_gap = 1e9;
  for (int64_t k : shared_ks) {
    const auto t0 = std::chrono::steady_clock::now();
    const KMeansResult r = cluster(pts, d, k, iters, &wts);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double bits = static_cast<double>(n) * code_bits(k) + static_cast<double>(k) * d * 16 + 16.0 * mats.size();
    const double rel = std::sqrt(weighted_sq_error(pts, d, r, &wts) / sq);
    const Allocation a = best_allocation(opts, bits);
    if (a.err < 0) {
      std::printf("%-9lld %8.3f %10.4f | %-28s\n", static_cast<long long>(k), bits / weights, rel,
                  "(no per-matrix allocation fits)");
      continue;
    }
    const double prel = std::sqrt(a.err / sq);
    std::printf("%-9lld %8.3f %10.4f | %-28s %8.3f %10.4f | %9.3f %8.1f\n", static_cast<long long>(k), bits / weights,
                rel, ks_text(a.ks).c_str(), a.bits / weights, prel, rel / prel, secs);
    if (std::fabs(bits / weights - 4.0) < best_gap) {
      best_gap = std::fabs(bits / weights - 4.0);
      ratio_at_4 = rel / prel;
    }
  }
  return ratio_at_4;
}

int emulate(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: bench_codebook_sharing emulate SOURCE.gguf BASE.safetensors OUT.safetensors K|bpw=B [d [TEXT]]\n");
    return 2;
  }
  const std::string k_arg = argv[5];
  const bool by_bpw = k_arg.rfind("bpw=", 0) == 0;
  const double target = by_bpw ? std::atof(k_arg.c_str() + 4) : 0.0;
  const bool by_kind = env_or("SHARING_GROUP", "block") == "kind";
  CompressOptions importance;  // only input_importance / importance_damp are used
  if (argc > 7) {
    const Tokenizer tok = Tokenizer::from_gguf(GgufReader(argv[2]));
    const std::vector<int32_t> ids = tok.encode(read_text_file(argv[7]), false);
    const LlamaModel teacher = load_llama_model(argv[2]);
    importance.input_importance = collect_activation_stats(teacher, ids, ActivationStatsOptions{}).mean_sq;
    importance.importance_damp = 0.01;
    std::fprintf(stderr, "activation statistics from %s: %zu tokens\n", argv[7], ids.size());
  }
  const SourceModel src = read_source_model(argv[2]);
  const CluscompModel base = read_cluscomp_model(std::string(argv[3]));
  const int d = argc > 6 ? std::atoi(argv[6]) : 4;
  const int iters = std::atoi(env_or("SHARING_ITERS", "20").c_str());
  std::map<std::string, std::vector<std::string>> groups;  // group name -> matrices
  const std::regex layer_re("model\\.layers\\.([0-9]+)\\.(.*)");
  for (const auto& kv : base.clustered) {
    std::smatch mm;
    if (!std::regex_search(kv.first, mm, layer_re))
      throw Error(StatusCode::kInvalidArgument, kv.first + ": not a block's matrix");
    groups[by_kind ? mm[2].str() : "layer" + mm[1].str()].push_back(kv.first);
  }
  std::map<std::string, CodebookTensor> out;
  double bits = 0, weights = 0;
  for (const auto& [group, names] : groups) {
    double group_weights = 0;
    std::vector<const std::vector<float>*> ws;
    std::vector<int64_t> outs, ins;
    std::vector<double> scale;
    std::vector<std::vector<float>> colw;
    for (const std::string& name : names) {
      const SourceTensor& t = compress_detail::find_tensor(src, name);
      colw.push_back(compress_detail::column_weights(importance, name, t.shape[1]));
      ws.push_back(&t.values);
      outs.push_back(t.shape[0]);
      ins.push_back(t.shape[1]);
      scale.push_back(stored_rms(compress_detail::sq_norm_of(t.values), t.values.size()));
      weights += static_cast<double>(t.values.size());
      group_weights += static_cast<double>(t.values.size());
    }
    std::vector<float> pts, wts;
    pool(ws, outs, ins, scale, d, &pts, &wts, &colw);
    const int64_t n = static_cast<int64_t>(pts.size()) / d;
    int64_t k = by_bpw ? 0 : std::atoll(k_arg.c_str());
    for (int b = 16; by_bpw && b >= 1 && k == 0; --b) {  // the largest K whose group bpw <= target
      const double left = target * group_weights - static_cast<double>(n) * b - 16.0 * names.size();
      const int64_t fit = left > 0 ? static_cast<int64_t>(left / (16.0 * d)) : 0;
      const int64_t kb = std::min<int64_t>({int64_t{1} << b, fit, n / 4});
      if (kb > (int64_t{1} << (b - 1))) k = kb;
    }
    if (k < 2) throw Error(StatusCode::kInvalidArgument, group + ": no K fits " + k_arg);
    KMeansOptions ko;
    ko.k = k;
    ko.iterations = iters;
    ko.seed = compress_detail::matrix_seed(1234, "shared." + group, 0);
    ko.point_weights = wts.data();
    const KMeansResult r = kmeans(make_matrix_view<const float>(pts.data(), n, d), ko);
    bits += static_cast<double>(n) * code_bits(k) + static_cast<double>(k) * d * 16 + 16.0 * names.size();
    int64_t off = 0;
    for (size_t q = 0; q < names.size(); ++q) {
      CodebookShape sh;
      sh.out = outs[q];
      sh.in = ins[q];
      sh.d = d;
      sh.k = k;
      sh.centroid_dtype = DType::kF32;
      CodebookTensor t(sh);
      for (int64_t c = 0; c < k; ++c)
        for (int e = 0; e < d; ++e)
          t.set_centroid(0, c, e,
                         half_bits_to_float(float_to_half_bits(r.centroids[static_cast<size_t>(c * d + e)])) *
                             static_cast<float>(scale[q]));
      throw_if_error(t.set_codes(r.codes.data() + off, sh.num_vectors()));
      off += sh.num_vectors();
      out.emplace(names[q], std::move(t));
    }
    std::fprintf(stderr, "%s: %zu matrices, %lld vectors, K = %lld, %.4f bpw\n", group.c_str(), names.size(),
                 static_cast<long long>(n), static_cast<long long>(k),
                 (static_cast<double>(n) * code_bits(k) + static_cast<double>(k) * d * 16 + 16.0 * names.size()) /
                     group_weights);
  }
  write_cluscomp_model(argv[4], base.dense, out, base.caller_metadata());
  std::printf("wrote %s; shared-equivalent bpw over the projections: %.4f (one fp16 codebook per %s, "
              "ceil(log2 K)-bit codes, one fp16 scale per matrix)\n",
              argv[4], bits / weights, by_kind ? "kind" : "block");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc > 1 && std::string(argv[1]) == "emulate") return emulate(argc, argv);
    if (argc > 1) {
      std::fprintf(stderr, "usage: bench_codebook_sharing [emulate SOURCE.gguf BASE.safetensors OUT.safetensors K|bpw=B [d [TEXT]]]\n");
      return 2;
    }
    const std::string data = env_or("CLUSCOMP_DATA", env_or("HOME", ".") + "/.cache/cluscomp");
    const int block = std::atoi(env_or("SHARING_BLOCK", "5").c_str());
    const int iters = std::atoi(env_or("SHARING_ITERS", "20").c_str());
    const int d = std::atoi(env_or("SHARING_D", "4").c_str());
    GgufReader rd(data + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::printf("codebook-sharing: d = %d, %d Lloyd iterations (reference init), fp16 centroids, code widths "
                "ceil(log2 K); relative weight error sqrt(sum err^2 / sum w^2), data-free\n",
                d, iters);

    const char* kinds[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    std::vector<Matrix> blk;
    std::vector<std::vector<Option>> blk_opts;
    std::printf("\nper-matrix codebooks, block %d (K: bpw / rel_err)\n", block);
    for (const char* k : kinds) {
      blk.push_back(load(rd, "blk." + std::to_string(block) + "." + k + ".weight"));
      blk_opts.push_back(per_matrix_options(blk.back(), d, iters));
      std::printf("%-12s %5lldx%-5lld", k, static_cast<long long>(blk.back().out), static_cast<long long>(blk.back().in));
      for (const Option& o : blk_opts.back())
        std::printf("  %lld: %.2f / %.4f", static_cast<long long>(o.k), o.bits / static_cast<double>(blk.back().w.size()),
                    std::sqrt(o.err / blk.back().sq));
      std::printf("\n");
      std::fflush(stdout);
    }
    const double r_block = run_group(("block " + std::to_string(block) + ", one codebook for its 7 projections").c_str(),
                                     blk, blk_opts, {2048, 4096, 8192, 16384, 32768}, d, iters);

    std::vector<Matrix> qs;
    std::vector<std::vector<Option>> q_opts;
    for (int l = 0;; ++l) {
      const std::string name = "blk." + std::to_string(l) + ".attn_q.weight";
      bool found = false;
      for (const auto& t : rd.tensors()) found = found || t.name == name;
      if (!found) break;
      qs.push_back(load(rd, name));
      q_opts.push_back(per_matrix_options(qs.back(), d, iters));
    }
    const double r_q = run_group("attn_q of every layer, one codebook", qs, q_opts, {4096, 8192, 16384, 32768, 65536},
                                 d, iters);
    std::printf("\nRESULT codebook-sharing err_ratio_block_4bpw=%.4f err_ratio_attn_q_4bpw=%.4f\n", r_block, r_q);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_codebook_sharing: %s\n", e.what());
    return 1;
  }
}
