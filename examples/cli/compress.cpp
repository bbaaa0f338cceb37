// cluscomp compress MODEL --out OUT: clusters the projection matrices (CLUSCOMP.md §1) with explicit
// --d/--k/--s (per kind via --per-kind) or a target --bpw, or quantises them with --method rtn
// --bits N; resumable; writes the cluscomp format (or --reference-layout). The work is the
// library's (pipeline/compress.hpp, pipeline/activation_stats.hpp); this file parses and prints.
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/pipeline/activation_stats.hpp"
#include "cluscomp/pipeline/compress.hpp"

namespace cc = cluscomp;

namespace cli {
namespace {

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

}  // namespace

int run_compress(const Invocation& inv) {
  const std::string& model_path = inv.args[0];
  const Options& opt = inv.opt;
  const cc::Device device = device_for(opt, "compress");
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "compress needs --out OUT");
  cc::CompressOptions o;
  o.device = device;
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
    ao.device = device;
    if (ao.samples < 1 || ao.window < 2)
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--act-samples must be >= 1 and --act-window >= 2");
    o.importance_damp = opt.get_double("importance-damp", 0.01);
    if (!(o.importance_damp >= 0) || !std::isfinite(o.importance_damp))
      throw cc::Error(cc::StatusCode::kInvalidArgument, "--importance-damp must be finite and >= 0");
    const std::vector<int32_t> ids = read_training_tokens(model_path, text_path);
    cc::add_activation_importance(model_path, text_path, ids, ao, &o, [&](const cc::ActivationImportanceProgress& p) {
      using S = cc::ActivationImportanceProgress::Stage;
      if (p.stage == S::kModelLoaded) {
        print_loaded(model_path, p.seconds, *p.model);
      } else if (p.stage == S::kBlockDone) {
        progress_bar(p.block + 1, p.blocks, fmt::format("activation statistics: block {}/{}   ", p.block + 1, p.blocks));
      } else {
        fmt::print(stderr, "\nactivation statistics: {} tokens ({} windows of {}) in {:.1f} s\n", p.tokens, ao.samples,
                   ao.window, p.seconds);
      }
      return true;
    });
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


}  // namespace cli
