#pragma once
/// Residual add: y = a + b. Conventions: common.hpp.

#include <cstdint>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// y = a + b (count values; y may alias a or b). Exact up to one rounding; deterministic.
template <class T>
void residual_add_forward(const T* a, const T* b, T* y, int64_t count) {
  detail::require(count >= 0 && (count == 0 || (a && b && y)), "residual_add_forward", "bad count or null pointer");
  for (int64_t i = 0; i < count; ++i) y[i] = a[i] + b[i];
}

/// da, db (+)= dy (either may be null; accumulate adds instead of overwriting). Exact copies or one
/// rounding per element; deterministic.
template <class T>
void residual_add_backward(const T* dy, T* da, T* db, int64_t count, bool accumulate) {
  detail::require(count >= 0 && (count == 0 || dy), "residual_add_backward", "bad count or null pointer");
  for (T* g : {da, db}) {
    if (!g) continue;
    for (int64_t i = 0; i < count; ++i) g[i] = accumulate ? g[i] + dy[i] : dy[i];
  }
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
