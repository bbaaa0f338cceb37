#pragma once
/// The round-to-nearest baseline (CompressMethod::kRtn). Part of pipeline/compress.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/pipeline/compress/options.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Round-to-nearest uniform quantisation of W (out, in) row-major; returns the dequantised values
/// (what a decoder reproduces). Per row and group of `group_size` input columns: min m and max M
/// in fp32, scale = (M - m) / (2^bits - 1); scale and m are rounded to fp16 (as stored), then
/// q = clamp(round((w - m16) / s16), 0, 2^bits - 1) and w^ = s16 * q + m16 in fp32.
/// Error bound per element: |w - w^| <= s16 / 2 + |m - m16| + (2^bits - 1) * |s - s16| (fp16
/// rounding of the scale and minimum; the clamp only helps). Deterministic, single-threaded.
/// Throws Error(kInvalidArgument) for bits outside 1..8, group_size < 1 or a bad size.
inline std::vector<float> rtn_quantize(const std::vector<float>& w, int64_t out, int64_t in, const RtnSettings& r) {
  if (r.bits < 1 || r.bits > 8)
    throw Error(StatusCode::kInvalidArgument, "rtn: bits = " + std::to_string(r.bits) + " is outside 1..8");
  if (r.group_size < 1)
    throw Error(StatusCode::kInvalidArgument, "rtn: group size " + std::to_string(r.group_size) + " is below 1");
  if (out < 1 || in < 1 || static_cast<int64_t>(w.size()) != out * in)
    throw Error(StatusCode::kInvalidArgument, "rtn: " + std::to_string(w.size()) + " values for (" +
                                                  std::to_string(out) + ", " + std::to_string(in) + ")");
  const float qmax = static_cast<float>((1 << r.bits) - 1);
  std::vector<float> q(w.size());
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g0 = 0; g0 < in; g0 += r.group_size) {
      const int64_t g1 = std::min<int64_t>(in, g0 + r.group_size);
      const float* x = w.data() + o * in;
      float lo = x[g0], hi = x[g0];
      for (int64_t i = g0; i < g1; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
      }
      const float m16 = half_bits_to_float(float_to_half_bits(lo));
      const float s16 = half_bits_to_float(float_to_half_bits((hi - lo) / qmax));
      for (int64_t i = g0; i < g1; ++i) {
        float level = 0.0f;
        if (s16 > 0.0f) level = std::min(qmax, std::max(0.0f, std::nearbyint((x[i] - m16) / s16)));
        q[static_cast<size_t>(o * in + i)] = s16 * level + m16;
      }
    }
  return q;
}

CLUSCOMP_NAMESPACE_END
