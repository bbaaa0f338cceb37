#pragma once
/// Lookup GEMV/GEMM on the CPU: y (m, out) = x (m, in) . W^T (+ bias) where W (out, in) is a
/// clustered matrix (codebook/codebook_view.hpp), computed from the packed codes and the
/// centroids without ever building the dense W.
///
/// Structure. Row i of Wt (one input channel) is the concatenation of the centroids its codes
/// select, so y[r, :] = sum_i x[r, i] * Wt[i, :]. Work is split over blocks of output columns
/// (whole d-vectors); a task owns its columns of y for every row of x.
///  - Few rows (m < kLookupTileRows, decode), with code panels (LookupGemmArgs::code_panels, built
///    once per layer by lookup_pack_code_panels; AVX2 path, d in {2, 4, 8, 16}): the output
///    columns are cut into panels of 64 whose codes lie row after row in one sequential stream of
///    1- or 2-byte codes. A panel's 64 accumulators stay in 8 registers while every input row is
///    walked: per row, broadcast x[i], look up 64/d centroids with scalar loads (no gathers; fp16
///    widened with F16C) and issue 8 fmas; codes are prefetched non-temporally so they do not
///    evict codebook lines from L2. The speed is set by where the codebook lives: about one
///    lookup per cycle per core from L1 (K*d*2 bytes <= ~32 KiB), one per two to three cycles
///    from L2 (K = 65536: 512 KiB at d = 4, 1 MiB at d = 8), see docs/benchmarks.md.
///  - Few rows without panels: input rows are walked eight at a time; each code is read straight
///    from the packed stream and the d-wide centroid it selects is multiply-added into the task's
///    column accumulators (L1-resident, wide column slices so code reads stay sequential).
///  - Many rows (prefill): a tile of Wt (kLookupTileDepth input rows x the task's columns) is
///    decoded into an fp32 buffer, then a register-blocked micro-kernel (6 rows x 16 columns)
///    multiplies it by the matching panel of x; decoding is paid once per tile for all rows.
/// Centroids: fp32 codebooks are read in place; fp16 ones, on the AVX2 path, are read in place
/// too and widened with F16C per lookup (half the cache footprint of an fp32 copy, which matters
/// for K = 65536); otherwise (bf16, or the portable path) they are converted once per call, or
/// once per layer by the caller (lookup_centroids_f32), into an (S, K, d) fp32 copy.
///
/// Numerics: fp32 accumulation in a fixed order. For every output element
///   acc = +0; for i = 0 .. in-1: acc = fma(x[r, i], W[o, i], acc); y[r, o] = acc (+ bias[o])
/// with a correctly rounded fused multiply-add. Both structures, the AVX2/FMA path (x86-64 with
/// AVX2+FMA, checked at run time; F16C converts fp16 codebooks) and the portable path (std::fma)
/// perform exactly this sequence, so all of them give bit-identical results to each other, for
/// every m (a prefill row equals the one-row decode of the same x), thread count and blocking,
/// with or without code panels.
/// Tolerance class against exact arithmetic: an fp32 sum of `in` products (relative error about
/// sqrt(in) * 2^-24 typical, in * 2^-24 worst). With small-integer centroids and activations whose
/// partial sums stay below 2^24 every step is exact.
///
/// Codes >= K cannot come from a validated tensor (CodebookTensor::validate_codes); should a
/// hand-built view hold one it is read as K-1, never out of bounds.
///
/// Files: lookup_gemm_common.hpp (constants, code reader, Plan), lookup_gemm_portable.hpp,
/// lookup_gemm_avx2.hpp, lookup_code_panels.hpp; the per-row step all of them compute is
/// core/lookup_row.hpp's lookup_row_step, shared with the GPU.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/cpu_features.hpp"
#include "cluscomp/host/device_status.hpp"
#include "cluscomp/ops/lookup_code_panels.hpp"
#include "cluscomp/ops/lookup_gemm_avx2.hpp"
#include "cluscomp/ops/lookup_gemm_common.hpp"
#include "cluscomp/ops/lookup_gemm_portable.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Arguments of lookup_gemm. x and y are row-major with leading dimensions; they must not overlap.
struct LookupGemmArgs {
  AnyCodebookView w;  // the clustered HF weight W (out, in)
  /// Optional (S, K, d) fp32 copy of w's centroids (lookup_centroids_f32). Null: fp32 centroids
  /// are read in place, fp16/bf16 ones are converted once per call.
  const float* centroids_f32 = nullptr;
  /// Optional: w's codes rearranged into column panels by lookup_pack_code_panels (built once per
  /// layer). The few-row structure (m < 4) then reads them instead of the packed stream, which is
  /// much faster; results are the same bits either way. Null: the packed stream is read.
  const void* code_panels = nullptr;
  const float* x = nullptr;  // (m, in), leading dimension ldx
  int64_t ldx = 0;
  const float* bias = nullptr;  // (out) or null
  float* y = nullptr;           // (m, out), leading dimension ldy
  int64_t ldy = 0;
  int64_t m = 0;
};

