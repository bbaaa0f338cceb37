#pragma once
/// End-to-end training of a clustered model (CLUSCOMP.md §3): recovery with distillation from the
/// model it was compressed from, or plain next-token cross-entropy, and codebook-only finetuning
/// on a user's text.
///
/// The loop:
///  - `samples` windows of `window` tokens cut from the tokens at seeded random offsets (the same
///    draw as calibrate: calibrate_detail::window_offsets), fixed order, one window per
///    micro-batch; `accumulation` windows per optimiser step (gradients summed, each window's loss
///    weighted 1/group so a step sees the group's mean loss); `epochs` passes, or at most
///    `max_steps` optimiser steps;
///  - loss per window: KD = KL(p_teacher || p_student) at temperature 1, mean over the window's n
///    positions (autograd::kl_div_loss; the reference sums over positions instead: a constant
///    factor n that AdamW, scale-invariant up to eps, barely sees), the teacher's logits computed by
///    its runtime forward on the fly; CE = mean next-token cross-entropy over the window's n-1
///    predictions;
///  - AdamW (autograd/adamw.hpp) on the fp32 master values of the TrainModel (model/train_model.hpp)
///    with lr 1e-3 and no weight decay by default (see RecoverOptions);
///  - the trained values are rounded to the student's storage dtypes (codebooks: their centroid
///    dtype; dense tensors: their tensor dtype, round to nearest even) and the output is written
///    atomically: the student file with its codebooks (and, when everything trains, its norms,
///    embedding and untied lm_head) replaced, everything else unchanged, metadata "recover.settings"
///    saying what was done.
///  - with `evaluate`, the mean KL (when there is a teacher) and CE over the training windows are
///    measured before training (the student as stored) and after (the output as stored, reloaded).
///
/// No resume: a run either completes and writes its output, or writes nothing (an interrupted
/// or failed run leaves no partial output; the output is written by rename at the very end).
///
/// Memory per window (SmolLM2-135M, n = 256): every block's saved activations (RecoverReport::
/// saved_bytes; `recompute` keeps only block inputs), the student's and the teacher's logits and
/// the logits' gradient (3 n vocab fp32 values), AdamW's 2 moments per trainable value, and the
/// student's and teacher's runtime weights; RecoverReport::peak_rss_bytes is what the process used.
///
/// Numerics: fp32 activations, products and master values (TrainBlock), losses in double.
/// Deterministic for a given seed whatever the thread count.
///
/// Errors (cluscomp::Error naming the problem; no output): a text shorter than one window, a window
/// past the context, a token outside the vocabulary, a student that is not a cluscomp file or was
/// compressed from another model (check_same_model), a student without clustered matrices when
/// only codebooks train, KD without a teacher, bad options (parse_recover_loss/parse_recover_train
/// name the bad word), a non-finite loss (names epoch, step and window) or non-finite teacher
/// logits, kCancelled from the callback.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/autograd/adamw.hpp"
#include "cluscomp/autograd/losses.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/train_model.hpp"
#include "cluscomp/pipeline/calibrate.hpp"
#include "cluscomp/pipeline/work_files.hpp"

CLUSCOMP_NAMESPACE_BEGIN

enum class RecoverLoss { kKd, kCe };
enum class RecoverTrain { kCodebooks, kAll };

inline const char* recover_loss_name(RecoverLoss l) { return l == RecoverLoss::kKd ? "kd" : "ce"; }
inline const char* recover_train_name(RecoverTrain t) { return t == RecoverTrain::kAll ? "all" : "codebooks"; }

/// "kd" | "ce"; Error(kInvalidArgument) naming the word otherwise.
inline RecoverLoss parse_recover_loss(const std::string& s) {
  if (s == "kd") return RecoverLoss::kKd;
  if (s == "ce") return RecoverLoss::kCe;
  throw Error(StatusCode::kInvalidArgument, "recover: unknown loss '" + s + "' (expected kd or ce)");
}

/// "codebooks" | "all"; Error(kInvalidArgument) naming the word otherwise.
inline RecoverTrain parse_recover_train(const std::string& s) {
  if (s == "codebooks") return RecoverTrain::kCodebooks;
  if (s == "all") return RecoverTrain::kAll;
  throw Error(StatusCode::kInvalidArgument, "recover: unknown --train '" + s + "' (expected codebooks or all)");
}

