#pragma once
/// A whole exact Lloyd k-means run on the GPU (issue 21): the CPU engine's algorithm and answers,
/// step by step on the device.
///
///   start    points stably sorted by the caller's first labels (the CPU engine's box guess,
///            cluster/lloyd_engine.hpp kmeans_first_labels), so clusters hold their points in the
///            same order as on the CPU
///   assign   cuda/kmeans_assign.cuh: brute force, core/distance.hpp's fp32 distance, ties to the
///            lowest index (the codes every CPU path returns)
///   objective  core/centroid_update.hpp's fixed chunks of 65536 points, each summed in double by
///            one thread, chunks added in order: the CPU engine's bits
///   sort     CUB's stable radix sort of (label, position) on only the bits K needs (16-bit keys
///            where K <= 65536), then points, input ids and weights gathered into cluster order:
///            the CPU engine's stable counting sort, so the same order within every cluster
///   update   one thread per cluster sums its segment in double in segment order
///            (core/centroid_update.hpp's cluster_centroid, the CPU engine's function): centroids
///            equal the CPU path's bit for bit; no float atomics anywhere
///   split    host/kmeans_split.hpp on the host over the K counts (sequential and seeded by
///            std::mt19937_64: running it on the host is what keeps it the CPU path's rule
///            exactly); only the counts go down each update, the centroids only when a cluster is
///            empty
///   control  host/kmeans_lloyd_loop.hpp, the CPU driver's loop: fixed point, tolerance,
///            cancellation, the final reassignment
///
/// DESIGN.md rule 4 with one documented exception: args in, caller's stream, caller's workspace
/// (kmeans_gpu_lloyd_workspace_size), [[nodiscard]] Status out, no device allocation, never aborts.
/// The exception: the run synchronises the caller's stream twice per iteration (after the
/// assignment: the objective and the "labels changed" word decide whether to go on; after the
/// update: the counts decide the split). Those are host decisions of the algorithm; the steps
/// between them are asynchronous. Host memory: K-sized vectors for the split (and N codes when
/// the progress callback asks for them).
///
/// Memory (device): the input (n, d) floats, plus the workspace, about n * (8d + 28) bytes with
/// 16-bit keys (+ 8n with weights, + 4n with 32-bit keys) + K * (4d + 12) + CUB's sort storage:
/// 3.5 GB at N = 58M, d = 4, K = 65536 (with the input: 4.4 GB). Everything stays resident; points
/// are not streamed from host memory (see docs/status.md).

#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/kmeans_update_map.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/cuda/device/kmeans_update_kernel.cuh"
#include "cluscomp/cuda/kmeans_assign.cuh"
#include "cluscomp/host/kmeans_lloyd_loop.hpp"
#include "cluscomp/host/kmeans_split.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// What the progress callback of kmeans_gpu_lloyd sees after each iteration's assignment.
struct KMeansGpuIteration {
  int iteration = 0;                 // 0-based
  double objective = 0.0;            // of this assignment (see KMeansResult::objective)
  const float* centroids = nullptr;  // host (k, d): the centroids it used, when progress_centroids
  const uint32_t* codes = nullptr;   // host (n) input order, when progress_codes
};

/// Arguments of kmeans_gpu_lloyd. Device pointers unless marked host.
struct KMeansGpuLloydArgs {
  const float* points = nullptr;             // (n, d) row-major, contiguous, input order
  const float* weights = nullptr;            // (n) input order, finite and >= 0, or null (unweighted)
  const uint32_t* first_labels = nullptr;    // (n) input order, each < k: the order before the first assignment
  const float* initial_centroids = nullptr;  // (k, d)
  int64_t n = 0;
  int64_t k = 0;
  int d = 0;
  int iterations = 20;     // Lloyd updates; a final reassignment follows
  double tolerance = 0.0;  // as KMeansOptions::tolerance
  uint64_t seed = 1234;    // seeds the split rule (host/kmeans_split.hpp split_seed)
  float* centroids = nullptr;  // (k, d) out: the centroids of the last update
  uint32_t* codes = nullptr;   // (n) out: input-order codes of the last assignment
  /// Host callback after each iteration's assignment; false cancels. Costs a synchronisation and
  /// the transfers asked for below.
  std::function<bool(const KMeansGpuIteration&)> progress;
  bool progress_centroids = false;
  bool progress_codes = false;
  void* workspace = nullptr;  // kmeans_gpu_lloyd_workspace_size bytes, 256-byte aligned
  size_t workspace_bytes = 0;
};