/// Which instruction path runs. kAuto picks AVX2/FMA when the CPU has it; naming a path the CPU
/// lacks returns kUnsupported. The result is the same on every path (see the file comment).
enum class LookupGemmPath { kAuto, kPortable, kAvx2 };

struct LookupGemmOptions {
  LookupGemmPath path = LookupGemmPath::kAuto;
  /// The backend (core/device.hpp). This entry takes host pointers and runs on the CPU only; the
  /// CUDA lookup GEMM has its own entry with device pointers, a stream and a caller's workspace,
  /// lookup_gemm_gpu (cluscomp/cuda/lookup_gemm.cuh, nvcc only), so this header-only CPU library
  /// never includes CUDA headers (docs/architecture.md, the backend seam). kCuda here is a Status
  /// naming that entry (or the missing build/device), never a silent CPU run.
  Device device = Device::kCpu;
};

namespace lookup_detail {

/// One task: the vectors [j0, j0+nv) of every row.
inline void run_task(const Plan& p, int64_t j0, int64_t nv, bool avx2) {
#if CLUSCOMP_LOOKUP_X86
  if (avx2) {
    if (p.m < kLookupTileRows) {
      std::vector<float> acc(static_cast<size_t>(p.m * nv * p.w.d), 0.0f);
      if (p.cb_f16)
        gemv_block_avx2(p, p.cb_f16, 0, p.m, j0, nv, acc.data());
      else
        gemv_block_avx2(p, p.w.centroids, 0, p.m, j0, nv, acc.data());
    } else {
      const int64_t ldc = (nv * p.w.d + kNr - 1) / kNr * kNr;
      const int64_t rows_max = std::min(p.m, kLookupRowBlock);
      std::vector<float> acc(static_cast<size_t>(rows_max * ldc));
      std::vector<float> tile(static_cast<size_t>(kLookupTileDepth * ldc));
      for (int64_t r0 = 0; r0 < p.m; r0 += kLookupRowBlock) {
        const int64_t rows = std::min(kLookupRowBlock, p.m - r0);
        std::fill(acc.begin(), acc.end(), 0.0f);
        if (p.cb_f16)
          gemm_block_avx2(p, p.cb_f16, r0, rows, j0, nv, ldc, acc.data(), tile.data());
        else
          gemm_block_avx2(p, p.w.centroids, r0, rows, j0, nv, ldc, acc.data(), tile.data());
      }
    }
    return;
  }
#else
  (void)avx2;
#endif
  for (int64_t r0 = 0; r0 < p.m; r0 += kLookupRowBlock)
    gemv_block_portable(p, r0, std::min(kLookupRowBlock, p.m - r0), j0, nv);
}

}  // namespace lookup_detail

