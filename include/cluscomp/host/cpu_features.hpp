#pragma once
/// The one place that asks the CPU what it can run. Every SIMD path in the library is compiled
/// with function-level target attributes and chosen at run time from these answers, so one binary
/// runs on any x86-64 and takes AVX2 where it exists; other architectures get the portable paths.

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
};

/// Detected once per process (the answer cannot change while it runs).
inline const CpuFeatures& cpu_features() {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  static const CpuFeatures f = [] {
    CpuFeatures r;
    r.avx2 = __builtin_cpu_supports("avx2") != 0;
    r.fma = __builtin_cpu_supports("fma") != 0;
    r.f16c = __builtin_cpu_supports("f16c") != 0;
    return r;
  }();
#else
  static const CpuFeatures f;
#endif
  return f;
}

/// AVX2 (the exact k-means distance kernels).
inline bool cpu_has_avx2() { return cpu_features().avx2; }
/// AVX2 and FMA (dense matmul, attention, the k-means filter).
inline bool cpu_has_avx2_fma() { return cpu_features().avx2 && cpu_features().fma; }
/// AVX2, FMA and F16C (the lookup GEMM, which also widens fp16 tables with F16C; every AVX2+FMA
/// CPU has F16C, it is checked anyway).
inline bool cpu_has_avx2_fma_f16c() { return cpu_has_avx2_fma() && cpu_features().f16c; }
/// F16C alone (fp16 -> fp32 conversion of codebooks).
inline bool cpu_has_f16c() { return cpu_features().f16c; }

CLUSCOMP_NAMESPACE_END
