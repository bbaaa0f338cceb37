#pragma once
/// Exact Lloyd k-means for many short vectors (d in 1..16), as ClusComp's reference runs it
/// (CLUSCOMP.md section 1): seeded random-permutation initialisation (the first K distinct
/// points), Lloyd iterations with exact squared-L2 assignment, faiss's empty-cluster split
/// (1 +- 1/1024), and a final reassignment. The entry points and the backend dispatch live here;
/// the pieces each have a file:
///   kmeans_types.hpp     options, progress, results (shared by every backend)
///   kmeans_validate.hpp  input checks         kmeans_init.hpp   the initialisers
///   lloyd_engine.hpp     the CPU engine (how it is fast without changing the answer)
///   host/kmeans_split.hpp, host/kmeans_lloyd_loop.hpp   the split rule and the control loop
///                        (host-only, shared with the CUDA backend)
///   core/distance.hpp, core/centroid_update.hpp   the per-pair and per-cluster math, host-device
///   cuda/kmeans_gpu.cuh  the CUDA backend (Device::kCuda, where cluscomp::kernels is linked)
/// Memory beyond the input: about 2 * N * (4d + 4) + 8N bytes plus O(K * list length); + 4N bytes
/// with use_bounds; + 8N bytes with point_weights.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/cluster/kmeans_init.hpp"
#include "cluscomp/cluster/kmeans_types.hpp"
#include "cluscomp/cluster/kmeans_validate.hpp"
#include "cluscomp/cluster/lloyd_engine.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/host/kmeans_lloyd_loop.hpp"
#include "cluscomp/host/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <int D>
Status run_lloyd(MatrixView<const float> p, const KMeansOptions& o, int threads, const std::vector<float>& init,
                 std::chrono::steady_clock::time_point t0, KMeansResult* r) {
  LloydEngine<D> eng(p.rows, o.k, threads, o.use_pruning, o.use_simd, o.use_bounds && o.use_pruning, o.box_pruning);
  auto t = std::chrono::steady_clock::now();
  eng.start(p, init.data(), o.point_weights);
  r->stats.sort_s += seconds_since(t);
  r->codes.resize(static_cast<size_t>(p.rows));
  // The engine's steps, timed, under the control flow every backend shares (host/kmeans_lloyd_loop.hpp).
  struct Ops {
    LloydEngine<D>& eng;
    const KMeansOptions& o;
    std::chrono::steady_clock::time_point t0;
    KMeansResult* r;
    double assign() {
      const auto t = std::chrono::steady_clock::now();
      const double obj = eng.assign(r->stats);
      r->stats.assign_s += seconds_since(t);
      return obj;
    }
    bool labels_unchanged() const { return eng.labels_unchanged(); }
    bool report(int it, double obj) {
      if (!o.progress) return true;
      KMeansProgress pr;
      pr.iteration = it;
      pr.objective = obj;
      pr.elapsed_s = seconds_since(t0);
      pr.centroids = make_matrix_view<const float>(eng.centroids().data(), o.k, D);
      if (o.report_codes) {
        eng.codes(r->codes.data());
        pr.codes = r->codes.data();
      }
      return o.progress(pr);
    }
    int64_t update(uint64_t split_seed) {
      auto t = std::chrono::steady_clock::now();
      eng.sort_by_label();
      r->stats.sort_s += seconds_since(t);
      t = std::chrono::steady_clock::now();
      const int64_t splits = eng.update(split_seed);
      r->stats.update_s += seconds_since(t);
      return splits;
    }
  } ops{eng, o, t0, r};
  LloydLoopResult loop;
  lloyd_loop(ops, o.iterations, o.tolerance, o.seed, loop);
  r->objective = std::move(loop.objective);
  r->final_objective = loop.final_objective;
  r->iterations_run = loop.iterations_run;
  r->cancelled = loop.cancelled;
  r->stats.fixed_point_iteration = loop.fixed_point_iteration;
  r->stats.splits += loop.splits;
  eng.codes(r->codes.data());
  r->centroids = eng.centroids();
  r->counts = eng.label_counts();
  if (r->cancelled)
    return Status(StatusCode::kCancelled, "kmeans: cancelled by the progress callback after iteration " +
                                              std::to_string(r->objective.size() - 1));
  return Status();
}

