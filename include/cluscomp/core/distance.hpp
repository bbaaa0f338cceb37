#pragma once
/// The exact squared distance and the k-means tie-break, shared by the CPU k-means (scalar and
/// SIMD kernels), the centroid tree and a GPU k-means. Plain C++17, CLUSCOMP_HOST_DEVICE.
///
/// Why exactness needs care: the k-means answer is defined by fp32 distances evaluated in one
/// order, `s = t0*t0; s += t1*t1; ...` with t_k = x_k - c_k, and by the lowest index among equal
/// distances. A compiler that fuses a product with the following add (an FMA) changes the
/// rounding and so, on near-ties, the chosen centroid. On the host CLUSCOMP_NO_CONTRACT makes every
/// product opaque to the optimiser (GCC contracts a * b + c across statements by default in C++
/// once -march enables FMA; clang within expressions); on the device __fmul_rn / __fadd_rn are
/// never contracted by nvcc. Both give IEEE round-to-nearest products and sums, so the CPU and GPU
/// distances are the same bits.

#include <cstdint>

#include "cluscomp/core/config.hpp"

/// Marks v as a value held in a register that the compiler must treat as opaque, so the operation
/// that produced it cannot be fused with the one that consumes it. Emits no instruction. Host
/// only (device code uses the __*_rn intrinsics); other compilers: no barrier (MSVC does not
/// contract by default).
#if defined(__CUDA_ARCH__)
#define CLUSCOMP_NO_CONTRACT(v) ((void)0)
#elif (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CLUSCOMP_NO_CONTRACT(v) __asm__("" : "+x"(v))
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
#define CLUSCOMP_NO_CONTRACT(v) __asm__("" : "+w"(v))
#else
#define CLUSCOMP_NO_CONTRACT(v) ((void)0)
#endif

CLUSCOMP_NAMESPACE_BEGIN

/// a * b rounded to fp32, never fused with a later add.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float uncontracted_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  float p = a * b;
  CLUSCOMP_NO_CONTRACT(p);
  return p;
#endif
}

/// a + b rounded to fp32, never fused with an earlier product.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float uncontracted_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

/// a * b rounded to double, never fused with a later add (the weighted centroid sums and the
/// weighted objective: host and device must round the product before the sum).
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE double uncontracted_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  double p = a * b;
  CLUSCOMP_NO_CONTRACT(p);
  return p;
#endif
}

/// a + b rounded to double, never fused with an earlier product.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE double uncontracted_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

/// Squared distance of x (D contiguous floats) to c (coordinate k at c[k * cstride]) in fp32, in
/// the order above. The same bits on every path (scalar, SIMD lanes, device) for the same inputs.
template <int D>
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float squared_distance(const float* x, const float* c,
                                                                 int64_t cstride = 1) {
  float t = x[0] - c[0];
  float s = uncontracted_mul(t, t);
  for (int k = 1; k < D; ++k) {
    t = x[k] - c[k * cstride];
    s = uncontracted_add(s, uncontracted_mul(t, t));
  }
  return s;
}

/// The k-means tie-break: true when (d, i) precedes (best_d, best_i) lexicographically, i.e. a
/// smaller distance, or an equal one with a lower centroid index. NaN never precedes, so a NaN
/// distance (padding entries) never wins. The answer is independent of the scan order.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE bool precedes(float d, int32_t i, float best_d, int32_t best_i) {
  return d < best_d || (d == best_d && i < best_i);
}

CLUSCOMP_NAMESPACE_END
