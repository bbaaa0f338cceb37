#pragma once
/// CUDA lookup GEMV/GEMM: y (m, out) = x (m, in) . W^T (+ bias) for a clustered W held on the
/// device as packed codes + centroids. DESIGN.md rule 4: args struct in, caller's stream, caller's
/// workspace (lookup_gemm_gpu_workspace_size), [[nodiscard]] Status out; no allocation, no
/// synchronisation, never aborts. Launch errors come back as kCudaError naming the kernel; errors
/// of the asynchronous execution surface at the caller's next synchronisation.
///
/// Two paths (LookupGpuPath; kAuto picks by m):
///  - lookup (m <= lookup_gemv_map::kMaxRows = 16, decode shapes): never builds W. Each centroid is
///    gathered once and applied to every row of x; codes are staged per warp with 16-byte loads
///    where the layout allows; several gathers in flight per thread; the table in shared memory
///    when S * K * d * sizeof(T) <= kLookupSharedTableBytes, else read through L2 (ld.global.cg).
///    Structure and numerics: core/lookup_gemv_map.hpp; kernel: device/lookup_gemm_kernel.cuh.
///    Also runs for larger m (rows in tiles of up to 16 / 64/d: each tile reads the codes again).
///  - decode + cuBLAS (m > 16, prefill): W is decoded to Wt in the workspace, in the centroid
///    storage type when x has that type (an fp16/bf16 tensor-core GEMM with fp32 accumulation),
///    else in fp32 with x widened to fp32 (an fp32 GEMM, CUBLAS_COMPUTE_32F_PEDANTIC, so a handle
///    set to TF32 math cannot round the operands); cuBLAS writes fp32 (m, out) and the finalize
///    kernel adds the bias and converts. Needs args.cublas; this call sets that handle's stream to
///    `stream` (cuBLAS may use its own internal workspace; set one with cublasSetWorkspace to keep
///    every byte in the caller's hands).
///
/// Supported: centroids fp32/fp16/bf16 (codebook/configs.hpp), d in {2, 4, 8, 16}, code widths
/// 1..16, any S, any K; x and y fp32/fp16/bf16 with leading dimensions; bias fp32 (out) or null.
/// Anything else is a Status naming it (kUnsupported for a valid but absent configuration,
/// kInvalidArgument for a bad value, a too small workspace, a missing handle or a misaligned
/// pointer). All pointers are device memory; centroids, codes and the workspace 16-byte aligned
/// (cudaMalloc gives 256).
///
/// Numerics (fp32 accumulation everywhere; y rounded once to its dtype at the end):
///  - lookup path: per output, fp32 fma chains over chunks of input rows (ascending), the chunk
///    sums added in chunk order, then the bias (core/lookup_gemv_map.hpp). The CPU
///    (ops/lookup_gemm.hpp) runs one fma chain over all of `in`, so on general data the two agree
///    to the tolerance of an fp32 sum of `in` products (a different association), not bit for bit.
///    Bit-exact to the `_ref` twin (reference::lookup_gemm_ref) and to the CPU when centroids,
///    activations and bias are small integers whose partial sums stay below 2^24 in magnitude.
///  - decode + cuBLAS: the decoded W is exact (a copy of centroid values); the GEMM's accumulation
///    order is cuBLAS's own (the same class of tolerance; exact on the same small-integer data).
/// Determinism: the lookup path writes each partial once and reduces in a fixed order, with no
/// atomics and no dependence on the grid size: the same bits on every run and on every GPU of the
/// same architecture. The cuBLAS path is deterministic as cuBLAS documents (same toolkit,
/// architecture and SM count, one stream).
///
/// Status: written and compiled for sm_80 and sm_90 in CI; NOT yet run on a GPU (docs/status.md).

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/lookup_gemv_map.hpp"
#include "cluscomp/cuda/decode.cuh"
#include "cluscomp/cuda/device/lookup_gemm_kernel.cuh"

CLUSCOMP_NAMESPACE_BEGIN

/// Which algorithm runs. kAuto: kLookup for m <= lookup_gemv_map::kMaxRows, else kDecodeCublas.
enum class LookupGpuPath { kAuto, kLookup, kDecodeCublas };

