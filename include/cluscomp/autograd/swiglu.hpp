#pragma once
/// SwiGLU: out = silu(gate) * up, elementwise. Conventions: common.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/swiglu.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// out = silu(gate) * up elementwise (count values). float: ops::swiglu (bit for bit); double: the
/// same formula. Context: gate and up themselves (the caller keeps them). Deterministic.
template <class T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t count, ThreadPool* pool = nullptr) {
  detail::require(count >= 0 && (count == 0 || (gate && up && out)), "swiglu_forward", "bad count or null pointer");
  constexpr int64_t kChunk = 16384;
  parallel_for(count >= 4 * kChunk ? pool : nullptr, (count + kChunk - 1) / kChunk, [&](int64_t t) {
    const int64_t i0 = t * kChunk, len = std::min(count, i0 + kChunk) - i0;
    if constexpr (std::is_same_v<T, float>) {
      swiglu(gate + i0, up + i0, out + i0, len);
    } else {
      for (int64_t i = i0; i < i0 + len; ++i) out[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    }
  });
}

/// dgate = dout * up * sig(g) * (1 + g * (1 - sig(g))), dup = dout * silu(g) (overwritten; either
/// may be null). sig in T; elementwise, deterministic.
template <class T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t count,
                     ThreadPool* pool = nullptr) {
  detail::require(count >= 0 && (count == 0 || (gate && up && dout)), "swiglu_backward", "bad count or null pointer");
  constexpr int64_t kChunk = 16384;
  parallel_for(count >= 4 * kChunk ? pool : nullptr, (count + kChunk - 1) / kChunk, [&](int64_t t) {
    const int64_t i0 = t * kChunk, i1 = std::min(count, i0 + kChunk);
    for (int64_t i = i0; i < i1; ++i) {
      const T g = gate[i];
      const T sg = T(1) / (T(1) + std::exp(-g));
      const T go = dout[i];
      if (dgate) dgate[i] = go * up[i] * (sg * (T(1) + g * (T(1) - sg)));
      if (dup) dup[i] = go * (g * sg);
    }
  });
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
