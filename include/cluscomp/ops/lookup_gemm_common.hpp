#pragma once
/// What every CPU lookup-GEMM structure shares (ops/lookup_gemm.hpp has the API and the design):
/// the blocking constants, the code reader of the packed stream, the task's Plan, the store of
/// finished columns (+ bias), and the check of a codebook view.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CLUSCOMP_LOOKUP_X86 1
#include <immintrin.h>
#else
#define CLUSCOMP_LOOKUP_X86 0
#endif

CLUSCOMP_NAMESPACE_BEGIN
namespace lookup_detail {

/// Rows of x below which the per-row (GEMV) structure runs; from here on the tile structure.
inline constexpr int64_t kLookupTileRows = 4;
/// Output columns per parallel task of the per-row structure (at most; rounded down to whole
/// d-vectors). It reads, for every input row, the task's slice of that row's codes: wide slices
/// keep those reads long and sequential (short strided ones defeat the prefetchers, which stop at
/// page boundaries), while the accumulators (rows x columns) stay in L1.
inline constexpr int64_t kGemvColumnsPerTask = 1024;
/// Fewest output columns per task of either structure.
inline constexpr int64_t kColumnsPerTask = 128;
/// Output columns per task of the tile structure (at most; fewer when that leaves a thread idle).
inline constexpr int64_t kTileColumnsPerTask = 512;
/// Input rows decoded per tile in the tile structure (tile <= 64 x 512 fp32 = 128 KiB, L2).
inline constexpr int64_t kLookupTileDepth = 64;
/// Rows of x per accumulator block of the tile structure (bounds the per-task buffer).
inline constexpr int64_t kLookupRowBlock = 256;
/// Input rows walked together by the per-row structure (one accumulator load/store per group).
inline constexpr int kRowGroup = 8;
inline constexpr int kMr = 6;   // micro-kernel rows of x
inline constexpr int kNr = 16;  // micro-kernel columns (two 8-lane registers)

/// Codes first .. first+n-1 into `out`, clamped to k-1. Byte-aligned widths read directly.
inline void load_codes(const uint32_t* words, int64_t first, int64_t n, int bits, uint32_t kmax,
                       uint32_t* out) {
  if (bits == 16) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(words) + first * 2;
    for (int64_t r = 0; r < n; ++r) {
      uint16_t c;
      std::memcpy(&c, p + 2 * r, 2);
      out[r] = std::min<uint32_t>(c, kmax);
    }
  } else if (bits == 8) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(words) + first;
    for (int64_t r = 0; r < n; ++r) out[r] = std::min<uint32_t>(p[r], kmax);
  } else {
    unpack_code_run(words, first, n, bits, out);
    for (int64_t r = 0; r < n; ++r) out[r] = std::min<uint32_t>(out[r], kmax);
  }
}

/// What a task needs: the clustered matrix as the one codebook geometry (core/codebook_view.hpp)
/// over the fp32 centroids, and the operands.
struct Plan {
  CodebookView<float> w;             // geometry; w.centroids: (S, K, d) fp32 (null when cb_f16 is read)
  const uint16_t* cb_f16 = nullptr;  // (S, K, d) fp16 bits: read instead of w.centroids when set (AVX2 path)
  int64_t vpr = 0;                   // w.vectors_per_row(), kept so the kernels' row offsets need no division
  const float* x = nullptr;
  int64_t ldx = 0;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t ldy = 0, m = 0;
};

/// Writes accumulators (rows x ncols, leading dimension lda) of vectors [j0, j0+nv) to y.
inline void store_columns(const Plan& p, const float* acc, int64_t lda, int64_t r0, int64_t rows,
                          int64_t j0, int64_t nv) {
  const int64_t c0 = j0 * p.w.d;
  const int64_t ncols = std::min(nv * p.w.d, p.w.out - c0);  // live columns
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = p.y + (r0 + r) * p.ldy + c0;
    const float* ar = acc + r * lda;
    if (p.bias)
      for (int64_t c = 0; c < ncols; ++c) yr[c] = ar[c] + p.bias[c0 + c];
    else
      for (int64_t c = 0; c < ncols; ++c) yr[c] = ar[c];
  }
}


inline Status check_view(const AnyCodebookView& w, const char* what) {
  if (Status s = detail::check_decode_view(w.out, w.in, w.out_pad, w.k, w.d, w.num_codebooks,
                                           w.code_bits, w.centroids != nullptr, w.codes != nullptr,
                                           what);
      !s.ok())
    return s;
  if (w.k > (int64_t{1} << w.code_bits))
    return Status(StatusCode::kInvalidArgument,
                  std::string(what) + ": K = " + std::to_string(w.k) + " centroids cannot be indexed by " +
                      std::to_string(w.code_bits) + "-bit codes");
  return Status();
}

}  // namespace lookup_detail
CLUSCOMP_NAMESPACE_END
