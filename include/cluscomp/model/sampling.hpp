#pragma once
/// Choosing the next token from logits: greedy (temperature 0), or sampling at a temperature
/// with optional top-k and top-p (nucleus) truncation, from a seeded generator.
///
/// Numerics: probabilities in double (max subtracted); candidates ordered by logit, ties by
/// token id. Determinism: the same seed and logits give the same tokens on every platform
/// (std::mt19937_64 is fully specified, and the uniform variate is built from its bits here
/// rather than by std::uniform_real_distribution, whose algorithm is implementation-defined).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN

struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy
  int64_t top_k = 0;         // keep the k most likely tokens; 0: all
  float top_p = 1.0f;        // keep the smallest set whose probability reaches top_p; 1: all
  uint64_t seed = 0;
};

class Sampler {
 public:
  /// Error(kInvalidArgument) for a negative temperature or top_k, or top_p outside (0, 1].
  explicit Sampler(const SamplingOptions& o) : opt_(o), rng_(o.seed) {
    if (!(o.temperature >= 0.0f) || o.top_k < 0 || !(o.top_p > 0.0f && o.top_p <= 1.0f))
      throw Error(StatusCode::kInvalidArgument,
                  "sampling: temperature " + std::to_string(o.temperature) + ", top_k " + std::to_string(o.top_k) +
                      ", top_p " + std::to_string(o.top_p) + " (need temperature >= 0, top_k >= 0, 0 < top_p <= 1)");
  }

  /// The next token id from `vocab` logits.
  int32_t sample(const float* logits, int64_t vocab) {
    if (vocab <= 0) throw Error(StatusCode::kInvalidArgument, "sampling: empty vocabulary");
    if (opt_.temperature == 0.0f || opt_.top_k == 1) return argmax(logits, vocab);
    std::vector<int32_t> idx(static_cast<size_t>(vocab));
    std::iota(idx.begin(), idx.end(), 0);
    auto before = [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    const int64_t k = opt_.top_k > 0 ? std::min(opt_.top_k, vocab) : vocab;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), before);
    idx.resize(static_cast<size_t>(k));
    std::vector<double> p(idx.size());
    const double mx = logits[idx[0]];
    double sum = 0.0;
    for (size_t i = 0; i < idx.size(); ++i) sum += (p[i] = std::exp((logits[idx[i]] - mx) / opt_.temperature));
    size_t keep = idx.size();
    if (opt_.top_p < 1.0f) {
      double cum = 0.0;
      for (size_t i = 0; i < idx.size(); ++i) {
        cum += p[i] / sum;
        if (cum >= opt_.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    double kept = 0.0;
    for (size_t i = 0; i < keep; ++i) kept += p[i];
    const double u = static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0) * kept;
    double cum = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      cum += p[i];
      if (u < cum) return idx[i];
    }
    return idx[keep - 1];
  }

  static int32_t argmax(const float* logits, int64_t vocab) {
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return static_cast<int32_t>(best);
  }

 private:
  SamplingOptions opt_;
  std::mt19937_64 rng_;
};

CLUSCOMP_NAMESPACE_END
