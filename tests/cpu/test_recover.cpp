// End-to-end recovery and codebook finetuning (model/train_model.hpp, pipeline/recover.hpp,
// CLUSCOMP.md §3) on a tiny random LLaMA compressed with our pipeline:
//  - the float TrainModel's logits equal the runtime's (LlamaModel::forward) bit for bit;
//  - whole-model gradients (centroids; with train_all also block norms, final norm, embedding and
//    an untied lm_head) against central finite differences in double, for the KD and CE losses,
//    with and without recomputation;
//  - KD recovery lowers the training loss and the KL to the teacher on the training windows
//    clearly; codebook-only runs change only centroids; train-all runs also change the dense
//    norms/embedding and keep their stored dtypes;
//  - CE finetuning lowers the training loss, reports the trainable share and the loss curve;
//  - bad input gives a clear error and no output.
// Seeds are fixed (kSeed, token seed 5, options.seed, FD seed 11).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/autograd/losses.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/train_model.hpp"
#include "cluscomp/pipeline/compress.hpp"
#include "cluscomp/pipeline/recover.hpp"
#include "support/model_diff.hpp"
#include "support/require_error.hpp"
#include "support/test_data.hpp"
#include "support/tiny_llama.hpp"

namespace test_recover {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::file_bytes;
using cluscomp_test::require_error;
using cluscomp_test::TempDir;

namespace {

constexpr uint32_t kSeed = 4243;

struct Fixture {
  TempDir dir;
  cluscomp_test::TinyLlama tiny;
  std::string gguf = (dir / "tiny.gguf").string();
  std::string student = (dir / "student.safetensors").string();
  std::vector<int32_t> tokens = cluscomp_test::pattern_tokens(600, 40);
  explicit Fixture(bool tied = true, uint32_t seed = kSeed) {
    cluscomp_test::TinyLlamaOptions to;
    to.seed = seed;
    to.vocab = 40;
    to.context = 32;
    to.tied = tied;
    tiny = cluscomp_test::make_tiny_llama(to);
    cluscomp_test::TinyGgufOptions go;
    go.tokenizer = true;  // the student embeds it; the outputs must keep it
    cluscomp_test::write_bytes(gguf, cluscomp_test::write_tiny_gguf(tiny, go));
    CompressOptions o;
    for (auto& s : o.per_kind) {
      s.d = 4;
      s.k = 64;  // coarse: clustering alone leaves a large error for training to fix
    }
    o.iterations = 4;
    o.seed = 99;
    o.threads = 2;
    compress_model(read_source_model(gguf), student, o);
  }
  RecoverOptions options() const {
    RecoverOptions r;
    r.samples = 6;
    r.window = 24;
    r.epochs = 6;
    r.lr = 5e-3f;  // the tiny random model needs larger steps than the real one's default 1e-3
    r.threads = 2;
    return r;
  }
};

/// Loss of a double TrainModel on one window: KL against fixed teacher logits, or CE.
struct DoubleLoss {
  std::vector<int32_t> ids;
  std::vector<double> teacher;  // (n, vocab) or empty for CE
  double operator()(BasicTrainModel<double>& m, std::vector<double>* dlogits,
                    BasicTrainModel<double>::Saved* saved) const {
    const int64_t n = static_cast<int64_t>(ids.size()), V = m.vocab_size();
    std::vector<double> logits(static_cast<size_t>(n * V));
    m.forward(ids.data(), n, logits.data(), saved);
    if (dlogits) dlogits->resize(logits.size());
    if (!teacher.empty())
      return autograd::kl_div_loss(teacher.data(), logits.data(), n, V, dlogits ? dlogits->data() : nullptr);
    std::vector<int32_t> targets(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) targets[static_cast<size_t>(t)] = t + 1 < n ? ids[static_cast<size_t>(t + 1)] : -1;
    return autograd::cross_entropy_loss(logits.data(), n, V, targets.data(), dlogits ? dlogits->data() : nullptr);
  }
};

/// Checks a few entries of every named parameter (the largest |gradient| entries and one drawn at
/// random) against central differences (h = 1e-5, double): the truncation error is O(h^2 f''')
/// ~ 1e-10 and the rounding error O(eps_double / h) ~ 1e-11, so |fd - analytic| <= 1e-7 + 1e-5 |g|
/// leaves two orders of margin while any wrong term (a missing path, a factor) is far larger.
void check_gradients(BasicTrainModel<double>& m, const DoubleLoss& loss, const std::vector<std::string>& names,
                     int per_param) {
  BasicTrainModel<double>::Saved saved;
  std::vector<double> dlogits;
  m.zero_grad();
  loss(m, &dlogits, &saved);
  m.backward(saved, dlogits.data());
  std::mt19937 rng(11);
  auto params = m.parameters();
  for (const std::string& name : names) {
    auto it = std::find_if(params.begin(), params.end(), [&](const auto& p) { return p.name == name; });
    REQUIRE(it != params.end());
    const auto& p = *it;
    std::vector<int64_t> idx(static_cast<size_t>(p.size));
    for (int64_t i = 0; i < p.size; ++i) idx[static_cast<size_t>(i)] = i;
    std::partial_sort(idx.begin(), idx.begin() + per_param, idx.end(),
                      [&](int64_t a, int64_t b) { return std::fabs(p.grad[a]) > std::fabs(p.grad[b]); });
    idx.resize(static_cast<size_t>(per_param));
    idx.push_back(static_cast<int64_t>(rng() % static_cast<uint32_t>(p.size)));
    double max_abs_grad = 0;
    for (int64_t i : idx) {
      const double g = p.grad[i];
      max_abs_grad = std::max(max_abs_grad, std::fabs(g));
      const double v0 = p.value[i], h = 1e-5;
      p.value[i] = v0 + h;
      const double lp = loss(m, nullptr, nullptr);
      p.value[i] = v0 - h;
      const double lm = loss(m, nullptr, nullptr);
      p.value[i] = v0;
      const double fd = (lp - lm) / (2 * h);
      INFO(name << "[" << i << "]: analytic " << g << ", finite difference " << fd);
      CHECK(std::fabs(fd - g) <= 1e-7 + 1e-5 * std::fabs(g));
    }
    INFO(name);
    CHECK(max_abs_grad > 1e-6);  // the checked entries carry real gradient
  }
}

}  // namespace

TEST_CASE("train model: float logits equal the runtime's", "[recover][train_model]") {
  for (bool tied : {true, false}) {
    Fixture fx(tied);
    LlamaModel student = load_llama_model(fx.student);
    TrainModel tm(student, TrainModelOptions{true, false});
    const int64_t n = 20, V = student.vocab_size();
    const std::vector<int32_t> ids(fx.tokens.begin() + 3, fx.tokens.begin() + 3 + n);
    std::vector<float> logits(static_cast<size_t>(n * V));
    TrainModel::Saved saved;
    tm.forward(ids.data(), n, logits.data(), &saved);
    KvCache cache = student.make_cache(n);
    const std::vector<float> ref = student.forward(ids, cache, true);
    INFO("tied " << tied);
    CHECK(logits == ref);
    CHECK(saved.bytes() == tm.saved_bytes(n));
    CHECK(tm.tied() == tied);
  }
}

TEST_CASE("train model: whole-model gradients match central finite differences (double)",
          "[recover][train_model][gradcheck]") {
  for (bool tied : {true, false}) {
    Fixture fx(tied);
    LlamaModel student = load_llama_model(fx.student);
    LlamaModel teacher = load_llama_model(fx.gguf);
    const int64_t n = 10, V = student.vocab_size();
    DoubleLoss kd, ce;
    kd.ids.assign(fx.tokens.begin() + 40, fx.tokens.begin() + 40 + n);
    ce.ids = kd.ids;
    KvCache cache = teacher.make_cache(n);
    const std::vector<float> tl = teacher.forward(kd.ids, cache, true);
    kd.teacher.assign(tl.begin(), tl.end());
    REQUIRE(static_cast<int64_t>(kd.teacher.size()) == n * V);
    INFO("tied " << tied);
    SECTION("codebooks only, KD") {
      BasicTrainModel<double> m(student);
      check_gradients(m, kd,
                      {"model.layers.0.self_attn.q_proj.centroids", "model.layers.0.mlp.down_proj.centroids",
                       "model.layers.1.self_attn.v_proj.centroids", "model.layers.1.mlp.gate_proj.centroids"},
                      2);
    }
    SECTION("everything but the codes, CE, recompute") {
      TrainModelOptions o;
      o.train_all = true;
      o.recompute = true;
      BasicTrainModel<double> m(student, o);
      std::vector<std::string> names = {"model.layers.0.self_attn.k_proj.centroids",
                                        "model.layers.1.mlp.up_proj.centroids",
                                        "model.layers.0.input_layernorm.weight",
                                        "model.layers.1.post_attention_layernorm.weight",
                                        "model.norm.weight",
                                        "model.embed_tokens.weight"};
      if (!tied) names.push_back("lm_head.weight");
      check_gradients(m, ce, names, 2);
    }
    SECTION("everything but the codes, KD") {
      TrainModelOptions o;
      o.train_all = true;
      BasicTrainModel<double> m(student, o);
      std::vector<std::string> names = {"model.layers.1.self_attn.o_proj.centroids", "model.norm.weight",
                                        "model.layers.0.post_attention_layernorm.weight", "model.embed_tokens.weight"};
      if (!tied) names.push_back("lm_head.weight");
      check_gradients(m, kd, names, 2);
    }
  }
}

TEST_CASE("recover: KD lowers the loss and the KL to the teacher; only centroids change",
          "[recover][pipeline]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  const std::string out = (fx.dir / "rec.safetensors").string();
  int steps_seen = 0, epochs_seen = 0;
  const RecoverReport rep = recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, fx.options(),
                                          [&](const RecoverProgress& p) {
                                            steps_seen += p.stage == RecoverProgress::Stage::kStep;
                                            epochs_seen += p.stage == RecoverProgress::Stage::kEpochDone;
                                            return true;
                                          });
  INFO("KL " << rep.kl_before << " -> " << rep.kl_after << ", CE " << rep.ce_before << " -> " << rep.ce_after);
  CHECK(steps_seen == 36);
  CHECK(epochs_seen == 6);
  REQUIRE(rep.step_loss.size() == 36);
  REQUIRE(rep.epoch_loss.size() == 6);
  CHECK(rep.steps == 36);
  CHECK(rep.windows_seen == 36);
  CHECK(rep.trainable == 14 * 64 * 4);
  CHECK(rep.trainable_share() > 0);
  CHECK(rep.trainable_share() < 0.1);
  // The first epoch's mean is the untrained model's loss up to its own in-epoch updates.
  CHECK(std::fabs(rep.epoch_loss.front() - rep.kl_before) < 0.5 * rep.kl_before);
  CHECK(rep.epoch_loss.back() < 0.7 * rep.epoch_loss.front());
  // Measured with the stored (fp16-rounded) codebooks through the runtime.
  CHECK(std::isfinite(rep.kl_before));
  CHECK(rep.kl_after < 0.6 * rep.kl_before);
  CHECK(rep.peak_rss_bytes > 0);
  CHECK(rep.saved_bytes > 0);

