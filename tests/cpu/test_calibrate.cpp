// Block-wise calibration (pipeline/calibrate.hpp, CLUSCOMP.md §2) on a tiny random LLaMA compressed
// with our pipeline: every block's loss drops and the calibrated model is closer to the teacher
// than clustering alone; only centroids change; the run is deterministic across thread counts;
// an interrupted run (cancelled or SIGKILLed) resumes to a byte-identical file; work files are
// not reused for another text of the same length or a changed teacher under the same name, but
// are after a non-finite loss at another lr; bad input (a student from another model, too few
// tokens, too little memory or a size overflow, a window past the context, a student without
// clustered matrices, a non-finite loss) gives a clear error and no output.
// Seeds are fixed (kSeed, token seed 5, options.seed).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/calibrate.hpp"
#include "cluscomp/pipeline/compress.hpp"
#include "support/model_diff.hpp"
#include "support/require_error.hpp"
#include "support/test_data.hpp"
#include "support/tiny_llama.hpp"

namespace test_calibrate {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::file_bytes;
using cluscomp_test::require_error;
using cluscomp_test::TempDir;

namespace {

constexpr uint32_t kSeed = 4243;

cluscomp_test::TinyLlama make_tiny(uint32_t seed = kSeed) {
  cluscomp_test::TinyLlamaOptions o;
  o.seed = seed;
  o.vocab = 40;
  o.context = 32;
  return cluscomp_test::make_tiny_llama(o);
}

/// The teacher's GGUF bytes, with a tokenizer: the student embeds it and the outputs must keep it.
/// (Its bos/eos ids are part of the config, so every teacher of a test is written this way.)
std::vector<unsigned char> teacher_gguf(const cluscomp_test::TinyLlama& t) {
  cluscomp_test::TinyGgufOptions go;
  go.tokenizer = true;
  return cluscomp_test::write_tiny_gguf(t, go);
}

struct Fixture {
  TempDir dir;
  cluscomp_test::TinyLlama tiny = make_tiny();
  std::string gguf = (dir / "tiny.gguf").string();
  std::string student = (dir / "student.safetensors").string();
  std::vector<int32_t> tokens = cluscomp_test::pattern_tokens(600, 40);
  Fixture() {
    cluscomp_test::write_bytes(gguf, teacher_gguf(tiny));
    CompressOptions o;
    for (auto& s : o.per_kind) {
      s.d = 4;
      s.k = 64;  // coarse on purpose: clustering alone leaves a large error for calibration to fix
    }
    o.iterations = 4;
    o.seed = 99;
    o.threads = 2;
    compress_model(read_source_model(gguf), student, o);
  }
  CalibrateOptions options() const {
    CalibrateOptions c;
    c.samples = 6;
    c.window = 24;
    c.epochs = 8;
    c.lr = 1e-2f;
    c.threads = 2;
    return c;
  }
};

/// Mean squared difference of the final (normed) hidden states of `m` and `ref` over the windows
/// of `tokens` starting at `offsets`.
double hidden_mse(LlamaModel& m, LlamaModel& ref, const std::vector<int32_t>& tokens,
                  const std::vector<int64_t>& offsets, int64_t window) {
  const int64_t H = ref.config().hidden_size;
  double e = 0;
  int64_t cnt = 0;
  for (int64_t start : offsets) {
    const std::vector<int32_t> ids(tokens.begin() + start, tokens.begin() + start + window);
    std::vector<float> a(static_cast<size_t>(window * H)), b(a.size());
    KvCache c1 = m.make_cache(window), c2 = ref.make_cache(window);
    m.forward_hidden(ids.data(), window, c1, a.data());
    ref.forward_hidden(ids.data(), window, c2, b.data());
    for (size_t i = 0; i < a.size(); ++i) e += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    cnt += static_cast<int64_t>(a.size());
  }
  return e / static_cast<double>(cnt);
}

}  // namespace

TEST_CASE("calibrate: every block's loss drops, the model moves toward the teacher, only centroids change",
          "[pipeline][calibrate]") {
  Fixture fx;
  INFO("seed " << kSeed);
  LlamaModel teacher = load_llama_model(fx.gguf);
  const std::string out = (fx.dir / "cal.safetensors").string();
  int epochs_seen = 0;
  const CalibrateReport rep = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, fx.options(),
                                              [&](const CalibrateProgress& p) {
                                                epochs_seen += p.stage == CalibrateProgress::Stage::kEpochDone;
                                                return true;
                                              });
  REQUIRE(rep.blocks.size() == 2);
  CHECK(epochs_seen == 2 * 8);
  for (const CalibrateBlockReport& b : rep.blocks) {
    INFO("block " << b.block << " before " << b.loss_before << " after " << b.loss_after);
    REQUIRE(b.epoch_loss.size() == 8);
    CHECK(std::isfinite(b.loss_before));
    // Training reduces the block's output error by a clear margin, not by rounding noise.
    CHECK(b.loss_after < 0.8 * b.loss_before);
    CHECK(b.epoch_loss.back() < b.epoch_loss.front());
    CHECK_FALSE(b.reverted);
  }
  CHECK(rep.trainable == 14 * 64 * 4);
  CHECK(rep.resumed == 0);
  CHECK_FALSE(std::filesystem::exists(out + ".work"));

