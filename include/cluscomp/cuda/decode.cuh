#pragma once
/// GPU decode of a clustered matrix to dense fp32 (W or Wt), DESIGN.md rule 4: args struct in,
/// caller's stream in, caller's workspace in (none needed: decode_workspace_size is 0), Status out.
/// No allocation, no synchronisation, never aborts. Launch errors come back as kCudaError naming
/// the kernel; errors of the asynchronous execution surface at the caller's next sync.
///
/// Numerics: exact (each element is one centroid component converted to float, through the same
/// CodebookView<T>::decode_component as the CPU); bit-identical to codebook/decode.hpp and to
/// reference::decode_dense_ref. Deterministic: every element is written once. Which kernel runs
/// (specialised for d in {2, 4, 8, 16}, or generic): device/decode_kernel.cuh.

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/cuda/device/decode_kernel.cuh"

CLUSCOMP_NAMESPACE_BEGIN

/// Arguments of decode_dense_gpu. All pointers are device memory.
struct DecodeGpuArgs {
  AnyCodebookView codebook;   // centroids (S, K, d) and packed codes on the device
  MatrixView<float> output;   // (out, in) for kW, (in, out) for kWt; any strides
  DecodeLayout layout = DecodeLayout::kWt;
  void* workspace = nullptr;  // decode_workspace_size(args) bytes (0: may stay null)
  size_t workspace_bytes = 0;
};

/// Workspace decode_dense_gpu needs: none. The query exists so callers follow one protocol.
inline size_t decode_workspace_size(const DecodeGpuArgs& /*args*/) { return 0; }

namespace detail {

inline constexpr int kDecodeThreadsPerBlock = 256;
inline constexpr int64_t kDecodeMaxBlocks = int64_t{1} << 20;

template <class T>
Status cuda_launch_status(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status();
  return Status(StatusCode::kCudaError, std::string(kernel) + "<" + dtype_name(centroid_dtype_of<T>) +
                                            ">: " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

/// The specialised kernels for compile-time D (device/decode_kernel.cuh); false when the
/// centroid table is not aligned to their vector load (then the generic kernels run).
template <class T, int D>
bool launch_decode_dense_vec(const CodebookView<T>& cb, const MatrixView<float>& dst, DecodeLayout layout,
                             cudaStream_t stream) {
  constexpr int kLoad = decode_gpu::kCentroidLoadBytes<T, D>;
  if constexpr (kLoad == 0) {
    return false;
  } else {
    if (reinterpret_cast<uintptr_t>(cb.centroids) % kLoad != 0) return false;
    constexpr int64_t kMaxGridY = 65535;
    if (layout == DecodeLayout::kW) {
      const int64_t row_tiles = (cb.out + decode_gpu::kTileRows - 1) / decode_gpu::kTileRows;
      const dim3 grid(static_cast<unsigned>((cb.in + decode_gpu::kTileCols - 1) / decode_gpu::kTileCols),
                      static_cast<unsigned>(row_tiles < kMaxGridY ? row_tiles : kMaxGridY));
      decode_dense_w_tiled_kernel<T, D>
          <<<grid, dim3(decode_gpu::kTileCols, decode_gpu::kTileThreadsY), 0, stream>>>(cb, dst);
      return true;
    }
    constexpr int kX = 64, kY = 4;
    const bool vec_store = D % 4 == 0 && dst.col_stride == 1 && dst.row_stride % 4 == 0 &&
                           reinterpret_cast<uintptr_t>(dst.data) % 16 == 0;
    const int64_t row_blocks = (cb.in + kY - 1) / kY;
    const dim3 grid(static_cast<unsigned>((cb.vectors_per_row() + kX - 1) / kX),
                    static_cast<unsigned>(row_blocks < kMaxGridY ? row_blocks : kMaxGridY));
    decode_dense_wt_vec_kernel<T, D><<<grid, dim3(kX, kY), 0, stream>>>(cb, dst, vec_store);
    return true;
  }
}

/// The typed launcher (arguments already checked): the specialised kernels for d in
/// {2, 4, 8, 16} when the table is aligned, the generic grid-stride kernels otherwise. Explicitly
/// instantiated in kernels/decode.cu for every type of the list.
template <class T>
Status launch_decode_dense(const CodebookView<T>& cb, const MatrixView<float>& dst,
                           DecodeLayout layout, cudaStream_t stream) {
  const char* vec_name = layout == DecodeLayout::kW ? "decode_dense_w_tiled_kernel" : "decode_dense_wt_vec_kernel";
  bool launched = false;
  switch (cb.d) {
    case 2: launched = launch_decode_dense_vec<T, 2>(cb, dst, layout, stream); break;
    case 4: launched = launch_decode_dense_vec<T, 4>(cb, dst, layout, stream); break;
    case 8: launched = launch_decode_dense_vec<T, 8>(cb, dst, layout, stream); break;
    case 16: launched = launch_decode_dense_vec<T, 16>(cb, dst, layout, stream); break;
    default: break;
  }
  if (launched) return cuda_launch_status<T>(vec_name);
  const int64_t n = cb.num_vectors();
  int64_t blocks = (n + kDecodeThreadsPerBlock - 1) / kDecodeThreadsPerBlock;
  if (blocks > kDecodeMaxBlocks) blocks = kDecodeMaxBlocks;
  const dim3 grid(static_cast<unsigned>(blocks));
  const dim3 block(kDecodeThreadsPerBlock);
  if (layout == DecodeLayout::kW) {
    decode_dense_w_kernel<T><<<grid, block, 0, stream>>>(cb, dst);
    return cuda_launch_status<T>("decode_dense_w_kernel");
  }
  decode_dense_wt_kernel<T><<<grid, block, 0, stream>>>(cb, dst);
  return cuda_launch_status<T>("decode_dense_wt_kernel");
}

}  // namespace detail

/// Decodes the whole matrix into args.output on `stream`: the runtime centroid dtype becomes the
/// template argument here, through the one list (codebook/configs.hpp). Returns kInvalidArgument
/// for a bad view or output shape, kUnsupported for a centroid dtype outside the list, kCudaError
/// when the launch fails. Exact and deterministic (see the file comment).
[[nodiscard]] inline Status decode_dense_gpu(const DecodeGpuArgs& args, cudaStream_t stream) {
  const AnyCodebookView& cb = args.codebook;
  if (args.layout != DecodeLayout::kW && args.layout != DecodeLayout::kWt)
    return Status(StatusCode::kInvalidArgument, "decode_dense_gpu: unknown layout " +
                                                    std::to_string(static_cast<int>(args.layout)));
  if (Status s = detail::check_decode_view(cb.out, cb.in, cb.out_pad, cb.k, cb.d, cb.num_codebooks,
                                           cb.code_bits, cb.centroids != nullptr, cb.codes != nullptr,
                                           "decode_dense_gpu");
      !s.ok())
    return s;
  const bool w = args.layout == DecodeLayout::kW;
  if (Status s = detail::check_decode_output(args.output, w ? cb.out : cb.in, w ? cb.in : cb.out,
                                             "decode_dense_gpu");
      !s.ok())
    return s;
  return visit_centroid_type(cb.centroid_dtype, "decode_dense_gpu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return detail::launch_decode_dense<T>(cb.typed<T>(), args.output, args.layout, stream);
  });
}

CLUSCOMP_NAMESPACE_END
