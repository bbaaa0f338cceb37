#pragma once
/// Numerically stable softmax over a contiguous vector (attention rows, sampling).
///
/// Numerics: the maximum is subtracted first; exp in fp32; the normaliser is accumulated in
/// double in index order, then rounded to fp32 once. Tolerance class: a few fp32 ulps per element
/// against reference::softmax_ref. Deterministic.

#include <cmath>
#include <cstdint>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// In place: x[i] = exp(x[i] - max) / sum. n == 0 is a no-op. A row of all -inf becomes NaN (the
/// caller never produces one: causal attention always sees its own position).
inline void softmax_inplace(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

/// log(sum(exp(x))) in double (max subtracted first): the normaliser of a log-softmax, used for
/// token negative log-likelihoods. Deterministic.
inline double log_sum_exp(const float* x, int64_t n) {
  if (n <= 0) return -INFINITY;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i]) - mx);
  return static_cast<double>(mx) + std::log(sum);
}

CLUSCOMP_NAMESPACE_END