  // Only centroids changed: same codes, same shapes and dtypes, same dense tensors.
  const CluscompModel before = read_cluscomp_model(fx.student), after = read_cluscomp_model(out);
  CHECK(cluscomp_test::changed_codebooks_only_centroids(before, after) == 14);
  CHECK(after.metadata.count("calibrate.settings") == 1);
  CHECK(after.metadata.at("compress.method") == "cluscomp");
  // The embedded tokenizer (and config) stay: the calibrated file tokenises on its own.
  REQUIRE(before.metadata.count(kCluscompTokenizerKey) == 1);
  CHECK(after.metadata.at(kCluscompTokenizerKey) == before.metadata.at(kCluscompTokenizerKey));
  CHECK(after.metadata.at(kCluscompConfigKey) == before.metadata.at(kCluscompConfigKey));

  // Through the runtime, loaded from the file: on the calibration windows the calibrated model's
  // final hidden states are much closer to the teacher's than clustering alone (end to end: the
  // trained codebooks are in the file, under the right names, and the runtime uses them). With 6
  // windows of 24 tokens on a random tiny model this is an in-sample check; generalisation is
  // measured on the real model (scripts/bench.sh calibrate, docs/results.md).
  const CalibrateOptions o = fx.options();
  const std::vector<int64_t> offsets =
      calibrate_detail::window_offsets(static_cast<int64_t>(fx.tokens.size()), o.window, o.samples, o.seed);
  LlamaModel clustered = load_llama_model(fx.student), calibrated = load_llama_model(out);
  const double e0 = hidden_mse(clustered, teacher, fx.tokens, offsets, o.window);
  const double e1 = hidden_mse(calibrated, teacher, fx.tokens, offsets, o.window);
  INFO("final hidden MSE on the calibration windows: clustered " << e0 << ", calibrated " << e1);
  CHECK(e1 < 0.5 * e0);
}

TEST_CASE("calibrate: deterministic across thread counts; aug_loss trains too", "[pipeline][calibrate]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  const std::filesystem::path a = fx.dir / "a.safetensors", b = fx.dir / "b.safetensors";
  CalibrateOptions o = fx.options();
  o.epochs = 2;
  calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, a.string(), o);
  o.threads = 1;
  calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, b.string(), o);
  CHECK(file_bytes(a) == file_bytes(b));

  CalibrateOptions aug = fx.options();
  aug.aug_loss = true;
  const CalibrateReport r = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, (fx.dir / "aug.safetensors").string(), aug);
  for (const CalibrateBlockReport& br : r.blocks) CHECK(br.loss_after < 0.8 * br.loss_before);
  CHECK(file_bytes(fx.dir / "aug.safetensors") != file_bytes(a));
}