struct RecoverOptions {
  RecoverLoss loss = RecoverLoss::kKd;
  RecoverTrain train = RecoverTrain::kCodebooks;
  // Data: 16 windows of 256 tokens, 1 epoch by default (minutes for the 135M demo model on two
  // cores; the reference trains on a whole corpus).
  int64_t samples = 16;
  int64_t window = 256;
  int epochs = 1;
  int64_t max_steps = 0;     // 0: epochs * ceil(samples / accumulation) optimiser steps
  int64_t accumulation = 1;  // windows per optimiser step
  // AdamW. lr 1e-3, 5x below calibration's 5e-3: calibration moves ONE block's codebooks to fit a
  // local MSE target, whereas here every codebook of every block moves at once and the errors
  // compound through the depth (Adam's step is about lr per value whatever the gradient's scale).
  // A short sweep on the real model favoured 1e-3 over 1e-4 (docs/benchmarks.md, "Figures moved
  // out of code comments"). --train all (dense embedding and norms train too) was not swept; a
  // lower lr (1e-4) is the cautious choice there.
  // No weight decay: the model starts at the calibrated codebooks and should stay near them; decay
  // would shrink centroids, norms and the embedding toward zero.
  float lr = 1e-3f;
  float weight_decay = 0.0f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  uint64_t seed = 1234;    // window offsets
  int threads = 0;         // 0 = hardware concurrency
  bool recompute = false;  // activation checkpointing per block
  bool evaluate = true;    // measure the losses over the training windows before and after
  /// Where the work runs. Only kCpu has a backend today; any other device is an Error
  /// (backend_status, host/device_status.hpp) before any work, never a silent CPU fallback.
  /// Last member, so that existing aggregate initialisations keep their meaning.
  Device device = Device::kCpu;
};

struct RecoverProgress {
  enum class Stage { kEvalBefore, kStep, kEpochDone, kEvalAfter };
  Stage stage = Stage::kStep;
  int epoch = 0, epochs = 0;
  int64_t step = 0, steps = 0;      // optimiser step (0-based) and total
  int64_t window = 0, windows = 0;  // kEval*: windows evaluated so far
  double loss = 0;                  // kStep: the step's mean loss; kEpochDone: the epoch's mean
  double elapsed_s = 0, eta_s = 0;
};
/// Return false to cancel (Error kCancelled; nothing is written).
using RecoverCallback = std::function<bool(const RecoverProgress&)>;

struct RecoverReport {
  RecoverLoss loss = RecoverLoss::kKd;
  RecoverTrain train = RecoverTrain::kCodebooks;
  std::vector<double> step_loss;   // mean training loss of each optimiser step
  std::vector<int> step_epoch;     // the epoch (0-based) of each step
  std::vector<double> epoch_loss;  // mean training loss of each epoch
  // Over the training windows (evaluate), with the runtime forward of the model as stored; NaN
  // when not measured (kl: no teacher).
  double kl_before = std::numeric_limits<double>::quiet_NaN(), kl_after = std::numeric_limits<double>::quiet_NaN();
  double ce_before = std::numeric_limits<double>::quiet_NaN(), ce_after = std::numeric_limits<double>::quiet_NaN();
  int64_t trainable = 0;   // trained values
  int64_t parameters = 0;  // every parameter of the model
  std::vector<std::string> trained_dense;  // dense tensors written back (train all)
  int64_t steps = 0, windows_seen = 0;
  double seconds = 0;        // the whole call
  double train_seconds = 0;  // the training loop only
  double seconds_per_window = 0;  // forward + backward (+ teacher forward) of one window, with the steps
  int64_t saved_bytes = 0;        // activations kept per window for backward
  int64_t logits_bytes = 0;       // logits, teacher logits, their gradient
  int64_t optimizer_bytes = 0;    // AdamW moments
  int64_t master_bytes = 0;       // fp32 master values + gradients
  int64_t peak_rss_bytes = 0;     // the process's peak resident set (getrusage)
  int64_t output_bytes = 0;
  double trainable_share() const {
    return parameters > 0 ? static_cast<double>(trainable) / static_cast<double>(parameters) : 0.0;
  }
};

