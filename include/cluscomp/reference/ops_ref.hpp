#pragma once
/// Reference twins of the CPU runtime ops (ops/*.hpp): matmul_nt_ref, rms_norm_ref, rope_ref,
/// softmax_ref, swiglu_ref, causal_attention_ref. Naive loops in double on dense row-major
/// buffers, written from the HF LLaMA definition without any code from ops/. Slow; tests only.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

/// y (m, n) = x (m, k) w (n, k)^T + bias (n, may be empty), in double.
inline std::vector<double> matmul_nt_ref(const std::vector<double>& x, const std::vector<double>& w,
                                         const std::vector<double>& bias, int64_t m, int64_t n,
                                         int64_t k) {
  std::vector<double> y(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias.empty() ? 0.0 : bias[static_cast<size_t>(j)];
      for (int64_t p = 0; p < k; ++p) s += x[static_cast<size_t>(i * k + p)] * w[static_cast<size_t>(j * k + p)];
      y[static_cast<size_t>(i * n + j)] = s;
    }
  return y;
}

/// RMSNorm of each row of x (rows, dim): x / sqrt(mean(x^2) + eps) * weight.
inline std::vector<double> rms_norm_ref(const std::vector<double>& x, const std::vector<double>& weight,
                                        double eps, int64_t rows, int64_t dim) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0.0;
    for (int64_t i = 0; i < dim; ++i) ms += x[static_cast<size_t>(r * dim + i)] * x[static_cast<size_t>(r * dim + i)];
    ms /= static_cast<double>(dim);
    for (int64_t i = 0; i < dim; ++i)
      y[static_cast<size_t>(r * dim + i)] =
          x[static_cast<size_t>(r * dim + i)] / std::sqrt(ms + eps) * weight[static_cast<size_t>(i)];
  }
  return y;
}

/// Rotary embedding, HF rotate_half layout, on x (rows, heads * head_dim) where row r is at
/// position positions[r]. Frequencies base^(-2i/d), then `scaling` ("", "linear", "llama3")
/// as HF's rope init functions define it.
inline std::vector<double> rope_ref(const std::vector<double>& x, const std::vector<int64_t>& positions,
                                    int64_t heads, int64_t head_dim, double base,
                                    const std::string& scaling = "", double factor = 1.0,
                                    double low_freq_factor = 1.0, double high_freq_factor = 4.0,
                                    double original_context = 8192.0) {
  const int64_t half = head_dim / 2;
  std::vector<double> freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double f = std::pow(base, -static_cast<double>(2 * i) / static_cast<double>(head_dim));
    if (scaling == "linear") f = f / factor;
    if (scaling == "llama3") {
      const double wavelen = 2.0 * 3.14159265358979323846 / f;
      const double lo_w = original_context / low_freq_factor, hi_w = original_context / high_freq_factor;
      if (wavelen > lo_w) {
        f = f / factor;
      } else if (!(wavelen < hi_w)) {
        const double sm = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
        f = (1 - sm) * f / factor + sm * f;
      }
    }
    freq[static_cast<size_t>(i)] = f;
  }
  std::vector<double> y(x.size());
  const int64_t width = heads * head_dim;
  for (size_t r = 0; r < positions.size(); ++r)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < head_dim; ++i) {
        const int64_t fi = i % half;
        const double ang = static_cast<double>(positions[r]) * freq[static_cast<size_t>(fi)];
        const size_t base_idx = r * static_cast<size_t>(width) + static_cast<size_t>(h * head_dim);
        // rotate_half(x)[i] = -x[i + half] for i < half, x[i - half] otherwise.
        const double rot = i < half ? -x[base_idx + static_cast<size_t>(i + half)]
                                    : x[base_idx + static_cast<size_t>(i - half)];
        y[base_idx + static_cast<size_t>(i)] = x[base_idx + static_cast<size_t>(i)] * std::cos(ang) + rot * std::sin(ang);
      }
  return y;
}

/// softmax of one vector.
inline std::vector<double> softmax_ref(const std::vector<double>& x) {
  double mx = -INFINITY;
  for (double v : x) mx = v > mx ? v : mx;
  std::vector<double> y(x.size());
  double s = 0.0;
  for (size_t i = 0; i < x.size(); ++i) s += (y[i] = std::exp(x[i] - mx));
  for (double& v : y) v /= s;
  return y;
}

/// silu(gate) * up elementwise.
inline std::vector<double> swiglu_ref(const std::vector<double>& gate, const std::vector<double>& up) {
  std::vector<double> y(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) y[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
  return y;
}

/// Causal GQA: q (n, heads*hd) at positions pos0.., k/v (pos0+n, kv_heads*hd); query at p sees
/// keys max(0, p-window+1)..p (window 0: all). Scale 1/sqrt(hd) unless given.
inline std::vector<double> causal_attention_ref(const std::vector<double>& q, const std::vector<double>& k,
                                                const std::vector<double>& v, int64_t n, int64_t pos0,
                                                int64_t heads, int64_t kv_heads, int64_t hd,
                                                int64_t window = 0, double scale = 0.0) {
  if (scale == 0.0) scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const int64_t qw = heads * hd, kw = kv_heads * hd;
  std::vector<double> out(static_cast<size_t>(n * qw), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t p = pos0 + r;
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t g = h / (heads / kv_heads);
      std::vector<double> s;
      std::vector<int64_t> keys;
      for (int64_t j = 0; j <= p; ++j) {
        if (window > 0 && j <= p - window) continue;
        double d = 0.0;
        for (int64_t i = 0; i < hd; ++i)
          d += q[static_cast<size_t>(r * qw + h * hd + i)] * k[static_cast<size_t>(j * kw + g * hd + i)];
        s.push_back(d * scale);
        keys.push_back(j);
      }
      const std::vector<double> pr = softmax_ref(s);
      for (size_t t = 0; t < keys.size(); ++t)
        for (int64_t i = 0; i < hd; ++i)
          out[static_cast<size_t>(r * qw + h * hd + i)] += pr[t] * v[static_cast<size_t>(keys[t] * kw + g * hd + i)];
    }
  }
  return out;
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