TEST_CASE("calibrate: an interrupted run resumes to a byte-identical file", "[pipeline][calibrate][resume]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  const CalibrateOptions o = fx.options();
  const std::filesystem::path a = fx.dir / "a.safetensors", b = fx.dir / "b.safetensors", c = fx.dir / "c.safetensors";
  const CalibrateReport ra = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, a.string(), o);

  // Cancelled after block 0: no output, block 0 kept.
  require_error(
      [&] {
        calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, b.string(), o, [](const CalibrateProgress& p) {
          return !(p.stage == CalibrateProgress::Stage::kBlockDone && p.block == 0);
        });
      },
      StatusCode::kCancelled, "cancelled in block 0");
  CHECK_FALSE(std::filesystem::exists(b));
  CHECK(std::filesystem::exists(b.string() + ".work/block_0.safetensors"));
  int trained = 0;
  const CalibrateReport rb = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, b.string(), o,
                                             [&](const CalibrateProgress& p) {
                                               trained += p.stage == CalibrateProgress::Stage::kBlockDone && !p.resumed;
                                               return true;
                                             });
  CHECK(rb.resumed == 1);
  CHECK(trained == 1);
  CHECK(rb.blocks[0].resumed);
  CHECK(rb.blocks[0].loss_after == ra.blocks[0].loss_after);
  CHECK(rb.blocks[1].loss_after == ra.blocks[1].loss_after);
  CHECK(file_bytes(a) == file_bytes(b));

  // SIGKILL in block 1, then resume.
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    try {
      calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, c.string(), o, [](const CalibrateProgress& p) {
        if (p.block == 1 && p.stage == CalibrateProgress::Stage::kEpochDone) raise(SIGKILL);
        return true;
      });
    } catch (...) {
    }
    _exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK_FALSE(std::filesystem::exists(c));
  const CalibrateReport rc = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, c.string(), o);
  CHECK(rc.resumed == 1);
  CHECK(file_bytes(a) == file_bytes(c));

  // Work files of other settings are not reused.
  CalibrateOptions other = o;
  other.seed = 77;
  require_error(
      [&] {
        calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, b.string() + "2", o, [](const CalibrateProgress& p) {
          return p.stage != CalibrateProgress::Stage::kBlockDone;
        });
      },
      StatusCode::kCancelled, "cancelled");
  const CalibrateReport ro = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, b.string() + "2", other);
  CHECK(ro.resumed == 0);
}

namespace {

/// Runs calibrate into `out` and cancels it when block 0 is done; returns whether block 0 was
/// resumed from the work directory.
bool block0_resumed(LlamaModel& teacher, const std::string& teacher_id, const Fixture& fx,
                    const std::vector<int32_t>& tokens, const std::string& out, const CalibrateOptions& o) {
  bool resumed = false;
  require_error(
      [&] {
        calibrate_model(teacher, teacher_id, fx.student, tokens, out, o, [&](const CalibrateProgress& p) {
          if (p.stage != CalibrateProgress::Stage::kBlockDone) return true;
          resumed = p.resumed;
          return false;
        });
      },
      StatusCode::kCancelled, "cancelled in block 0");
  return resumed;
}

/// The tiny teacher with one value of `tensor` changed, loaded from `path`.
LlamaModel changed_teacher(const Fixture& fx, const std::string& tensor, const std::string& path) {
  cluscomp_test::TinyLlama t = fx.tiny;
  t.w.at(tensor)[5] += 0.25f;
  cluscomp_test::write_bytes(path, teacher_gguf(t));
  return load_llama_model(path);
}

}  // namespace

TEST_CASE("calibrate: work files are kept only for the same text and teacher content", "[pipeline][calibrate][resume]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  CalibrateOptions o = fx.options();
  o.epochs = 2;
  const std::string out = (fx.dir / "out.safetensors").string();
  CHECK_FALSE(block0_resumed(teacher, fx.gguf, fx, fx.tokens, out, o));
  CHECK(block0_resumed(teacher, fx.gguf, fx, fx.tokens, out, o));
  // Another text with the same number of tokens: block 0 trains again.
  std::vector<int32_t> other_text = fx.tokens;
  other_text[300] = (other_text[300] + 1) % 40;
  CHECK_FALSE(block0_resumed(teacher, fx.gguf, fx, other_text, out, o));
  CHECK_FALSE(block0_resumed(teacher, fx.gguf, fx, fx.tokens, out, o));
  // A teacher whose block 0 changed, passed under the same id (a file rewritten in place).
  {
    LlamaModel t0 = changed_teacher(fx, "model.layers.0.self_attn.q_proj.weight", (fx.dir / "t0.gguf").string());
    CHECK_FALSE(block0_resumed(t0, fx.gguf, fx, fx.tokens, out, o));
  }
  CHECK_FALSE(block0_resumed(teacher, fx.gguf, fx, fx.tokens, out, o));
  // A teacher that differs only in block 1 keeps block 0 (it does not depend on block 1), and the
  // resumed output is the same bytes as a fresh run with that teacher; the path does not matter.
  LlamaModel t1 = changed_teacher(fx, "model.layers.1.mlp.down_proj.weight", (fx.dir / "t1.gguf").string());
  const CalibrateReport r1 = calibrate_model(t1, "elsewhere/t1.gguf", fx.student, fx.tokens, out, o);
  CHECK(r1.resumed == 1);
  const std::string fresh = (fx.dir / "fresh.safetensors").string();
  CHECK(calibrate_model(t1, fx.gguf, fx.student, fx.tokens, fresh, o).resumed == 0);
  // calibrate.settings names the teacher id it was given: compare the tensors and the rest.
  const CluscompModel a = read_cluscomp_model(out), b = read_cluscomp_model(fresh);
  for (const auto& kv : b.clustered) CHECK(a.clustered.at(kv.first).centroid_bytes() == kv.second.centroid_bytes());
  nlohmann::json sa = nlohmann::json::parse(a.metadata.at("calibrate.settings")),
                 sb = nlohmann::json::parse(b.metadata.at("calibrate.settings"));
  CHECK(sa.at("teacher") == "elsewhere/t1.gguf");
  sa.erase("teacher");
  sb.erase("teacher");
  CHECK(sa == sb);
}