/// Where the lookup path's gathers read the centroid table. kAuto: shared memory when the whole
/// table fits kLookupSharedTableBytes, else L2. Naming kShared for a table that does not fit is a
/// Status. (Which wins where both work is measured by bench/gpu/bench_lookup_gpu.cu.)
enum class LookupTablePlacement { kAuto, kShared, kL2 };

/// Largest table the lookup path stages in shared memory: with the x chunk (<= 16 KiB) and the code
/// windows (2.5 KiB) a block stays under 100 KiB, so two blocks fit an A100 or H100 SM.
inline constexpr int64_t kLookupSharedTableBytes = 64 * 1024;

/// Arguments of lookup_gemm_gpu. All pointers are device memory.
struct LookupGemmGpuArgs {
  AnyCodebookView w;              // the clustered W (out, in): centroids (S, K, d), packed codes
  const void* x = nullptr;        // (m, in) in x_dtype, leading dimension ldx
  DType x_dtype = DType::kF16;
  int64_t ldx = 0;
  const float* bias = nullptr;    // (out) fp32, or null
  void* y = nullptr;              // (m, out) in y_dtype, leading dimension ldy; must not overlap x
  DType y_dtype = DType::kF32;
  int64_t ldy = 0;
  int64_t m = 0;
  LookupGpuPath path = LookupGpuPath::kAuto;
  LookupTablePlacement placement = LookupTablePlacement::kAuto;
  cublasHandle_t cublas = nullptr;  // the decode + cuBLAS path only
  void* workspace = nullptr;        // lookup_gemm_gpu_workspace_size(args) bytes
  size_t workspace_bytes = 0;
};

namespace lookup_gpu {

inline constexpr size_t kAlign = 256;
inline size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

inline bool is_activation_dtype(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }
inline bool is_lookup_d(int d) { return d == 2 || d == 4 || d == 8 || d == 16; }

inline LookupGpuPath resolve_path(const LookupGemmGpuArgs& a) {
  if (a.path != LookupGpuPath::kAuto) return a.path;
  return a.m <= lookup_gemv_map::kMaxRows ? LookupGpuPath::kLookup : LookupGpuPath::kDecodeCublas;
}

inline int64_t table_bytes(const AnyCodebookView& w) {
  return int64_t{w.num_codebooks} * w.k * w.d * dtype_size(w.centroid_dtype);
}

/// The decode + cuBLAS path's dense Wt type: the centroid type when x has it (a 16-bit GEMM, or
/// fp32 when both are fp32), else fp32 (x is then widened to fp32 as well).
inline DType dense_dtype(const LookupGemmGpuArgs& a) {
  return a.x_dtype == a.w.centroid_dtype ? a.w.centroid_dtype : DType::kF32;
}

/// Byte offsets of the decode + cuBLAS path's buffers in the workspace: [Wt][x fp32?][C fp32].
struct CublasLayout {
  size_t x_offset = 0, c_offset = 0, total = 0;
  bool widen_x = false;
};

inline CublasLayout cublas_layout(const LookupGemmGpuArgs& a) {
  CublasLayout l;
  const DType dd = dense_dtype(a);
  l.widen_x = dd == DType::kF32 && a.x_dtype != DType::kF32;
  const size_t wt = align_up(static_cast<size_t>(a.w.in) * static_cast<size_t>(a.w.out) * dtype_size(dd));
  l.x_offset = wt;
  const size_t xf = l.widen_x ? align_up(static_cast<size_t>(a.m) * static_cast<size_t>(a.w.in) * 4) : 0;
  l.c_offset = wt + xf;
  l.total = l.c_offset + align_up(static_cast<size_t>(a.m) * static_cast<size_t>(a.w.out) * 4);
  return l;
}

inline Status cuda_status(cudaError_t e, const std::string& what) {
  if (e == cudaSuccess) return Status();
  return Status(StatusCode::kCudaError, "lookup_gemm_gpu: " + what + ": " + cudaGetErrorName(e) + ": " +
                                            cudaGetErrorString(e));
}

inline Status launch_status(const char* kernel, DType centroid, int d, int mt, bool shared) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status();
  return Status(StatusCode::kCudaError, std::string("lookup_gemm_gpu: ") + kernel + "<" + dtype_name(centroid) +
                                            ", d=" + std::to_string(d) + ", rows=" + std::to_string(mt) +
                                            (shared ? ", shared table" : ", L2 table") + ">: " + cudaGetErrorName(e) +
                                            ": " + cudaGetErrorString(e));
}

