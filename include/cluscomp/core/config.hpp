#pragma once
/// Build-wide macros and the versioned namespace.
///
/// Every public symbol lives in `cluscomp::CLUSCOMP_ABI` (an inline namespace), so two engines that
/// embed different cluscomp versions can share one process without ODR clashes.

#define CLUSCOMP_VERSION_MAJOR 0
#define CLUSCOMP_VERSION_MINOR 1
#define CLUSCOMP_VERSION_PATCH 0
#define CLUSCOMP_VERSION_STRING "0.1.0"

#define CLUSCOMP_ABI v0_1

#define CLUSCOMP_NAMESPACE_BEGIN \
  namespace cluscomp {           \
  inline namespace CLUSCOMP_ABI {
#define CLUSCOMP_NAMESPACE_END \
  }                            \
  }

#if defined(__CUDACC__)
#define CLUSCOMP_HOST_DEVICE __host__ __device__
#define CLUSCOMP_FORCEINLINE __forceinline__
#else
#define CLUSCOMP_HOST_DEVICE
#if defined(__GNUC__) || defined(__clang__)
#define CLUSCOMP_FORCEINLINE inline __attribute__((always_inline))
#else
#define CLUSCOMP_FORCEINLINE inline
#endif
#endif