TEST_CASE("calibrate: after a non-finite loss, a rerun at a lower lr keeps the finished blocks",
          "[pipeline][calibrate][resume]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  CalibrateOptions o = fx.options();
  o.epochs = 2;
  const std::string ref = (fx.dir / "ref.safetensors").string(), out = (fx.dir / "out.safetensors").string();
  calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, ref, o);

  // Diverging from the start: nothing to keep, and the message says so.
  CalibrateOptions huge = o;
  huge.lr = 1e30f;
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, huge); },
                StatusCode::kInvalidArgument,
                "non-finite loss in block 0, epoch 1, step 2 (try a lower --lr); no block is finished yet");
  // Block 0 finished at o.lr, then block 1 diverges: block 0 is kept.
  CHECK_FALSE(block0_resumed(teacher, fx.gguf, fx, fx.tokens, out, o));
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, huge); },
                StatusCode::kInvalidArgument,
                "non-finite loss in block 1, epoch 1, step 2 (try a lower --lr); block 0 is kept in " + out +
                    ".work: a rerun resumes at block 1");
  // The rerun at a lower lr resumes block 0 (with its own lr) and trains block 1 at the new lr.
  CalibrateOptions lower = o;
  lower.lr = o.lr / 4;
  int64_t block_done = 0;
  const CalibrateReport r = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, lower,
                                            [&](const CalibrateProgress& p) {
                                              if (p.stage == CalibrateProgress::Stage::kBlockDone)
                                                CHECK(p.lr == (block_done++ == 0 ? o.lr : lower.lr));
                                              return true;
                                            });
  CHECK(block_done == 2);
  REQUIRE(r.blocks.size() == 2);
  CHECK(r.resumed == 1);
  CHECK(r.blocks[0].resumed);
  CHECK(r.blocks[0].lr == o.lr);
  CHECK_FALSE(r.blocks[1].resumed);
  CHECK(r.blocks[1].lr == lower.lr);
  // Block 0's codebooks are the o.lr run's; block 1's differ (another lr); the settings list both.
  const CluscompModel a = read_cluscomp_model(ref), b = read_cluscomp_model(out);
  int block1_changed = 0;
  for (const auto& kv : a.clustered) {
    const bool same = b.clustered.at(kv.first).centroid_bytes() == kv.second.centroid_bytes();
    if (kv.first.rfind("model.layers.0.", 0) == 0)
      CHECK(same);
    else
      block1_changed += !same;
  }
  CHECK(block1_changed == 7);
  const nlohmann::json sa = nlohmann::json::parse(a.metadata.at("calibrate.settings")),
                       sb = nlohmann::json::parse(b.metadata.at("calibrate.settings"));
  CHECK(sa.count("block_lr") == 0);
  CHECK(sb.at("block_lr") == nlohmann::json::array({o.lr, lower.lr}));
  CHECK(sb.at("lr") == lower.lr);
}

TEST_CASE("calibrate: training that does not lower a block's loss is not kept", "[pipeline][calibrate]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  CalibrateOptions o = fx.options();
  o.lr = 1.0f;  // steps far larger than the centroids: every block ends worse than it started
  o.epochs = 1;
  const std::string out = (fx.dir / "bad_lr.safetensors").string();
  const CalibrateReport rep = calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, o);
  for (const CalibrateBlockReport& b : rep.blocks) {
    INFO("block " << b.block << " first epoch " << b.epoch_loss.at(0) << " before " << b.loss_before);
    CHECK(b.reverted);
    CHECK(b.loss_after == b.loss_before);
  }
  const CluscompModel before = read_cluscomp_model(fx.student), after = read_cluscomp_model(out);
  for (const auto& kv : before.clustered) CHECK(after.clustered.at(kv.first).centroid_bytes() == kv.second.centroid_bytes());
}

