#pragma once
/// The per-row step of a lookup GEMM, shared by every implementation (the CPU's portable path,
/// and the reference for what each SIMD or GPU kernel computes). Plain C++17, CLUSCOMP_HOST_DEVICE.
///
/// Row i of Wt (one input channel of W) is the concatenation of the centroids its codes select, so
/// y[r, :] = sum_i x[r, i] * Wt[i, :]. The step adds one input row's contribution to a run of
/// accumulators with one correctly rounded fused multiply-add per element: every lookup kernel
/// that applies it for i = 0, 1, ..., in-1 in that order (whatever its blocking, threads or
/// device) gets the same bits.

#include <cmath>
#include <cstdint>

#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// fma(a, b, c) rounded once to fp32, on the host and the device.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/// acc[v*d + t] = fma(xv, Wt[i, (j0 + v)*d + t], acc[v*d + t]) for v < nv, t < d, where codes[v]
/// is the code of vector (i, j0 + v) (already clamped to K-1 by the reader) and xv = x[r, i].
/// Padding components are accumulated too (the caller drops them on store).
template <class T>
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void lookup_row_step(const CodebookView<T>& w, int64_t i,
                                                               const uint32_t* codes, int64_t nv, float xv,
                                                               float* acc) {
  const T* table = w.codebook_for_row(i);
  const int d = w.d;
  for (int64_t v = 0; v < nv; ++v) {
    const T* c = table + static_cast<int64_t>(codes[v]) * d;
    for (int t = 0; t < d; ++t)
      acc[v * d + t] = fma_rn(xv, CodebookView<T>::decode_component(c, t), acc[v * d + t]);
  }
}

CLUSCOMP_NAMESPACE_END
