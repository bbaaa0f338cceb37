#pragma once
// Tolerance budgets of the CPU runtime tests (ops, tiny model, real model), in one place.
// Relative errors are ||got - ref||_2 / ||ref||_2 unless stated.

namespace cluscomp_test {

// fp32 dot products of length k <= ~100 against double: error grows like sqrt(k) * 2^-24 with
// random signs; 1e-5 leaves a wide margin without hiding a wrong index.
inline constexpr double kMatmulRelTol = 1e-5;
// Elementwise fp32 ops (RMSNorm, RoPE, softmax, SwiGLU): a few ulps (2^-24 ~ 6e-8) per element.
inline constexpr double kElementwiseRelTol = 1e-6;
// Attention: fp32 scores + softmax + fp32 value sums over up to ~50 keys.
inline constexpr double kAttentionRelTol = 1e-5;
// A whole tiny random model (2 blocks, fp32) against a double-precision composition of the
// reference twins: errors of ~10 fp32 ops compound through residuals and norms.
inline constexpr double kTinyModelRelTol = 1e-4;
// The real model (30 blocks, hidden 576) in fp32 against the float64 NumPy forward on the same
// dequantised weights. Measured: 4.3e-6 worst over every position of the four prompts (fp32
// rounding through 30 blocks). Budget 1e-4: ~25x margin for other CPUs / the portable non-FMA
// path, and still four orders below a structural error (a wrong q/k permutation or theta
// gives > 1e-1).
inline constexpr double kRealLogitsRelTol = 1e-4;
// Mean NLL per token against the NumPy reference: the 0.5%.
inline constexpr double kRealNllRelTol = 5e-3;
// Perplexity (CLUSCOMP.md §4, 2 windows of 2048 of the evaluation text) against the NumPy
// reference: the 0.5%, on the perplexity itself (exp of the mean NLL).
inline constexpr double kRealPplRelTol = 5e-3;

// Lookup GEMM (ops/lookup_gemm.hpp) on Gaussian centroids and activations against the double
// twin: an fp32 fma chain of length in <= 1536, error ~ sqrt(in) * 2^-24 relative to the terms.
// Measured: 6.1e-7 worst over the test's shapes (in = 1536), 1e-7..3e-7 on the others. Budget
// 1e-5: ~16x margin, still five orders below a wrong code, centroid or codebook (error ~1).
inline constexpr double kLookupGemmRelTol = 1e-5;

// CUDA lookup GEMV (cuda/lookup_gemm.cuh, and its CPU replay) with fp32 output on Gaussian data
// against the double twin: fp32 fma chains over chunks of <= 256 input rows, the chunk sums added
// in order: the same error class as the CPU chain (sqrt(in) * 2^-24, a different association),
// in <= 2048 in the tests. Same budget as the CPU, for the same reason.
inline constexpr double kLookupGemmGpuRelTol = 1e-5;
// The same with the output rounded to fp16 / bf16 once at the end: half an ulp of the output type
// (2^-11, 2^-8) dominates. Budgets 1e-3 and 8e-3 (about 2x the rounding, far below a wrong code).
inline constexpr double kLookupGemmGpuF16OutRelTol = 1e-3;
inline constexpr double kLookupGemmGpuBF16OutRelTol = 8e-3;
// Stored-type products (ops/stored_matmul.hpp) on realistic weights against the double twin of
// the reference-dequantised matrix: an fp32 fma chain of length k <= 768 with Gaussian
// activations, as the lookup GEMM above. Budget 1e-5, still orders below a wrong block, scale or
// row (error ~1).
inline constexpr double kStoredMatmulRelTol = 1e-5;

}  // namespace cluscomp_test
