#pragma once
/// Kernels of the CUDA lookup GEMV/GEMM (host API: cuda/lookup_gemm.cuh).
///  - lookup_gemv_kernel<T, D, MT, kSharedTable>: y partials straight from the packed codes; the
///    mapping and the per-element math are core/lookup_gemv_map.hpp's (read its file comment for
///    the structure), replayed on the CPU by tests/cpu/test_lookup_gemv_map.cpp. Persistent: a
///    block loops over work items (grid = what fits on the GPU), so the centroid table, when it
///    is staged in shared memory, is copied once per block, not once per item.
///    kSharedTable: the whole (S, K, d) table in shared memory (gathers at shared-memory latency);
///    otherwise the gathers read global memory with ld.global.cg (L2, not L1: a table larger than
///    shared memory would only thrash L1, and the streaming codes are read evict-first so they do
///    not push the table out of L2).
///  - lookup_finalize_kernel<Ty>: adds the chunks' partials in chunk order and the bias, converts
///    to the output type (one thread per output; also the epilogue of the decode + cuBLAS path).
///  - decode_wt_storage_kernel<T>: Wt (in, out) in the centroid storage type (a copy of centroid
///    bits, exact) for the 16-bit cuBLAS GEMM of the prefill path.
///  - convert_rows_f32_kernel<Tx>: x (m, in) to dense fp32 (exact widening) for the fp32 GEMM.

#include <cstdint>

#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/lookup_gemv_map.hpp"
#include "cluscomp/cuda/device/centroid_load.cuh"

CLUSCOMP_NAMESPACE_BEGIN

namespace lookup_gpu {

/// The operands of lookup_gemv_kernel besides the centroid table (device pointers).
struct GemvParams {
  lookup_gemv_map::Geometry g;
  const uint32_t* codes = nullptr;  // packed, in * vpr codes of g.code_bits bits
  const void* x = nullptr;          // (m, in) in x_dtype, leading dimension ldx
  DType x_dtype = DType::kF16;
  int64_t ldx = 0;
  float* partial = nullptr;         // (chunks, m, out) fp32 workspace
  int64_t k = 0;                    // centroids per codebook
  int num_codebooks = 1;
  int load_width = 1;               // words per code load (lookup_gemv_map::load_width)
  int64_t table_bytes = 0;          // S * K * D * sizeof(T): what kSharedTable copies
};

/// x[r, i] as float (exact widening). The dtype is uniform across the grid, so the switch costs
/// no divergence; it keeps the activation type out of the kernel's template list.
__device__ CLUSCOMP_FORCEINLINE float load_x(const void* x, DType t, int64_t idx) {
  switch (t) {
    case DType::kF16: return to_float(static_cast<const f16*>(x)[idx]);
    case DType::kBF16: return to_float(static_cast<const bf16*>(x)[idx]);
    default: return static_cast<const float*>(x)[idx];
  }
}

/// Bytes of dynamic shared memory lookup_gemv_kernel uses: the code windows of every warp, the
/// x chunk (chunk_rows x MT fp32) and, with kSharedTable, the table. Every part is a multiple of
/// 16 bytes so the next starts aligned for vector loads.
CLUSCOMP_HOST_DEVICE inline int64_t gemv_shared_bytes(const lookup_gemv_map::Geometry& g, bool shared_table,
                                                      int64_t table_bytes) {
  using namespace lookup_gemv_map;
  const int64_t stage = int64_t{kWarps} * kRowsPerStep * kWindowWords * 4;
  const int64_t xs = g.chunk_rows * g.row_tile * 4;
  return stage + xs + (shared_table ? (table_bytes + 15) / 16 * 16 : 0);
}

}  // namespace lookup_gpu