/// Launches lookup_gemv_kernel<T, D, MT, kShared>: opts into the dynamic shared memory it needs
/// and sizes the persistent grid to what fits the GPU at once (never more blocks than items).
template <class T, int D, int MT, bool kShared>
Status launch_gemv(const CodebookView<T>& cb, const GemvParams& p, cudaStream_t stream) {
  auto kernel = lookup_gemv_kernel<T, D, MT, kShared>;
  const int64_t smem = gemv_shared_bytes(p.g, kShared, p.table_bytes);
  if (Status s = cuda_status(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  static_cast<int>(smem)),
                             "cudaFuncSetAttribute(" + std::to_string(smem) + " bytes of shared memory)");
      !s.ok())
    return s;
  int device = 0, sms = 0, per_sm = 0;
  if (Status s = cuda_status(cudaGetDevice(&device), "cudaGetDevice"); !s.ok()) return s;
  if (Status s = cuda_status(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
                             "cudaDeviceGetAttribute(multiProcessorCount)");
      !s.ok())
    return s;
  if (Status s = cuda_status(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, lookup_gemv_map::kThreads,
                                                                            static_cast<size_t>(smem)),
                             "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
      !s.ok())
    return s;
  if (per_sm < 1)
    return Status(StatusCode::kUnsupported, "lookup_gemm_gpu: a block needing " + std::to_string(smem) +
                                                " bytes of shared memory does not fit this GPU");
  int64_t grid = int64_t{sms} * per_sm;
  if (grid > p.g.items) grid = p.g.items;
  kernel<<<static_cast<unsigned>(grid), lookup_gemv_map::kThreads, static_cast<size_t>(smem), stream>>>(cb.centroids,
                                                                                                        p);
  return launch_status("lookup_gemv_kernel", centroid_dtype_of<T>, D, MT, kShared);
}

/// The one runtime -> template step for (d, row tile, placement) of the lookup path (DESIGN.md
/// rule 5: the configuration list is d in {2, 4, 8, 16} x row tile in {1, 2, 4, 8, 16} with
/// tile * d <= kAccumulators x {shared, L2}; kernels/lookup_gemm.cu instantiates the same list).
template <class T, int D>
Status dispatch_gemv_tile(const CodebookView<T>& cb, const GemvParams& p, bool shared, cudaStream_t stream) {
  const int mt = p.g.row_tile;
  auto go = [&](auto tile) -> Status {
    constexpr int MT = decltype(tile)::value;
    if constexpr (MT * D > lookup_gemv_map::kAccumulators) {
      return Status(StatusCode::kUnsupported, "lookup_gemm_gpu: no kernel for row tile " + std::to_string(MT) +
                                                  " at d = " + std::to_string(D));
    } else {
      return shared ? launch_gemv<T, D, MT, true>(cb, p, stream) : launch_gemv<T, D, MT, false>(cb, p, stream);
    }
  };
  switch (mt) {
    case 1: return go(std::integral_constant<int, 1>{});
    case 2: return go(std::integral_constant<int, 2>{});
    case 4: return go(std::integral_constant<int, 4>{});
    case 8: return go(std::integral_constant<int, 8>{});
    case 16: return go(std::integral_constant<int, 16>{});
    default: break;
  }
  return Status(StatusCode::kUnsupported, "lookup_gemm_gpu: no kernel for row tile " + std::to_string(mt));
}

template <class Ty>
Status launch_finalize(const lookup_gemv_map::Geometry& g, const float* partial, const float* bias, void* y,
                       int64_t ldy, cudaStream_t stream) {
  constexpr int kThreads = 256;
  int64_t blocks = (static_cast<int64_t>(g.m) * g.out + kThreads - 1) / kThreads;
  if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
  lookup_finalize_kernel<Ty><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(g, partial, bias,
                                                                                     static_cast<Ty*>(y), ldy);
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status();
  return cuda_status(e, std::string("lookup_finalize_kernel<") + dtype_name(centroid_dtype_of<Ty>) + ">");
}

