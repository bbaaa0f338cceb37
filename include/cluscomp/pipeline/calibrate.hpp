#pragma once
/// Block-wise codebook finetuning ("calibration", CLUSCOMP.md §2) of a clustered model against
/// the model it was compressed from.
///
/// The loop, exactly as the reference runs it:
///  - `samples` windows of `window` tokens are cut from the calibration tokens at seeded random
///    offsets (fixed order, batch 1);
///  - two activation streams start from the same embedding output (the teacher's): x_fp goes
///    through the original blocks, x_q through the already-tuned compressed blocks;
///  - for block i in order: targets y_fp = Block_fp(x_fp) for every sample; with aug_loss also
///    y_aug = Block_fp(x_q); then only the codebooks of block i's clustered matrices train (codes,
///    norms, dense layers frozen) to minimise MSE(Block_q(x_q), y_fp) (+ MSE(Block_q(x_q), y_aug))
///    with AdamW (reference hyperparameters by default), `epochs` passes over the samples in the
///    same order; then the trained codebooks are rounded to their storage dtype, x_q =
///    Block_q(x_q) with the stored codebooks and x_fp = y_fp. One block trains at a time.
///  - One deviation from the reference: when the trained, rounded codebooks do not lower the
///    block's loss over the samples, the untrained ones are kept (CalibrateBlockReport::reverted),
///    so calibration never makes a block worse on its own data.
///
/// Resume: after every block its trained codebooks are written atomically to
/// `<work_dir>/block_<i>.safetensors` with the job they were made for. A later run of the same
/// job reuses them and recomputes the streams by forward passes (deterministic), so a resumed run
/// with unchanged settings writes the same bytes as an uninterrupted one. The job covers what
/// makes a finished block wrong for this run: the teacher's config, embedding and blocks 0..i (a
/// content digest, not the path), the student file (path, size, mtime), the calibration tokens
/// (count and digest), samples, window, seed, aug_loss, epochs and the AdamW settings other than
/// lr. The learning rate is recorded per block instead (CalibrateBlockReport::lr): a rerun at
/// another lr, the advice after a non-finite loss, keeps the finished blocks and trains the rest at
/// the new lr; the output's `calibrate.settings` then lists every block's lr (`block_lr`). The
/// output (the student file with the trained codebooks, every other tensor unchanged) is written
/// atomically at the end; the work directory is then removed.
///
/// Numerics: fp32 activations, losses and gradients (model/train_block.hpp), fp32 master
/// codebooks, loss sums reported in double. Deterministic for a given seed whatever the thread
/// count (every op of the block is).
///
/// Errors (cluscomp::Error naming the problem, nothing printed, no partial output): a student
/// from a different model (config or embedding mismatch), a student without clustered matrices,
/// calibration tokens shorter than one window, a window longer than the context, streams that do
/// not fit the available memory or whose size overflows (checked before any allocation sized by
/// samples or window), a non-finite loss (names the block, epoch and step, or says the untrained
/// block is already non-finite; finished blocks stay in the work directory), kCancelled from the
/// callback.

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/autograd/adamw.hpp"
#include "cluscomp/model/train_block.hpp"
#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/host/digest.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/work_files.hpp"

CLUSCOMP_NAMESPACE_BEGIN

struct CalibrateOptions {
  // Data. The reference uses 128 windows of 2048 tokens and 20 epochs; these defaults finish the
  // 135M demo model in minutes on two cores (docs/results.md, "Calibration settings").
  int64_t samples = 16;
  int64_t window = 256;
  int epochs = 2;
  bool aug_loss = false;
  // AdamW, the reference's values. lr is not part of the resume key (see the file comment).
  float lr = 5e-3f;
  float weight_decay = 0.1f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  uint64_t seed = 1234;  // window offsets
  int threads = 0;       // 0 = hardware concurrency
  std::string work_dir;  // default: <out>.work
  /// Bytes the run may use for its activation streams and saved activations; 0 = the system's
  /// available memory (MemAvailable) minus what the loaded models already hold.
  int64_t memory_budget = 0;
  /// Where the work runs. Only kCpu has a backend today; any other device is an Error
  /// (backend_status, host/device_status.hpp) before any work, never a silent CPU fallback.
  /// Last member, so that existing aggregate initialisations keep their meaning.
  Device device = Device::kCpu;
};