  const CluscompModel before = read_cluscomp_model(fx.student), after = read_cluscomp_model(out);
  CHECK(cluscomp_test::changed_codebooks_only_centroids(before, after) == 14);
  REQUIRE(after.metadata.count("recover.settings") == 1);
  CHECK(after.metadata.at("recover.settings").find("\"loss\":\"kd\"") != std::string::npos);
  CHECK(after.metadata.at("recover.settings").find("\"train\":\"codebooks\"") != std::string::npos);
  CHECK(after.metadata.at("compress.method") == "cluscomp");
  // The embedded tokenizer stays: the recovered file tokenises on its own.
  REQUIRE(before.metadata.count(kCluscompTokenizerKey) == 1);
  CHECK(after.metadata.at(kCluscompTokenizerKey) == before.metadata.at(kCluscompTokenizerKey));

  // Deterministic across thread counts; gradient accumulation and max_steps shape the steps.
  RecoverOptions o = fx.options();
  o.epochs = 1;
  o.evaluate = false;
  const std::filesystem::path a = fx.dir / "a.safetensors", b = fx.dir / "b.safetensors";
  recover_model(&teacher, fx.gguf, fx.student, fx.tokens, a.string(), o);
  o.threads = 1;
  recover_model(&teacher, fx.gguf, fx.student, fx.tokens, b.string(), o);
  CHECK(file_bytes(a) == file_bytes(b));
  o.accumulation = 4;
  o.epochs = 3;
  o.max_steps = 5;
  const RecoverReport acc = recover_model(&teacher, fx.gguf, fx.student, fx.tokens, b.string(), o);
  CHECK(acc.steps == 5);  // 2 steps per epoch (4 + 2 windows)
  CHECK(acc.windows_seen == 6 + 6 + 4);
  CHECK(std::isnan(acc.kl_before));
}

