#pragma once
/// What every autograd op shares: the conventions below and the small helpers of the double
/// (finite-difference) paths. Each op lives in its own file (dense_linear.hpp, lookup_linear.hpp,
/// rms_norm.hpp, rope.hpp, attention.hpp, swiglu.hpp, residual_add.hpp, embedding.hpp);
/// ops.hpp includes them all.
///
/// The autograd's operations: each is a forward that returns (or fills) a saved context and a
/// backward that consumes it. There is no tape: the caller (TrainBlock, a recovery loop) calls
/// the backwards in reverse order itself. Every op is a template on the scalar type T: T = float
/// trains, T = double runs the very same backward code for the finite-difference checks.
///
/// Forwards for T = float call the runtime's kernels (matmul_nt, lookup_gemm, rms_norm,
/// apply_rope, causal_attention, swiglu), so training computes what inference computes, bit for
/// bit; for T = double they are plain loops with double accumulation. Backwards are the same code
/// for both types.
///
/// Contexts are non-owning unless stated: they point at the forward's inputs (and weights), which
/// the caller keeps alive and unchanged until the backward. Layouts: activations are row-major
/// (rows = tokens) and contiguous.
///
/// Gradient conventions: a backward writes (overwrites) the gradient of an activation input unless
/// an `accumulate` flag says to add; gradients of parameters (weights, centroids, biases, norm
/// weights, embedding rows) are always ADDED, as in PyTorch, so several backwards can share a
/// buffer that the caller zeroes.
///
/// Determinism: every output element is produced by one task in a fixed order (sums over tokens,
/// keys and codes run in index order), so results never depend on the thread count.

#include <cstdint>

#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

namespace detail {

/// y (n, out) += bias broadcast over rows, in row order: the T = double forwards' bias (the float
/// forwards add it inside the runtime's kernels). No-op when bias is null.
template <class T>
void add_bias_rows(T* y, int64_t n, int64_t out, const T* bias) {
  if (bias)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) y[r * out + o] += bias[o];
}

}  // namespace detail

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
