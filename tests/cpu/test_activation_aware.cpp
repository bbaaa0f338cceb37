// Activation-aware compression: input-activation statistics (pipeline/activation_stats.hpp) and
// clustering weighted by them (CompressOptions::input_importance in pipeline/compress.hpp), on a
// tiny random LLaMA written as GGUF.
//  - block 0's q/k/v statistics equal an independent RMSNorm of the embedding rows, and o, gate,
//    up and down read the tensors that feed them in the training block's forward;
//  - statistics are bit-identical across thread counts, every block's inputs are covered;
//  - add_activation_importance (the command line's step) fills CompressOptions with exactly
//    collect_activation_stats' result and a provenance record, reports load, blocks and the end
//    in order, and a cancel is kCancelled with the options untouched;
//  - uniform importance (damp 0) reproduces the data-free clustering bit for bit;
//  - spread importance lowers the output-weighted error against the data-free clustering;
//  - the bpw search ranks by the weighted error (normalised per matrix: uniform importance is the
//    data-free plan; importance concentrated on a few columns needs fewer bits);
//  - bad importance (missing matrix, wrong length, negative, NaN, a reserved metadata key) is a
//    clear error before any work, no output;
//  - resume reuses finished matrices only when the statistics and damping are the same.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/activation_stats.hpp"
#include "cluscomp/pipeline/compress.hpp"
#include "support/require_error.hpp"
#include "support/test_data.hpp"
#include "support/tiny_llama.hpp"