TEST_CASE("recover: train all also trains norms and embedding, in their stored dtypes", "[recover][pipeline]") {
  Fixture fx(false);  // untied lm_head
  LlamaModel teacher = load_llama_model(fx.gguf);
  const std::string out = (fx.dir / "all.safetensors").string();
  RecoverOptions o = fx.options();
  o.train = RecoverTrain::kAll;
  o.recompute = true;
  const RecoverReport rep = recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, o);
  INFO("KL " << rep.kl_before << " -> " << rep.kl_after);
  CHECK(rep.kl_after < 0.6 * rep.kl_before);
  CHECK(rep.trainable == 14 * 64 * 4 + 2 * 2 * 64 + 64 + 2 * 40 * 64);
  CHECK(rep.trained_dense.size() == 4 + 1 + 2);
  const CluscompModel before = read_cluscomp_model(fx.student), after = read_cluscomp_model(out);
  for (const auto& kv : before.clustered) CHECK(after.clustered.at(kv.first).code_words() == kv.second.code_words());
  REQUIRE(before.dense.size() == after.dense.size());
  for (size_t i = 0; i < before.dense.size(); ++i) {
    const TensorRef &x = before.dense[i], &y = after.dense[i];
    INFO(x.name);
    CHECK(x.name == y.name);
    CHECK(x.dtype == y.dtype);
    CHECK(x.shape == y.shape);
    const bool same = std::vector<unsigned char>(x.data, x.data + x.nbytes) ==
                      std::vector<unsigned char>(y.data, y.data + y.nbytes);
    CHECK(same == (std::find(rep.trained_dense.begin(), rep.trained_dense.end(), x.name) == rep.trained_dense.end()));
  }
  CHECK(after.metadata.at("recover.settings").find("\"train\":\"all\"") != std::string::npos);
}

