#pragma once
/// SwiGLU, the LLaMA MLP's gate: out = silu(gate) * up with silu(g) = g / (1 + exp(-g)).
///
/// Numerics: fp32 throughout (exp in fp32); tolerance class: a few fp32 ulps per element against
/// reference::swiglu_ref. Elementwise, so deterministic.

#include <cmath>
#include <cstdint>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// out[i] = silu(gate[i]) * up[i] for i < n; out may alias gate or up.
inline void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

CLUSCOMP_NAMESPACE_END
