#pragma once
/// Vector loads of whole centroids for the specialised GPU kernels (decode_kernel.cuh): a
/// d-component centroid of type T read with 4-, 8- or 16-byte loads and
/// converted through CodebookView<T>::decode_component (exact, the CPU's element operation).

#include <cstdint>
#include <cstring>

#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

namespace decode_gpu {

/// Bytes of the one vector load that reads a d-component centroid of type T (0: no vector load).
template <class T, int D>
inline constexpr int kCentroidLoadBytes = (D * sizeof(T)) % 16 == 0  ? 16
                                          : (D * sizeof(T)) % 8 == 0 ? 8
                                          : (D * sizeof(T)) % 4 == 0 ? 4
                                                                     : 0;

/// The D components of the centroid at `src` as floats, read with 4-, 8- or 16-byte loads
/// (src aligned to kCentroidLoadBytes<T, D>). Exact: a load and decode_component per element.
/// kL2Only: global memory read with ld.global.cg (cached in L2, not L1): the lookup GEMV's
/// choice for tables too large for shared memory, where L1 would only thrash (AQLM measured the
/// L2-only path 2x faster for a 1 MiB table); src must then be global memory.
template <class T, int D, bool kL2Only = false>
__device__ CLUSCOMP_FORCEINLINE void load_centroid(const T* src, float (&r)[D]) {
  constexpr int kBytes = D * static_cast<int>(sizeof(T));
  constexpr int kLoad = kCentroidLoadBytes<T, D>;
  static_assert(kLoad > 0, "load_centroid: no vector load for this (T, D)");
  T vals[D];
  if constexpr (kLoad == 16) {
    uint4 w[kBytes / 16];
#pragma unroll
    for (int q = 0; q < kBytes / 16; ++q) w[q] = kL2Only ? __ldcg(reinterpret_cast<const uint4*>(src) + q) : reinterpret_cast<const uint4*>(src)[q];
    std::memcpy(vals, w, kBytes);
  } else if constexpr (kLoad == 8) {
    uint2 w[kBytes / 8];
#pragma unroll
    for (int q = 0; q < kBytes / 8; ++q) w[q] = kL2Only ? __ldcg(reinterpret_cast<const uint2*>(src) + q) : reinterpret_cast<const uint2*>(src)[q];
    std::memcpy(vals, w, kBytes);
  } else {
    uint32_t w[kBytes / 4];
#pragma unroll
    for (int q = 0; q < kBytes / 4; ++q) w[q] = kL2Only ? __ldcg(reinterpret_cast<const unsigned int*>(src) + q) : reinterpret_cast<const uint32_t*>(src)[q];
    std::memcpy(vals, w, kBytes);
  }
#pragma unroll
  for (int t = 0; t < D; ++t) r[t] = CodebookView<T>::decode_component(vals, t);
}

}  // namespace decode_gpu

CLUSCOMP_NAMESPACE_END