namespace kmeans_gpu_detail {

inline constexpr size_t kAlign = 256;
inline size_t align_up(size_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

inline Status cuda_error(cudaError_t e, const std::string& what) {
  return Status(StatusCode::kCudaError, "kmeans_gpu_lloyd: " + what + ": " + cudaGetErrorName(e) + ": " +
                                            cudaGetErrorString(e));
}

/// CUB's temporary storage for sorting n (Key, uint32) pairs on `bits` bits (a host-side query).
template <class Key>
inline Status cub_sort_bytes(int64_t n, int bits, size_t* bytes) {
  cub::DoubleBuffer<Key> keys(nullptr, nullptr);
  cub::DoubleBuffer<uint32_t> values(nullptr, nullptr);
  *bytes = 0;
  const cudaError_t e = cub::DeviceRadixSort::SortPairs(nullptr, *bytes, keys, values, n, 0, bits);
  if (e != cudaSuccess) return cuda_error(e, "cub::DeviceRadixSort::SortPairs size query");
  return Status();
}

/// Byte offsets of the workspace's arrays (see the file comment for the total).
struct Layout {
  size_t pts[2] = {}, ids[2] = {}, w[2] = {}, keys[2] = {}, vals[2] = {};
  size_t label = 0, dist = 0, begin = 0, end = 0, counts = 0, centroids = 0, parts = 0, objective = 0, changed = 0;
  size_t cub = 0, cub_bytes = 0, total = 0;
  bool wide_keys = false;  // 32-bit keys (K > 65536)
};

inline Status make_layout(int64_t n, int64_t k, int d, bool weighted, Layout* out) {
  Layout l;
  l.wide_keys = k > 65536;
  const size_t un = static_cast<size_t>(n), uk = static_cast<size_t>(k), ud = static_cast<size_t>(d);
  const size_t key = l.wide_keys ? 4 : 2;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    const size_t o = at;
    at += align_up(bytes);
    return o;
  };
  for (int b = 0; b < 2; ++b) {
    l.pts[b] = take(un * ud * sizeof(float));
    l.ids[b] = take(un * sizeof(uint32_t));
    if (weighted) l.w[b] = take(un * sizeof(float));
    l.keys[b] = take(un * key);
    l.vals[b] = take(un * sizeof(uint32_t));
  }
  l.label = take(un * sizeof(uint32_t));
  l.dist = take(un * sizeof(float));
  l.begin = take(uk * sizeof(uint32_t));
  l.end = take(uk * sizeof(uint32_t));
  l.counts = take(uk * sizeof(uint32_t));
  l.centroids = take(uk * ud * sizeof(float));
  l.parts = take(static_cast<size_t>(kmeans_update_map::objective_chunks(n)) * sizeof(double));
  l.objective = take(sizeof(double));
  l.changed = take(sizeof(uint32_t));
  const int bits = kmeans_update_map::sort_key_bits(k);
  const Status s = l.wide_keys ? cub_sort_bytes<uint32_t>(n, bits, &l.cub_bytes)
                               : cub_sort_bytes<uint16_t>(n, bits, &l.cub_bytes);
  if (!s.ok()) return s;
  l.cub = take(l.cub_bytes);
  l.total = at;
  *out = l;
  return Status();
}

inline Status check_shape(int64_t n, int64_t k, int d) {
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "kmeans_gpu_lloyd: " + m); };
  if (d < 1 || d > 16) return bad("d = " + std::to_string(d) + " (must be 1..16)");
  if (k < 1) return bad("K = " + std::to_string(k) + " (must be >= 1)");
  if (n < k) return bad("N = " + std::to_string(n) + " points for K = " + std::to_string(k));
  if (n >= (int64_t{1} << 32)) return bad("N = " + std::to_string(n) + " (must be < 2^32)");
  if (k >= int64_t{kmeans_assign_map::kNoCentroid}) return bad("K = " + std::to_string(k) + " exceeds 2^31 - 2");
  return Status();
}

