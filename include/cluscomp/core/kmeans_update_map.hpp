#pragma once
/// The GPU k-means's sort, update and objective steps (cuda/kmeans_gpu.cuh) as per-item functions
/// the CPU can run too: each kernel maps its thread to one item (a point position, a cluster, an
/// objective chunk) with item_index and calls one of these. Plain C++17, CLUSCOMP_HOST_DEVICE.
///
/// Why they live here: on machines without a GPU the tests replay every kernel on the CPU through
/// these same functions (every output written once, every read in bounds) and run the whole GPU
/// Lloyd loop that way against the CPU k-means, bit for bit; and the per-cluster arithmetic is
/// core/centroid_update.hpp's, the CPU engine's own.
///
/// The state they work on, in cluster order (points sorted stably by label, as the CPU engine
/// keeps them): pts (n, D), ids (n: input index of each sorted point), w (n, optional weights),
/// label (n: the last assignment of each sorted point), dist (n: its fp32 squared distance).

#include <cstdint>

#include "cluscomp/core/centroid_update.hpp"
#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace kmeans_update_map {

inline constexpr int kThreads = 256;  // threads per block of every update kernel

/// Blocks for `items` items, one per thread.
CLUSCOMP_HOST_DEVICE constexpr int64_t blocks_for(int64_t items) { return (items + kThreads - 1) / kThreads; }

/// The item of thread `thread` of block `block` (consecutive threads, consecutive items: coalesced).
CLUSCOMP_HOST_DEVICE constexpr int64_t item_index(int64_t block, int thread) { return block * kThreads + thread; }

/// Radix-sort bits that hold every label of K clusters (at least 1): only these are sorted.
CLUSCOMP_HOST_DEVICE constexpr int sort_key_bits(int64_t k) {
  int b = 1;
  while (b < 63 && (int64_t{1} << b) < k) ++b;
  return b;
}

/// Objective chunks for n points (core/centroid_update.hpp's kObjectiveChunk).
CLUSCOMP_HOST_DEVICE constexpr int64_t objective_chunks(int64_t n) { return (n + kObjectiveChunk - 1) / kObjectiveChunk; }

/// Sort input of position j: the key is its label (narrowed to Key: the caller checked K fits),
/// the value its position, so a stable sort yields the permutation to cluster order and keeps,
/// within a cluster, the previous order (the CPU engine's stable counting sort). Returns whether
/// the label differs from `sorted_keys[j]`, the label j was sorted under (false when null).
template <class Key>
CLUSCOMP_HOST_DEVICE inline bool prepare_sort_item(int64_t j, const uint32_t* label, const Key* sorted_keys,
                                                   Key* keys_out, uint32_t* values_out) {
  const Key key = static_cast<Key>(label[j]);
  keys_out[j] = key;
  values_out[j] = static_cast<uint32_t>(j);
  return sorted_keys != nullptr && sorted_keys[j] != key;
}

/// Cluster bounds from sorted keys: position o starts its cluster's segment when it is first or
/// follows another key, and ends it when it is last or precedes another key. Each begin/end entry
/// of a non-empty cluster is written by exactly one position; those of empty clusters are not
/// written (the caller zeroes both arrays first, so an empty cluster reads [0, 0)).
template <class Key>
CLUSCOMP_HOST_DEVICE inline void segment_bounds_item(int64_t o, int64_t n, const Key* keys, uint32_t* begin,
                                                     uint32_t* end) {
  const Key key = keys[o];
  if (o == 0 || keys[o - 1] != key) begin[key] = static_cast<uint32_t>(o);
  if (o == n - 1 || keys[o + 1] != key) end[key] = static_cast<uint32_t>(o + 1);
}

/// Moves the point at position perm[o] of the previous order (and its input id and weight) to
/// position o. ids_in null: the previous order is the input order (id = position); w_in null: no
/// weights (w_out untouched).
template <int D>
CLUSCOMP_HOST_DEVICE inline void gather_item(int64_t o, const uint32_t* perm, const float* pts_in,
                                             const uint32_t* ids_in, const float* w_in, float* pts_out,
                                             uint32_t* ids_out, float* w_out) {
  const int64_t src = perm[o];
  for (int c = 0; c < D; ++c) pts_out[o * D + c] = pts_in[src * D + c];
  ids_out[o] = ids_in != nullptr ? ids_in[src] : static_cast<uint32_t>(src);
  if (w_in != nullptr) w_out[o] = w_in[src];
}

/// Cluster a's point count and, when it is not empty, its new centroid (cluster_centroid: the
/// CPU engine's arithmetic in the same order). An empty cluster keeps its centroid for the split.
template <int D>
CLUSCOMP_HOST_DEVICE inline void centroid_item(int64_t a, const uint32_t* begin, const uint32_t* end, const float* pts,
                                               const float* w, float* centroids, uint32_t* counts) {
  const int64_t lo = begin[a], hi = end[a];
  counts[a] = static_cast<uint32_t>(hi - lo);
  if (hi > lo) cluster_centroid<D>(pts, w, lo, hi, centroids + a * D);
}

/// Chunk c's objective (the CPU engine's chunks and per-chunk sum).
CLUSCOMP_HOST_DEVICE inline void objective_item(int64_t c, int64_t n, const float* dist, const float* w,
                                                double* parts) {
  const int64_t lo = c * kObjectiveChunk;
  const int64_t hi = lo + kObjectiveChunk < n ? lo + kObjectiveChunk : n;
  parts[c] = objective_chunk_sum(dist, w, lo, hi);
}

/// The objective: the chunk sums added in chunk order (one thread; a few hundred chunks).
CLUSCOMP_HOST_DEVICE inline double objective_total(const double* parts, int64_t chunks) {
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += parts[c];
  return s;
}

/// Input-order code of the point at position j.
CLUSCOMP_HOST_DEVICE inline void scatter_code_item(int64_t j, const uint32_t* ids, const uint32_t* label,
                                                   uint32_t* codes) {
  codes[ids[j]] = label[j];
}

}  // namespace kmeans_update_map
CLUSCOMP_NAMESPACE_END