struct CalibrateProgress {
  enum class Stage { kTargets, kStep, kEpochDone, kBlockDone };
  Stage stage = Stage::kTargets;
  int64_t block = 0, blocks = 0;
  int epoch = 0, epochs = 0;
  int64_t step = 0, steps = 0;  // sample within the epoch
  double loss = 0;              // kStep: this step's loss; kEpochDone: the epoch's mean
  double loss_before = 0;       // kBlockDone: mean loss of the untrained block
  double loss_after = 0;        // kBlockDone: mean loss with the stored (rounded) codebooks
  bool reverted = false;        // kBlockDone: training did not help, the untrained codebooks stay
  bool resumed = false;         // kBlockDone: taken from the work directory
  float lr = 0;                 // kBlockDone: the lr the block was trained with (a resumed block's own)
  double block_elapsed_s = 0, total_elapsed_s = 0, total_eta_s = 0;
};
/// Return false to cancel (Error kCancelled; finished blocks stay in the work directory).
using CalibrateCallback = std::function<bool(const CalibrateProgress&)>;

struct CalibrateBlockReport {
  int64_t block = 0;
  bool resumed = false;
  double loss_before = 0;            // mean MSE over the samples before training
  std::vector<double> epoch_loss;    // mean training loss per epoch (empty when resumed)
  double loss_after = 0;             // mean MSE after training, stored codebooks
  bool reverted = false;             // training did not lower the loss: untrained codebooks kept
  double seconds = 0;                // training time of this block (0 when resumed)
  float lr = 0;                      // the lr it was trained with (a resumed block: the earlier run's)
};

struct CalibrateReport {
  std::vector<CalibrateBlockReport> blocks;
  int64_t trainable = 0;        // trained codebook values over all blocks
  int64_t parameters = 0;       // every parameter of the model (for the share)
  int64_t stream_bytes = 0;     // activation streams held during the run
  int64_t saved_bytes = 0;      // saved activations of one training step
  int64_t peak_rss_bytes = 0;   // the process's peak resident set (getrusage)
  int64_t resumed = 0;
  double seconds = 0;
  int64_t output_bytes = 0;
};