/// The CPU backend of kmeans(): same contract.
inline Status kmeans_cpu(MatrixView<const float> points, const KMeansOptions& o, KMeansResult* out) {
  KMeansResult r;
  Status st = status_from([&] {
    const auto t0 = std::chrono::steady_clock::now();
    const int threads = resolve_thread_count(o.threads);
    std::vector<float> init = kmeans_initial_centroids(points, o);
    r.stats.init_s = seconds_since(t0);
    r.k = o.k;
    r.d = points.cols;
    r.n = points.rows;
    // Each case returns its Status (no assignment of a [[nodiscard]] type: nvcc's front end
    // warns on that, and this header is also compiled into .cu tests).
    const Status s = [&]() -> Status {
      switch (points.cols) {
#define CLUSCOMP_KMEANS_CASE(DD) \
  case DD: return run_lloyd<DD>(points, o, threads, init, t0, &r);
        CLUSCOMP_KMEANS_CASE(1) CLUSCOMP_KMEANS_CASE(2) CLUSCOMP_KMEANS_CASE(3) CLUSCOMP_KMEANS_CASE(4)
        CLUSCOMP_KMEANS_CASE(5) CLUSCOMP_KMEANS_CASE(6) CLUSCOMP_KMEANS_CASE(7) CLUSCOMP_KMEANS_CASE(8)
        CLUSCOMP_KMEANS_CASE(9) CLUSCOMP_KMEANS_CASE(10) CLUSCOMP_KMEANS_CASE(11) CLUSCOMP_KMEANS_CASE(12)
        CLUSCOMP_KMEANS_CASE(13) CLUSCOMP_KMEANS_CASE(14) CLUSCOMP_KMEANS_CASE(15) CLUSCOMP_KMEANS_CASE(16)
#undef CLUSCOMP_KMEANS_CASE
        default: return Status();
      }
    }();
    if (!s.ok()) throw Error(s);
  });
  if (st.ok() || st.code() == StatusCode::kCancelled) *out = std::move(r);
  return st;
}

}  // namespace cluster_detail

#if defined(CLUSCOMP_PREBUILT_KERNELS) && CLUSCOMP_PREBUILT_KERNELS
/// The CUDA backend of kmeans() (cuda/kmeans_gpu.cuh driven from the host: validation, the
/// initial centroids and the first labels here on the CPU, the Lloyd run on the GPU). Declared
/// here, defined in the cluscomp::kernels library (kernels/kmeans_gpu.cu), whose CMake target
/// defines CLUSCOMP_PREBUILT_KERNELS for every user: a .cpp calling kmeans() with kCuda needs no
/// CUDA header, and the declaration exists exactly where the definition is linked.
namespace cluster_detail {
Status kmeans_cuda(MatrixView<const float> points, const KMeansOptions& o, KMeansResult* out);
}  // namespace cluster_detail
#endif

