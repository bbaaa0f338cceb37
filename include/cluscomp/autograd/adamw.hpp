#pragma once
/// Trainable parameters and the AdamW optimiser (decoupled weight decay) with PyTorch's semantics.
///
/// Update of step t (1-based), per element, exactly the order of torch.optim.AdamW's single-tensor
/// path (fp32 state, scalars rounded to fp32 as PyTorch's CPU kernels do for fp32 tensors):
///   p  = p * (1 - lr * wd)
///   m  = m + (1 - beta1) * (g - m)                 (lerp)
///   v  = v * beta2 + (1 - beta2) * g * g
///   p  = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// Bias corrections and step size in double, then rounded to fp32. Elementwise and parallel over
/// fixed chunks: deterministic, independent of the thread count. Tolerance class against a double
/// evaluation of the same formulas: a few fp32 ulps per step.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// One trainable tensor seen as a flat array: its values and the gradient buffer that backwards add
/// to. Non-owning: the model that owns the tensors outlives the optimiser.
template <class T>
struct BasicParameter {
  std::string name;
  T* value = nullptr;
  T* grad = nullptr;
  int64_t size = 0;
};
using Parameter = BasicParameter<float>;

/// Hyperparameters; the defaults are the ClusComp reference's block-wise calibration settings
/// (CLUSCOMP.md §2).
struct AdamWOptions {
  double lr = 5e-3;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;

  /// Checks the values; the message names the bad one.
  Status validate() const {
    auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "adamw: " + m); };
    if (!(lr >= 0.0) || !std::isfinite(lr)) return bad("lr must be finite and >= 0, got " + std::to_string(lr));
    if (!(weight_decay >= 0.0) || !std::isfinite(weight_decay))
      return bad("weight_decay must be finite and >= 0, got " + std::to_string(weight_decay));
    if (!(beta1 >= 0.0 && beta1 < 1.0)) return bad("beta1 must be in [0, 1), got " + std::to_string(beta1));
    if (!(beta2 >= 0.0 && beta2 < 1.0)) return bad("beta2 must be in [0, 1), got " + std::to_string(beta2));
    if (!(eps > 0.0) || !std::isfinite(eps)) return bad("eps must be finite and > 0, got " + std::to_string(eps));
    return Status();
  }
};

/// AdamW over fp32 parameters (fp32 master values, fp32 first and second moments: 8 bytes of state
/// per trainable value). Not thread-safe; one step at a time.
class AdamW {
 public:
  /// Throws Error(kInvalidArgument) for bad options or a parameter with null pointers or a
  /// non-positive size (naming it).
  explicit AdamW(std::vector<Parameter> params, const AdamWOptions& opt = {}) : params_(std::move(params)), opt_(opt) {
    throw_if_error(opt_.validate());
    for (const Parameter& p : params_) {
      if (!p.value || !p.grad || p.size <= 0)
        throw Error(StatusCode::kInvalidArgument, "adamw: parameter '" + p.name + "' has " +
                                                      (p.size <= 0 ? "size " + std::to_string(p.size)
                                                                   : std::string("a null value or grad pointer")));
      m_.emplace_back(static_cast<size_t>(p.size), 0.0f);
      v_.emplace_back(static_cast<size_t>(p.size), 0.0f);
    }
  }

  const AdamWOptions& options() const { return opt_; }
  /// Changes the learning rate for the following steps (schedules).
  void set_lr(double lr) {
    AdamWOptions o = opt_;
    o.lr = lr;
    throw_if_error(o.validate());
    opt_ = o;
  }
  /// Steps taken so far.
  int64_t steps() const { return step_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  /// First / second moment of parameter i (fp32, the parameter's size).
  const std::vector<float>& exp_avg(size_t i) const { return m_.at(i); }
  const std::vector<float>& exp_avg_sq(size_t i) const { return v_.at(i); }
  /// Bytes of optimiser state (both moments).
  int64_t state_bytes() const {
    int64_t b = 0;
    for (const auto& m : m_) b += static_cast<int64_t>(m.size()) * 8;
    return b;
  }

  /// Sets every gradient to zero.
  void zero_grad() {
    for (const Parameter& p : params_) std::fill(p.grad, p.grad + p.size, 0.0f);
  }

  /// One update of every parameter from its current gradient (see the file comment). Parallel over
  /// chunks of 16384 values on `pool`; deterministic.
  void step(ThreadPool* pool = nullptr) {
    ++step_;
    const double t = static_cast<double>(step_);
    const double bc1 = 1.0 - std::pow(opt_.beta1, t);
    const double bc2 = 1.0 - std::pow(opt_.beta2, t);
    const float decay = static_cast<float>(1.0 - opt_.lr * opt_.weight_decay);
    const float w1 = static_cast<float>(1.0 - opt_.beta1);
    const float b2 = static_cast<float>(opt_.beta2);
    const float w2 = static_cast<float>(1.0 - opt_.beta2);
    const float step_size = static_cast<float>(opt_.lr / bc1);
    const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    const float eps = static_cast<float>(opt_.eps);
    constexpr int64_t kChunk = 16384;
    std::vector<std::pair<size_t, int64_t>> chunks;  // (parameter, first element)
    for (size_t i = 0; i < params_.size(); ++i)
      for (int64_t e = 0; e < params_[i].size; e += kChunk) chunks.emplace_back(i, e);
    parallel_for(pool, static_cast<int64_t>(chunks.size()), [&](int64_t c) {
      const auto [i, e0] = chunks[static_cast<size_t>(c)];
      const Parameter& p = params_[i];
      float* m = m_[i].data();
      float* v = v_[i].data();
      const int64_t e1 = std::min(p.size, e0 + kChunk);
      for (int64_t e = e0; e < e1; ++e) {
        const float g = p.grad[e];
        float x = p.value[e] * decay;
        m[e] = m[e] + w1 * (g - m[e]);
        v[e] = v[e] * b2 + w2 * (g * g);
        const float denom = std::sqrt(v[e]) / bc2_sqrt + eps;
        x = x - step_size * m[e] / denom;
        p.value[e] = x;
      }
    });
  }

 private:
  std::vector<Parameter> params_;
  AdamWOptions opt_;
  std::vector<std::vector<float>> m_, v_;
  int64_t step_ = 0;
};

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
