#pragma once
/// RoPE in the rotate_half layout, on the runtime's cos/sin tables. Conventions: common.hpp.

#include <cstdint>
#include <string>
#include <type_traits>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/rope.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// Rotates, in place, `heads` heads of each of the table's rows of x (row r at position
/// t.pos0 + r; row stride ldx). float: ops::apply_rope (bit for bit); double: the same rotation
/// with the same fp32 cos/sin tables. The context is the table itself (nothing else is saved).
template <class T>
void rope_forward(T* x, int64_t ldx, int64_t heads, const RopeTable& t) {
  const int64_t half = t.half, hd = 2 * half;
  detail::require(heads >= 0 && ldx >= heads * hd, "rope_forward",
                  "row stride " + std::to_string(ldx) + " is shorter than " + std::to_string(heads) + " heads of " +
                      std::to_string(hd));
  if constexpr (std::is_same_v<T, float>) {
    throw_if_error(apply_rope(x, ldx, heads, t));
  } else {
    for (int64_t r = 0; r < t.n; ++r)
      for (int64_t h = 0; h < heads; ++h) {
        T* v = x + r * ldx + h * hd;
        for (int64_t i = 0; i < half; ++i) {
          const T cs = t.cos[static_cast<size_t>(r * half + i)], sn = t.sin[static_cast<size_t>(r * half + i)];
          const T a = v[i], b = v[i + half];
          v[i] = a * cs - b * sn;
          v[i + half] = b * cs + a * sn;
        }
      }
  }
}

/// The gradient of rope_forward, in place: the transposed (inverse) rotation of dy. Exact up to
/// one rounding per element; deterministic.
template <class T>
void rope_backward(T* dx, int64_t ldx, int64_t heads, const RopeTable& t) {
  const int64_t half = t.half, hd = 2 * half;
  detail::require(heads >= 0 && ldx >= heads * hd, "rope_backward",
                  "row stride " + std::to_string(ldx) + " is shorter than " + std::to_string(heads) + " heads of " +
                      std::to_string(hd));
  for (int64_t r = 0; r < t.n; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      T* v = dx + r * ldx + h * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T cs = t.cos[static_cast<size_t>(r * half + i)], sn = t.sin[static_cast<size_t>(r * half + i)];
        const T ga = v[i], gb = v[i + half];
        v[i] = ga * cs + gb * sn;
        v[i + half] = gb * cs - ga * sn;
      }
    }
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