inline dim3 grid_for(int64_t items) { return dim3(static_cast<unsigned>(kmeans_update_map::blocks_for(items))); }

/// The run's device steps for one D and key type, as host/kmeans_lloyd_loop.hpp's Ops. A failed
/// CUDA call is kept in `err`; every later step then does nothing and report() stops the loop.
template <int D, class Key>
struct GpuLloyd {
  const KMeansGpuLloydArgs& a;
  cudaStream_t stream;
  Layout l;
  char* ws = nullptr;
  float* pts[2] = {};
  uint32_t* ids[2] = {};
  float* w[2] = {};
  Key* keys_cur = nullptr;  // the keys the points were last sorted by (cluster order)
  Key* keys_alt = nullptr;  // the next sort's input
  uint32_t* vals[2] = {};
  uint32_t *label = nullptr, *begin = nullptr, *end = nullptr, *counts = nullptr, *changed = nullptr;
  float *dist = nullptr, *cen = nullptr;
  double *parts = nullptr, *objective = nullptr;
  void* cub_tmp = nullptr;
  int cur = 0;  // pts[cur], ids[cur], w[cur]: the points in cluster order
  uint32_t changed_host = 0;
  std::vector<uint32_t> counts_host;
  std::vector<int64_t> counts64;
  std::vector<float> centroids_host;
  std::vector<uint32_t> codes_host;
  Status err;

  GpuLloyd(const KMeansGpuLloydArgs& args, cudaStream_t s, const Layout& layout) : a(args), stream(s), l(layout) {
    ws = static_cast<char*>(a.workspace);
    for (int b = 0; b < 2; ++b) {
      pts[b] = reinterpret_cast<float*>(ws + l.pts[b]);
      ids[b] = reinterpret_cast<uint32_t*>(ws + l.ids[b]);
      w[b] = a.weights != nullptr ? reinterpret_cast<float*>(ws + l.w[b]) : nullptr;
      vals[b] = reinterpret_cast<uint32_t*>(ws + l.vals[b]);
    }
    keys_cur = reinterpret_cast<Key*>(ws + l.keys[0]);
    keys_alt = reinterpret_cast<Key*>(ws + l.keys[1]);
    label = reinterpret_cast<uint32_t*>(ws + l.label);
    dist = reinterpret_cast<float*>(ws + l.dist);
    begin = reinterpret_cast<uint32_t*>(ws + l.begin);
    end = reinterpret_cast<uint32_t*>(ws + l.end);
    counts = reinterpret_cast<uint32_t*>(ws + l.counts);
    cen = reinterpret_cast<float*>(ws + l.centroids);
    parts = reinterpret_cast<double*>(ws + l.parts);
    objective = reinterpret_cast<double*>(ws + l.objective);
    changed = reinterpret_cast<uint32_t*>(ws + l.changed);
    cub_tmp = ws + l.cub;
  }