/// Exact Lloyd k-means of N points (N, d), d in 1..16 (see the file comment for the algorithm).
///
/// Numerics: distances in fp32 (fixed evaluation order, no FMA), argmin ties to the lower index;
/// centroid sums and objectives in double. Every assignment equals a brute-force fp32 assignment
/// to the same centroids. Deterministic: the same inputs and seed give bit-identical centroids,
/// codes and objectives for any thread count and with or without SIMD or pruning.
///
/// Errors (returned, never thrown; *out untouched except on kCancelled): kInvalidArgument for
/// K = 0, d = 0 or > 16, N = 0 or >= 2^32, K > number of distinct points, a NaN/Inf coordinate
/// (naming the point), a NaN/Inf or negative point weight (naming its index), negative iterations
/// or tolerance, a wrongly shaped initial_centroids, size overflow; kOutOfMemory; kCancelled when
/// the callback returns false (then *out holds the centroids and codes of the cancelled iteration
/// and `cancelled` is true); for o.device = kCuda, host/device_status.hpp's Status (no CUDA in
/// this build, no device), kUnsupported when cluscomp::kernels is not linked, kOutOfMemory naming
/// the bytes when the problem does not fit the device's free memory, kCudaError from the run.
/// The CUDA backend gives the CPU backend's codes, centroids and objectives bit for bit (same
/// first labels, same orders, cuda/kmeans_gpu.cuh); NOT yet run on a GPU (docs/status.md).
/// Whether kmeans() can run on `device` in this build on this machine: Ok, or the Status kmeans()
/// would return (no CUDA in the build, no device, cluscomp::kernels not linked). Callers that
/// must refuse before any work (the compress pipeline) ask this first.
inline Status kmeans_backend_status(Device device) {
  if (device == Device::kCpu) return Status();
#if defined(CLUSCOMP_PREBUILT_KERNELS) && CLUSCOMP_PREBUILT_KERNELS
  return device_status(device);
#elif defined(CLUSCOMP_HAVE_CUDA) && CLUSCOMP_HAVE_CUDA
  if (Status s = device_status(device); !s.ok()) return s;
  return Status(StatusCode::kUnsupported, "kmeans: the cuda k-means is compiled into the cluscomp::kernels "
                                          "library; link cluscomp::kernels (cluscomp::cuda alone lacks it)");
#else
  return backend_status(device, "kmeans");
#endif
}

inline Status kmeans(MatrixView<const float> points, const KMeansOptions& o, KMeansResult* out) {
  if (o.device == Device::kCpu) return cluster_detail::kmeans_cpu(points, o, out);
#if defined(CLUSCOMP_PREBUILT_KERNELS) && CLUSCOMP_PREBUILT_KERNELS
  if (o.device == Device::kCuda) return cluster_detail::kmeans_cuda(points, o, out);
#endif
  return kmeans_backend_status(o.device);
}

/// Throwing form of kmeans(): returns the result or throws cluscomp::Error (kCancelled included).
inline KMeansResult kmeans(MatrixView<const float> points, const KMeansOptions& o) {
  KMeansResult r;
  throw_if_error(kmeans(points, o, &r));
  return r;
}