namespace recover_detail {

inline int64_t count_parameters(const LlamaModel& m) {
  const LlamaWeights& w = m.weights();
  int64_t p = 0;
  for (const LlamaBlock& b : w.blocks) {
    for (const Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down})
      p += l->out_features() * l->in_features() + static_cast<int64_t>(l->bias().size());
    p += static_cast<int64_t>(b.attn_norm.size() + b.ffn_norm.size());
  }
  p += static_cast<int64_t>(w.embed_fp32("recover").size() + w.final_norm.size());
  if (!w.lm_head.shares_weight_with(w.embed.get())) p += w.lm_head.out_features() * w.lm_head.in_features();
  return p;
}

/// fp32 values in `dt` (F32 copies; F16/BF16 round to nearest even), little-endian bytes.
inline std::vector<unsigned char> encode_values(const float* v, size_t n, DType dt, const std::string& name) {
  if (dt != DType::kF32 && dt != DType::kF16 && dt != DType::kBF16)
    throw Error(StatusCode::kUnsupported, "recover: dense tensor '" + name + "' is stored as " +
                                              std::string(dtype_name(dt)) + ", which cannot hold trained values");
  return encode_float_values(v, n, dt);
}

/// Mean KL (with a teacher) and CE of `m` over the windows, by the runtime forward.
struct WindowLosses {
  double kl = std::numeric_limits<double>::quiet_NaN();
  double ce = std::numeric_limits<double>::quiet_NaN();
};

template <class Notify>
WindowLosses evaluate_windows(LlamaModel& m, LlamaModel* teacher, const std::vector<int32_t>& tokens,
                              const std::vector<int64_t>& offsets, int64_t n, Notify&& notify) {
  const int64_t V = m.vocab_size();
  KvCache cache = m.make_cache(n);
  KvCache tcache;
  if (teacher) tcache = teacher->make_cache(n);
  std::vector<int32_t> targets(static_cast<size_t>(n));
  double kl = 0, ce = 0;
  for (size_t w = 0; w < offsets.size(); ++w) {
    const int32_t* ids = tokens.data() + offsets[w];
    cache.clear();
    const std::vector<float> logits = m.forward(ids, n, cache, true);
    for (int64_t t = 0; t < n; ++t) targets[static_cast<size_t>(t)] = t + 1 < n ? ids[t + 1] : -1;
    ce += autograd::cross_entropy_loss(logits.data(), n, V, targets.data());
    if (teacher) {
      tcache.clear();
      const std::vector<float> tl = teacher->forward(ids, n, tcache, true);
      kl += autograd::kl_div_loss(tl.data(), logits.data(), n, V);
    }
    notify(static_cast<int64_t>(w + 1));
  }
  WindowLosses r;
  const double k = static_cast<double>(offsets.size());
  r.ce = ce / k;
  if (teacher) r.kl = kl / k;
  return r;
}

}  // namespace recover_detail