TEST_CASE("finetune: codebook-only CE finetuning lowers the training loss", "[recover][finetune]") {
  Fixture fx;
  const std::string out = (fx.dir / "ft.safetensors").string();
  RecoverOptions o = fx.options();
  o.lr = 1e-2f;
  o.accumulation = 2;
  o.loss = RecoverLoss::kKd;           // ignored by finetune
  o.train = RecoverTrain::kAll;        // ignored by finetune
  const RecoverReport rep = finetune_model(fx.student, fx.tokens, out, o);
  INFO("CE " << rep.ce_before << " -> " << rep.ce_after);
  CHECK(rep.loss == RecoverLoss::kCe);
  CHECK(rep.train == RecoverTrain::kCodebooks);
  CHECK(std::isnan(rep.kl_before));
  CHECK(rep.ce_after < rep.ce_before - 0.1);
  CHECK(rep.step_loss.size() == 18);
  CHECK(rep.epoch_loss.back() < rep.epoch_loss.front());
  CHECK(rep.trainable == 14 * 64 * 4);
  CHECK(rep.trainable_share() == Approx(static_cast<double>(14 * 64 * 4) / static_cast<double>(rep.parameters)));
  const CluscompModel before = read_cluscomp_model(fx.student), after = read_cluscomp_model(out);
  for (size_t i = 0; i < before.dense.size(); ++i)
    CHECK(std::vector<unsigned char>(before.dense[i].data, before.dense[i].data + before.dense[i].nbytes) ==
          std::vector<unsigned char>(after.dense[i].data, after.dense[i].data + after.dense[i].nbytes));
  for (const auto& kv : before.clustered) CHECK(after.clustered.at(kv.first).code_words() == kv.second.code_words());
  REQUIRE(before.metadata.count(kCluscompTokenizerKey) == 1);
  CHECK(after.metadata.at(kCluscompTokenizerKey) == before.metadata.at(kCluscompTokenizerKey));
}