inline Status finalize(const lookup_gemv_map::Geometry& g, const float* partial, const LookupGemmGpuArgs& a,
                       cudaStream_t stream) {
  return visit_centroid_type(a.y_dtype, "lookup_gemm_gpu (output)", [&](auto tag) {
    using Ty = typename decltype(tag)::type;
    return launch_finalize<Ty>(g, partial, a.bias, a.y, a.ldy, stream);
  });
}

/// The lookup path for centroid type T (arguments checked).
template <class T>
Status run_lookup(const LookupGemmGpuArgs& a, bool shared, cudaStream_t stream) {
  const CodebookView<T> cb = a.w.typed<T>();
  GemvParams p;
  p.g = lookup_gemv_map::make_geometry(cb.out, cb.in, cb.d, cb.code_bits, static_cast<int>(a.m));
  p.codes = cb.codes;
  p.x = a.x;
  p.x_dtype = a.x_dtype;
  p.ldx = a.ldx;
  p.partial = static_cast<float*>(a.workspace);
  p.k = cb.k;
  p.num_codebooks = cb.num_codebooks;
  p.load_width = lookup_gemv_map::load_width(p.g, reinterpret_cast<uintptr_t>(cb.codes));
  p.table_bytes = table_bytes(a.w);
  // (Initialised, not assigned: nvcc takes `s = f()` for a discarded [[nodiscard]] Status.)
  const Status s = [&]() -> Status {
    switch (cb.d) {
      case 2: return dispatch_gemv_tile<T, 2>(cb, p, shared, stream);
      case 4: return dispatch_gemv_tile<T, 4>(cb, p, shared, stream);
      case 8: return dispatch_gemv_tile<T, 8>(cb, p, shared, stream);
      case 16: return dispatch_gemv_tile<T, 16>(cb, p, shared, stream);
      default: break;
    }
    return Status(StatusCode::kUnsupported, "lookup_gemm_gpu: d = " + std::to_string(cb.d) + " unsupported");
  }();
  if (!s.ok()) return s;
  return finalize(p.g, p.partial, a, stream);
}

inline cudaDataType_t cuda_type(DType t) {
  return t == DType::kF16 ? CUDA_R_16F : t == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F;
}

inline Status cublas_status(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status();
  return Status(StatusCode::kCudaError, std::string("lookup_gemm_gpu: ") + what + ": cuBLAS status " +
                                            std::to_string(static_cast<int>(s)));
}

