#pragma once
/// Decode kernels: each maps thread ids to d-vectors and calls CodebookView<T>::decode_vector, the
/// per-vector function the CPU decoder (codebook/decode.hpp) also calls, so the GPU output is
/// bit-identical to the CPU's and to reference::decode_dense_ref. Grid-stride loops: any grid size
/// covers any matrix.

#include <cstdint>

#include "cluscomp/codebook/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/view.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Wt (in, out): thread u decodes vector u = i * (out_pad/d) + j into dst(i, j*d ..).
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

/// W (out, in): thread u decodes vector (i, j) with u = j * in + i into dst(j*d .., i).
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