/// Converts the centroids of `w` to fp32 into `dst` ((S, K, d) = num_codebooks*k*d floats).
/// Exact (every fp16/bf16 value is an fp32 value); F16C converts fp16 when the CPU has it.
/// A layer that runs many products converts once and passes the copy as
/// LookupGemmArgs::centroids_f32. kUnsupported for a dtype outside configs.hpp's list.
inline Status lookup_centroids_f32(const AnyCodebookView& w, float* dst) {
  if (Status s = lookup_detail::check_view(w, "lookup_centroids_f32"); !s.ok()) return s;
  if (!dst) return Status(StatusCode::kInvalidArgument, "lookup_centroids_f32: null output");
  const int64_t n = static_cast<int64_t>(w.num_codebooks) * w.k * w.d;
  return visit_centroid_type(w.centroid_dtype, "lookup_centroids_f32", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = static_cast<const T*>(w.centroids);
#if CLUSCOMP_LOOKUP_X86
    if constexpr (std::is_same_v<T, f16>) {
      if (cpu_has_f16c()) {
        static_assert(sizeof(f16) == 2, "f16 is its 16 bits");
        lookup_detail::f16_to_f32_f16c(reinterpret_cast<const uint16_t*>(src), n, dst);
        return Status();
      }
    }
#endif
    for (int64_t e = 0; e < n; ++e) dst[e] = to_float(src[e]);
    return Status();
  });
}

/// Checks the arguments of lookup_gemm; the message names the bad value.
inline Status check_lookup_gemm_args(const LookupGemmArgs& a) {
  if (Status s = lookup_detail::check_view(a.w, "lookup_gemm"); !s.ok()) return s;
  if (!is_supported_centroid_dtype(a.w.centroid_dtype))
    return Status(StatusCode::kUnsupported, std::string("lookup_gemm: centroid dtype ") +
                                                dtype_name(a.w.centroid_dtype) + " is not supported (supported: " +
                                                supported_centroid_dtype_names() + ")");
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "lookup_gemm: " + m); };
  if (a.m < 0) return bad("negative row count m = " + std::to_string(a.m));
  if (a.m == 0) return Status();
  if (!a.x) return bad("null x");
  if (!a.y) return bad("null y");
  if (a.ldx < a.w.in)
    return bad("ldx " + std::to_string(a.ldx) + " is below in = " + std::to_string(a.w.in));
  if (a.ldy < a.w.out)
    return bad("ldy " + std::to_string(a.ldy) + " is below out = " + std::to_string(a.w.out));
  if (a.code_panels) {
    uint64_t want[8], got[8];
    lookup_detail::panel_header(a.w, want);
    std::memcpy(got, a.code_panels, sizeof got);
    if (std::memcmp(want, got, sizeof want) != 0)
      return bad("code_panels were not built by lookup_pack_code_panels for this tensor's geometry (out " +
                 std::to_string(a.w.out) + ", in " + std::to_string(a.w.in) + ", d " + std::to_string(a.w.d) +
                 ", K " + std::to_string(a.w.k) + ", S " + std::to_string(a.w.num_codebooks) + ", " +
                 std::to_string(a.w.code_bits) + "-bit codes)");
  }
  return Status();
}

/// True when lookup_gemm's kAuto runs the AVX2/FMA path on this CPU.
inline bool lookup_gemm_uses_avx2() { return cpu_has_avx2_fma_f16c(); }

