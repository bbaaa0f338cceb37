#pragma once
/// Losses of the autograd, each returning the loss value (double) and writing the gradient with
/// respect to its prediction input (overwritten; pass null to get the value only).
///
/// Numerics: per-row sums, log-sum-exps and softmaxes in double; the gradient is computed in double
/// and rounded to T once per element. Rows are processed in parallel but their losses are summed
/// in row order afterwards, so the value and the gradients never depend on the thread count.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

namespace detail {
/// log(sum(exp(z))) of one row in double (max subtracted first).
template <class T>
double row_log_sum_exp(const T* z, int64_t n) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(z[i]));
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(z[i]) - mx);
  return mx + std::log(s);
}

/// Runs row(r) -> double for every row on `pool` and returns the sum in row order.
template <class F>
double sum_rows(ThreadPool* pool, int64_t rows, int64_t work_per_row, F&& row) {
  std::vector<double> v(static_cast<size_t>(rows));
  parallel_for(rows * work_per_row >= (int64_t{1} << 15) ? pool : nullptr, rows,
               [&](int64_t r) { v[static_cast<size_t>(r)] = row(r); });
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}
}  // namespace detail

/// MSE = mean over all `count` values of (pred - target)^2 (PyTorch's mse_loss, reduction mean);
/// dpred = 2 (pred - target) / count. Deterministic.
template <class T>
double mse_loss(const T* pred, const T* target, int64_t count, T* dpred = nullptr, ThreadPool* pool = nullptr) {
  detail::require(count > 0 && pred && target, "mse_loss",
                  "count must be positive and pointers non-null (count " + std::to_string(count) + ")");
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  const double scale = 2.0 / static_cast<double>(count);
  const double sum = detail::sum_rows(pool, chunks, kChunk, [&](int64_t c) {
    double s = 0.0;
    for (int64_t i = c * kChunk; i < std::min(count, (c + 1) * kChunk); ++i) {
      const double e = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
      s += e * e;
      if (dpred) dpred[i] = static_cast<T>(scale * e);
    }
    return s;
  });
  return sum / static_cast<double>(count);
}

/// Next-token cross-entropy: mean over the rows whose target is >= 0 of
/// logsumexp(logits[r]) - logits[r, target[r]] (a negative target marks a row to ignore, like
/// PyTorch's ignore_index). dlogits = (softmax(logits[r]) - onehot) / counted rows; ignored rows get
/// zero gradient. Error(kOutOfRange) naming a target >= vocab; kInvalidArgument when no row counts.
template <class T>
double cross_entropy_loss(const T* logits, int64_t rows, int64_t vocab, const int32_t* targets, T* dlogits = nullptr,
                          ThreadPool* pool = nullptr) {
  detail::require(rows > 0 && vocab > 0 && logits && targets, "cross_entropy_loss",
                  "rows and vocab must be positive and pointers non-null (rows " + std::to_string(rows) + ", vocab " +
                      std::to_string(vocab) + ")");
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] >= vocab)
      throw Error(StatusCode::kOutOfRange, "cross_entropy_loss: target " + std::to_string(targets[r]) + " at row " +
                                               std::to_string(r) + " is outside the vocabulary of " +
                                               std::to_string(vocab));
    counted += targets[r] >= 0;
  }
  detail::require(counted > 0, "cross_entropy_loss", "every target is ignored (negative)");
  const double inv = 1.0 / static_cast<double>(counted);
  const double sum = detail::sum_rows(pool, rows, vocab, [&](int64_t r) {
    const T* z = logits + r * vocab;
    T* g = dlogits ? dlogits + r * vocab : nullptr;
    if (targets[r] < 0) {
      if (g) std::fill(g, g + vocab, T(0));
      return 0.0;
    }
    const double lse = detail::row_log_sum_exp(z, vocab);
    if (g) {
      for (int64_t i = 0; i < vocab; ++i) g[i] = static_cast<T>(std::exp(static_cast<double>(z[i]) - lse) * inv);
      g[targets[r]] = static_cast<T>((std::exp(static_cast<double>(z[targets[r]]) - lse) - 1.0) * inv);
    }
    return lse - static_cast<double>(z[targets[r]]);
  });
  return sum * inv;
}

/// Distillation loss KL(p_teacher || p_student) at temperature 1 from logits:
///   per row r: sum over the vocabulary of p_t * (log p_t - log p_s), p = softmax(logits[r]);
///   loss = mean over the rows (positions) of that sum.
/// Normalisation: the reference sums over positions and vocabulary and divides by the batch size
/// (sequences); multiply this value by the positions per sequence to get the reference's number.
/// dstudent = (p_s - p_t) / rows. Teacher probabilities of zero contribute zero; a non-finite
/// teacher logit makes the loss NaN (never a silent finite value). Deterministic.
template <class T>
double kl_div_loss(const T* teacher_logits, const T* student_logits, int64_t rows, int64_t vocab, T* dstudent = nullptr,
                   ThreadPool* pool = nullptr) {
  detail::require(rows > 0 && vocab > 0 && teacher_logits && student_logits, "kl_div_loss",
                  "rows and vocab must be positive and pointers non-null (rows " + std::to_string(rows) + ", vocab " +
                      std::to_string(vocab) + ")");
  const double inv = 1.0 / static_cast<double>(rows);
  const double sum = detail::sum_rows(pool, rows, vocab, [&](int64_t r) {
    const T* zt = teacher_logits + r * vocab;
    const T* zs = student_logits + r * vocab;
    const double lt = detail::row_log_sum_exp(zt, vocab), ls = detail::row_log_sum_exp(zs, vocab);
    double kl = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double log_pt = static_cast<double>(zt[i]) - lt, log_ps = static_cast<double>(zs[i]) - ls;
      const double pt = std::exp(log_pt);
      if (!(pt == 0.0)) kl += pt * (log_pt - log_ps);  // zero contributes zero; NaN propagates
      if (dstudent) dstudent[r * vocab + i] = static_cast<T>((std::exp(log_ps) - pt) * inv);
    }
    return kl;
  });
  return sum * inv;
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