/// y partials for every item of the geometry (see the file comment). Block: kThreads threads.
/// Two details keep ptxas from spilling (scripts/check_kernel_resources.py, CTest): the geometry
/// copied out of the parameter struct into registers, and an explicit minimum of one block per SM
/// in __launch_bounds__; without them a different dozen of the 102 configurations spilled 4-44
/// bytes on each compile variant tried, at only 72-96 registers (allocator heuristics, not
/// pressure). The staging loop is kept rolled for the same reason.
template <class T, int D, int MT, bool kSharedTable>
__global__ void __launch_bounds__(lookup_gemv_map::kThreads, 1)
    lookup_gemv_kernel(const T* __restrict__ centroids, lookup_gpu::GemvParams p) {
  using namespace lookup_gemv_map;
  static_assert(MT * D <= kAccumulators, "lookup_gemv_kernel: accumulators exceed the register budget");
  constexpr int kBatch = gather_batch(D);
  extern __shared__ __align__(16) unsigned char smem[];
  uint32_t* stage = reinterpret_cast<uint32_t*>(smem);
  float* xs = reinterpret_cast<float*>(stage + kWarps * kRowsPerStep * kWindowWords);
  const Geometry g = p.g;  // registers, not the parameter bank (see above)
  const int warp = static_cast<int>(threadIdx.x) / kLanes;
  const int lane = static_cast<int>(threadIdx.x) % kLanes;
  uint32_t* my_stage = stage + warp * kRowsPerStep * kWindowWords;

  const T* table = centroids;
  if constexpr (kSharedTable) {
    // Once per block: the block then serves every item it takes from this copy.
    T* copy = reinterpret_cast<T*>(xs + g.chunk_rows * MT);
    const int64_t n16 = p.table_bytes / 16;
    for (int64_t e = threadIdx.x; e < n16; e += kThreads)
      reinterpret_cast<uint4*>(copy)[e] = __ldg(reinterpret_cast<const uint4*>(centroids) + e);
    for (int64_t e = n16 * 4 + threadIdx.x; e < p.table_bytes / 4; e += kThreads)
      reinterpret_cast<uint32_t*>(copy)[e] = __ldg(reinterpret_cast<const unsigned int*>(centroids) + e);
    table = copy;
  }

  for (int64_t item = blockIdx.x; item < g.items; item += gridDim.x) {
    const Item it = item_coords(g, item);
    const int64_t i0 = chunk_begin(g, it.chunk);
    const int64_t i1 = chunk_end(g, it.chunk);
    const int64_t r0 = it.row_tile * MT;
    __syncthreads();  // the previous item's x chunk is no longer read (and the table is copied)
    // x chunk, transposed to (row i, row of x r) so a lane reads its MT values as one broadcast.
    for (int64_t e = threadIdx.x; e < (i1 - i0) * MT; e += kThreads) {
      const int64_t ii = e / MT;
      const int r = static_cast<int>(e % MT);
      xs[e] = r0 + r < g.m ? lookup_gpu::load_x(p.x, p.x_dtype, (r0 + r) * p.ldx + i0 + ii) : 0.0f;
    }
    __syncthreads();

    const int64_t group = group_of(it.group_block, warp);
    if (group >= g.groups) continue;  // warp-uniform: the last block's spare warps
    const int64_t j = vector_of(group, lane);
    const bool live = j < g.vpr;
    float acc[MT][D];
#pragma unroll
    for (int r = 0; r < MT; ++r)
#pragma unroll
      for (int t = 0; t < D; ++t) acc[r][t] = 0.0f;

    for (int64_t s0 = i0; s0 < i1; s0 += kRowsPerStep) {
      const int rows = i1 - s0 < kRowsPerStep ? static_cast<int>(i1 - s0) : kRowsPerStep;
      // Stage the code windows of `rows` input rows: (row, load) pairs spread over the lanes, each
      // load p.load_width words; the windows of one row are contiguous words, so a warp's loads
      // cover whole sectors. Evict-first: the codes are read once.
      const int loads_per_row = (g.code_bits + 1 + p.load_width - 1) / p.load_width;
      __syncwarp();  // the previous step's windows are no longer read
#pragma unroll 1
      for (int e = lane; e < rows * loads_per_row; e += kLanes) {
        const int s = e / loads_per_row;
        const int q = e - s * loads_per_row;
        const CodeWindow cw = code_window(g, s0 + s, group);
        if (q * p.load_width >= cw.words) continue;
        const uint32_t* src = p.codes + cw.first + q * p.load_width;
        uint32_t* dst = my_stage + s * kWindowWords + q * p.load_width;
        if (p.load_width == 4) {
          *reinterpret_cast<uint4*>(dst) = __ldcs(reinterpret_cast<const uint4*>(src));
        } else if (p.load_width == 2) {
          *reinterpret_cast<uint2*>(dst) = __ldcs(reinterpret_cast<const uint2*>(src));
        } else {
          *dst = __ldcs(reinterpret_cast<const unsigned int*>(src));
        }
      }
      __syncwarp();
      uint32_t code[kRowsPerStep];
#pragma unroll
      for (int s = 0; s < kRowsPerStep; ++s) {
        code[s] = 0;
        if (s < rows && live) {
          const int offset = code_window(g, s0 + s, group).offset;
          code[s] = unpack_bits_at(my_stage + s * kWindowWords,
                                   static_cast<uint64_t>(offset) + static_cast<uint64_t>(lane) * g.code_bits,
                                   g.code_bits);
        }
      }
      // Gathers in batches: all loads of a batch are issued before the first is used.
#pragma unroll
      for (int sb = 0; sb < kRowsPerStep; sb += kBatch) {
        float w[kBatch][D];
#pragma unroll
        for (int q = 0; q < kBatch; ++q) {
          const int s = sb + q;
          if (s < rows && live) {
            const T* c = table + centroid_offset(s0 + s, code[s], p.k, D, p.num_codebooks, g.in);
            decode_gpu::load_centroid<T, D, !kSharedTable>(c, w[q]);
          }
        }
#pragma unroll
        for (int q = 0; q < kBatch; ++q) {
          const int s = sb + q;
          if (s < rows && live) accumulate<D, MT>(w[q], xs + (s0 + s - i0) * MT, acc);
        }
      }
    }
    if (live) {
      const int64_t o0 = j * D;
      const int n = g.out - o0 < D ? static_cast<int>(g.out - o0) : D;
#pragma unroll
      for (int r = 0; r < MT; ++r) {
        if (r0 + r < g.m) {
          float* dst = p.partial + partial_index(g, it.chunk, r0 + r, o0);
#pragma unroll
          for (int t = 0; t < D; ++t)
            if (t < n) dst[t] = acc[r][t];
        }
      }
    }
  }
}

