#pragma once
/// Decode kernels. Every element is one centroid component converted to float through
/// CodebookView<T>::decode_component, the element operation the CPU decoder (codebook/decode.hpp)
/// also uses, so the GPU output is bit-identical to the CPU's and to reference::decode_dense_ref.
///
/// Two families:
///  - specialised, for d in {2, 4, 8, 16} with the centroid table aligned to its vector load:
///    one vector load per centroid (4, 8 or 16 bytes), no 64-bit division per element;
///      * Wt: a 2-D grid of (vectors of a row) x (rows); float4 stores when the output rows are
///        contiguous and 16-byte aligned;
///      * W: a tile of 32 input columns x 64 output rows decoded into shared memory (codes read
///        along a Wt row, coalesced), then written out as W rows (32 consecutive floats per warp
///        store): a transpose through shared memory;
///  - generic, any d and alignment: grid-stride loops, one thread per d-vector through
///    CodebookView<T>::decode_vector.
/// The host launcher (cuda/decode.cuh) picks one. Measured on an H200: docs/benchmarks.md,
/// gpu-decode.

#include <cstdint>

#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/cuda/device/centroid_load.cuh"

CLUSCOMP_NAMESPACE_BEGIN

namespace decode_gpu {

inline constexpr int kTileCols = 32;   // input columns i per W tile (one warp's store)
inline constexpr int kTileRows = 64;   // output rows o per W tile
inline constexpr int kTileThreadsY = 8;  // block (32, 8)

}  // namespace decode_gpu

/// Wt (in, out), specialised: block (x: vectors j of a row, y: rows i). `vec_store`: the rows of
/// dst are contiguous and 16-byte aligned and D % 4 == 0, so a vector's D floats go out as float4s.
template <class T, int D>
__global__ void decode_dense_wt_vec_kernel(CodebookView<T> cb, MatrixView<float> dst, bool vec_store) {
  const int64_t vpr = cb.vectors_per_row();
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= vpr) return;
  const int n = cb.live_components(j);
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; i < cb.in;
       i += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    float r[D];
    decode_gpu::load_centroid<T, D>(cb.centroid_for_row(i, cb.code(i * vpr + j)), r);
    float* out = &dst(i, j * D);
    if constexpr (D % 4 == 0) {
      if (vec_store && n == D) {
#pragma unroll
        for (int q = 0; q < D / 4; ++q)
          reinterpret_cast<float4*>(out)[q] = make_float4(r[4 * q], r[4 * q + 1], r[4 * q + 2], r[4 * q + 3]);
        continue;
      }
    }
#pragma unroll
    for (int t = 0; t < D; ++t)
      if (t < n) out[t * dst.col_stride] = r[t];
  }
}

/// W (out, in), specialised: block (32, 8) owns a tile of kTileCols input columns x kTileRows
/// output rows (kTileRows / D vectors per input column). Phase 1 reads the tile's codes along Wt
/// rows and decodes into shared memory; phase 2 writes W rows, 32 consecutive floats per warp.
template <class T, int D>
__global__ void decode_dense_w_tiled_kernel(CodebookView<T> cb, MatrixView<float> dst) {
  using namespace decode_gpu;
  static_assert(kTileRows % D == 0, "decode_dense_w_tiled_kernel: D must divide the tile");
  constexpr int kVecs = kTileRows / D;  // vectors per input column in a tile
  __shared__ float tile[kTileRows][kTileCols + 1];
  __shared__ const T* table[kTileCols];
  const int tid = threadIdx.y * kTileCols + threadIdx.x;
  constexpr int kThreads = kTileCols * kTileThreadsY;
  const int64_t vpr = cb.vectors_per_row();
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kTileCols;
  const int64_t row_tiles = (cb.out + kTileRows - 1) / kTileRows;
  if (tid < kTileCols && i0 + tid < cb.in) table[tid] = cb.centroid_for_row(i0 + tid, 0);
  __syncthreads();
  for (int64_t ot = blockIdx.y; ot < row_tiles; ot += gridDim.y) {
    const int64_t j0 = ot * kVecs;  // first vector of the tile (o0 = j0 * D)
    for (int idx = tid; idx < kTileCols * kVecs; idx += kThreads) {
      const int jj = idx % kVecs, ii = idx / kVecs;
      const int64_t i = i0 + ii, j = j0 + jj;
      if (i >= cb.in || j >= vpr) continue;
      float r[D];
      load_centroid<T, D>(table[ii] + static_cast<int64_t>(cb.code(i * vpr + j)) * D, r);
#pragma unroll
      for (int t = 0; t < D; ++t) tile[jj * D + t][ii] = r[t];
    }
    __syncthreads();
    const int64_t i = i0 + threadIdx.x;
    if (i < cb.in) {
      for (int oo = threadIdx.y; oo < kTileRows; oo += kTileThreadsY) {
        const int64_t o = j0 * D + oo;
        if (o < cb.out) dst(o, i) = tile[oo][threadIdx.x];
      }
    }
    __syncthreads();  // the tile is rewritten by the next ot
  }
}

/// Wt (in, out), generic: thread u decodes vector u = i * (out_pad/d) + j into dst(i, j*d ..).
/// Consecutive threads read consecutive codes and write consecutive d-runs of one row.
template <class T>
__global__ void decode_dense_wt_kernel(CodebookView<T> cb, MatrixView<float> dst) {
  const int64_t vpr = cb.vectors_per_row();
  const int64_t n = cb.in * vpr;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < n; u += step) {
    const int64_t i = u / vpr;
    const int64_t j = u - i * vpr;
    cb.decode_vector(i, j, cb.code(u), &dst(i, j * cb.d), dst.col_stride);
  }
}

/// W (out, in), generic: thread u decodes vector (i, j) with u = j * in + i into dst(j*d .., i).
/// Consecutive threads take consecutive input columns of the same output rows, so each of the
/// d stores of a warp is coalesced when W is row-major.
template <class T>
__global__ void decode_dense_w_kernel(CodebookView<T> cb, MatrixView<float> dst) {
  const int64_t vpr = cb.vectors_per_row();
  const int64_t n = cb.in * vpr;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < n; u += step) {
    const int64_t j = u / cb.in;
    const int64_t i = u - j * cb.in;
    cb.decode_vector(i, j, cb.code(i * vpr + j), &dst(j * cb.d, i), dst.row_stride);
  }
}

CLUSCOMP_NAMESPACE_END
