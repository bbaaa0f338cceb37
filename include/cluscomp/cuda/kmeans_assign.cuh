#pragma once
/// Exact nearest-centroid assignment on the GPU, brute force: the first piece of the CUDA k-means
/// (issue 21). DESIGN.md rule 4: args struct in, caller's stream, caller's workspace (none needed:
/// kmeans_assign_gpu_workspace_size is 0), Status out; no allocation, no synchronisation, never
/// aborts. Launch errors come back as kCudaError; errors of the asynchronous execution surface
/// at the caller's next synchronisation.
///
/// Numerics: every distance is core/distance.hpp's fp32 squared distance (the same operations
/// as the CPU k-means, products never fused: __fmul_rn / __fadd_rn), ties to the lowest centroid
/// index. So the codes equal cluster/kmeans.hpp's kmeans_assign codes for the same inputs, bit for
/// bit, and so do the distances (tested on the CPU by replaying the kernel; on a GPU by
/// tests/gpu/test_kmeans_assign_gpu.cu, not yet run on one). Deterministic: each point is
/// written by one thread, which scans the centroids in index order.
/// Cost: n * k * d multiply-adds, no pruning yet (the CPU path's pruning is issue 21's next step).

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/kmeans_assign_tile.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/cuda/device/kmeans_assign_kernel.cuh"

CLUSCOMP_NAMESPACE_BEGIN

/// Arguments of kmeans_assign_gpu. All pointers are device memory.
struct KMeansAssignGpuArgs {
  MatrixView<const float> points;     // (n, d), row-major and contiguous (row_stride d, col_stride 1)
  MatrixView<const float> centroids;  // (k, d), row-major and contiguous
  uint32_t* codes = nullptr;          // (n) out: nearest centroid, lowest index among equal distances
  float* distances = nullptr;         // (n) out, optional: the fp32 squared distance to codes[i]
  void* workspace = nullptr;          // kmeans_assign_gpu_workspace_size(args) bytes (0: may stay null)
  size_t workspace_bytes = 0;
};

/// Workspace kmeans_assign_gpu needs: none. The query exists so callers follow one protocol.
inline size_t kmeans_assign_gpu_workspace_size(const KMeansAssignGpuArgs& /*args*/) { return 0; }

/// Checks the arguments of kmeans_assign_gpu (host-side only: no device access); the message
/// names the bad value.
inline Status check_kmeans_assign_gpu_args(const KMeansAssignGpuArgs& a) {
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "kmeans_assign_gpu: " + m); };
  const int64_t d = a.points.cols;
  if (d < 1 || d > 16) return bad("d = " + std::to_string(d) + " (must be 1..16)");
  if (a.points.rows < 1) return bad("N = " + std::to_string(a.points.rows) + " points");
  if (a.centroids.rows < 1) return bad("K = " + std::to_string(a.centroids.rows) + " (must be >= 1)");
  if (a.centroids.rows >= int64_t{kmeans_assign_map::kNoCentroid})
    return bad("K = " + std::to_string(a.centroids.rows) + " exceeds 2^31 - 2");
  if (a.centroids.cols != d)
    return bad("centroids have d = " + std::to_string(a.centroids.cols) + ", points d = " + std::to_string(d));
  if (a.points.data == nullptr || a.centroids.data == nullptr || a.codes == nullptr) return bad("null pointer");
  if (a.points.col_stride != 1 || a.points.row_stride != d)
    return Status(StatusCode::kUnsupported, "kmeans_assign_gpu: points must be row-major and contiguous "
                                            "(row_stride = d, col_stride = 1)");
  if (a.centroids.col_stride != 1 || a.centroids.row_stride != d)
    return Status(StatusCode::kUnsupported, "kmeans_assign_gpu: centroids must be row-major and contiguous "
                                            "(row_stride = d, col_stride = 1)");
  if (kmeans_assign_map::blocks_for(a.points.rows) > int64_t{0x7fffffff})
    return bad("N = " + std::to_string(a.points.rows) + " points need more than 2^31 - 1 blocks");
  return Status();
}

namespace detail {

template <int D>
Status launch_kmeans_assign(const KMeansAssignGpuArgs& a, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(kmeans_assign_map::blocks_for(a.points.rows)));
  kmeans_assign_kernel<D><<<grid, kmeans_assign_map::kThreads, 0, stream>>>(
      a.points.data, a.points.rows, a.centroids.data, a.centroids.rows, a.codes, a.distances);
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status();
  return Status(StatusCode::kCudaError, "kmeans_assign_kernel<" + std::to_string(D) + ">: " + cudaGetErrorName(e) +
                                            ": " + cudaGetErrorString(e));
}

}  // namespace detail

/// Assigns every point to its nearest centroid on `stream` (see the file comment for numerics).
/// Errors: kInvalidArgument (shapes, K, null pointers), kUnsupported (strided views), kCudaError
/// (the launch). Points and centroids are not checked for NaN/Inf here (that needs the data on
/// the host or a device pass): the k-means driver validates its inputs before the first launch.
[[nodiscard]] inline Status kmeans_assign_gpu(const KMeansAssignGpuArgs& a, cudaStream_t stream) {
  if (Status s = check_kmeans_assign_gpu_args(a); !s.ok()) return s;
  switch (a.points.cols) {
#define CLUSCOMP_ASSIGN_CASE(DD) \
  case DD: return detail::launch_kmeans_assign<DD>(a, stream);
    CLUSCOMP_ASSIGN_CASE(1) CLUSCOMP_ASSIGN_CASE(2) CLUSCOMP_ASSIGN_CASE(3) CLUSCOMP_ASSIGN_CASE(4)
    CLUSCOMP_ASSIGN_CASE(5) CLUSCOMP_ASSIGN_CASE(6) CLUSCOMP_ASSIGN_CASE(7) CLUSCOMP_ASSIGN_CASE(8)
    CLUSCOMP_ASSIGN_CASE(9) CLUSCOMP_ASSIGN_CASE(10) CLUSCOMP_ASSIGN_CASE(11) CLUSCOMP_ASSIGN_CASE(12)
    CLUSCOMP_ASSIGN_CASE(13) CLUSCOMP_ASSIGN_CASE(14) CLUSCOMP_ASSIGN_CASE(15) CLUSCOMP_ASSIGN_CASE(16)
#undef CLUSCOMP_ASSIGN_CASE
    default: break;
  }
  return Status(StatusCode::kInvalidArgument, "kmeans_assign_gpu: d = " + std::to_string(a.points.cols));
}

CLUSCOMP_NAMESPACE_END