namespace test_activation_aware {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::require_error;
using cluscomp_test::TempDir;

namespace {

constexpr uint32_t kSeed = 5150;

struct Fixture {
  TempDir dir;
  cluscomp_test::TinyLlama tiny;
  std::string gguf = (dir / "tiny.gguf").string();
  SourceModel src;
  Fixture() {
    cluscomp_test::TinyLlamaOptions o;
    o.seed = kSeed;
    o.vocab = 40;
    o.context = 32;
    tiny = cluscomp_test::make_tiny_llama(o);
    cluscomp_test::write_bytes(gguf, cluscomp_test::write_tiny_gguf(tiny));
    src = read_source_model(gguf);
  }
};

std::vector<int32_t> token_stream(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

CompressOptions explicit_options(int d, int64_t k) {
  CompressOptions o;
  for (auto& s : o.per_kind) {
    s.d = d;
    s.k = k;
  }
  o.iterations = 6;
  o.seed = 31;
  o.threads = 2;
  return o;
}

/// Importance of every projection: per input column a log-normal value spread over ~4 orders of
/// magnitude (like the activation energies of real models, where a few channels dominate).
std::map<std::string, std::vector<float>> spread_importance(const cluscomp_test::TinyLlama& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::map<std::string, std::vector<float>> m;
  for (const auto& kv : t.w) {
    ProjectionKind k;
    if (!projection_kind_of(kv.first, &k)) continue;
    std::vector<float> h(static_cast<size_t>(t.shape.at(kv.first)[1]));
    for (auto& x : h) x = std::exp(nd(rng));
    m[kv.first] = h;
  }
  return m;
}

/// sum_{o,i} h_i (W - W^)^2 with W^ decoded from the stored codebook: the test's own evaluator.
double weighted_error(const CodebookTensor& t, const std::vector<float>& w, const std::vector<float>& h, int64_t in) {
  const std::vector<float> dec = decode_dense(t, DecodeLayout::kW);
  double e = 0;
  for (size_t j = 0; j < w.size(); ++j) {
    const double diff = static_cast<double>(w[j]) - dec[j];
    e += static_cast<double>(h[j % static_cast<size_t>(in)]) * diff * diff;
  }
  return e;
}

}  // namespace

TEST_CASE("activation stats: block 0's q/k/v inputs equal an independent RMSNorm of the embeddings",
          "[pipeline][activation]") {
  Fixture fx;
  INFO("seed " << kSeed);
  const LlamaModel m = load_llama_model(fx.gguf);
  const std::vector<int32_t> toks = token_stream(400, 40, 7);
  ActivationStatsOptions ao;
  ao.samples = 5;
  ao.window = 24;
  ao.threads = 1;
  const ActivationStats st = collect_activation_stats(m, toks, ao);
  CHECK(st.tokens == 5 * 24);
  REQUIRE(st.mean_sq.size() == 14);
  const int64_t H = 64;
  // Independent: the same window offsets, h1 = x / rms(x) * g for every token of every window.
  const std::vector<int64_t> off = calibrate_detail::window_offsets(400, 24, 5, ao.seed);
  const std::vector<float>& E = fx.tiny.w.at("model.embed_tokens.weight");
  const std::vector<float>& g = fx.tiny.w.at("model.layers.0.input_layernorm.weight");
  std::vector<double> ref(static_cast<size_t>(H), 0.0);
  for (int64_t s = 0; s < 5; ++s)
    for (int64_t t = 0; t < 24; ++t) {
      const int32_t id = toks[static_cast<size_t>(off[static_cast<size_t>(s)] + t)];
      double ms = 0;
      for (int64_t j = 0; j < H; ++j) ms += static_cast<double>(E[static_cast<size_t>(id * H + j)]) * E[static_cast<size_t>(id * H + j)];
      const double r = 1.0 / std::sqrt(ms / H + 1e-5);
      for (int64_t j = 0; j < H; ++j) {
        const double v = E[static_cast<size_t>(id * H + j)] * r * g[static_cast<size_t>(j)];
        ref[static_cast<size_t>(j)] += v * v;
      }
    }
  for (const char* k : {"q_proj", "k_proj", "v_proj"}) {
    const std::vector<float>& h = st.mean_sq.at(std::string("model.layers.0.self_attn.") + k + ".weight");
    REQUIRE(h.size() == static_cast<size_t>(H));
    for (int64_t j = 0; j < H; ++j) CHECK(h[static_cast<size_t>(j)] == Approx(ref[static_cast<size_t>(j)] / 120.0).epsilon(1e-5));
  }
  // Every matrix: one value per input column, finite, positive (random weights: no dead column).
  for (const auto& kv : st.mean_sq) {
    INFO(kv.first);
    ProjectionKind kind;
    REQUIRE(projection_kind_of(kv.first, &kind));
    CHECK(static_cast<int64_t>(kv.second.size()) == fx.tiny.shape.at(kv.first)[1]);
    for (float v : kv.second) CHECK((std::isfinite(v) && v > 0.0f));
  }
  // Which tensor feeds which matrix (block 0): o <- attention output, gate/up <- MLP RMSNorm
  // output, down <- silu(gate) * up, from the training block's saved forward state.
  {
    autograd::TrainBlock blk(fx.tiny.cfg, m.weights().blocks[0]);
    std::vector<double> attn(64, 0.0), h2(64, 0.0), act(96, 0.0);
    std::vector<float> x(24 * 64), y(24 * 64);
    for (int64_t s = 0; s < 5; ++s) {
      for (int64_t t = 0; t < 24; ++t) {
        const int32_t id = toks[static_cast<size_t>(off[static_cast<size_t>(s)] + t)];
        std::copy(E.begin() + id * H, E.begin() + (id + 1) * H, x.begin() + t * H);
      }
      autograd::TrainBlock::Saved sv;
      blk.forward(x.data(), 24, y.data(), &sv);
      for (int64_t t = 0; t < 24; ++t) {
        for (int64_t j = 0; j < 64; ++j) {
          attn[static_cast<size_t>(j)] += static_cast<double>(sv.attn[static_cast<size_t>(t * 64 + j)]) * sv.attn[static_cast<size_t>(t * 64 + j)];
          h2[static_cast<size_t>(j)] += static_cast<double>(sv.h2[static_cast<size_t>(t * 64 + j)]) * sv.h2[static_cast<size_t>(t * 64 + j)];
        }
        for (int64_t j = 0; j < 96; ++j) {
          const double gt = sv.gate[static_cast<size_t>(t * 96 + j)], u = sv.up[static_cast<size_t>(t * 96 + j)];
          const double a = gt / (1.0 + std::exp(-gt)) * u;
          act[static_cast<size_t>(j)] += a * a;
        }
      }
    }
    auto check = [&](const std::string& name, const std::vector<double>& want) {
      INFO(name);
      const std::vector<float>& h = st.mean_sq.at("model.layers.0." + name + ".weight");
      REQUIRE(h.size() == want.size());
      for (size_t j = 0; j < want.size(); ++j) CHECK(h[j] == Approx(want[j] / 120.0).epsilon(1e-4));
    };
    check("self_attn.o_proj", attn);
    check("mlp.gate_proj", h2);
    check("mlp.up_proj", h2);
    check("mlp.down_proj", act);
    // The swapped mappings would not pass: the o input is not the attention norm's output.
    double diff = 0;
    for (size_t j = 0; j < 64; ++j) diff += std::abs(attn[j] - ref[j]) / ref[j];
    CHECK(diff / 64 > 0.05);
  }
  // Deterministic whatever the thread count.
  ao.threads = 2;
  const ActivationStats st2 = collect_activation_stats(m, toks, ao);
  for (const auto& kv : st.mean_sq) CHECK(kv.second == st2.mean_sq.at(kv.first));
  // A text shorter than one window.
  ao.window = 30;
  require_error([&] { collect_activation_stats(m, std::vector<int32_t>(10, 1), ao); }, StatusCode::kInvalidArgument,
                "shorter than one window");
  // Samples far past memory, or past 64 bits: said before anything sized by them is allocated.
  ao.window = 8;
  ao.samples = int64_t{1} << 40;  // 8 TiB of window offsets alone
  require_error([&] { collect_activation_stats(m, toks, ao); }, StatusCode::kOutOfMemory, "use fewer or shorter windows");
  ao.samples = int64_t{1} << 62;
  require_error([&] { collect_activation_stats(m, toks, ao); }, StatusCode::kInvalidArgument,
                "4611686018427387904 samples x 8 tokens of activations: size overflows");
}

TEST_CASE("activation stats: add_activation_importance loads, collects and fills CompressOptions",
          "[pipeline][activation]") {
  Fixture fx;
  INFO("seed " << kSeed);
  const std::vector<int32_t> toks = token_stream(300, 40, 11);
  ActivationStatsOptions ao;
  ao.samples = 3;
  ao.window = 16;
  ao.seed = 77;
  ao.threads = 1;
  const ActivationStats direct = collect_activation_stats(load_llama_model(fx.gguf), toks, ao);

  CompressOptions o;
  o.metadata["caller.note"] = "kept";
  std::vector<std::string> events;
  add_activation_importance(fx.gguf, "calib.txt", toks, ao, &o, [&](const ActivationImportanceProgress& p) {
    using S = ActivationImportanceProgress::Stage;
    if (p.stage == S::kModelLoaded) {
      CHECK(p.model != nullptr);
      CHECK(p.model->config().num_hidden_layers == 2);
      CHECK(p.seconds >= 0);
      events.push_back("loaded");
    } else if (p.stage == S::kBlockDone) {
      CHECK(p.blocks == 2);
      events.push_back("block " + std::to_string(p.block));
    } else {
      CHECK(p.tokens == 3 * 16);
      events.push_back("done");
    }
    return true;
  });
  CHECK(events == std::vector<std::string>{"loaded", "block 0", "block 1", "done"});
  CHECK(o.input_importance == direct.mean_sq);  // bit-identical: the same call on the same model
  CHECK(o.metadata.at("caller.note") == "kept");
  const nlohmann::json rec = nlohmann::json::parse(o.metadata.at(kCompressActivationsKey));
  CHECK(rec == nlohmann::json{{"text", "calib.txt"}, {"samples", 3}, {"window", 16}, {"seed", 77}, {"tokens", 48}});

  // A cancel, after the load or after a block: kCancelled and the options as they were.
  for (const std::string& at : {std::string("loaded"), std::string("block 0")}) {
    INFO("cancel at " << at);
    CompressOptions c;
    require_error(
        [&] {
          add_activation_importance(fx.gguf, "calib.txt", toks, ao, &c, [&](const ActivationImportanceProgress& p) {
            if (p.stage == ActivationImportanceProgress::Stage::kModelLoaded) return at != "loaded";
            return !(p.stage == ActivationImportanceProgress::Stage::kBlockDone && p.block == 0);
          });
        },
        StatusCode::kCancelled, "activation stats: cancelled");
    CHECK(c.input_importance.empty());
    CHECK(c.metadata.empty());
  }
  // A missing model is load_llama_model's error, naming the file.
  CompressOptions m;
  require_error([&] { add_activation_importance((fx.dir / "none.gguf").string(), "t", toks, ao, &m); },
                StatusCode::kNotFound, "none.gguf");
}

TEST_CASE("activation-aware compress: uniform importance reproduces the data-free clustering",
          "[pipeline][activation]") {
  Fixture fx;
  CompressOptions plain = explicit_options(4, 16);
  const CompressReport r0 = compress_model(fx.src, (fx.dir / "plain.safetensors").string(), plain);
  CompressOptions uni = plain;
  for (const auto& kv : spread_importance(fx.tiny, 1)) uni.input_importance[kv.first] = std::vector<float>(kv.second.size(), 1.0f);
  uni.importance_damp = 0.0;
  const CompressReport r1 = compress_model(fx.src, (fx.dir / "uni.safetensors").string(), uni);
  const CluscompModel a = read_cluscomp_model((fx.dir / "plain.safetensors").string());
  const CluscompModel b = read_cluscomp_model((fx.dir / "uni.safetensors").string());
  REQUIRE(a.clustered.size() == 14);
  for (const auto& kv : a.clustered) {
    INFO(kv.first);
    CHECK(kv.second.centroid_bytes() == b.clustered.at(kv.first).centroid_bytes());
    CHECK(kv.second.code_words() == b.clustered.at(kv.first).code_words());
  }
  // With all weights 1 the output error is the weight error.
  for (size_t i = 0; i < r1.matrices.size(); ++i) {
    CHECK(r1.matrices[i].out_sq_error == Approx(r0.matrices[i].sq_error).epsilon(1e-12));
    CHECK(r1.matrices[i].out_sq_norm == Approx(r0.matrices[i].sq_norm).epsilon(1e-12));
    CHECK(r0.matrices[i].out_sq_norm == 0.0);  // data-free: not computed
  }
  CHECK(b.metadata.at("compress.importance_damp") == "0");
  CHECK(a.metadata.count("compress.importance_damp") == 0);
}

TEST_CASE("activation-aware compress: spread importance lowers the output-weighted error", "[pipeline][activation]") {
  Fixture fx;
  const auto imp = spread_importance(fx.tiny, 2);
  CompressOptions plain = explicit_options(4, 16);
  CompressOptions aware = plain;
  aware.input_importance = imp;
  aware.importance_damp = 0.0;
  compress_model(fx.src, (fx.dir / "plain.safetensors").string(), plain);
  const CompressReport ra = compress_model(fx.src, (fx.dir / "aware.safetensors").string(), aware);
  const CluscompModel a = read_cluscomp_model((fx.dir / "plain.safetensors").string());
  const CluscompModel b = read_cluscomp_model((fx.dir / "aware.safetensors").string());
  double e_plain = 0, e_aware = 0, sq_plain = 0, sq_aware = 0;  // weighted, then plain errors
  int better = 0;
  for (const MatrixReport& r : ra.matrices) {
    INFO(r.plan.name);
    const std::vector<float>& w = fx.tiny.w.at(r.plan.name);
    const std::vector<float>& h = imp.at(r.plan.name);
    const double ep = weighted_error(a.clustered.at(r.plan.name), w, h, r.plan.in);
    const double ea = weighted_error(b.clustered.at(r.plan.name), w, h, r.plan.in);
    double hn = 0;  // sum_{o,i} h_i W^2 with the raw importance (the report's weights are normalised)
    for (size_t j = 0; j < w.size(); ++j) hn += static_cast<double>(h[j % static_cast<size_t>(r.plan.in)]) * w[j] * w[j];
    // The stored values' error; the report's normalised weights are fp32 (2^-24 relative each).
    CHECK(r.out_rel_error() == Approx(std::sqrt(ea / hn)).epsilon(1e-6));
    e_plain += ep;
    e_aware += ea;
    better += ea < ep;
    sq_aware += r.sq_error;
    sq_plain += codebook_sq_error(a.clustered.at(r.plan.name), w);
  }
  // Weighting trades plain weight error for output error: lower weighted error on nearly every
  // matrix and in total by a clear margin (measured: see the printed ratio).
  WARN("output-weighted error aware / plain: " << e_aware / e_plain << ", matrices better " << better << "/14");
  CHECK(e_aware < 0.8 * e_plain);
  CHECK(better >= 12);
  CHECK(sq_aware > sq_plain);  // the plain weight error goes up
  CHECK(b.metadata.count("compress.importance_damp") == 1);
}

TEST_CASE("activation-aware compress: the bpw search ranks by the weighted error", "[pipeline][activation][search]") {
  Fixture fx;
  CompressOptions o = explicit_options(4, 16);
  o.target_bpw = 3.0;
  o.search_d = {4, 8};
  o.search_sample = 1024;
  o.search_k = 16;
  auto bits_of = [&](const std::vector<MatrixPlan>& plans, ProjectionKind k) {
    double b = 0, n = 0;
    for (const MatrixPlan& p : plans)
      if (p.kind == k) {
        b += p.bpw * static_cast<double>(p.out * p.in);
        n += static_cast<double>(p.out * p.in);
      }
    return b / n;
  };
  const std::vector<MatrixPlan> plain = plan_compression(fx.src, o);
  // Column weights are normalised per matrix: a uniform importance of any size is the data-free plan.
  o.importance_damp = 0.0;
  for (const auto& kv : spread_importance(fx.tiny, 3)) o.input_importance[kv.first] = std::vector<float>(kv.second.size(), 1000.0f);
  const std::vector<MatrixPlan> uniform = plan_compression(fx.src, o);
  REQUIRE(uniform.size() == plain.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    CHECK(uniform[i].cluster.d == plain[i].cluster.d);
    CHECK(uniform[i].cluster.k == plain[i].cluster.k);
    CHECK(uniform[i].predicted_error == Approx(plain[i].predicted_error).epsilon(1e-12));
  }
  // The kind with the most bits in the data-free plan gets inputs concentrated on 4 columns: its
  // output error is the error of those columns' vectors, which few centroids fit, so the search
  // moves bits from it to the rest.
  ProjectionKind top = ProjectionKind::kQ;
  for (int k = 0; k < kNumProjectionKinds; ++k)
    if (bits_of(plain, static_cast<ProjectionKind>(k)) > bits_of(plain, top)) top = static_cast<ProjectionKind>(k);
  INFO("kind " << projection_kind_name(top));
  o.importance_damp = 0.01;
  for (auto& kv : o.input_importance) {
    ProjectionKind k = ProjectionKind::kQ;
    REQUIRE(projection_kind_of(kv.first, &k));
    std::fill(kv.second.begin(), kv.second.end(), 1.0f);
    if (k == top)
      for (size_t j : {3u, 40u, 41u, 60u}) kv.second[j] = 1.0e4f;
  }
  const std::vector<MatrixPlan> aware = plan_compression(fx.src, o);
  double bits = 0, weights = 0;
  for (const MatrixPlan& p : aware) {
    bits += p.bpw * static_cast<double>(p.out * p.in);
    weights += static_cast<double>(p.out * p.in);
  }
  CHECK(bits / weights <= 3.0);
  CHECK(bits / weights > 2.5);
  INFO("bpw plain " << bits_of(plain, top) << ", aware " << bits_of(aware, top));
  CHECK(bits_of(aware, top) < bits_of(plain, top) - 0.5);
  for (int k = 0; k < kNumProjectionKinds; ++k)
    if (static_cast<ProjectionKind>(k) != top)
      CHECK(bits_of(aware, static_cast<ProjectionKind>(k)) >= bits_of(plain, static_cast<ProjectionKind>(k)));
}

TEST_CASE("activation-aware compress: bad importance is a clear error and writes nothing", "[pipeline][activation]") {
  Fixture fx;
  const std::string out = (fx.dir / "bad.safetensors").string();
  const auto good = spread_importance(fx.tiny, 4);
  const std::string q0 = "model.layers.0.self_attn.q_proj.weight";
  CompressOptions o = explicit_options(4, 16);
  o.input_importance = good;
  o.input_importance.erase(q0);
  require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "no input importance for " + q0);
  o.input_importance = good;
  o.input_importance[q0].pop_back();
  require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "63 values");
  o.input_importance = good;
  o.input_importance[q0][5] = -1.0f;
  require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "column 5");
  o.input_importance[q0][5] = std::nanf("");
  require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "column 5");
  o.input_importance = good;
  o.metadata["compress.seed"] = "7";
  require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "'compress.seed' is reserved");
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".work"));  // refused before any work
}