TEST_CASE("calibrate: bad input gives a clear error and no output", "[pipeline][calibrate][errors]") {
  Fixture fx;
  LlamaModel teacher = load_llama_model(fx.gguf);
  const std::string out = (fx.dir / "out.safetensors").string();
  const CalibrateOptions o = fx.options();
  auto none = [&] { CHECK_FALSE(std::filesystem::exists(out)); };

  // Text shorter than one window.
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, cluscomp_test::pattern_tokens(10, 40), out, o); },
                StatusCode::kInvalidArgument, "shorter than one window of 24");
  none();
  // Window past the context (32).
  CalibrateOptions wide = o;
  wide.window = 64;
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, wide); },
                StatusCode::kInvalidArgument, "exceeds the model's context of 32");
  none();
  // Not enough memory for the streams: said before any work.
  CalibrateOptions tight = o;
  tight.memory_budget = 1000;
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, tight); },
                StatusCode::kOutOfMemory, "lower --samples or --window");
  none();
  CHECK_FALSE(std::filesystem::exists(out + ".work"));
  // Samples far past memory, or past 64 bits: said before anything sized by them is allocated.
  CalibrateOptions many = o;
  many.samples = int64_t{1} << 40;  // 8 TiB of window offsets alone
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, many); },
                StatusCode::kOutOfMemory, "lower --samples or --window");
  many.samples = int64_t{1} << 62;
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, fx.tokens, out, many); },
                StatusCode::kInvalidArgument, "4611686018427387904 samples x 24 tokens of activations: size overflows");
  none();
  // A token outside the vocabulary.
  std::vector<int32_t> bad = fx.tokens;
  bad[17] = 40;
  require_error([&] { calibrate_model(teacher, fx.gguf, fx.student, bad, out, o); }, StatusCode::kOutOfRange,
                "token 17 (id 40)");
  // A student compressed from another model.
  {
    const std::string other_gguf = (fx.dir / "other.gguf").string(), other = (fx.dir / "other.safetensors").string();
    cluscomp_test::write_bytes(other_gguf, cluscomp_test::write_tiny_gguf(make_tiny(kSeed + 1)));
    CompressOptions co;
    for (auto& s : co.per_kind) s.k = 16;
    co.iterations = 1;
    compress_model(read_source_model(other_gguf), other, co);
    require_error([&] { calibrate_model(teacher, fx.gguf, other, fx.tokens, out, o); }, StatusCode::kInvalidArgument,
                  "from a different model");
    none();
  }
  // A student without clustered matrices (RTN).
  {
    const std::string rtn = (fx.dir / "rtn.safetensors").string();
    CompressOptions ro;
    ro.method = CompressMethod::kRtn;
    ro.rtn.group_size = 32;
    compress_model(read_source_model(fx.gguf), rtn, ro);
    require_error([&] { calibrate_model(teacher, fx.gguf, rtn, fx.tokens, out, o); }, StatusCode::kInvalidArgument,
                  "no clustered matrices");
    none();
  }
  // A non-finite loss before training (a NaN weight in the teacher's block 1): names the block,
  // says a lower lr will not help; block 0's trained state stays in the work directory.
  {
    cluscomp_test::TinyLlama nan_tiny = fx.tiny;
    nan_tiny.w.at("model.layers.1.mlp.down_proj.weight")[5] = std::numeric_limits<float>::quiet_NaN();
    const std::string nan_gguf = (fx.dir / "nan.gguf").string();
    cluscomp_test::write_bytes(nan_gguf, cluscomp_test::write_tiny_gguf(nan_tiny));
    LlamaModel nan_teacher = load_llama_model(nan_gguf);
    require_error([&] { calibrate_model(nan_teacher, nan_gguf, fx.student, fx.tokens, out, o); },
                  StatusCode::kInvalidArgument,
                  "non-finite loss in block 1 before training (the teacher's or the student's outputs are not "
                  "finite; a lower --lr will not help); block 0 is kept in " + out + ".work");
    none();
    CHECK(std::filesystem::exists(out + ".work/block_0.safetensors"));
  }
}

}  // namespace test_calibrate