namespace calibrate_detail {

/// Error(kInvalidArgument) prefixed by `what` when window < 2 or samples < 1.
inline void check_window_counts(int64_t window, int64_t samples, const std::string& what) {
  if (window < 2) throw Error(StatusCode::kInvalidArgument, what + ": window must be at least 2 tokens");
  if (samples < 1) throw Error(StatusCode::kInvalidArgument, what + ": samples must be at least 1");
}

/// Bytes of `streams` activation streams of samples x window x hidden fp32 values. Throws
/// Error(kInvalidArgument) for bad counts (check_window_counts) or when the size does not fit in
/// int64 (the message names samples and window), so callers can check memory before they allocate
/// anything sized by these counts.
inline int64_t stream_bytes(int64_t samples, int64_t window, int64_t hidden, int64_t streams, const std::string& what) {
  check_window_counts(window, samples, what);
  const std::string size = what + ": " + std::to_string(samples) + " samples x " + std::to_string(window) +
                           " tokens of activations";
  uint64_t b = sizeof(float);
  for (int64_t f : {samples, window, hidden, streams}) b = checked_mul(b, static_cast<uint64_t>(f), size.c_str());
  if (b > static_cast<uint64_t>(INT64_MAX)) throw Error(StatusCode::kInvalidArgument, size + ": size overflows 63 bits");
  return static_cast<int64_t>(b);
}

/// Window starts: `samples` draws from [0, tokens - window] with a 64-bit Mersenne twister seeded
/// by `seed`, its high 32 bits mapped by multiply-shift (no library distribution, so the offsets are the same on
/// every platform). Throws kInvalidArgument when the text is shorter than one window.
inline std::vector<int64_t> window_offsets(int64_t tokens, int64_t window, int64_t samples, uint64_t seed,
                                           const std::string& what = "calibrate") {
  check_window_counts(window, samples, what);
  if (tokens < window)
    throw Error(StatusCode::kInvalidArgument, what + ": the calibration text has " + std::to_string(tokens) +
                                                  " tokens, shorter than one window of " + std::to_string(window));
  const uint64_t range = static_cast<uint64_t>(tokens - window + 1);
  if (range > (uint64_t{1} << 32))
    throw Error(StatusCode::kInvalidArgument, what + ": more than 2^32 calibration tokens");
  std::mt19937_64 rng(seed);
  std::vector<int64_t> out(static_cast<size_t>(samples));
  for (auto& o : out) o = static_cast<int64_t>(((rng() >> 32) * range) >> 32);  // in [0, range)
  return out;
}

/// The embedding rows of every window: out (samples, window, H) from embed (V, H) and the tokens
/// at `offsets`. Error(kOutOfRange) naming a token id outside the vocabulary.
inline void embed_windows(const std::vector<float>& embed, int64_t V, int64_t H, const std::vector<int32_t>& tokens,
                          const std::vector<int64_t>& offsets, int64_t window, float* out, const std::string& what) {
  for (size_t s = 0; s < offsets.size(); ++s)
    for (int64_t t = 0; t < window; ++t) {
      const int32_t id = tokens[static_cast<size_t>(offsets[s] + t)];
      if (id < 0 || id >= V)
        throw Error(StatusCode::kOutOfRange, what + ": token id " + std::to_string(id) +
                                                 " is outside the vocabulary of " + std::to_string(V));
      std::copy(embed.begin() + static_cast<int64_t>(id) * H, embed.begin() + (static_cast<int64_t>(id) + 1) * H,
                out + (static_cast<int64_t>(s) * window + t) * H);
    }
}

/// MemAvailable from /proc/meminfo in bytes; 0 when unknown.
inline int64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

/// Checks, before window_offsets allocates them, that `samples` window offsets (int64 each) fit
/// in memory: throws Error naming samples, kInvalidArgument when their size overflows 63 bits,
/// kOutOfMemory when it exceeds `budget` bytes (0: available_memory(); unknown: not checked).
inline void check_offsets_memory(int64_t samples, const std::string& what, int64_t budget = 0) {
  if (samples < 1) throw Error(StatusCode::kInvalidArgument, what + ": samples must be at least 1");
  const std::string size = what + ": " + std::to_string(samples) + " samples of window offsets";
  const uint64_t b = checked_mul(static_cast<uint64_t>(samples), sizeof(int64_t), size.c_str());
  if (b > static_cast<uint64_t>(INT64_MAX)) throw Error(StatusCode::kInvalidArgument, size + ": size overflows 63 bits");
  if (budget <= 0) budget = available_memory();
  if (budget > 0 && static_cast<int64_t>(b) > budget) {
    char buf[160];
    std::snprintf(buf, sizeof buf, ": need %.2f GiB, only %.2f GiB available: lower --samples",
                  static_cast<double>(b) / 1073741824.0, budget / 1073741824.0);
    throw Error(StatusCode::kOutOfMemory, size + buf);
  }
}

inline int64_t peak_rss() {
  struct rusage u {};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

inline const char* const kProjectionNames[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                 "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                                 "mlp.down_proj"};

inline std::array<Linear*, 7> projections(LlamaBlock& b) { return {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}; }

/// Mean squared error of y against t (n values), in double.
inline double mse(const float* y, const float* t, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(y[i]) - t[i];
    s += d * d;
  }
  return s / static_cast<double>(n);
}

/// Adds dMSE/dy = 2 (y - t) / n to g; returns the MSE (double).
inline double add_mse_grad(const float* y, const float* t, int64_t n, float* g) {
  const float scale = 2.0f / static_cast<float>(n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float d = y[i] - t[i];
    s += static_cast<double>(d) * d;
    g[i] += scale * d;
  }
  return s / static_cast<double>(n);
}

/// Continues digest `h` over one layer's weights: its dense values or its codebook (shape,
/// centroid bytes, code words), then its bias.
inline uint64_t digest_linear(const Linear& l, uint64_t h) {
  if (l.kind() == LinearKind::kCodebook) {
    const CodebookTensor& t = *l.codebook();
    const CodebookShape& sh = t.shape();
    const int64_t dims[] = {sh.out, sh.in, sh.d, sh.k, sh.num_codebooks, sh.code_bits,
                            static_cast<int64_t>(sh.centroid_dtype)};
    h = fnv1a(dims, sizeof dims, h);
    h = fnv1a(t.centroid_bytes().data(), t.centroid_bytes().size(), h);
    h = fnv1a(t.code_words().data(), t.code_words().size() * sizeof(uint32_t), h);
  } else {
    const int64_t dims[] = {l.out_features(), l.in_features()};
    h = fnv1a(dims, sizeof dims, h);
    h = fnv1a(l.dense_weight(), static_cast<size_t>(l.out_features() * l.in_features()) * sizeof(float), h);
  }
  return fnv1a(l.bias().data(), l.bias().size() * sizeof(float), h);
}

/// Continues digest `h` over every weight of a block (norms, then q, k, v, o, gate, up, down).
inline uint64_t digest_block(const LlamaBlock& b, uint64_t h) {
  h = fnv1a(b.attn_norm.data(), b.attn_norm.size() * sizeof(float), h);
  h = fnv1a(b.ffn_norm.data(), b.ffn_norm.size() * sizeof(float), h);
  for (const Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) h = digest_linear(*l, h);
  return h;
}

inline std::string file_identity(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto size = fs::is_regular_file(path, ec) ? fs::file_size(path, ec) : 0;
  const auto mtime = fs::last_write_time(path, ec).time_since_epoch().count();
  return path + "|" + std::to_string(size) + "|" + std::to_string(static_cast<long long>(mtime));
}

}  // namespace calibrate_detail

/// Throws Error(kInvalidArgument) naming the first difference when `student` was not compressed
/// from `teacher`: the configs' shapes, or embeddings further apart than fp16/bf16 rounding
/// (relative 2^-7 per value, the coarsest storage cluscomp writes dense tensors in).
inline void check_same_model(const LlamaModel& teacher, const LlamaModel& student, const std::string& student_path) {
  const LlamaConfig &a = teacher.config(), &b = student.config();
  auto field = [&](const char* name, int64_t x, int64_t y) {
    if (x != y)
      throw Error(StatusCode::kInvalidArgument, "calibrate: " + student_path + " is from a different model (" + name +
                                                    " " + std::to_string(y) + ", the teacher has " + std::to_string(x) + ")");
  };
  field("hidden_size", a.hidden_size, b.hidden_size);
  field("intermediate_size", a.intermediate_size, b.intermediate_size);
  field("num_hidden_layers", a.num_hidden_layers, b.num_hidden_layers);
  field("num_attention_heads", a.num_attention_heads, b.num_attention_heads);
  field("num_key_value_heads", a.num_key_value_heads, b.num_key_value_heads);
  field("head_dim", a.head_dim, b.head_dim);
  field("vocab_size", a.vocab_size, b.vocab_size);
  const std::vector<float>&ea = teacher.weights().embed_fp32("calibrate (teacher)"),
                           &eb = student.weights().embed_fp32("calibrate (student)");
  for (size_t i = 0; i < ea.size(); ++i)
    if (!(std::fabs(ea[i] - eb[i]) <= std::ldexp(std::fabs(ea[i]), -7) + 1e-6f))
      throw Error(StatusCode::kInvalidArgument,
                  "calibrate: " + student_path + " is from a different model (embedding value " + std::to_string(i) +
                      " is " + std::to_string(eb[i]) + ", the teacher's is " + std::to_string(ea[i]) + ")");
}

/// Calibrates the clustered model at `student_path` (cluscomp format, as `cluscomp compress`
/// writes it) against `teacher` (the model it was compressed from) on `tokens` (the calibration
/// text, tokenised), and writes the result to `out_path`. `teacher_id` (e.g. its path) is recorded
/// in the output's metadata; resume identifies the teacher by its content. See the file comment.
inline CalibrateReport calibrate_model(LlamaModel& teacher, const std::string& teacher_id,
                                       const std::string& student_path, const std::vector<int32_t>& tokens,
                                       const std::string& out_path, const CalibrateOptions& o,
                                       const CalibrateCallback& progress = {}) {
  throw_if_error(backend_status(o.device, "calibrate"));
  namespace fs = std::filesystem;
  using namespace calibrate_detail;
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  if (out_path.empty()) throw Error(StatusCode::kInvalidArgument, "calibrate: empty output path");
  if (o.epochs < 1) throw Error(StatusCode::kInvalidArgument, "calibrate: epochs must be at least 1");
  if (!(o.lr > 0) || !(o.weight_decay >= 0))
    throw Error(StatusCode::kInvalidArgument, "calibrate: lr must be positive and weight decay not negative");
  const LlamaConfig& c = teacher.config();
  if (o.window > c.max_position_embeddings)
    throw Error(StatusCode::kInvalidArgument, "calibrate: window of " + std::to_string(o.window) +
                                                  " tokens exceeds the model's context of " +
                                                  std::to_string(c.max_position_embeddings));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= c.vocab_size)
      throw Error(StatusCode::kOutOfRange, "calibrate: token " + std::to_string(i) + " (id " + std::to_string(tokens[i]) +
                                               ") is outside the vocabulary of " + std::to_string(c.vocab_size));