/// Trains the clustered model at `student_path` (cluscomp format) end to end on `tokens` and writes
/// the result to `out_path`; see the file comment. `teacher` (the model the student was compressed
/// from) is required for RecoverLoss::kKd and optional for kCe (then it is only checked against the
/// student and used for the KL report). `teacher_id` is recorded in the metadata.
inline RecoverReport recover_model(LlamaModel* teacher, const std::string& teacher_id, const std::string& student_path,
                                   const std::vector<int32_t>& tokens, const std::string& out_path,
                                   const RecoverOptions& o, const RecoverCallback& progress = {}) {
  throw_if_error(backend_status(o.device, "recover"));
  namespace fs = std::filesystem;
  using Clock = std::chrono::steady_clock;
  const auto t_start = Clock::now();
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  auto bad = [](const std::string& m) { return Error(StatusCode::kInvalidArgument, "recover: " + m); };
  if (out_path.empty()) throw bad("empty output path");
  if (o.epochs < 1) throw bad("epochs must be at least 1");
  if (o.samples < 1) throw bad("samples must be at least 1");
  calibrate_detail::check_offsets_memory(o.samples, "recover");  // before anything sized by samples
  if (o.window < 2) throw bad("window must be at least 2 tokens");
  if (o.accumulation < 1) throw bad("gradient accumulation must be at least 1 window per step");
  if (o.max_steps < 0) throw bad("max steps must not be negative");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw bad("lr must be positive and finite");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) throw bad("weight decay must not be negative");
  if (o.loss == RecoverLoss::kKd && !teacher)
    throw bad("distillation (loss kd) needs the teacher model; use loss ce to train without one");

  const CluscompModel cm = read_cluscomp_model(student_path);
  LlamaRuntimeOptions ro;
  ro.threads = o.threads;
  LlamaModel student = load_llama_cluscomp(student_path, ro);
  if (teacher) {
    try {
      check_same_model(*teacher, student, student_path);
    } catch (const Error& e) {
      std::string m = e.what();
      if (m.rfind("calibrate: ", 0) == 0) m = m.substr(11);
      throw Error(e.code(), "recover: " + m);
    }
  }
  const LlamaConfig& c = student.config();
  if (o.train == RecoverTrain::kCodebooks && cm.clustered.empty())
    throw bad(student_path + " has no clustered matrices, so there are no codebooks to train (use --train all)");
  const int64_t n = o.window, V = c.vocab_size;
  if (n > c.max_position_embeddings)
    throw bad("window of " + std::to_string(n) + " tokens exceeds the model's context of " +
              std::to_string(c.max_position_embeddings));
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      throw Error(StatusCode::kOutOfRange, "recover: token " + std::to_string(i) + " (id " + std::to_string(tokens[i]) +
                                               ") is outside the vocabulary of " + std::to_string(V));
  if (static_cast<int64_t>(tokens.size()) < n)
    throw bad("the text has " + std::to_string(tokens.size()) + " tokens, shorter than one window of " +
              std::to_string(n) + " tokens (give a longer text or a smaller --window)");
  const std::vector<int64_t> offsets =
      calibrate_detail::window_offsets(static_cast<int64_t>(tokens.size()), n, o.samples, o.seed, "recover");

  RecoverReport rep;
  rep.loss = o.loss;
  rep.train = o.train;
  rep.parameters = recover_detail::count_parameters(student);
  ThreadPool pool(o.threads);

  // Before training, as stored.
  const int64_t groups = (o.samples + o.accumulation - 1) / o.accumulation;  // steps per epoch
  const int64_t total_steps =
      o.max_steps > 0 ? std::min<int64_t>(o.max_steps, groups * o.epochs) : groups * static_cast<int64_t>(o.epochs);
  auto notify = [&](RecoverProgress p) {
    if (!progress) return;
    p.epochs = o.epochs;
    p.steps = total_steps;
    p.elapsed_s = since(t_start);
    if (!progress(p)) throw Error(StatusCode::kCancelled, "recover: cancelled; nothing was written");
  };
  auto eval_notify = [&](RecoverProgress::Stage st) {
    return [&, st](int64_t w) {
      RecoverProgress p;
      p.stage = st;
      p.window = w;
      p.windows = o.samples;
      notify(p);
    };
  };
  if (o.evaluate) {
    const auto l = recover_detail::evaluate_windows(student, teacher, tokens, offsets, n,
                                                    eval_notify(RecoverProgress::Stage::kEvalBefore));
    rep.kl_before = l.kl;
    rep.ce_before = l.ce;
  }

  TrainModelOptions to;
  to.train_all = o.train == RecoverTrain::kAll;
  to.recompute = o.recompute;
  TrainModel model(student, to);
  rep.trainable = model.trainable_count();
  if (rep.trainable == 0) throw bad(student_path + " has nothing to train");
  std::vector<autograd::Parameter> params = model.parameters();
  autograd::AdamWOptions ao;
  ao.lr = o.lr;
  ao.weight_decay = o.weight_decay;
  ao.beta1 = o.beta1;
  ao.beta2 = o.beta2;
  ao.eps = o.eps;
  autograd::AdamW opt(params, ao);
  rep.optimizer_bytes = opt.state_bytes();
  rep.master_bytes = rep.trainable * 8;
  rep.saved_bytes = model.saved_bytes(n);
  rep.logits_bytes = (o.loss == RecoverLoss::kKd ? 3 : 2) * n * V * 4;

  // Training.
  const auto t_train = Clock::now();
  TrainModel::Saved saved;
  std::vector<float> logits(static_cast<size_t>(n * V)), dlogits(logits.size());
  std::vector<int32_t> targets(static_cast<size_t>(n));
  KvCache tcache;
  if (o.loss == RecoverLoss::kKd) tcache = teacher->make_cache(n);
  int64_t step = 0;
  for (int e = 0; e < o.epochs && step < total_steps; ++e) {
    double epoch_sum = 0;
    int64_t epoch_windows = 0;
    for (int64_t g = 0; g < groups && step < total_steps; ++g) {
      const int64_t w0 = g * o.accumulation, w1 = std::min(o.samples, w0 + o.accumulation);
      const float scale = 1.0f / static_cast<float>(w1 - w0);
      model.zero_grad();
      double step_sum = 0;
      for (int64_t w = w0; w < w1; ++w) {
        const int32_t* ids = tokens.data() + offsets[static_cast<size_t>(w)];
        model.forward(ids, n, logits.data(), &saved, &pool);
        double loss = 0;
        if (o.loss == RecoverLoss::kKd) {
          tcache.clear();
          const std::vector<float> tl = teacher->forward(ids, n, tcache, true);
          // kl_div_loss skips teacher probabilities that are not > 0, NaN included, so a broken
          // teacher would give a finite loss and NaN gradients: check its logits here.
          for (float z : tl)
            if (!std::isfinite(z))
              throw bad("the teacher's logits are not finite on window " + std::to_string(w + 1) + " (offset " +
                        std::to_string(offsets[static_cast<size_t>(w)]) + ", epoch " + std::to_string(e + 1) +
                        "): the teacher model is broken; nothing was written");
          loss = autograd::kl_div_loss(tl.data(), logits.data(), n, V, dlogits.data(), &pool);
        } else {
          for (int64_t t = 0; t < n; ++t) targets[static_cast<size_t>(t)] = t + 1 < n ? ids[t + 1] : -1;
          loss = autograd::cross_entropy_loss(logits.data(), n, V, targets.data(), dlogits.data(), &pool);
        }
        if (!std::isfinite(loss))
          throw bad("non-finite loss (" + std::to_string(loss) + ") at epoch " + std::to_string(e + 1) + ", step " +
                    std::to_string(step + 1) + " of " + std::to_string(total_steps) + ", window " +
                    std::to_string(w + 1) + " (offset " + std::to_string(offsets[static_cast<size_t>(w)]) +
                    "); nothing was written (try a lower --lr)");
        if (scale != 1.0f)
          for (float& d : dlogits) d *= scale;
        model.backward(saved, dlogits.data(), &pool);
        step_sum += loss;
        ++rep.windows_seen;
      }
      opt.step(&pool);
      const double step_loss = step_sum / static_cast<double>(w1 - w0);
      rep.step_loss.push_back(step_loss);
      rep.step_epoch.push_back(e);
      epoch_sum += step_sum;
      epoch_windows += w1 - w0;
      ++step;
      RecoverProgress p;
      p.stage = RecoverProgress::Stage::kStep;
      p.epoch = e;
      p.step = step - 1;
      p.loss = step_loss;
      const double per_step = since(t_train) / static_cast<double>(step);
      p.eta_s = per_step * static_cast<double>(total_steps - step);
      notify(p);
    }
    rep.epoch_loss.push_back(epoch_sum / static_cast<double>(std::max<int64_t>(1, epoch_windows)));
    RecoverProgress p;
    p.stage = RecoverProgress::Stage::kEpochDone;
    p.epoch = e;
    p.loss = rep.epoch_loss.back();
    notify(p);
  }
  rep.steps = step;
  rep.train_seconds = since(t_train);
  rep.seconds_per_window = rep.windows_seen > 0 ? rep.train_seconds / static_cast<double>(rep.windows_seen) : 0.0;

  // Output: trained codebooks (rounded to their centroid dtype by write_back) and dense tensors.
  std::map<std::string, CodebookTensor> clustered = cm.clustered;
  std::map<std::string, std::vector<float>> dense_values;  // trained dense tensors, fp32
  for (size_t i = 0; i < model.blocks().size(); ++i) {
    LlamaBlock qb = student.weights().blocks[i];
    model.blocks()[i].write_back(qb);
    const auto ps = calibrate_detail::projections(qb);
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    for (int k = 0; k < 7; ++k) {
      const Linear* l = ps[static_cast<size_t>(k)];
      if (l->kind() != LinearKind::kCodebook) continue;
      const std::string name = prefix + calibrate_detail::kProjectionNames[k] + ".weight";
      clustered.erase(name);
      clustered.emplace(name, *l->codebook());
    }
    if (to.train_all) {
      dense_values[prefix + "input_layernorm.weight"] = qb.attn_norm;
      dense_values[prefix + "post_attention_layernorm.weight"] = qb.ffn_norm;
    }
  }
  if (to.train_all) {
    dense_values["model.embed_tokens.weight"] = model.embedding();
    dense_values["model.norm.weight"] = model.final_norm();
    if (!model.tied()) dense_values["lm_head.weight"] = model.lm_head();
  }
  std::vector<std::vector<unsigned char>> store;
  store.reserve(dense_values.size());
  std::vector<TensorRef> dense;
  for (const TensorRef& t : cm.dense) {
    auto it = dense_values.find(t.name);
    if (it == dense_values.end()) {
      dense.push_back(t);
      continue;
    }
    if (t.numel() != static_cast<int64_t>(it->second.size()))
      throw Error(StatusCode::kFormatError, "recover: " + student_path + ": tensor '" + t.name + "' has " +
                                                std::to_string(t.numel()) + " values, the model " +
                                                std::to_string(it->second.size()));
    store.push_back(recover_detail::encode_values(it->second.data(), it->second.size(), t.dtype, t.name));
    dense.push_back(TensorRef{t.name, t.dtype, t.shape, store.back().data(), store.back().size()});
    rep.trained_dense.push_back(t.name);
  }
  if (rep.trained_dense.size() != dense_values.size())
    throw Error(StatusCode::kFormatError, "recover: " + student_path + " lacks some of the dense tensors it trained (" +
                                              std::to_string(rep.trained_dense.size()) + " of " +
                                              std::to_string(dense_values.size()) + " found)");
  std::map<std::string, std::string> meta = cm.caller_metadata();
  nlohmann::json j;
  j["loss"] = recover_loss_name(o.loss);
  j["train"] = recover_train_name(o.train);
  put_run_settings(j, o, true);
  j["steps"] = rep.steps;
  j["accumulation"] = o.accumulation;
  j["lr"] = o.lr;
  j["tokens"] = tokens.size();
  j["student"] = student_path;
  if (teacher) j["teacher"] = teacher_id;
  j["trainable"] = rep.trainable;
  if (!rep.epoch_loss.empty()) j["final_epoch_loss"] = rep.epoch_loss.back();
  meta["recover.settings"] = j.dump();
  write_cluscomp_model(out_path, dense, clustered, meta);
  rep.output_bytes = static_cast<int64_t>(fs::file_size(out_path));

  if (o.evaluate) {
    LlamaModel trained = load_llama_cluscomp(out_path, ro);
    const auto l = recover_detail::evaluate_windows(trained, teacher, tokens, offsets, n,
                                                    eval_notify(RecoverProgress::Stage::kEvalAfter));
    rep.kl_after = l.kl;
    rep.ce_after = l.ce;
  }
  rep.seconds = since(t_start);
  rep.peak_rss_bytes = calibrate_detail::peak_rss();
  return rep;
}

/// Codebook-only finetuning of the clustered model at `student_path` on `tokens` with the causal
/// LM loss (CLUSCOMP.md §3, "efficient finetuning"): recover_model with loss CE and codebooks only,
/// no teacher. `o.loss` and `o.train` are ignored.
inline RecoverReport finetune_model(const std::string& student_path, const std::vector<int32_t>& tokens,
                                    const std::string& out_path, RecoverOptions o,
                                    const RecoverCallback& progress = {}) {
  throw_if_error(backend_status(o.device, "finetune"));
  o.loss = RecoverLoss::kCe;
  o.train = RecoverTrain::kCodebooks;
  try {
    return recover_model(nullptr, std::string(), student_path, tokens, out_path, o, progress);
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind("recover: ", 0) == 0) throw Error(e.code(), "finetune: " + m.substr(9));
    throw;
  }
}

CLUSCOMP_NAMESPACE_END