/// y[r, o] = (chunks' partials in order) + bias, converted to Ty; one thread per output.
template <class Ty>
__global__ void lookup_finalize_kernel(lookup_gemv_map::Geometry g, const float* __restrict__ partial,
                                       const float* __restrict__ bias, Ty* __restrict__ y, int64_t ldy) {
  const int64_t n = static_cast<int64_t>(g.m) * g.out;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    const int64_t r = e / g.out;
    const int64_t o = e - r * g.out;
    y[r * ldy + o] = from_float<Ty>(lookup_gemv_map::reduce_partials(g, partial, r, o, bias));
  }
}

/// Wt (in, out), leading dimension out, in the centroid storage type: each element the bits of one
/// centroid component (exact). Thread u: vector u = i * vpr + j.
template <class T>
__global__ void decode_wt_storage_kernel(CodebookView<T> cb, T* __restrict__ dst) {
  const int64_t vpr = cb.vectors_per_row();
  const int64_t n = cb.num_vectors();
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < n; u += step) {
    const int64_t i = u / vpr;
    const int64_t j = u - i * vpr;
    const T* src = cb.centroid_for_row(i, cb.code(u));
    const int live = cb.live_components(j);
    T* row = dst + i * cb.out + j * cb.d;
    for (int t = 0; t < live; ++t) row[t] = src[t];
  }
}

/// dst (m, in) dense fp32 = x (m, in) of storage type Tx with leading dimension ldx (exact widening).
template <class Tx>
__global__ void convert_rows_f32_kernel(const Tx* __restrict__ x, int64_t ldx, int64_t m, int64_t in,
                                        float* __restrict__ dst) {
  const int64_t n = m * in;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
    const int64_t r = e / in;
    dst[e] = to_float(x[r * ldx + (e - r * in)]);
  }
}

CLUSCOMP_NAMESPACE_END