  /// Keeps the first error. (The (void): Status is [[nodiscard]], and nvcc's front end counts the
  /// Status& an assignment returns as a discarded one.)
  void keep(Status s) {
    if (err.ok() && !s.ok()) static_cast<void>(err = std::move(s));
  }
  bool check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) keep(cuda_error(e, what));
    return err.ok();
  }
  bool launched(const char* what) { return check(cudaGetLastError(), what); }

  /// Sorts the positions by keys_alt (written by the prepare kernel), finds the segment bounds
  /// and gathers points, ids and weights from (pts_in, ids_in, w_in) into the other buffers.
  bool sort_and_gather(const float* pts_in, const uint32_t* ids_in, const float* w_in) {
    cub::DoubleBuffer<Key> kb(keys_alt, keys_cur);
    cub::DoubleBuffer<uint32_t> vb(vals[0], vals[1]);
    size_t bytes = l.cub_bytes;
    if (!check(cub::DeviceRadixSort::SortPairs(cub_tmp, bytes, kb, vb, a.n, 0, kmeans_update_map::sort_key_bits(a.k),
                                               stream),
               "cub::DeviceRadixSort::SortPairs"))
      return false;
    keys_cur = kb.Current();
    keys_alt = kb.Alternate();
    const uint32_t* perm = vb.Current();
    if (!check(cudaMemsetAsync(begin, 0, static_cast<size_t>(a.k) * sizeof(uint32_t), stream), "cudaMemsetAsync") ||
        !check(cudaMemsetAsync(end, 0, static_cast<size_t>(a.k) * sizeof(uint32_t), stream), "cudaMemsetAsync"))
      return false;
    kmeans_segment_bounds_kernel<Key><<<grid_for(a.n), kmeans_update_map::kThreads, 0, stream>>>(keys_cur, a.n, begin, end);
    if (!launched("kmeans_segment_bounds_kernel")) return false;
    const int to = 1 - cur;
    kmeans_gather_kernel<D><<<grid_for(a.n), kmeans_update_map::kThreads, 0, stream>>>(perm, a.n, pts_in, ids_in, w_in,
                                                                                      pts[to], ids[to], w[to]);
    if (!launched("kmeans_gather_kernel")) return false;
    cur = to;
    return true;
  }

  bool prepare(const uint32_t* labels, const Key* compare_with) {
    kmeans_prepare_sort_kernel<Key><<<grid_for(a.n), kmeans_update_map::kThreads, 0, stream>>>(
        labels, compare_with, a.n, keys_alt, vals[0], changed);
    return launched("kmeans_prepare_sort_kernel");
  }

  /// Centroids from the caller's, points in the order of the first labels.
  bool start() {
    counts_host.resize(static_cast<size_t>(a.k));
    counts64.resize(static_cast<size_t>(a.k));
    centroids_host.resize(static_cast<size_t>(a.k) * D);
    if (!check(cudaMemcpyAsync(cen, a.initial_centroids, static_cast<size_t>(a.k) * D * sizeof(float),
                               cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync (initial centroids)"))
      return false;
    if (!prepare(a.first_labels, nullptr)) return false;
    cur = 1;  // so that the gather writes buffer 0
    return sort_and_gather(a.points, nullptr, a.weights);
  }

  double assign() {
    if (!err.ok()) return 0.0;
    KMeansAssignGpuArgs aa;
    aa.points = make_matrix_view<const float>(pts[cur], a.n, D);
    aa.centroids = make_matrix_view<const float>(cen, a.k, D);
    aa.codes = label;
    aa.distances = dist;
    if (Status s = kmeans_assign_gpu(aa, stream); !s.ok()) {
      keep(std::move(s));
      return 0.0;
    }
    const int64_t chunks = kmeans_update_map::objective_chunks(a.n);
    kmeans_objective_chunks_kernel<><<<grid_for(chunks), kmeans_update_map::kThreads, 0, stream>>>(dist, w[cur], a.n, parts);
    if (!launched("kmeans_objective_chunks_kernel")) return 0.0;
    kmeans_objective_total_kernel<><<<1, 1, 0, stream>>>(parts, chunks, objective);
    if (!launched("kmeans_objective_total_kernel")) return 0.0;
    if (!check(cudaMemsetAsync(changed, 0, sizeof(uint32_t), stream), "cudaMemsetAsync")) return 0.0;
    if (!prepare(label, keys_cur)) return 0.0;
    double obj = 0.0;
    if (!check(cudaMemcpyAsync(&obj, objective, sizeof(double), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync") ||
        !check(cudaMemcpyAsync(&changed_host, changed, sizeof(uint32_t), cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync") ||
        !check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (after the assignment)"))
      return 0.0;
    return obj;
  }

  bool labels_unchanged() const { return changed_host == 0; }

  bool report(int it, double obj) {
    if (!err.ok()) return false;
    if (!a.progress) return true;
    KMeansGpuIteration r;
    r.iteration = it;
    r.objective = obj;
    if (a.progress_centroids) {
      if (!check(cudaMemcpyAsync(centroids_host.data(), cen, centroids_host.size() * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync (progress centroids)"))
        return false;
      r.centroids = centroids_host.data();
    }
    if (a.progress_codes) {
      codes_host.resize(static_cast<size_t>(a.n));
      if (!scatter_codes()) return false;
      if (!check(cudaMemcpyAsync(codes_host.data(), a.codes, codes_host.size() * sizeof(uint32_t),
                                 cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync (progress codes)"))
        return false;
      r.codes = codes_host.data();
    }
    if (!check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (progress)")) return false;
    return a.progress(r);
  }

  int64_t update(uint64_t split_seed) {
    if (!err.ok()) return 0;
    if (!sort_and_gather(pts[cur], ids[cur], w[cur])) return 0;
    kmeans_centroid_kernel<D><<<grid_for(a.k), kmeans_update_map::kThreads, 0, stream>>>(begin, end, a.k, pts[cur],
                                                                                        w[cur], cen, counts);
    if (!launched("kmeans_centroid_kernel")) return 0;
    if (!check(cudaMemcpyAsync(counts_host.data(), counts, counts_host.size() * sizeof(uint32_t),
                               cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (counts)") ||
        !check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (after the update)"))
      return 0;
    bool empty = false;
    for (size_t c = 0; c < counts_host.size(); ++c) {
      counts64[c] = counts_host[c];
      empty = empty || counts_host[c] == 0;
    }
    if (!empty) return 0;
    if (!check(cudaMemcpyAsync(centroids_host.data(), cen, centroids_host.size() * sizeof(float),
                               cudaMemcpyDeviceToHost, stream),
               "cudaMemcpyAsync (centroids for the split)") ||
        !check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (split)"))
      return 0;
    const int64_t splits = cluster_detail::split_empty_clusters(counts64.data(), a.k, a.n, D, split_seed,
                                                                centroids_host.data(), nullptr);
    // From pageable memory the copy returns once the data is staged: the buffer may change after.
    check(cudaMemcpyAsync(cen, centroids_host.data(), centroids_host.size() * sizeof(float), cudaMemcpyHostToDevice,
                          stream),
          "cudaMemcpyAsync (split centroids)");
    return splits;
  }

  bool scatter_codes() {
    kmeans_scatter_codes_kernel<><<<grid_for(a.n), kmeans_update_map::kThreads, 0, stream>>>(ids[cur], label, a.n, a.codes);
    return launched("kmeans_scatter_codes_kernel");
  }

  /// Codes and centroids to the caller's arrays (asynchronous: the caller synchronises).
  bool finish() {
    if (!err.ok() || !scatter_codes()) return false;
    return check(cudaMemcpyAsync(a.centroids, cen, static_cast<size_t>(a.k) * D * sizeof(float),
                                 cudaMemcpyDeviceToDevice, stream),
                 "cudaMemcpyAsync (centroids out)");
  }
};

template <int D, class Key>
Status run(const KMeansGpuLloydArgs& a, const Layout& l, cluster_detail::LloydLoopResult* out, cudaStream_t stream) {
  GpuLloyd<D, Key> g(a, stream, l);
  cluster_detail::LloydLoopResult r;
  if (g.start()) cluster_detail::lloyd_loop(g, a.iterations, a.tolerance, a.seed, r);
  g.finish();
  if (!g.err.ok()) return g.err;
  *out = std::move(r);
  return Status();
}

}  // namespace kmeans_gpu_detail

/// Device workspace of kmeans_gpu_lloyd for n points of dimension d, K clusters, with or without
/// weights (see the file comment). kInvalidArgument for a shape the run rejects; kCudaError if
/// CUB's size query fails. Host-side only: touches no device memory.
[[nodiscard]] inline Status kmeans_gpu_lloyd_workspace_size(int64_t n, int64_t k, int d, bool weighted, size_t* bytes) {
  if (Status s = kmeans_gpu_detail::check_shape(n, k, d); !s.ok()) return s;
  kmeans_gpu_detail::Layout l;
  if (Status s = kmeans_gpu_detail::make_layout(n, k, d, weighted, &l); !s.ok()) return s;
  *bytes = l.total;
  return Status();
}

/// Runs exact Lloyd k-means on `stream` (see the file comment). Numerics and determinism: those
/// of cluster/kmeans.hpp's kmeans(), bit for bit given the CPU engine's first labels: fp32
/// distances without FMA and ties to the lower index, centroid sums and objective in double in
/// the CPU engine's order, the same split draws; the same inputs give the same bits on every run.
/// `out` gets the objectives, iteration count, fixed point, splits and cancellation; codes and
/// centroids land in args.codes / args.centroids once the caller synchronises `stream`.
/// Errors: kInvalidArgument (shape, null pointer, workspace too small: both sizes named),
/// kCudaError (a launch, copy or synchronisation; the run stops there). Inputs are not checked
/// for NaN/Inf here: kmeans() validates them on the host before uploading.
[[nodiscard]] inline Status kmeans_gpu_lloyd(const KMeansGpuLloydArgs& a, cluster_detail::LloydLoopResult* out,
                                             cudaStream_t stream) {
  using namespace kmeans_gpu_detail;
  if (Status s = check_shape(a.n, a.k, a.d); !s.ok()) return s;
  if (a.points == nullptr || a.first_labels == nullptr || a.initial_centroids == nullptr || a.centroids == nullptr ||
      a.codes == nullptr || a.workspace == nullptr || out == nullptr)
    return Status(StatusCode::kInvalidArgument, "kmeans_gpu_lloyd: null pointer");
  if (a.iterations < 0 || !(a.tolerance >= 0.0))
    return Status(StatusCode::kInvalidArgument, "kmeans_gpu_lloyd: iterations = " + std::to_string(a.iterations) +
                                                    ", tolerance = " + std::to_string(a.tolerance));
  Layout l;
  if (Status s = make_layout(a.n, a.k, a.d, a.weights != nullptr, &l); !s.ok()) return s;
  if (a.workspace_bytes < l.total)
    return Status(StatusCode::kInvalidArgument, "kmeans_gpu_lloyd: workspace of " + std::to_string(a.workspace_bytes) +
                                                    " bytes, needs " + std::to_string(l.total));
  if (reinterpret_cast<uintptr_t>(a.workspace) % kAlign != 0)
    return Status(StatusCode::kInvalidArgument, "kmeans_gpu_lloyd: workspace not 256-byte aligned");
  switch (a.d) {
#define CLUSCOMP_LLOYD_CASE(DD)                                                                              \
  case DD:                                                                                                   \
    return l.wide_keys ? run<DD, uint32_t>(a, l, out, stream) : run<DD, uint16_t>(a, l, out, stream);
    CLUSCOMP_LLOYD_CASE(1) CLUSCOMP_LLOYD_CASE(2) CLUSCOMP_LLOYD_CASE(3) CLUSCOMP_LLOYD_CASE(4)
    CLUSCOMP_LLOYD_CASE(5) CLUSCOMP_LLOYD_CASE(6) CLUSCOMP_LLOYD_CASE(7) CLUSCOMP_LLOYD_CASE(8)
    CLUSCOMP_LLOYD_CASE(9) CLUSCOMP_LLOYD_CASE(10) CLUSCOMP_LLOYD_CASE(11) CLUSCOMP_LLOYD_CASE(12)
    CLUSCOMP_LLOYD_CASE(13) CLUSCOMP_LLOYD_CASE(14) CLUSCOMP_LLOYD_CASE(15) CLUSCOMP_LLOYD_CASE(16)
#undef CLUSCOMP_LLOYD_CASE
    default: break;
  }
  return Status(StatusCode::kInvalidArgument, "kmeans_gpu_lloyd: d = " + std::to_string(a.d));
}

CLUSCOMP_NAMESPACE_END