/// The decode + cuBLAS path for centroid type T (arguments checked).
template <class T>
Status run_decode_cublas(const LookupGemmGpuArgs& a, cudaStream_t stream) {
  const CodebookView<T> cb = a.w.typed<T>();
  const CublasLayout l = cublas_layout(a);
  unsigned char* ws = static_cast<unsigned char*>(a.workspace);
  const DType dd = dense_dtype(a);
  // 1. Wt (in, out), leading dimension out: column-major it is W (out, in), cuBLAS's A.
  if (dd == DType::kF32) {
    DecodeGpuArgs d;
    d.codebook = a.w;
    d.output = MatrixView<float>{reinterpret_cast<float*>(ws), cb.in, cb.out, cb.out, 1};
    d.layout = DecodeLayout::kWt;
    if (Status s = decode_dense_gpu(d, stream); !s.ok()) return s;
  } else {
    if constexpr (!std::is_same_v<T, float>) {
      constexpr int kThreads = 256;
      int64_t blocks = (cb.num_vectors() + kThreads - 1) / kThreads;
      if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
      decode_wt_storage_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(cb, reinterpret_cast<T*>(ws));
      if (Status s = cuda_status(cudaGetLastError(), "decode_wt_storage_kernel"); !s.ok()) return s;
    }
  }
  // 2. x as cuBLAS's B: (in, m) column-major is x (m, in) row-major with leading dimension ldx.
  const void* xb = a.x;
  int64_t ldb = a.ldx;
  if (l.widen_x) {
    float* xf = reinterpret_cast<float*>(ws + l.x_offset);
    constexpr int kThreads = 256;
    int64_t blocks = (a.m * cb.in + kThreads - 1) / kThreads;
    if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
    if (a.x_dtype == DType::kF16)
      convert_rows_f32_kernel<f16><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          static_cast<const f16*>(a.x), a.ldx, a.m, cb.in, xf);
    else
      convert_rows_f32_kernel<bf16><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          static_cast<const bf16*>(a.x), a.ldx, a.m, cb.in, xf);
    if (Status s = cuda_status(cudaGetLastError(), "convert_rows_f32_kernel"); !s.ok()) return s;
    xb = xf;
    ldb = cb.in;
  }
  // 3. C (out, m) column-major = y (m, out) row-major fp32, then bias + conversion.
  float* c = reinterpret_cast<float*>(ws + l.c_offset);
  if (Status s = cublas_status(cublasSetStream(a.cublas, stream), "cublasSetStream"); !s.ok()) return s;
  const float alpha = 1.0f, beta = 0.0f;
  const cublasComputeType_t compute = dd == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  if (Status s = cublas_status(
          cublasGemmEx(a.cublas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(cb.out), static_cast<int>(a.m),
                       static_cast<int>(cb.in), &alpha, ws, cuda_type(dd), static_cast<int>(cb.out), xb, cuda_type(dd),
                       static_cast<int>(ldb), &beta, c, CUDA_R_32F, static_cast<int>(cb.out), compute,
                       CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
      !s.ok())
    return s;
  lookup_gemv_map::Geometry g;
  g.m = static_cast<int>(a.m);
  g.out = cb.out;
  g.chunks = 1;
  return finalize(g, c, a, stream);
}

/// Every check of lookup_gemm_gpu's arguments that needs no device.
inline Status check_args(const LookupGemmGpuArgs& a) {
  const AnyCodebookView& w = a.w;
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "lookup_gemm_gpu: " + m); };
  if (Status s = detail::check_decode_view(w.out, w.in, w.out_pad, w.k, w.d, w.num_codebooks, w.code_bits,
                                           w.centroids != nullptr, w.codes != nullptr, "lookup_gemm_gpu");
      !s.ok())
    return s;
  if (!is_supported_centroid_dtype(w.centroid_dtype))
    return Status(StatusCode::kUnsupported, std::string("lookup_gemm_gpu: centroid dtype ") +
                                                dtype_name(w.centroid_dtype) + " is not supported (supported: " +
                                                supported_centroid_dtype_names() + ")");
  if (!is_lookup_d(w.d))
    return Status(StatusCode::kUnsupported, "lookup_gemm_gpu: d = " + std::to_string(w.d) +
                                                " has no kernel configuration (supported: 2, 4, 8, 16)");
  if (!is_activation_dtype(a.x_dtype) || !is_activation_dtype(a.y_dtype))
    return Status(StatusCode::kUnsupported, std::string("lookup_gemm_gpu: x dtype ") + dtype_name(a.x_dtype) +
                                                " / y dtype " + dtype_name(a.y_dtype) +
                                                " (supported: F32, F16, BF16)");
  if (a.m < 0) return bad("m must be >= 0, got " + std::to_string(a.m));
  if (a.m > (int64_t{1} << 30)) return bad("m = " + std::to_string(a.m) + " is too large");
  if (a.m == 0) return Status();
  if (a.x == nullptr || a.y == nullptr) return bad("null x or y");
  if (a.ldx < w.in) return bad("ldx " + std::to_string(a.ldx) + " < in " + std::to_string(w.in));
  if (a.ldy < w.out) return bad("ldy " + std::to_string(a.ldy) + " < out " + std::to_string(w.out));
  if (reinterpret_cast<uintptr_t>(w.centroids) % 16 != 0 || reinterpret_cast<uintptr_t>(w.codes) % 4 != 0)
    return bad("centroids must be 16-byte and codes 4-byte aligned");
  const LookupGpuPath path = resolve_path(a);
  if (path == LookupGpuPath::kLookup) {
    if (a.placement == LookupTablePlacement::kShared && table_bytes(w) > kLookupSharedTableBytes)
      return Status(StatusCode::kUnsupported,
                    "lookup_gemm_gpu: the centroid table (" + std::to_string(table_bytes(w)) +
                        " bytes) does not fit the shared-memory placement (at most " +
                        std::to_string(kLookupSharedTableBytes) + " bytes)");
  } else {
    if (a.cublas == nullptr)
      return bad("m = " + std::to_string(a.m) + " takes the decode + cuBLAS path (m > " +
                 std::to_string(lookup_gemv_map::kMaxRows) + "), which needs args.cublas");
    const int64_t int_max = 2147483647;
    if (w.out > int_max || w.in > int_max || a.m > int_max || a.ldx > int_max)
      return bad("dimensions exceed cuBLAS's 32-bit int");
  }
  if (a.workspace_bytes > 0 && a.workspace == nullptr) return bad("workspace_bytes > 0 but workspace is null");
  if (reinterpret_cast<uintptr_t>(a.workspace) % 16 != 0) return bad("workspace must be 16-byte aligned");
  return Status();
}

}  // namespace lookup_gpu

