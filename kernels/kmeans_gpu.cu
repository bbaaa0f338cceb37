// The CUDA backend of kmeans() (cluster/kmeans.hpp declares it where CLUSCOMP_PREBUILT_KERNELS is
// defined, i.e. wherever this library is linked): host-side preparation with the CPU path's own
// functions, then cuda/kmeans_gpu.cuh's Lloyd run. Also compiles the GPU Lloyd run for every d in
// 1..16 and both key widths (compile coverage, sm_80..90 in CI).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/cuda/kmeans_gpu.cuh"
#include "cluscomp/host/cpu_features.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {
namespace {

/// Device memory owned by the backend (kmeans() is the allocating layer above the host API).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (p_ != nullptr) (void)cudaFree(p_);
  }
  void allocate(size_t bytes, const char* what) {
    const cudaError_t e = cudaMalloc(&p_, std::max<size_t>(bytes, 1));
    if (e != cudaSuccess) {
      p_ = nullptr;
      throw Error(e == cudaErrorMemoryAllocation ? StatusCode::kOutOfMemory : StatusCode::kCudaError,
                  std::string("kmeans (cuda): cudaMalloc of ") + std::to_string(bytes) + " bytes for " + what + ": " +
                      cudaGetErrorString(e));
    }
  }
  template <class T>
  T* get() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

class OwnedStream {
 public:
  OwnedStream() {
    const cudaError_t e = cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking);
    if (e != cudaSuccess) throw Error(StatusCode::kCudaError, std::string("kmeans (cuda): cudaStreamCreate: ") + cudaGetErrorString(e));
  }
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  ~OwnedStream() { (void)cudaStreamDestroy(s_); }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(StatusCode::kCudaError, std::string("kmeans (cuda): ") + what + ": " + cudaGetErrorString(e));
}

std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

void first_labels(int d, bool use_avx2, const float* init, int64_t k, const float* pts, int64_t n, int threads,
                  uint32_t* labels) {
  switch (d) {
#define CLUSCOMP_FIRST_CASE(DD) \
  case DD: kmeans_first_labels<DD>(use_avx2, init, k, pts, n, threads, labels); return;
    CLUSCOMP_FIRST_CASE(1) CLUSCOMP_FIRST_CASE(2) CLUSCOMP_FIRST_CASE(3) CLUSCOMP_FIRST_CASE(4)
    CLUSCOMP_FIRST_CASE(5) CLUSCOMP_FIRST_CASE(6) CLUSCOMP_FIRST_CASE(7) CLUSCOMP_FIRST_CASE(8)
    CLUSCOMP_FIRST_CASE(9) CLUSCOMP_FIRST_CASE(10) CLUSCOMP_FIRST_CASE(11) CLUSCOMP_FIRST_CASE(12)
    CLUSCOMP_FIRST_CASE(13) CLUSCOMP_FIRST_CASE(14) CLUSCOMP_FIRST_CASE(15) CLUSCOMP_FIRST_CASE(16)
#undef CLUSCOMP_FIRST_CASE
    default: throw Error(StatusCode::kInvalidArgument, "kmeans (cuda): d = " + std::to_string(d));
  }
}

}  // namespace

