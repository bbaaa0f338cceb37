#pragma once
/// Rotary position embedding as HF's LLaMA applies it ("rotate_half": dimension i of a head pairs
/// with i + head_dim/2), with the base frequency theta and the "linear" and "llama3" scalings.
/// GGUF files converted by llama.cpp store q/k rows permuted for the interleaved-pairs variant;
/// the model loader undoes that, so only this layout exists here.
///
/// Numerics: inverse frequencies, angles, cos and sin are computed in double and rounded to fp32
/// once (HF computes the angle in fp32, so HF's own error at large positions is bigger than
/// ours); the rotation itself is fp32. Tolerance class: a few fp32 ulps against
/// reference::rope_ref. Deterministic.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN

enum class RopeScalingType { kNone, kLinear, kLlama3 };

/// What fixes the rotary frequencies of one model.
struct RopeParams {
  int64_t head_dim = 0;  // even
  double theta = 10000.0;
  RopeScalingType scaling = RopeScalingType::kNone;
  double factor = 1.0;               // linear and llama3
  double low_freq_factor = 1.0;      // llama3
  double high_freq_factor = 4.0;     // llama3
  double original_context = 8192.0;  // llama3: original_max_position_embeddings
};

/// The head_dim/2 inverse frequencies, in double: theta^(-2i/head_dim), then the scaling (linear:
/// divided by factor; llama3: low frequencies divided by factor, high ones kept, a smooth blend
/// between, as HF's _compute_llama3_parameters).
inline std::vector<double> rope_inverse_frequencies(const RopeParams& p) {
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || !(p.theta > 0.0))
    throw Error(StatusCode::kInvalidArgument, "rope: head_dim must be positive and even and theta "
                                              "positive, got head_dim " + std::to_string(p.head_dim) +
                                                  ", theta " + std::to_string(p.theta));
  const int64_t half = p.head_dim / 2;
  std::vector<double> inv(static_cast<size_t>(half));
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(p.theta, static_cast<double>(2 * i) / static_cast<double>(p.head_dim));
    if (p.scaling == RopeScalingType::kLinear) {
      f /= p.factor;
    } else if (p.scaling == RopeScalingType::kLlama3) {
      const double low_wavelen = p.original_context / p.low_freq_factor;
      const double high_wavelen = p.original_context / p.high_freq_factor;
      const double wavelen = 2.0 * pi / f;
      if (wavelen > low_wavelen) {
        f /= p.factor;
      } else if (wavelen >= high_wavelen) {  // medium band: blend
        const double smooth = (p.original_context / wavelen - p.low_freq_factor) /
                              (p.high_freq_factor - p.low_freq_factor);
        f = (1.0 - smooth) * f / p.factor + smooth * f;
      }
    }
    inv[static_cast<size_t>(i)] = f;
  }
  return inv;
}

/// cos/sin of positions [pos0, pos0 + n) for every frequency: (n, head_dim/2) each, fp32.
struct RopeTable {
  int64_t pos0 = 0, n = 0, half = 0;
  std::vector<float> cos, sin;
};

/// Builds the table for `n` consecutive positions starting at `pos0` (angles in double).
inline RopeTable make_rope_table(const std::vector<double>& inv_freq, int64_t pos0, int64_t n) {
  RopeTable t;
  t.pos0 = pos0;
  t.n = n;
  t.half = static_cast<int64_t>(inv_freq.size());
  t.cos.resize(static_cast<size_t>(n * t.half));
  t.sin.resize(static_cast<size_t>(n * t.half));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < t.half; ++i) {
      const double a = static_cast<double>(pos0 + r) * inv_freq[static_cast<size_t>(i)];
      t.cos[static_cast<size_t>(r * t.half + i)] = static_cast<float>(std::cos(a));
      t.sin[static_cast<size_t>(r * t.half + i)] = static_cast<float>(std::sin(a));
    }
  return t;
}

/// Rotates, in place, `heads` heads of every one of the table's n rows of x (row r at position
/// pos0 + r; row stride ldx; head h at columns h*head_dim..). fp32; deterministic.
inline Status apply_rope(float* x, int64_t ldx, int64_t heads, const RopeTable& t) {
  const int64_t hd = 2 * t.half;
  if (heads < 0 || ldx < heads * hd)
    return Status(StatusCode::kInvalidArgument, "apply_rope: row stride " + std::to_string(ldx) +
                                                    " is shorter than " + std::to_string(heads) +
                                                    " heads of " + std::to_string(hd));
  for (int64_t r = 0; r < t.n; ++r) {
    const float* c = t.cos.data() + r * t.half;
    const float* s = t.sin.data() + r * t.half;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + r * ldx + h * hd;
      for (int64_t i = 0; i < t.half; ++i) {
        const float a = v[i], b = v[i + t.half];
        v[i] = a * c[i] - b * s[i];
        v[i + t.half] = b * c[i] + a * s[i];
      }
    }
  }
  return Status();
}

CLUSCOMP_NAMESPACE_END