  const CluscompModel cm = read_cluscomp_model(student_path);
  LlamaRuntimeOptions ro;
  ro.threads = o.threads;
  LlamaModel student = load_llama_cluscomp(student_path, ro);
  check_same_model(teacher, student, student_path);
  if (cm.clustered.empty())
    throw Error(StatusCode::kInvalidArgument, "calibrate: " + student_path + " has no clustered matrices to train");
  ThreadPool pool(o.threads);

  // Memory: the streams x_fp, x_q, y_fp, the untrained output (+ y_aug), one step's saved
  // activations and scratch. Checked before anything sized by samples or window is allocated
  // (window is at most the context here, samples is not bounded).
  const int64_t H = c.hidden_size, n = o.window;
  CalibrateReport rep;
  rep.stream_bytes = stream_bytes(o.samples, n, H, o.aug_loss ? 5 : 4, "calibrate");
  {
    autograd::TrainBlock probe(c, student.weights().blocks[0]);
    rep.saved_bytes = probe.saved_bytes(n);
  }
  // Only the streams can be huge (samples is unbounded; n is at most the context): the sum saturates.
  const int64_t need = rep.stream_bytes + std::min<int64_t>(rep.saved_bytes + 4 * n * H * 4, INT64_MAX - rep.stream_bytes);
  const int64_t budget = o.memory_budget > 0 ? o.memory_budget : available_memory();
  if (budget > 0 && need > budget) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "calibrate: %lld samples x %lld tokens need about %.2f GiB of activations (%.2f GiB of streams, "
                  "%.2f GiB per step), only %.2f GiB available: lower --samples or --window",
                  static_cast<long long>(o.samples), static_cast<long long>(n), need / 1073741824.0,
                  rep.stream_bytes / 1073741824.0, rep.saved_bytes / 1073741824.0, budget / 1073741824.0);
    throw Error(StatusCode::kOutOfMemory, buf);
  }
  const std::vector<int64_t> offsets =
      window_offsets(static_cast<int64_t>(tokens.size()), o.window, o.samples, o.seed);

  // The job a work file belongs to: every input and setting that makes a finished block wrong for
  // this run (see the file comment; lr is recorded per block instead). The teacher is identified
  // by content, not by teacher_id: block i depends on the config, the embedding and blocks 0..i,
  // so "teacher" is a digest chained block by block (a changed block j keeps blocks < j) over
  // exactly the values the loop reads, whatever file or format they came from. Hashing is one
  // serial pass over the weights (about 1.2 s per 135M fp32 parameters), small next to training.
  nlohmann::json job;
  job["student"] = file_identity(student_path);
  put_run_settings(job, o, true);
  job["aug_loss"] = o.aug_loss;
  job["tokens"] = {tokens.size(), digest_hex(fnv1a(tokens.data(), tokens.size() * sizeof(int32_t)))};
  const std::string config_text = llama_config_text(c);
  uint64_t teacher_digest = fnv1a(config_text.data(), config_text.size());
  const std::vector<float>& teacher_embed = teacher.weights().embed_fp32("calibrate (teacher)");
  teacher_digest = fnv1a(teacher_embed.data(), teacher_embed.size() * sizeof(float), teacher_digest);
  const fs::path work = open_work_dir(out_path, o.work_dir);
  std::error_code ec;

  // Streams (samples, n, hidden), from the teacher's embedding.
  const int64_t L = c.num_hidden_layers;
  const size_t sample_values = static_cast<size_t>(n * H);
  std::vector<float> x_fp(static_cast<size_t>(o.samples) * sample_values), x_q, y_fp(x_fp.size()), y_aug;
  std::vector<float> y_untrained(x_fp.size());  // the block's output before training
  const std::vector<float>& embed = teacher.weights().embed_fp32("calibrate (teacher)");
  embed_windows(embed, c.vocab_size, H, tokens, offsets, n, x_fp.data(), "calibrate");
  x_q = x_fp;
  if (o.aug_loss) y_aug.resize(x_fp.size());
  auto sample = [&](std::vector<float>& v, int64_t s) { return v.data() + static_cast<size_t>(s) * sample_values; };

  std::map<std::string, CodebookTensor> trained;  // every clustered matrix of the output
  for (const auto& kv : cm.clustered) trained.emplace(kv.first, kv.second);
  for (const LlamaBlock& b : teacher.weights().blocks) {
    for (const Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down})
      rep.parameters += l->out_features() * l->in_features() + static_cast<int64_t>(l->bias().size());
    rep.parameters += static_cast<int64_t>(b.attn_norm.size() + b.ffn_norm.size());
  }
  rep.parameters += static_cast<int64_t>(embed.size() + teacher.weights().final_norm.size());
  if (!teacher.weights().lm_head.shares_weight_with(teacher.weights().embed.get()))
    rep.parameters += teacher.weights().lm_head.out_features() * teacher.weights().lm_head.in_features();

  double trained_s = 0;
  int64_t trained_blocks = 0;
  std::vector<float> y(sample_values), dy(sample_values);
  for (int64_t bi = 0; bi < L; ++bi) {
    const auto t_block = Clock::now();
    CalibrateBlockReport br;
    br.block = bi;
    auto notify = [&](CalibrateProgress p) {
      if (!progress) return;
      p.block = bi;
      p.blocks = L;
      p.epochs = o.epochs;
      p.steps = o.samples;
      p.block_elapsed_s = since(t_block);
      p.total_elapsed_s = since(t_start);
      const double per_block = trained_blocks > 0 ? trained_s / trained_blocks : 0.0;
      p.total_eta_s = per_block * static_cast<double>(L - bi - (p.stage == CalibrateProgress::Stage::kBlockDone ? 1 : 0));
      if (!progress(p))
        throw Error(StatusCode::kCancelled, "calibrate: cancelled in block " + std::to_string(bi) + " of " +
                                                std::to_string(L) + "; finished blocks are kept in " + work.string());
    };
    // What a failed block leaves for a rerun (lr is not part of the job, so a rerun at a lower lr
    // keeps the finished blocks too).
    auto kept_blocks = [&]() -> std::string {
      if (bi == 0) return "; no block is finished yet";
      return (bi == 1 ? std::string("; block 0 is kept in ") : "; blocks 0.." + std::to_string(bi - 1) + " are kept in ") +
             work.string() + ": a rerun resumes at block " + std::to_string(bi);
    };
    const std::string prefix = "model.layers." + std::to_string(bi) + ".";
    LlamaBlock qb = student.weights().blocks[static_cast<size_t>(bi)];
    autograd::TrainBlock fp(c, teacher.weights().blocks[static_cast<size_t>(bi)]);
    {
      CalibrateProgress p;
      p.stage = CalibrateProgress::Stage::kTargets;
      notify(p);
    }
    for (int64_t s = 0; s < o.samples; ++s) {
      fp.forward(sample(x_fp, s), n, sample(y_fp, s), nullptr, &pool);
      if (o.aug_loss) fp.forward(sample(x_q, s), n, sample(y_aug, s), nullptr, &pool);
    }

    // Reuse the work file of a finished block, if it belongs to this job.
    teacher_digest = digest_block(teacher.weights().blocks[static_cast<size_t>(bi)], teacher_digest);
    job["teacher"] = digest_hex(teacher_digest);
    job["block"] = bi;
    const std::string job_str = job.dump();
    const fs::path wf = work / ("block_" + std::to_string(bi) + ".safetensors");
    bool reused = false;
    if (std::optional<WorkFile> found = find_work_file(wf, "calibrate.job", job_str, "calibrate.stats")) {
      try {
        CluscompModel& wm = found->model;
        auto ps = projections(qb);
        bool all = true;
        for (int k = 0; k < 7 && all; ++k) {
          if (ps[static_cast<size_t>(k)]->kind() != LinearKind::kCodebook) continue;
          auto it = wm.clustered.find(prefix + kProjectionNames[k] + ".weight");
          all = it != wm.clustered.end() && it->second.shape() == ps[static_cast<size_t>(k)]->codebook()->shape();
        }
        if (all) {
          // The statistics first: a work file without them is stale and must leave qb and
          // `trained` untouched (it is recomputed from the untrained block).
          const nlohmann::json& sj = found->stats;
          CalibrateBlockReport stats = br;
          stats.loss_before = sj.at("loss_before").get<double>();
          stats.loss_after = sj.at("loss_after").get<double>();
          stats.seconds = sj.at("seconds").get<double>();
          stats.reverted = sj.at("reverted").get<bool>();
          stats.lr = sj.at("lr").get<float>();
          for (int k = 0; k < 7; ++k) {
            Linear* l = ps[static_cast<size_t>(k)];
            if (l->kind() != LinearKind::kCodebook) continue;
            const std::string name = prefix + kProjectionNames[k] + ".weight";
            CodebookTensor t = std::move(wm.clustered.at(name));
            trained.erase(name);
            trained.emplace(name, t);
            *l = Linear::from_codebook(prefix + kProjectionNames[k], std::move(t), l->bias());
          }
          br = stats;
          reused = true;
        }
      } catch (const Error&) {
        reused = false;  // stale: train again and overwrite
      } catch (const nlohmann::json::exception&) {
        reused = false;
      }
    }

    const LlamaBlock untrained = qb;  // shares the tensors: cheap
    bool trainable = false;
    if (!reused) {
      br.lr = o.lr;
      autograd::TrainBlock q(c, qb);
      if (q.trainable_count() > 0) {
        trainable = true;
        rep.trainable += q.trainable_count();
        // Loss and outputs of the untrained block (kept in case training does not help).
        double before = 0;
        for (int64_t s = 0; s < o.samples; ++s) {
          q.forward(sample(x_q, s), n, sample(y_untrained, s), nullptr, &pool);
          before += mse(sample(y_untrained, s), sample(y_fp, s), n * H);
          if (o.aug_loss) before += mse(sample(y_untrained, s), sample(y_aug, s), n * H);
        }
        br.loss_before = before / static_cast<double>(o.samples);
        if (!std::isfinite(br.loss_before))
          throw Error(StatusCode::kInvalidArgument,
                      "calibrate: non-finite loss in block " + std::to_string(bi) +
                          " before training (the teacher's or the student's outputs are not finite; a lower --lr "
                          "will not help)" + kept_blocks());
        std::vector<autograd::Parameter> params = q.parameters();
        autograd::AdamWOptions ao;
        ao.lr = o.lr;
        ao.weight_decay = o.weight_decay;
        ao.beta1 = o.beta1;
        ao.beta2 = o.beta2;
        ao.eps = o.eps;
        autograd::AdamW opt(params, ao);
        autograd::TrainBlock::Saved saved;
        for (int e = 0; e < o.epochs; ++e) {
          double sum = 0;
          for (int64_t s = 0; s < o.samples; ++s) {
            q.zero_grad();
            q.forward(sample(x_q, s), n, y.data(), &saved, &pool);
            std::fill(dy.begin(), dy.end(), 0.0f);
            double loss = add_mse_grad(y.data(), sample(y_fp, s), n * H, dy.data());
            if (o.aug_loss) loss += add_mse_grad(y.data(), sample(y_aug, s), n * H, dy.data());
            if (!std::isfinite(loss))
              throw Error(StatusCode::kInvalidArgument,
                          "calibrate: non-finite loss in block " + std::to_string(bi) + ", epoch " + std::to_string(e + 1) +
                              ", step " + std::to_string(s + 1) + " (try a lower --lr)" + kept_blocks());
            q.backward(saved, dy.data(), nullptr, &pool);
            opt.step();
            sum += loss;
            CalibrateProgress p;
            p.stage = CalibrateProgress::Stage::kStep;
            p.epoch = e;
            p.step = s;
            p.loss = loss;
            notify(p);
          }
          br.epoch_loss.push_back(sum / static_cast<double>(o.samples));
          CalibrateProgress p;
          p.stage = CalibrateProgress::Stage::kEpochDone;
          p.epoch = e;
          p.loss = br.epoch_loss.back();
          notify(p);
        }
        q.write_back(qb);
      }
    } else {
      ++rep.resumed;
      for (const Linear* l : projections(qb))
        if (l->kind() == LinearKind::kCodebook) rep.trainable += l->codebook()->shape().num_centroid_values();
    }
    br.resumed = reused;

    // x_q through the block with its stored codebooks; x_fp = y_fp.
    {
      autograd::TrainBlock stored(c, qb);
      double after = 0;
      for (int64_t s = 0; s < o.samples; ++s) {
        stored.forward(sample(x_q, s), n, y.data(), nullptr, &pool);
        after += mse(y.data(), sample(y_fp, s), n * H);
        if (o.aug_loss) after += mse(y.data(), sample(y_aug, s), n * H);
        std::copy(y.begin(), y.end(), sample(x_q, s));
      }
      if (!reused) br.loss_after = after / static_cast<double>(o.samples);
    }
    // Training is kept only when it lowered the loss with the stored codebooks (a deviation from
    // the reference, which keeps whatever the last step left): a block is never made worse.
    if (trainable && !(br.loss_after < br.loss_before)) {
      qb = untrained;
      x_q.swap(y_untrained);
      br.loss_after = br.loss_before;
      br.reverted = true;
    }
    if (!reused) {
      br.seconds = since(t_block);
      trained_s += br.seconds;
      ++trained_blocks;
    }
    std::swap(x_fp, y_fp);

    if (!reused) {
      std::map<std::string, CodebookTensor> block_tensors;
      auto ps = projections(qb);
      for (int k = 0; k < 7; ++k) {
        const Linear* l = ps[static_cast<size_t>(k)];
        if (l->kind() != LinearKind::kCodebook) continue;
        const std::string name = prefix + kProjectionNames[k] + ".weight";
        block_tensors.emplace(name, *l->codebook());
        trained.erase(name);
        trained.emplace(name, *l->codebook());
      }
      nlohmann::json sj;
      sj["loss_before"] = br.loss_before;
      sj["loss_after"] = br.loss_after;
      sj["reverted"] = br.reverted;
      sj["seconds"] = br.seconds;
      sj["lr"] = br.lr;
      write_cluscomp_model(wf.string(), {}, block_tensors, {{"calibrate.job", job_str}, {"calibrate.stats", sj.dump()}});
    }
    rep.blocks.push_back(br);
    CalibrateProgress p;
    p.stage = CalibrateProgress::Stage::kBlockDone;
    p.loss_before = br.loss_before;
    p.loss_after = br.loss_after;
    p.resumed = reused;
    p.reverted = br.reverted;
    p.lr = br.lr;
    notify(p);
  }

  // The output: the student file with its clustered matrices replaced, plus what was done.
  std::map<std::string, std::string> meta = cm.caller_metadata();
  nlohmann::json cj;
  put_run_settings(cj, o, false);
  cj["aug_loss"] = o.aug_loss;
  cj["lr"] = o.lr;
  // Blocks resumed from a run at another lr: every block's lr (absent when all used this run's,
  // so a resumed run with unchanged settings writes the same bytes as an uninterrupted one).
  if (std::any_of(rep.blocks.begin(), rep.blocks.end(), [&](const CalibrateBlockReport& b) { return b.lr != o.lr; })) {
    std::vector<float> block_lr;
    for (const CalibrateBlockReport& b : rep.blocks) block_lr.push_back(b.lr);
    cj["block_lr"] = block_lr;
  }
  cj["student"] = student_path;
  cj["teacher"] = teacher_id;
  meta["calibrate.settings"] = cj.dump();
  write_cluscomp_model(out_path, cm.dense, trained, meta);
  rep.output_bytes = static_cast<int64_t>(fs::file_size(out_path));
  fs::remove_all(work, ec);  // best effort: the output is complete
  rep.seconds = since(t_start);
  rep.peak_rss_bytes = peak_rss();
  return rep;
}

CLUSCOMP_NAMESPACE_END
