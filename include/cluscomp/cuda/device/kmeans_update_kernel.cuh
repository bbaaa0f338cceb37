#pragma once
/// The GPU k-means's sort-preparation, bounds, gather, centroid, objective and code-scatter
/// kernels. Each maps its thread to one item through core/kmeans_update_map.hpp's item_index and
/// calls that header's per-item function, which the CPU tests replay; no kernel holds arithmetic
/// of its own. No atomics on values: every output has one writer (the "labels changed" flag is
/// the one shared word, and every writer stores the same 1).

#include <cuda_runtime.h>

#include <cstdint>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/kmeans_update_map.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// keys_out / values_out (n): the sort input for `label` (n); *changed = 1 when some label differs
/// from sorted_keys (n, or null: no comparison).
template <class Key>
__global__ void __launch_bounds__(kmeans_update_map::kThreads)
    kmeans_prepare_sort_kernel(const uint32_t* __restrict__ label, const Key* __restrict__ sorted_keys,
                               int64_t n, Key* __restrict__ keys_out, uint32_t* __restrict__ values_out,
                               uint32_t* __restrict__ changed) {
  const int64_t j = kmeans_update_map::item_index(blockIdx.x, static_cast<int>(threadIdx.x));
  if (j >= n) return;
  if (kmeans_update_map::prepare_sort_item<Key>(j, label, sorted_keys, keys_out, values_out)) *changed = 1u;
}

/// begin / end (K, zeroed by the caller) from the sorted keys (n).
template <class Key>
__global__ void __launch_bounds__(kmeans_update_map::kThreads)
    kmeans_segment_bounds_kernel(const Key* __restrict__ keys, int64_t n, uint32_t* __restrict__ begin,
                                 uint32_t* __restrict__ end) {
  const int64_t o = kmeans_update_map::item_index(blockIdx.x, static_cast<int>(threadIdx.x));
  if (o >= n) return;
  kmeans_update_map::segment_bounds_item<Key>(o, n, keys, begin, end);
}

/// Points, ids and weights to the order `perm` (n) gives.
template <int D>
__global__ void __launch_bounds__(kmeans_update_map::kThreads)
    kmeans_gather_kernel(const uint32_t* __restrict__ perm, int64_t n, const float* __restrict__ pts_in,
                         const uint32_t* __restrict__ ids_in, const float* __restrict__ w_in,
                         float* __restrict__ pts_out, uint32_t* __restrict__ ids_out, float* __restrict__ w_out) {
  const int64_t o = kmeans_update_map::item_index(blockIdx.x, static_cast<int>(threadIdx.x));
  if (o >= n) return;
  kmeans_update_map::gather_item<D>(o, perm, pts_in, ids_in, w_in, pts_out, ids_out, w_out);
}

/// One thread per cluster: counts (K) and the centroids (K, D) of the non-empty clusters. Each
/// sums its segment sequentially in double (the CPU engine's order): the time is set by the
/// largest cluster, the price of the CPU path's bits.
template <int D>
__global__ void __launch_bounds__(kmeans_update_map::kThreads)
    kmeans_centroid_kernel(const uint32_t* __restrict__ begin, const uint32_t* __restrict__ end, int64_t k,
                           const float* __restrict__ pts, const float* __restrict__ w,
                           float* __restrict__ centroids, uint32_t* __restrict__ counts) {
  const int64_t a = kmeans_update_map::item_index(blockIdx.x, static_cast<int>(threadIdx.x));
  if (a >= k) return;
  kmeans_update_map::centroid_item<D>(a, begin, end, pts, w, centroids, counts);
}

// The kernels without a natural template parameter are templates all the same (Unused = 0): a
// non-template __global__ defined in a header is a multiple definition in the second .cu that
// includes it.

/// One thread per objective chunk: parts (objective_chunks(n)).
template <int Unused = 0>
__global__ void __launch_bounds__(kmeans_update_map::kThreads)
    kmeans_objective_chunks_kernel(const float* __restrict__ dist, const float* __restrict__ w, int64_t n,
                                   double* __restrict__ parts) {
  const int64_t c = kmeans_update_map::item_index(blockIdx.x, static_cast<int>(threadIdx.x));
  if (c >= kmeans_update_map::objective_chunks(n)) return;
  kmeans_update_map::objective_item(c, n, dist, w, parts);
}

/// One thread: *total = the chunk sums in chunk order.
template <int Unused = 0>
__global__ void kmeans_objective_total_kernel(const double* __restrict__ parts, int64_t chunks,
                                              double* __restrict__ total) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *total = kmeans_update_map::objective_total(parts, chunks);
}

/// codes (n, input order) from the labels (n, cluster order) and the ids.
template <int Unused = 0>
__global__ void __launch_bounds__(kmeans_update_map::kThreads)
    kmeans_scatter_codes_kernel(const uint32_t* __restrict__ ids, const uint32_t* __restrict__ label, int64_t n,
                                uint32_t* __restrict__ codes) {
  const int64_t j = kmeans_update_map::item_index(blockIdx.x, static_cast<int>(threadIdx.x));
  if (j >= n) return;
  kmeans_update_map::scatter_code_item(j, ids, label, codes);
}

CLUSCOMP_NAMESPACE_END
