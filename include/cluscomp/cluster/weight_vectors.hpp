#pragma once
/// Cuts a weight matrix into the d-vectors that k-means clusters, with the geometry of
/// CLUSCOMP.md section 1 (the same as CodebookShape): take W (out, in), transpose, zero-pad the
/// output dimension to out_pad (a multiple of d), and cut row-major, so vector
/// v = i * (out_pad/d) + j holds W[j*d .. j*d+d-1, i] (zeros past `out`).

#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The d-vectors of W (out, in) as an (in * out_pad/d, d) row-major fp32 array. T is float, f16
/// or bf16; 16-bit values convert exactly to fp32. Deterministic, no arithmetic besides the
/// conversion. Throws Error(kInvalidArgument) naming d or the shape when they are out of range.
template <class T>
std::vector<float> weight_vectors(MatrixView<const T> w, int d) {
  if (d < 1 || d > 16)
    throw Error(StatusCode::kInvalidArgument,
                "weight_vectors: d = " + std::to_string(d) + " is outside 1..16");
  if (w.rows <= 0 || w.cols <= 0)
    throw Error(StatusCode::kInvalidArgument, "weight_vectors: empty weight (" +
                                                  std::to_string(w.rows) + " x " +
                                                  std::to_string(w.cols) + ")");
  const int64_t out = w.rows, in = w.cols;
  const int64_t out_pad = (out + d - 1) / d * d;
  const int64_t per_row = out_pad / d;
  const uint64_t total = checked_mul(static_cast<uint64_t>(in), static_cast<uint64_t>(out_pad),
                                     "weight_vectors: in * out_pad");
  std::vector<float> v(static_cast<size_t>(total), 0.0f);  // (in * out_pad/d, d) row-major
  for (int64_t i = 0; i < in; ++i)
    for (int64_t j = 0; j < per_row; ++j)
      for (int e = 0; e < d; ++e) {
        const int64_t o = j * d + e;
        if (o < out) v[static_cast<size_t>((i * per_row + j) * d + e)] = to_float(w(o, i));
      }
  return v;
}

CLUSCOMP_NAMESPACE_END