/// Assigns every point to its nearest centroid with the pruned exact search of kmeans() (fp32
/// distances, ties to the lower index) and evaluates the objective of that assignment in double
/// (per-point double distances summed over fixed chunks): the shared quality check for centroids
/// from any implementation. With `point_weights` (N, input order, finite and >= 0; see
/// KMeansOptions::point_weights) the objective is sum_i w_i * dist_i, products in double; the
/// codes are the same. Deterministic for any thread count. Throws Error(kInvalidArgument) for bad
/// shapes or non-finite values (or a bad weight, named by index).
inline KMeansAssignment kmeans_assign(MatrixView<const float> points, MatrixView<const float> centroids,
                                      int threads = 0, const float* point_weights = nullptr,
                                      Device device = Device::kCpu) {
  using namespace cluster_detail;
  throw_if_error(backend_status(device, "kmeans_assign"));
  const int nt = resolve_thread_count(threads);
  if (centroids.rows < 1 || centroids.cols != points.cols)
    throw Error(StatusCode::kInvalidArgument, "kmeans_assign: centroids are " + std::to_string(centroids.rows) +
                                                  " x " + std::to_string(centroids.cols) + " for d = " +
                                                  std::to_string(points.cols));
  if (centroids.rows >= static_cast<int64_t>(kNoIndex))
    throw Error(StatusCode::kInvalidArgument, "kmeans_assign: K = " + std::to_string(centroids.rows) + " exceeds 2^31 - 2");
  KMeansOptions ov;
  ov.k = 1;  // checks d, N and finiteness of the points (and the weights)
  ov.point_weights = point_weights;
  validate_points(points, ov, nt);
  for (int64_t i = 0; i < centroids.rows; ++i)
    for (int64_t e = 0; e < centroids.cols; ++e)
      if (!std::isfinite(centroids(i, e)))
        throw Error(StatusCode::kInvalidArgument, "kmeans_assign: centroid " + std::to_string(i) + " coordinate " +
                                                      std::to_string(e) + " is not finite");
  KMeansAssignment out;
  out.codes.resize(static_cast<size_t>(points.rows));
  std::vector<float> cen(static_cast<size_t>(centroids.rows * centroids.cols));
  for (int64_t i = 0; i < centroids.rows; ++i)
    for (int64_t e = 0; e < centroids.cols; ++e) cen[static_cast<size_t>(i * centroids.cols + e)] = centroids(i, e);
  KMeansStats st;
  switch (points.cols) {
#define CLUSCOMP_KMEANS_CASE(DD)                                       \
  case DD: {                                                           \
    LloydEngine<DD> eng(points.rows, centroids.rows, nt, true, true);  \
    eng.start(points, cen.data());                                     \
    (void)eng.assign(st);                                              \
    eng.codes(out.codes.data());                                       \
    break;                                                             \
  }
    CLUSCOMP_KMEANS_CASE(1) CLUSCOMP_KMEANS_CASE(2) CLUSCOMP_KMEANS_CASE(3) CLUSCOMP_KMEANS_CASE(4)
    CLUSCOMP_KMEANS_CASE(5) CLUSCOMP_KMEANS_CASE(6) CLUSCOMP_KMEANS_CASE(7) CLUSCOMP_KMEANS_CASE(8)
    CLUSCOMP_KMEANS_CASE(9) CLUSCOMP_KMEANS_CASE(10) CLUSCOMP_KMEANS_CASE(11) CLUSCOMP_KMEANS_CASE(12)
    CLUSCOMP_KMEANS_CASE(13) CLUSCOMP_KMEANS_CASE(14) CLUSCOMP_KMEANS_CASE(15) CLUSCOMP_KMEANS_CASE(16)
#undef CLUSCOMP_KMEANS_CASE
    default: break;
  }
  constexpr int64_t kChunk = 1 << 16;
  const int64_t nch = (points.rows + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(nch));
  parallel_chunks(nt, nch, 1, [&](int64_t cb, int64_t, int) {
    double s = 0;
    const int64_t lo = cb * kChunk, hi = std::min(points.rows, (cb + 1) * kChunk);
    const size_t dd = static_cast<size_t>(points.cols);
    if (point_weights != nullptr) {
      for (int64_t i = lo; i < hi; ++i)
        s += static_cast<double>(point_weights[i]) *
             point_distance2(points, i, &cen[static_cast<size_t>(out.codes[static_cast<size_t>(i)]) * dd]);
    } else {
      for (int64_t i = lo; i < hi; ++i)
        s += point_distance2(points, i, &cen[static_cast<size_t>(out.codes[static_cast<size_t>(i)]) * dd]);
    }
    part[static_cast<size_t>(cb)] = s;
  });
  for (double v : part) out.objective += v;
  return out;
}

/// Codes as 16-bit integers (the reference's inference format); Error(kInvalidArgument) when
/// K > 65536.
inline std::vector<uint16_t> codes_as_uint16(const KMeansResult& r) {
  if (r.k > 65536)
    throw Error(StatusCode::kInvalidArgument, "codes_as_uint16: K = " + std::to_string(r.k) + " exceeds 65536");
  return std::vector<uint16_t>(r.codes.begin(), r.codes.end());
}

CLUSCOMP_NAMESPACE_END