TEST_CASE("recover: bad input gives a clear error and no output", "[recover][errors]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  const std::string out = (fx.dir / "out.safetensors").string();
  const RecoverOptions o = fx.options();
  auto none = [&] { CHECK_FALSE(std::filesystem::exists(out)); };

  require_error([&] { parse_recover_loss("mse"); }, StatusCode::kInvalidArgument, "unknown loss 'mse'");
  require_error([&] { parse_recover_train("norms"); }, StatusCode::kInvalidArgument, "unknown --train 'norms'");
  CHECK(parse_recover_loss("ce") == RecoverLoss::kCe);
  CHECK(parse_recover_train("all") == RecoverTrain::kAll);

  require_error([&] { recover_model(&teacher, fx.gguf, fx.student, cluscomp_test::pattern_tokens(10, 40), out, o); },
                StatusCode::kInvalidArgument, "10 tokens, shorter than one window of 24");
  none();
  require_error([&] { finetune_model(fx.student, cluscomp_test::pattern_tokens(10, 40), out, o); }, StatusCode::kInvalidArgument,
                "finetune: the text has 10 tokens");
  none();
  RecoverOptions wide = o;
  wide.window = 64;
  require_error([&] { recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, wide); },
                StatusCode::kInvalidArgument, "exceeds the model's context of 32");
  none();
  require_error([&] { recover_model(nullptr, "", fx.student, fx.tokens, out, o); }, StatusCode::kInvalidArgument,
                "needs the teacher");
  none();
  RecoverOptions zero = o;
  zero.accumulation = 0;
  require_error([&] { recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, zero); },
                StatusCode::kInvalidArgument, "accumulation");
  // A student compressed from another model.
  {
    Fixture other(true, kSeed + 1);
    require_error([&] { recover_model(&teacher, fx.gguf, other.student, fx.tokens, out, o); },
                  StatusCode::kInvalidArgument, "recover: " + other.student + " is from a different model");
    none();
  }
  // Codebooks only on a student without clustered matrices.
  {
    const std::string rtn = (fx.dir / "rtn.safetensors").string();
    CompressOptions ro;
    ro.method = CompressMethod::kRtn;
    ro.rtn.group_size = 32;
    compress_model(read_source_model(fx.gguf), rtn, ro);
    require_error([&] { recover_model(&teacher, fx.gguf, rtn, fx.tokens, out, o); }, StatusCode::kInvalidArgument,
                  "no clustered matrices");
    none();
  }
  // A non-finite loss (a NaN weight in the teacher): names epoch, step and window; nothing written.
  {
    cluscomp_test::TinyLlama nan_tiny = fx.tiny;
    nan_tiny.w.at("model.layers.1.mlp.down_proj.weight")[5] = std::numeric_limits<float>::quiet_NaN();
    const std::string nan_gguf = (fx.dir / "nan.gguf").string();
    cluscomp_test::write_bytes(nan_gguf, cluscomp_test::write_tiny_gguf(nan_tiny));
    LlamaModel nan_teacher = load_llama_model(nan_gguf);
    RecoverOptions ne = o;
    ne.evaluate = false;
    require_error([&] { recover_model(&nan_teacher, nan_gguf, fx.student, fx.tokens, out, ne); },
                  StatusCode::kInvalidArgument, "the teacher's logits are not finite on window 1");
    none();
  }
  // A non-finite loss of the student (a learning rate that blows the codebooks up): names epoch,
  // step and window; nothing written.
  {
    RecoverOptions huge = o;
    huge.lr = 1e30f;
    huge.evaluate = false;
    for (RecoverLoss l : {RecoverLoss::kKd, RecoverLoss::kCe}) {
      huge.loss = l;
      require_error([&] { recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, huge); },
                    StatusCode::kInvalidArgument, "non-finite loss");
      require_error([&] { recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, huge); },
                    StatusCode::kInvalidArgument, "(try a lower --lr)");
      none();
    }
  }
  // An absurd --samples: a clear error naming samples before the window offsets are allocated
  // (overflow: kInvalidArgument; more than the machine's memory: kOutOfMemory), not bad_alloc.
  for (int64_t samples : {int64_t{1} << 50, std::numeric_limits<int64_t>::max()}) {
    RecoverOptions many = o;
    many.samples = samples;
    for (int fine = 0; fine < 2; ++fine) {
      INFO("samples " << samples << (fine ? " finetune" : " recover"));
      try {
        if (fine)
          finetune_model(fx.student, fx.tokens, out, many);
        else
          recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, many);
        FAIL("no error");
      } catch (const Error& e) {
        CHECK((e.code() == StatusCode::kInvalidArgument || e.code() == StatusCode::kOutOfMemory));
        const std::string m = e.what();
        CHECK(m.rfind(fine ? "finetune: " : "recover: ", 0) == 0);
        CHECK(m.find(std::to_string(samples) + " samples") != std::string::npos);
      }
      none();
    }
  }
  // Cancelled: nothing written.
  require_error(
      [&] {
        recover_model(&teacher, fx.gguf, fx.student, fx.tokens, out, o,
                      [](const RecoverProgress& p) { return p.stage != RecoverProgress::Stage::kStep; });
      },
      StatusCode::kCancelled, "nothing was written");
  none();
}

}  // namespace test_recover