TEST_CASE("activation-aware compress: resume reuses matrices only for the same statistics", "[pipeline][activation]") {
  Fixture fx;
  const std::string out = (fx.dir / "r.safetensors").string();
  CompressOptions o = explicit_options(4, 16);
  o.input_importance = spread_importance(fx.tiny, 5);
  o.jobs = 1;  // the cancel below comes after an exact count of finished matrices
  int done = 0;
  o.progress = [&](const CompressProgress& p) {
    if (p.stage == CompressProgress::Stage::kMatrixDone) ++done;
    return done < 6;  // cancel after 6 finished matrices
  };
  require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kCancelled, "cancelled");
  REQUIRE(std::filesystem::exists(out + ".work"));
  o.progress = {};
  // Different statistics: nothing is reused.
  CompressOptions changed = o;
  for (auto& kv : changed.input_importance) kv.second[0] *= 2.0f;
  changed.work_dir = (fx.dir / "copy.work").string();
  std::filesystem::copy(out + ".work", changed.work_dir);
  CHECK(compress_model(fx.src, (fx.dir / "changed.safetensors").string(), changed).resumed == 0);
  CompressOptions damp = o;
  damp.importance_damp = 0.5;
  damp.work_dir = (fx.dir / "copy2.work").string();
  std::filesystem::copy(out + ".work", damp.work_dir);
  CHECK(compress_model(fx.src, (fx.dir / "damp.safetensors").string(), damp).resumed == 0);
  // The same statistics: the finished matrices are reused and the file equals an uninterrupted run.
  const CompressReport resumed = compress_model(fx.src, out, o);
  CHECK(resumed.resumed == 6);
  CompressOptions fresh = o;
  const std::string out2 = (fx.dir / "fresh.safetensors").string();
  CHECK(compress_model(fx.src, out2, fresh).resumed == 0);
  CHECK(cluscomp_test::file_bytes(out) == cluscomp_test::file_bytes(out2));
}

}  // namespace test_activation_aware
