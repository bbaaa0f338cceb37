#pragma once
/// Input-activation statistics of every projection matrix, for activation-aware compression
/// (compress.hpp, CompressOptions::input_importance; docs/architecture.md, "Activation-aware
/// clustering").
///
/// For the matrix W (out, in) of a linear layer y = x W^T, the output error of a compressed W^ on
/// an input x is (W - W^) x. Its expectation over inputs with uncorrelated coordinates is
///   E ||(W - W^) x||^2 = sum_i h_i ||W[:, i] - W^[:, i]||^2,   h_i = E[x_i^2],
/// so h (one value per input column) turns weight error into output error. In the ClusComp
/// geometry (CLUSCOMP.md §1) every d-vector is cut from one input column of W (a row of W^T), so
/// h_i weights each vector as a whole: k-means with per-point weights h_i minimises this output
/// error while its assignment stays the plain nearest-centroid one.
///
/// collect_activation_stats runs the uncompressed model over `samples` windows of `window` tokens
/// of a calibration text (the same seeded offsets as calibrate.hpp) block by block, in fp32, and
/// averages x_i^2 over every token of every window for the inputs of q/k/v (the attention
/// RMSNorm's output), o (the attention output), gate/up (the MLP RMSNorm's output) and down
/// (silu(gate) * up). Sums are in double in token order: deterministic for any thread count.
/// One block's weights and the (samples, window, hidden) stream are held at a time.
///
/// add_activation_importance is the whole step compress takes for activation-aware clustering:
/// load the uncompressed model, collect its statistics, free it, and hand the statistics to
/// CompressOptions with a record of where they came from.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/autograd/ops.hpp"
#include "cluscomp/model/train_block.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/calibrate.hpp"
#include "cluscomp/pipeline/compress.hpp"

CLUSCOMP_NAMESPACE_BEGIN

struct ActivationStatsOptions {
  int64_t samples = 16;  // windows (the calibrate defaults: 16 x 256 tokens)
  int64_t window = 256;
  uint64_t seed = 1234;  // window offsets, as calibrate's
  int threads = 0;       // 0: all hardware threads
  /// Where the model runs (core/device.hpp); kCuda is a Status from the runtime until the GPU
  /// runtime exists.
  Device device = Device::kCpu;
};

struct ActivationStats {
  int64_t tokens = 0;  // tokens averaged over (samples x window)
  /// HF weight name ("model.layers.<i>.self_attn.q_proj.weight", ...) -> (in): mean of x_i^2 over
  /// the tokens, for every projection matrix of every block.
  std::map<std::string, std::vector<float>> mean_sq;
};

/// Called after each block (0-based block, blocks); return false to cancel (Error kCancelled).
using ActivationStatsCallback = std::function<bool(int64_t block, int64_t blocks)>;

/// See the file comment. Errors (cluscomp::Error, prefixed "activation stats"): text shorter than a
/// window, samples < 1, window < 2 or longer than the model's context, a token id outside the
/// vocabulary, a stream larger than the available memory (kOutOfMemory, before any work), a
/// non-finite activation (names the block and matrix), kCancelled; for o.device = kCuda the
/// backend Status (host/device_status.hpp).
inline ActivationStats collect_activation_stats(const LlamaModel& model, const std::vector<int32_t>& tokens,
                                                const ActivationStatsOptions& o,
                                                const ActivationStatsCallback& progress = {}) {
  throw_if_error(backend_status(o.device, "activation stats"));
  const LlamaConfig& c = model.config();
  const int64_t H = c.hidden_size, F = c.intermediate_size, n = o.window;
  const int64_t Q = c.num_attention_heads * c.head_dim;
  if (n > c.max_position_embeddings)
    throw Error(StatusCode::kInvalidArgument, "activation stats: window " + std::to_string(n) +
                                                  " is longer than the model's context " +
                                                  std::to_string(c.max_position_embeddings));
  // The memory check comes before anything sized by samples is allocated (the offsets too).
  const int64_t stream_bytes = calibrate_detail::stream_bytes(o.samples, n, H, 1, "activation stats");
  const int64_t avail = calibrate_detail::available_memory();
  if (avail > 0 && stream_bytes > avail)
    throw Error(StatusCode::kOutOfMemory, "activation stats: " + std::to_string(o.samples) + " windows of " +
                                              std::to_string(n) + " tokens need " + std::to_string(stream_bytes >> 20) +
                                              " MiB for the activation stream, more than the " +
                                              std::to_string(avail >> 20) + " MiB available; use fewer or shorter windows");
  const std::vector<int64_t> offsets =
      calibrate_detail::window_offsets(static_cast<int64_t>(tokens.size()), n, o.samples, o.seed, "activation stats");
  const size_t per_sample = static_cast<size_t>(n * H);
  std::vector<float> x(static_cast<size_t>(o.samples) * per_sample);
  calibrate_detail::embed_windows(model.weights().embed_fp32("activation stats"), c.vocab_size, H, tokens, offsets, n, x.data(), "activation stats");

  ActivationStats out;
  out.tokens = o.samples * n;
  ThreadPool pool(o.threads);
  const int64_t L = c.num_hidden_layers;
  std::vector<float> y(per_sample), act(static_cast<size_t>(n * F));
  // Column sums of squares, accumulated row by row in double (token order).
  auto add_sq = [](const float* v, int64_t rows, int64_t cols, std::vector<double>& acc) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        const double e = v[r * cols + j];
        acc[static_cast<size_t>(j)] += e * e;
      }
  };
  for (int64_t bi = 0; bi < L; ++bi) {
    autograd::TrainBlock blk(c, model.weights().blocks[static_cast<size_t>(bi)]);
    std::vector<double> s_norm1(static_cast<size_t>(H), 0.0), s_attn(static_cast<size_t>(Q), 0.0),
        s_norm2(static_cast<size_t>(H), 0.0), s_act(static_cast<size_t>(F), 0.0);
    autograd::TrainBlock::Saved saved;
    for (int64_t s = 0; s < o.samples; ++s) {
      float* xs = x.data() + static_cast<size_t>(s) * per_sample;
      blk.forward(xs, n, y.data(), &saved, &pool);
      add_sq(saved.h1.data(), n, H, s_norm1);
      add_sq(saved.attn.data(), n, Q, s_attn);
      add_sq(saved.h2.data(), n, H, s_norm2);
      autograd::swiglu_forward(saved.gate.data(), saved.up.data(), act.data(), n * F, &pool);
      add_sq(act.data(), n, F, s_act);
      std::copy(y.begin(), y.end(), xs);
    }
    const double inv = 1.0 / static_cast<double>(out.tokens);
    const std::string prefix = "model.layers." + std::to_string(bi) + ".";
    const std::vector<double>* src[7] = {&s_norm1, &s_norm1, &s_norm1, &s_attn, &s_norm2, &s_norm2, &s_act};
    for (int k = 0; k < 7; ++k) {
      const std::string name = prefix + calibrate_detail::kProjectionNames[k] + ".weight";
      std::vector<float> h(src[k]->size());
      for (size_t j = 0; j < h.size(); ++j) {
        h[j] = static_cast<float>((*src[k])[j] * inv);
        if (!std::isfinite(h[j]))
          throw Error(StatusCode::kInvalidArgument, "activation stats: block " + std::to_string(bi) + " " +
                                                        calibrate_detail::kProjectionNames[k] +
                                                        ": non-finite input activation (column " + std::to_string(j) + ")");
      }
      out.mean_sq.emplace(name, std::move(h));
    }
    if (progress && !progress(bi, L))
      throw Error(StatusCode::kCancelled, "activation stats: cancelled after block " + std::to_string(bi));
  }
  return out;
}