Status kmeans_cuda(MatrixView<const float> points, const KMeansOptions& o, KMeansResult* out) {
  if (Status s = device_status(Device::kCuda); !s.ok()) return s;
  KMeansResult r;
  bool cancelled = false;
  Status st = status_from([&] {
    const auto t0 = std::chrono::steady_clock::now();
    const int threads = resolve_thread_count(o.threads);
    // Validation (K, d, N, NaN/Inf, weights, options) and the initial centroids: the CPU path's.
    std::vector<float> init = kmeans_initial_centroids(points, o);
    const int64_t n = points.rows, k = o.k;
    const int d = static_cast<int>(points.cols);
    const bool weighted = o.point_weights != nullptr;
    r.k = k;
    r.d = d;
    r.n = n;
    std::vector<float> pts(static_cast<size_t>(n) * static_cast<size_t>(d));  // (n, d) contiguous
    parallel_chunks(threads, n, 1 << 15, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i)
        for (int c = 0; c < d; ++c) pts[static_cast<size_t>(i * d + c)] = points(i, c);
    });
    std::vector<uint32_t> first(static_cast<size_t>(n));
    first_labels(d, o.use_simd && cpu_has_avx2(), init.data(), k, pts.data(), n, threads, first.data());
    r.stats.init_s = seconds_since(t0);

    size_t ws = 0;
    throw_if_error(kmeans_gpu_lloyd_workspace_size(n, k, d, weighted, &ws));
    const size_t un = static_cast<size_t>(n), cen_bytes = static_cast<size_t>(k) * static_cast<size_t>(d) * sizeof(float);
    const size_t inputs = un * static_cast<size_t>(d) * sizeof(float) + (weighted ? un * sizeof(float) : 0) +
                          un * sizeof(uint32_t) /* first labels */ + un * sizeof(uint32_t) /* codes */ + 2 * cen_bytes;
    size_t free_b = 0, total_b = 0;
    cuda_check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    if (inputs + ws > free_b)
      throw Error(StatusCode::kOutOfMemory,
                  "kmeans (cuda): N = " + std::to_string(n) + ", d = " + std::to_string(d) + ", K = " + std::to_string(k) +
                      " needs " + mib(inputs + ws) + " of device memory (workspace " + mib(ws) + ", inputs and outputs " +
                      mib(inputs) + "); the device has " + mib(free_b) + " free of " + mib(total_b) +
                      " (the points stay resident: no streaming from host memory yet)");
    DeviceBuffer d_pts, d_w, d_first, d_codes, d_init, d_cen, d_ws;
    d_pts.allocate(un * static_cast<size_t>(d) * sizeof(float), "the points");
    if (weighted) d_w.allocate(un * sizeof(float), "the weights");
    d_first.allocate(un * sizeof(uint32_t), "the first labels");
    d_codes.allocate(un * sizeof(uint32_t), "the codes");
    d_init.allocate(cen_bytes, "the initial centroids");
    d_cen.allocate(cen_bytes, "the centroids");
    d_ws.allocate(ws, "the workspace");
    OwnedStream stream;
    cuda_check(cudaMemcpyAsync(d_pts.get<float>(), pts.data(), pts.size() * sizeof(float), cudaMemcpyHostToDevice, stream.get()),
               "upload points");
    if (weighted)
      cuda_check(cudaMemcpyAsync(d_w.get<float>(), o.point_weights, un * sizeof(float), cudaMemcpyHostToDevice, stream.get()),
                 "upload weights");
    cuda_check(cudaMemcpyAsync(d_first.get<uint32_t>(), first.data(), un * sizeof(uint32_t), cudaMemcpyHostToDevice,
                               stream.get()),
               "upload first labels");
    cuda_check(cudaMemcpyAsync(d_init.get<float>(), init.data(), cen_bytes, cudaMemcpyHostToDevice, stream.get()),
               "upload initial centroids");

    KMeansGpuLloydArgs a;
    a.points = d_pts.get<float>();
    a.weights = weighted ? d_w.get<float>() : nullptr;
    a.first_labels = d_first.get<uint32_t>();
    a.initial_centroids = d_init.get<float>();
    a.n = n;
    a.k = k;
    a.d = d;
    a.iterations = o.iterations;
    a.tolerance = o.tolerance;
    a.seed = o.seed;
    a.centroids = d_cen.get<float>();
    a.codes = d_codes.get<uint32_t>();
    a.workspace = d_ws.get<void>();
    a.workspace_bytes = ws;
    if (o.progress) {
      a.progress_centroids = true;
      a.progress_codes = o.report_codes;
      a.progress = [&](const KMeansGpuIteration& g) {
        KMeansProgress pr;
        pr.iteration = g.iteration;
        pr.objective = g.objective;
        pr.elapsed_s = seconds_since(t0);
        pr.centroids = make_matrix_view<const float>(g.centroids, k, d);
        pr.codes = g.codes;
        return o.progress(pr);
      };
    }
    LloydLoopResult loop;
    const auto t1 = std::chrono::steady_clock::now();
    throw_if_error(kmeans_gpu_lloyd(a, &loop, stream.get()));
    r.codes.resize(un);
    r.centroids.resize(static_cast<size_t>(k) * static_cast<size_t>(d));
    cuda_check(cudaMemcpyAsync(r.codes.data(), a.codes, un * sizeof(uint32_t), cudaMemcpyDeviceToHost, stream.get()),
               "download codes");
    cuda_check(cudaMemcpyAsync(r.centroids.data(), a.centroids, cen_bytes, cudaMemcpyDeviceToHost, stream.get()),
               "download centroids");
    cuda_check(cudaStreamSynchronize(stream.get()), "cudaStreamSynchronize");
    // The GPU run's time is not split by step (that would need events or more synchronisation).
    r.stats.assign_s = seconds_since(t1);
    r.counts.assign(static_cast<size_t>(k), 0);
    for (uint32_t c : r.codes) ++r.counts[c];
    r.objective = std::move(loop.objective);
    r.final_objective = loop.final_objective;
    r.iterations_run = loop.iterations_run;
    r.stats.fixed_point_iteration = loop.fixed_point_iteration;
    r.stats.splits = loop.splits;
    cancelled = loop.cancelled;
  });
  if (!st.ok()) return st;
  r.cancelled = cancelled;
  *out = std::move(r);
  if (cancelled)
    return Status(StatusCode::kCancelled, "kmeans: cancelled by the progress callback after iteration " +
                                              std::to_string(out->objective.size() - 1));
  return Status();
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