// Where cluscomp::kernels is linked (its CMake target defines CLUSCOMP_PREBUILT_KERNELS), the two
// entry points per centroid type are compiled once there (kernels/lookup_gemm.cu): an includer
// would otherwise compile every kernel configuration of the list again (minutes of nvcc per file,
// per architecture). Without the library this header stays header-only and instantiates them.
#if defined(CLUSCOMP_PREBUILT_KERNELS)
#define CLUSCOMP_EXTERN_LOOKUP_GEMM(T, D)                                                                \
  extern template Status lookup_gpu::run_lookup<T>(const LookupGemmGpuArgs&, bool, cudaStream_t);       \
  extern template Status lookup_gpu::run_decode_cublas<T>(const LookupGemmGpuArgs&, cudaStream_t);
CLUSCOMP_FOR_EACH_CENTROID_TYPE(CLUSCOMP_EXTERN_LOOKUP_GEMM)
#undef CLUSCOMP_EXTERN_LOOKUP_GEMM
#endif

/// Bytes of workspace lookup_gemm_gpu needs for these arguments: a function of the shapes, m,
/// the dtypes and the path only (never of the device). Lookup path: chunks * m * out fp32 partial
/// sums (a few MiB at most for m <= 16). Decode + cuBLAS: Wt (in x out in the dense dtype), x
/// widened to fp32 when its dtype differs from the centroids', and the fp32 (m, out) product.
/// 0 for m <= 0.
inline size_t lookup_gemm_gpu_workspace_size(const LookupGemmGpuArgs& a) {
  if (a.m <= 0 || a.w.d <= 0 || a.w.out <= 0 || a.w.in <= 0) return 0;
  if (lookup_gpu::resolve_path(a) == LookupGpuPath::kLookup) {
    const lookup_gemv_map::Geometry g =
        lookup_gemv_map::make_geometry(a.w.out, a.w.in, a.w.d, a.w.code_bits, static_cast<int>(a.m));
    return lookup_gpu::align_up(static_cast<size_t>(lookup_gemv_map::partial_floats(g)) * 4);
  }
  return lookup_gpu::cublas_layout(a).total;
}

/// y = x . W^T (+ bias) on `stream` (see the file comment for paths, numerics, determinism).
/// The runtime centroid dtype becomes the template argument here, through the one list
/// (codebook/configs.hpp). Returns kInvalidArgument / kUnsupported naming the problem before any
/// launch, kCudaError when a launch or a cuBLAS call fails. m == 0 does nothing.
[[nodiscard]] inline Status lookup_gemm_gpu(const LookupGemmGpuArgs& a, cudaStream_t stream) {
  if (Status s = lookup_gpu::check_args(a); !s.ok() || a.m == 0) return s;
  const size_t need = lookup_gemm_gpu_workspace_size(a);
  if (a.workspace_bytes < need)
    return Status(StatusCode::kInvalidArgument, "lookup_gemm_gpu: workspace of " + std::to_string(a.workspace_bytes) +
                                                    " bytes, " + std::to_string(need) +
                                                    " needed (lookup_gemm_gpu_workspace_size)");
  const LookupGpuPath path = lookup_gpu::resolve_path(a);
  return visit_centroid_type(a.w.centroid_dtype, "lookup_gemm_gpu", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (path == LookupGpuPath::kDecodeCublas) return lookup_gpu::run_decode_cublas<T>(a, stream);
    const bool shared = a.placement == LookupTablePlacement::kShared ||
                        (a.placement == LookupTablePlacement::kAuto &&
                         lookup_gpu::table_bytes(a.w) <= kLookupSharedTableBytes);
    return lookup_gpu::run_lookup<T>(a, shared, stream);
  });
}

CLUSCOMP_NAMESPACE_END
