#pragma once
/// Perplexity of a model on a token sequence, with the protocol of CLUSCOMP.md §4: the text is
/// cut into windows of `window` tokens (default min(context, 2048)), each run from an empty
/// cache, and ppl = exp(mean token cross-entropy). With the default stride (= window) the
/// windows do not overlap, each contributes window - 1 predictions, and a trailing partial window
/// is dropped (as the reference's numel // seqlen). With a smaller stride, windows start every
/// `stride` tokens and each scores only the tokens no earlier window scored (HF's sliding-window
/// recipe), so every token after the first is scored once, with more context.
///
/// Numerics: logits in fp32 (the model), log-sum-exp and the NLL sum in double, summed in token
/// order: deterministic, and independent of the thread count.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/ops/softmax.hpp"

CLUSCOMP_NAMESPACE_BEGIN

struct PerplexityOptions {
  int64_t window = 0;       // tokens per window; 0 = min(context, 2048)
  int64_t stride = 0;       // tokens between window starts; 0 = window (no overlap)
  int64_t max_windows = 0;  // evaluate at most this many windows (from the start); 0 = all
};

struct PerplexityResult {
  int64_t tokens = 0;       // tokens in the input
  int64_t window = 0;       // the window actually used
  int64_t windows = 0;      // windows evaluated
  int64_t total_windows = 0;  // windows the input holds
  int64_t predictions = 0;  // tokens scored
  int64_t processed = 0;    // tokens run through the model
  double nll_sum = 0.0;     // sum of -log p(token | context), nats
  double seconds = 0.0;
  double mean_nll() const { return predictions > 0 ? nll_sum / static_cast<double>(predictions) : 0.0; }
  double perplexity() const { return std::exp(mean_nll()); }
  double tokens_per_second() const { return seconds > 0 ? static_cast<double>(processed) / seconds : 0.0; }
};

/// Called after each window with the running result (windows done so far, total_windows).
using PerplexityProgress = std::function<void(const PerplexityResult&)>;

/// Evaluates `ids` as described in the file comment. Errors (kInvalidArgument): a window larger
/// than the context or smaller than 2, a stride outside 1..window, fewer tokens than one window.
inline PerplexityResult evaluate_perplexity(LlamaModel& model, const std::vector<int32_t>& ids,
                                            const PerplexityOptions& opt,
                                            const PerplexityProgress& progress = {}) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t W = opt.window > 0 ? opt.window : std::min<int64_t>(model.context_length(), 2048);
  const int64_t S = opt.stride > 0 ? opt.stride : W;
  if (W < 2 || W > model.context_length())
    throw Error(StatusCode::kInvalidArgument, "perplexity: window " + std::to_string(W) +
                                                  " must be in 2.." + std::to_string(model.context_length()) +
                                                  " (the model's context)");
  if (S > W) throw Error(StatusCode::kInvalidArgument, "perplexity: stride " + std::to_string(S) +
                                                           " is larger than the window " + std::to_string(W));
  if (n < W)
    throw Error(StatusCode::kInvalidArgument, "perplexity: " + std::to_string(n) +
                                                  " tokens are fewer than one window of " + std::to_string(W));
  PerplexityResult r;
  r.tokens = n;
  r.window = W;
  r.total_windows = (n - W) / S + 1;
  const int64_t todo = opt.max_windows > 0 ? std::min(opt.max_windows, r.total_windows) : r.total_windows;
  const int64_t H = model.config().hidden_size, V = model.vocab_size();
  KvCache cache = model.make_cache(W);
  std::vector<float> hidden(static_cast<size_t>(W * H));
  const int64_t chunk = 16;
  std::vector<float> logits(static_cast<size_t>(chunk * V));
  int64_t scored_until = 0;  // positions < this have been scored (or are the first token)
  for (int64_t w = 0; w < todo; ++w) {
    const int64_t s = w * S;
    cache.clear();
    model.forward_hidden(ids.data() + s, W, cache, hidden.data());
    // Targets at absolute positions [first, s + W); target t is predicted by row t - 1 - s.
    const int64_t first = std::max(s + 1, scored_until);
    for (int64_t t = first; t < s + W; t += chunk) {
      const int64_t rows = std::min(chunk, s + W - t);
      model.logits(hidden.data() + (t - 1 - s) * H, rows, logits.data());
      for (int64_t i = 0; i < rows; ++i) {
        const float* l = logits.data() + i * V;
        r.nll_sum += log_sum_exp(l, V) - static_cast<double>(l[ids[static_cast<size_t>(t + i)]]);
      }
    }
    r.predictions += s + W - first;
    scored_until = s + W;
    r.processed += W;
    r.windows = w + 1;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) progress(r);
  }
  return r;
}

CLUSCOMP_NAMESPACE_END