/// What add_activation_importance reports while it runs (library code never prints).
struct ActivationImportanceProgress {
  enum class Stage {
    kModelLoaded,  // model: the uncompressed model just loaded; seconds: its load time
    kBlockDone,    // block (0-based) of blocks finished
    kDone,         // tokens averaged over; seconds since the load began (the model is freed)
  };
  Stage stage = Stage::kModelLoaded;
  const LlamaModel* model = nullptr;
  int64_t block = 0, blocks = 0;
  int64_t tokens = 0;
  double seconds = 0;
};

/// Return false to cancel (Error kCancelled, as collect_activation_stats); kDone's answer is
/// ignored. `model` points at the model only during its kModelLoaded call.
using ActivationImportanceCallback = std::function<bool(const ActivationImportanceProgress&)>;

/// The key of the provenance record add_activation_importance writes into CompressOptions::metadata.
inline constexpr const char* kCompressActivationsKey = "compress.activations";

/// Loads the uncompressed model at `model_path` (o.threads threads), collects its input-activation
/// statistics over `tokens` (collect_activation_stats, same numerics and determinism), frees the
/// model, and stores them as options->input_importance; compress_model turns them into per-column
/// point weights with options->importance_damp. options->metadata[kCompressActivationsKey] records
/// the source as JSON: text (`text_label`, e.g. the text file's path), samples, window, seed,
/// tokens. Errors: those of load_llama_model and collect_activation_stats.
inline void add_activation_importance(const std::string& model_path, const std::string& text_label,
                                      const std::vector<int32_t>& tokens, const ActivationStatsOptions& o,
                                      CompressOptions* options, const ActivationImportanceCallback& progress = {}) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  const auto t0 = Clock::now();
  ActivationStats st;
  {
    LlamaRuntimeOptions ro;
    ro.threads = o.threads;
    ro.device = o.device;
    const LlamaModel model = load_llama_model(model_path, ro);
    ActivationImportanceProgress p;
    if (progress) {
      p.model = &model;
      p.seconds = since(t0);
      if (!progress(p)) throw Error(StatusCode::kCancelled, "activation stats: cancelled after loading the model");
    }
    p.model = nullptr;
    p.stage = ActivationImportanceProgress::Stage::kBlockDone;
    st = collect_activation_stats(model, tokens, o, [&](int64_t b, int64_t n) {
      if (!progress) return true;
      p.block = b;
      p.blocks = n;
      return progress(p);
    });
  }
  nlohmann::json record;
  record["text"] = text_label;
  record["samples"] = o.samples;
  record["window"] = o.window;
  record["seed"] = o.seed;
  record["tokens"] = st.tokens;
  options->metadata[kCompressActivationsKey] = record.dump();
  options->input_importance = std::move(st.mean_sq);
  if (progress) {
    ActivationImportanceProgress done;
    done.stage = ActivationImportanceProgress::Stage::kDone;
    done.tokens = st.tokens;
    done.seconds = since(t0);
    progress(done);  // the work is done: nothing left to cancel
  }
}

CLUSCOMP_NAMESPACE_END