/// y = x . W^T (+ bias) from codes and centroids: see the file comment for the numerics (fp32
/// accumulation, one fma per product in ascending input order; bit-identical across paths, m,
/// blocking and thread counts: deterministic). Parallel over blocks of about 128 output columns
/// on `pool` (null: calling thread). Allocates per-task buffers (a few hundred KiB at most) and,
/// for fp16/bf16 centroids without centroids_f32, an (S, K, d) fp32 copy.
/// Errors: kInvalidArgument (shapes, pointers, view fields), kUnsupported (centroid dtype, or a
/// path this CPU lacks), kOutOfMemory. Never throws.
inline Status lookup_gemm(const LookupGemmArgs& a, ThreadPool* pool = nullptr,
                          const LookupGemmOptions& opt = {}) {
  if (opt.device != Device::kCpu) {
    if (Status s = device_status(opt.device); !s.ok()) return s;
    return Status(StatusCode::kUnsupported,
                  "lookup_gemm: this entry takes host pointers and runs on the CPU; for --device cuda call "
                  "lookup_gemm_gpu (cluscomp/cuda/lookup_gemm.cuh) with device pointers, a stream and a workspace");
  }
  if (Status s = check_lookup_gemm_args(a); !s.ok() || a.m == 0) return s;
  bool avx2 = cpu_has_avx2_fma_f16c();
  if (opt.path == LookupGemmPath::kPortable) {
    avx2 = false;
  } else if (opt.path == LookupGemmPath::kAvx2 && !avx2) {
    return Status(StatusCode::kUnsupported, "lookup_gemm: the AVX2/FMA path was requested but this CPU lacks AVX2 or FMA");
  }
  try {
    std::vector<float> converted;
    const float* cb = a.centroids_f32;
    // The AVX2 path reads fp16 centroids directly (F16C): no conversion, half the cache footprint.
    const bool f16_direct = avx2 && a.w.centroid_dtype == DType::kF16;
    if (!cb && !f16_direct) {
      if (a.w.centroid_dtype == DType::kF32) {
        cb = static_cast<const float*>(a.w.centroids);
      } else {
        converted.resize(static_cast<size_t>(static_cast<int64_t>(a.w.num_codebooks) * a.w.k * a.w.d));
        if (Status s = lookup_centroids_f32(a.w, converted.data()); !s.ok()) return s;
        cb = converted.data();
      }
    }
    lookup_detail::Plan p;
    p.w = CodebookView<float>{cb, a.w.codes, a.w.out, a.w.in, a.w.out_pad, a.w.k, a.w.d, a.w.num_codebooks,
                              a.w.code_bits};
    if (f16_direct) p.cb_f16 = static_cast<const uint16_t*>(a.w.centroids);
    p.vpr = p.w.vectors_per_row();
    p.x = a.x;
    p.ldx = a.ldx;
    p.bias = a.bias;
    p.y = a.y;
    p.ldy = a.ldy;
    p.m = a.m;
    // Small products (tiny models, tests) are not worth waking the pool for.
    ThreadPool* tp = (a.m * p.w.out * p.w.in < (int64_t{1} << 16)) ? nullptr : pool;
#if CLUSCOMP_LOOKUP_X86
    if (avx2 && a.code_panels && a.m < lookup_detail::kLookupTileRows && lookup_detail::panel_supported_d(p.w.d)) {
      // Few rows from code panels: tasks of whole panels, a few per thread for balance.
      const int64_t panels = lookup_detail::panel_geometry(a.w).panels;
      const int64_t threads = tp ? tp->size() : 1;
      const int64_t tasks = std::min(panels, threads == 1 ? 1 : threads * 4);
      parallel_for(tp, tasks, [&](int64_t t) {
        lookup_detail::run_panel_task(p, a.code_panels, panels * t / tasks, panels * (t + 1) / tasks);
      });
      return Status();
    }
#endif
    // Wide column slices, but at least one per thread. Only the split changes, never a result.
    const int64_t threads = tp ? tp->size() : 1;
    const int64_t widest = a.m < lookup_detail::kLookupTileRows ? lookup_detail::kGemvColumnsPerTask
                                                                : lookup_detail::kTileColumnsPerTask;
    const int64_t cols = std::max(lookup_detail::kColumnsPerTask, std::min(widest, (p.w.out + threads - 1) / threads));
    const int64_t nv = std::max<int64_t>(1, cols / p.w.d);
    const int64_t tasks = (p.vpr + nv - 1) / nv;
    parallel_for(tp, tasks, [&](int64_t t) {
      const int64_t j0 = t * nv;
      lookup_detail::run_task(p, j0, std::min(nv, p.vpr - j0), avx2);
    });
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "lookup_gemm: out of memory for work buffers (m = " +
                                                std::to_string(a.m) + ", out = " + std::to_string(a.w.out) + ")");
  }
  return Status();
}

CLUSCOMP_NAMESPACE_END

