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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/parallel.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CLUSCOMP_LOOKUP_X86 1
#include <immintrin.h>
#else
#define CLUSCOMP_LOOKUP_X86 0
#endif

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
};

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

/// The geometry a task needs, with the fp32 centroids.
struct Plan {
  const float* cb = nullptr;  // (S, K, d) fp32
  const uint16_t* cb_f16 = nullptr;  // (S, K, d) fp16 bits: read instead of cb when set (AVX2 path)
  const uint32_t* codes = nullptr;
  int64_t out = 0, in = 0, vpr = 0, k = 0;
  int d = 0, s = 1, bits = 16;
  const float* x = nullptr;
  int64_t ldx = 0;
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t ldy = 0, m = 0;

  const float* codebook_for_row(int64_t i) const {
    return cb + codebook_of_row(i, s, in) * k * d;
  }
};

/// Writes accumulators (rows x ncols, leading dimension lda) of vectors [j0, j0+nv) to y.
inline void store_columns(const Plan& p, const float* acc, int64_t lda, int64_t r0, int64_t rows,
                          int64_t j0, int64_t nv) {
  const int64_t c0 = j0 * p.d;
  const int64_t ncols = std::min(nv * p.d, p.out - c0);  // live columns
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = p.y + (r0 + r) * p.ldy + c0;
    const float* ar = acc + r * lda;
    if (p.bias)
      for (int64_t c = 0; c < ncols; ++c) yr[c] = ar[c] + p.bias[c0 + c];
    else
      for (int64_t c = 0; c < ncols; ++c) yr[c] = ar[c];
  }
}

/// Per-row structure, portable (any number of rows): vectors [j0, j0+nv) for rows [r0, r0+rows).
inline void gemv_block_portable(const Plan& p, int64_t r0, int64_t rows, int64_t j0, int64_t nv) {
  const int64_t ncol = nv * p.d;
  std::vector<float> acc(static_cast<size_t>(rows * ncol), 0.0f);  // (rows, ncol)
  std::vector<uint32_t> run(static_cast<size_t>(nv));
  const uint32_t kmax = static_cast<uint32_t>(p.k - 1);
  for (int64_t i = 0; i < p.in; ++i) {
    load_codes(p.codes, i * p.vpr + j0, nv, p.bits, kmax, run.data());
    const float* cbi = p.codebook_for_row(i);
    for (int64_t r = 0; r < rows; ++r) {
      const float xv = p.x[(r0 + r) * p.ldx + i];
      float* a = acc.data() + r * ncol;
      for (int64_t v = 0; v < nv; ++v) {
        const float* c = cbi + static_cast<int64_t>(run[v]) * p.d;
        for (int t = 0; t < p.d; ++t) a[v * p.d + t] = std::fma(xv, c[t], a[v * p.d + t]);
      }
    }
  }
  store_columns(p, acc.data(), ncol, r0, rows, j0, nv);
}

#if CLUSCOMP_LOOKUP_X86
inline bool cpu_has_f16c() { return __builtin_cpu_supports("f16c"); }
/// The AVX2 path also reads fp16 tables with F16C (every AVX2+FMA CPU has it; checked anyway).
inline bool cpu_has_avx2_fma() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

/// fp16 bits -> fp32 with F16C, 8 at a time (exact, like half_bits_to_float).
__attribute__((target("avx,f16c"))) inline void f16_to_f32_f16c(const uint16_t* src, int64_t n,
                                                                float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = half_bits_to_float(src[i]);
}

/// Codes of one input row as the per-row structure reads them, straight from the packed stream:
/// plain loads when the width is 8 or 16 bits and every value is a valid code (K = 2^bits).
struct CodesU16 {
  const unsigned char* p;
  uint32_t operator[](int64_t v) const {
    uint16_t c;
    std::memcpy(&c, p + 2 * v, 2);
    return c;
  }
};
struct CodesU8 {
  const unsigned char* p;
  uint32_t operator[](int64_t v) const { return p[v]; }
};
/// Any width 1..16: one unaligned 32-bit load per code (clamped so it never reads past the last
/// word of the stream), a shift, a mask, and a clamp to K-1.
struct CodesBits {
  const unsigned char* base;
  uint64_t bit0;     // bit position of code 0 of this run
  int64_t max_off;   // last byte offset at which 4 bytes can be read
  uint32_t bits, mask, kmax;
  uint32_t operator[](int64_t v) const {
    const uint64_t b = bit0 + static_cast<uint64_t>(v) * bits;
    const int64_t off = std::min(static_cast<int64_t>(b >> 3), max_off);
    uint32_t w;
    std::memcpy(&w, base + off, 4);
    return std::min((w >> (b - 8 * static_cast<uint64_t>(off))) & mask, kmax);
  }
};

/// Calls f(codes) with the reader of input row i's codes from vector j0 on (see the Codes* types).
template <class F>
inline void with_row_codes(const Plan& p, int64_t i, int64_t j0, F&& f) {
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p.codes);
  const bool full = p.k == (int64_t{1} << p.bits);
  const int64_t first = i * p.vpr + j0;
  if (full && p.bits == 16) {
    f(CodesU16{bytes + first * 2});
  } else if (full && p.bits == 8) {
    f(CodesU8{bytes + first});
  } else {
    CodesBits c;
    c.base = bytes;
    c.bit0 = static_cast<uint64_t>(first) * static_cast<uint64_t>(p.bits);
    c.max_off = packed_words(p.in * p.vpr, p.bits) * 4 - 4;
    c.bits = static_cast<uint32_t>(p.bits);
    c.mask = (1u << p.bits) - 1u;
    c.kmax = static_cast<uint32_t>(p.k - 1);
    f(c);
  }
}

/// Centroid components as fp32 from an fp32 table or, with F16C, straight from an fp16 table
/// (exact either way; the fp16 table is half the size, so more of a large codebook stays cached).
__attribute__((target("avx2,fma,f16c"))) inline __m128 load4(const float* c) { return _mm_loadu_ps(c); }
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const float* c) { return _mm256_loadu_ps(c); }
inline float load1(const float* c) { return *c; }
__attribute__((target("avx2,fma,f16c"))) inline __m128 load4(const uint16_t* c) {
  return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c)));
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const uint16_t* c) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
}
inline float load1(const uint16_t* c) { return half_bits_to_float(*c); }

/// Per-row structure, AVX2/FMA, one group of g <= kRowGroup input rows starting at ib. Each
/// accumulator is loaded and stored once per group; the fma sequence per element is unchanged
/// (input rows ascending).
template <class Codes, class Table>
__attribute__((target("avx2,fma,f16c"))) inline void gemv_group_avx2(const Plan& p, const Table* const* cbi,
                                                                const Codes* cq, int g, int64_t ib,
                                                                int64_t r0, int64_t rows, int64_t nv,
                                                                float* acc) {
  const int d = p.d;
  const int64_t ncol = nv * d;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = p.x + (r0 + r) * p.ldx + ib;
    float* a = acc + r * ncol;
    if (d == 4 && g == kRowGroup) {
      // Two adjacent vectors share one 8-lane accumulator.
      __m256 xs[kRowGroup];
      for (int q = 0; q < kRowGroup; ++q) xs[q] = _mm256_set1_ps(xr[q]);
      int64_t v = 0;
      for (; v + 2 <= nv; v += 2) {
        __m256 sum = _mm256_loadu_ps(a + v * 4);
#pragma GCC unroll 8
        for (int q = 0; q < kRowGroup; ++q) {
          const __m256 w = _mm256_insertf128_ps(_mm256_castps128_ps256(load4(cbi[q] + cq[q][v] * 4)),
                                                load4(cbi[q] + cq[q][v + 1] * 4), 1);
          sum = _mm256_fmadd_ps(xs[q], w, sum);
        }
        _mm256_storeu_ps(a + v * 4, sum);
      }
      for (; v < nv; ++v) {
        __m128 sum = _mm_loadu_ps(a + v * 4);
#pragma GCC unroll 8
        for (int q = 0; q < kRowGroup; ++q)
          sum = _mm_fmadd_ps(_mm256_castps256_ps128(xs[q]), load4(cbi[q] + cq[q][v] * 4), sum);
        _mm_storeu_ps(a + v * 4, sum);
      }
    } else if (d == 8 && g == kRowGroup) {
      __m256 xs[kRowGroup];
      for (int q = 0; q < kRowGroup; ++q) xs[q] = _mm256_set1_ps(xr[q]);
      for (int64_t v = 0; v < nv; ++v) {
        __m256 sum = _mm256_loadu_ps(a + v * 8);
#pragma GCC unroll 8
        for (int q = 0; q < kRowGroup; ++q)
          sum = _mm256_fmadd_ps(xs[q], load8(cbi[q] + cq[q][v] * 8), sum);
        _mm256_storeu_ps(a + v * 8, sum);
      }
    } else {
      for (int q = 0; q < g; ++q) {
        const float xv = xr[q];
        const __m256 xb = _mm256_set1_ps(xv);
        for (int64_t v = 0; v < nv; ++v) {
          const Table* c = cbi[q] + static_cast<int64_t>(cq[q][v]) * d;
          float* av = a + v * d;
          int t = 0;
          for (; t + 8 <= d; t += 8)
            _mm256_storeu_ps(av + t, _mm256_fmadd_ps(xb, load8(c + t), _mm256_loadu_ps(av + t)));
          for (; t < d; ++t) av[t] = std::fma(xv, load1(c + t), av[t]);
        }
      }
    }
  }
}

/// Per-row structure, AVX2/FMA: vectors [j0, j0+nv) for rows [r0, r0+rows).
/// acc: (rows, nv*d) zeroed by the caller.
/// Table: float (the fp32 centroids) or uint16_t (fp16 centroid bits, read with F16C).
template <class Table>
__attribute__((target("avx2,fma,f16c"))) inline void gemv_block_avx2(const Plan& p, const Table* table,
                                                                     int64_t r0, int64_t rows, int64_t j0,
                                                                     int64_t nv, float* acc) {
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p.codes);
  const bool full = p.k == (int64_t{1} << p.bits);  // every bit pattern is a valid code
  const int64_t total_bytes = packed_words(p.in * p.vpr, p.bits) * 4;
  for (int64_t ib = 0; ib < p.in; ib += kRowGroup) {
    const int g = static_cast<int>(std::min<int64_t>(kRowGroup, p.in - ib));
    const Table* cbi[kRowGroup];
    for (int q = 0; q < g; ++q) cbi[q] = table + codebook_of_row(ib + q, p.s, p.in) * p.k * p.d;
    if (full && p.bits == 16) {
      CodesU16 cq[kRowGroup];
      for (int q = 0; q < g; ++q) cq[q].p = bytes + ((ib + q) * p.vpr + j0) * 2;
      gemv_group_avx2(p, cbi, cq, g, ib, r0, rows, nv, acc);
    } else if (full && p.bits == 8) {
      CodesU8 cq[kRowGroup];
      for (int q = 0; q < g; ++q) cq[q].p = bytes + ((ib + q) * p.vpr + j0);
      gemv_group_avx2(p, cbi, cq, g, ib, r0, rows, nv, acc);
    } else {
      CodesBits cq[kRowGroup];
      for (int q = 0; q < g; ++q) {
        cq[q].base = bytes;
        cq[q].bit0 = static_cast<uint64_t>((ib + q) * p.vpr + j0) * static_cast<uint64_t>(p.bits);
        cq[q].max_off = total_bytes - 4;
        cq[q].bits = static_cast<uint32_t>(p.bits);
        cq[q].mask = (1u << p.bits) - 1u;
        cq[q].kmax = static_cast<uint32_t>(p.k - 1);
      }
      gemv_group_avx2(p, cbi, cq, g, ib, r0, rows, nv, acc);
    }
  }
  store_columns(p, acc, nv * p.d, r0, rows, j0, nv);
}

/// MR x 16 micro-kernel: acc (rows of `a`, leading dimension lda) += x panel (MR, depth) times the
/// decoded tile columns (depth, 16, leading dimension ldb), one fma per element per input row in
/// ascending order.
template <int MR>
__attribute__((target("avx2,fma"))) inline void micro_kernel(const float* x, int64_t ldx,
                                                            const float* b, int64_t ldb,
                                                            int64_t depth, float* a, int64_t lda) {
  __m256 c0[MR], c1[MR];
  for (int r = 0; r < MR; ++r) {
    c0[r] = _mm256_loadu_ps(a + r * lda);
    c1[r] = _mm256_loadu_ps(a + r * lda + 8);
  }
  for (int64_t i = 0; i < depth; ++i) {
    const __m256 b0 = _mm256_loadu_ps(b + i * ldb), b1 = _mm256_loadu_ps(b + i * ldb + 8);
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * ldx + i);
      c0[r] = _mm256_fmadd_ps(xv, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(xv, b1, c1[r]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    _mm256_storeu_ps(a + r * lda, c0[r]);
    _mm256_storeu_ps(a + r * lda + 8, c1[r]);
  }
}

/// Row of a decoded tile: the centroids of nv codes side by side (exact copies; Table is float
/// or uint16_t fp16 bits, see load4/load8).
template <class Codes, class Table>
__attribute__((target("avx2,fma,f16c"))) inline void decode_tile_row(const Codes& codes, const Table* cbi,
                                                                     int64_t nv, int d, float* trow) {
  if (d == 4) {
    for (int64_t v = 0; v < nv; ++v) _mm_storeu_ps(trow + v * 4, load4(cbi + codes[v] * 4));
  } else if (d == 8) {
    for (int64_t v = 0; v < nv; ++v) _mm256_storeu_ps(trow + v * 8, load8(cbi + codes[v] * 8));
  } else {
    for (int64_t v = 0; v < nv; ++v) {
      const Table* c = cbi + static_cast<int64_t>(codes[v]) * d;
      for (int t = 0; t < d; ++t) trow[v * d + t] = load1(c + t);
    }
  }
}

/// Tile structure, AVX2/FMA: vectors [j0, j0+nv) for rows [r0, r0+rows).
/// acc: (rows, ldc) zeroed; tile: (kLookupTileDepth, ldc); ldc = nv*d rounded up to 16.
template <class Table>
__attribute__((target("avx2,fma,f16c"))) inline void gemm_block_avx2(const Plan& p, const Table* table,
                                                                     int64_t r0, int64_t rows, int64_t j0,
                                                                     int64_t nv, int64_t ldc, float* acc,
                                                                     float* tile) {
  const int d = p.d;
  const int64_t ncol = nv * d;
  for (int64_t kb = 0; kb < p.in; kb += kLookupTileDepth) {
    const int64_t depth = std::min(kLookupTileDepth, p.in - kb);
    for (int64_t q = 0; q < depth; ++q) {  // decode Wt rows kb+q, columns of the task (exact copies)
      const int64_t i = kb + q;
      const Table* cbi = table + codebook_of_row(i, p.s, p.in) * p.k * d;
      float* trow = tile + q * ldc;
      with_row_codes(p, i, j0, [&](const auto& codes) { decode_tile_row(codes, cbi, nv, d, trow); });
      for (int64_t c = ncol; c < ldc; ++c) trow[c] = 0.0f;
    }
    const float* xb = p.x + r0 * p.ldx + kb;
    for (int64_t r = 0; r < rows; r += kMr) {
      const int mr = static_cast<int>(std::min<int64_t>(kMr, rows - r));
      for (int64_t n = 0; n < ldc; n += kNr) {
        const float* xr = xb + r * p.ldx;
        const float* bt = tile + n;
        float* ar = acc + r * ldc + n;
        switch (mr) {
          case 6: micro_kernel<6>(xr, p.ldx, bt, ldc, depth, ar, ldc); break;
          case 5: micro_kernel<5>(xr, p.ldx, bt, ldc, depth, ar, ldc); break;
          case 4: micro_kernel<4>(xr, p.ldx, bt, ldc, depth, ar, ldc); break;
          case 3: micro_kernel<3>(xr, p.ldx, bt, ldc, depth, ar, ldc); break;
          case 2: micro_kernel<2>(xr, p.ldx, bt, ldc, depth, ar, ldc); break;
          default: micro_kernel<1>(xr, p.ldx, bt, ldc, depth, ar, ldc); break;
        }
      }
    }
  }
  store_columns(p, acc, ldc, r0, rows, j0, nv);
}
#else
inline bool cpu_has_avx2_fma() { return false; }
inline bool cpu_has_f16c() { return false; }
#endif

/// --- Code panels (the few-row structure's layout; see lookup_pack_code_panels) ---
/// Output columns per panel: one panel is 8 fp32 accumulator registers wide.
inline constexpr int64_t kPanelColumns = 64;
/// Bytes of the panel buffer's header (identifies the tensor it was built for); the codes follow.
inline constexpr int64_t kPanelHeaderBytes = 64;
inline constexpr uint64_t kPanelMagic = 0x31534c454e4150ccull;  // "\xccPANELS1"
/// Codes are prefetched this far ahead of the row being multiplied (non-temporal: a code is used
/// once, so it should not push codebook lines out of L2).
inline constexpr int64_t kPanelPrefetchBytes = 1024;

/// Vector dimensions the panel kernels handle (a panel is 64 / d whole vectors).
inline bool panel_supported_d(int d) { return d == 2 || d == 4 || d == 8 || d == 16; }

struct PanelGeometry {
  int64_t vectors = 0;     // T: vectors per panel (64 / d)
  int64_t panels = 0;      // ceil(vpr / T)
  int64_t code_bytes = 0;  // 1 (code_bits <= 8) or 2
  int64_t total_bytes = 0; // header + panels * in * T * code_bytes
};

inline PanelGeometry panel_geometry(const AnyCodebookView& w) {
  PanelGeometry g;
  g.vectors = kPanelColumns / w.d;
  const int64_t vpr = w.out_pad / w.d;
  g.panels = (vpr + g.vectors - 1) / g.vectors;
  g.code_bytes = w.code_bits <= 8 ? 1 : 2;
  g.total_bytes = kPanelHeaderBytes + g.panels * w.in * g.vectors * g.code_bytes;
  return g;
}

/// The header: what the panels were built from, so a mismatched buffer is refused, not misread.
inline void panel_header(const AnyCodebookView& w, uint64_t h[8]) {
  h[0] = kPanelMagic;
  h[1] = static_cast<uint64_t>(w.out);
  h[2] = static_cast<uint64_t>(w.in);
  h[3] = static_cast<uint64_t>(w.out_pad);
  h[4] = static_cast<uint64_t>(w.k);
  h[5] = static_cast<uint64_t>(w.d);
  h[6] = static_cast<uint64_t>(w.num_codebooks);
  h[7] = static_cast<uint64_t>(w.code_bits);
}

/// Last input row (exclusive) that uses codebook s (rows of one codebook are contiguous:
/// codebook_of_row is non-decreasing in i).
inline int64_t codebook_rows_end(int64_t s, int64_t num_codebooks, int64_t in) {
  // smallest i with ((i + 1) * S - 1) / in >= s + 1, i.e. (i + 1) * S >= (s + 1) * in + 1
  const int64_t e = ((s + 1) * in + 1 + num_codebooks - 1) / num_codebooks - 1;
  return std::min(e, in);
}

#if CLUSCOMP_LOOKUP_X86
/// Accumulator register q (8 lanes = output columns 8q .. 8q+7 of the panel) of a D-dim codebook:
/// the centroid components those lanes select at one input row (codes c of the row, T of them).
/// Exact copies of centroid values (fp16 widened by F16C). Scalar loads, no hardware gather:
/// gathers are slower here, and the table is small enough to stay in L1/L2.
template <int D, class Code>
__attribute__((target("avx2,fma,f16c"))) inline __m256 panel_lanes(const float* t, const Code* c, int q) {
  // size_t indices: a 64-bit multiply folds into the addressing mode (a 32-bit one cannot).
  if constexpr (D == 2) {  // four 8-byte entries, broadcast and blended (no shuffle port)
    double e[4];
    for (int u = 0; u < 4; ++u) std::memcpy(&e[u], t + size_t{2} * c[4 * q + u], 8);
    const __m256d a = _mm256_blend_pd(_mm256_set1_pd(e[0]), _mm256_set1_pd(e[1]), 2);
    const __m256d b = _mm256_blend_pd(_mm256_set1_pd(e[2]), _mm256_set1_pd(e[3]), 8);
    return _mm256_castpd_ps(_mm256_blend_pd(a, b, 12));
  } else if constexpr (D == 4) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(t + size_t{4} * c[2 * q])),
                                _mm_loadu_ps(t + size_t{4} * c[2 * q + 1]), 1);
  } else if constexpr (D == 8) {
    return _mm256_loadu_ps(t + size_t{8} * c[q]);
  } else {
    return _mm256_loadu_ps(t + size_t{16} * c[q / 2] + 8 * (q % 2));
  }
}
template <int D, class Code>
__attribute__((target("avx2,fma,f16c"))) inline __m256 panel_lanes(const uint16_t* t, const Code* c, int q) {
  if constexpr (D == 2) {  // four 4-byte entries
    const float* t32 = reinterpret_cast<const float*>(t);  // read only: 4 bytes at a time, bits kept
    const __m128 a = _mm_blend_ps(_mm_broadcast_ss(t32 + size_t{1} * c[4 * q]), _mm_broadcast_ss(t32 + size_t{1} * c[4 * q + 1]), 2);
    const __m128 b = _mm_blend_ps(_mm_broadcast_ss(t32 + size_t{1} * c[4 * q + 2]), _mm_broadcast_ss(t32 + size_t{1} * c[4 * q + 3]), 8);
    return _mm256_cvtph_ps(_mm_castps_si128(_mm_blend_ps(a, b, 12)));
  } else if constexpr (D == 4) {  // two 8-byte entries
    double e0, e1;
    std::memcpy(&e0, t + size_t{4} * c[2 * q], 8);
    std::memcpy(&e1, t + size_t{4} * c[2 * q + 1], 8);
    return _mm256_cvtph_ps(_mm_castpd_si128(_mm_blend_pd(_mm_set1_pd(e0), _mm_set1_pd(e1), 2)));
  } else if constexpr (D == 8) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t + size_t{8} * c[q])));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t + size_t{16} * c[q / 2] + 8 * (q % 2))));
  }
}

/// acc (64 columns of one panel, in memory) += x[i] * Wt[i, panel columns] for i in [i0, i1), one
/// fma per element per input row in ascending order; the accumulators stay in registers.
/// c: the panel's codes from row i0 on (T = 64 / D per row); t: the codebook of these rows.
template <int D, class Code, class Table>
__attribute__((target("avx2,fma,f16c"))) inline void panel_rows_avx2(const Code* c, const Table* t, const float* x,
                                                                     int64_t i0, int64_t i1, float* acc) {
  constexpr int64_t kT = kPanelColumns / D;
  __m256 a[8];
  for (int q = 0; q < 8; ++q) a[q] = _mm256_loadu_ps(acc + 8 * q);
  for (int64_t i = i0; i < i1; ++i, c += kT) {
    _mm_prefetch(reinterpret_cast<const char*>(c) + kPanelPrefetchBytes, _MM_HINT_NTA);
    const __m256 xb = _mm256_broadcast_ss(x + i);
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) a[q] = _mm256_fmadd_ps(xb, panel_lanes<D>(t, c, q), a[q]);
  }
  for (int q = 0; q < 8; ++q) _mm256_storeu_ps(acc + 8 * q, a[q]);
}

/// Panels [pan0, pan1) for every row of x: y columns of those panels. panels: the codes after the
/// header, (panels, in, T) in Code.
template <int D, class Code, class Table>
__attribute__((target("avx2,fma,f16c"))) inline void panel_task_avx2(const Plan& p, const Code* panels,
                                                                     const Table* table, int64_t pan0,
                                                                     int64_t pan1) {
  constexpr int64_t kT = kPanelColumns / D;
  alignas(32) float acc[kPanelColumns];
  for (int64_t pan = pan0; pan < pan1; ++pan) {
    const Code* pc = panels + pan * p.in * kT;
    const int64_t j0 = pan * kT;
    const int64_t nv = std::min(kT, p.vpr - j0);
    for (int64_t r = 0; r < p.m; ++r) {
      std::fill(acc, acc + kPanelColumns, 0.0f);
      const float* xr = p.x + r * p.ldx;
      for (int64_t i0 = 0, s = 0; i0 < p.in; ++s) {
        const int64_t i1 = p.s == 1 ? p.in : codebook_rows_end(s, p.s, p.in);
        if (i1 > i0) panel_rows_avx2<D>(pc + i0 * kT, table + s * p.k * D, xr, i0, i1, acc);
        i0 = std::max(i0, i1);
      }
      store_columns(p, acc, kPanelColumns, r, 1, j0, nv);
    }
  }
}

template <class Code, class Table>
inline void panel_task_avx2_d(const Plan& p, const void* panels, const Table* table, int64_t pan0, int64_t pan1) {
  const Code* c = reinterpret_cast<const Code*>(static_cast<const unsigned char*>(panels) + kPanelHeaderBytes);
  switch (p.d) {
    case 2: panel_task_avx2<2>(p, c, table, pan0, pan1); break;
    case 4: panel_task_avx2<4>(p, c, table, pan0, pan1); break;
    case 8: panel_task_avx2<8>(p, c, table, pan0, pan1); break;
    default: panel_task_avx2<16>(p, c, table, pan0, pan1); break;
  }
}

/// Panels [pan0, pan1): dispatch on code width and table type.
inline void run_panel_task(const Plan& p, const void* panels, int64_t pan0, int64_t pan1) {
  if (p.bits <= 8) {
    if (p.cb_f16) panel_task_avx2_d<uint8_t>(p, panels, p.cb_f16, pan0, pan1);
    else panel_task_avx2_d<uint8_t>(p, panels, p.cb, pan0, pan1);
  } else {
    if (p.cb_f16) panel_task_avx2_d<uint16_t>(p, panels, p.cb_f16, pan0, pan1);
    else panel_task_avx2_d<uint16_t>(p, panels, p.cb, pan0, pan1);
  }
}
#endif

/// One task: the vectors [j0, j0+nv) of every row.
inline void run_task(const Plan& p, int64_t j0, int64_t nv, bool avx2) {
#if CLUSCOMP_LOOKUP_X86
  if (avx2) {
    if (p.m < kLookupTileRows) {
      std::vector<float> acc(static_cast<size_t>(p.m * nv * p.d), 0.0f);
      if (p.cb_f16)
        gemv_block_avx2(p, p.cb_f16, 0, p.m, j0, nv, acc.data());
      else
        gemv_block_avx2(p, p.cb, 0, p.m, j0, nv, acc.data());
    } else {
      const int64_t ldc = (nv * p.d + kNr - 1) / kNr * kNr;
      const int64_t rows_max = std::min(p.m, kLookupRowBlock);
      std::vector<float> acc(static_cast<size_t>(rows_max * ldc));
      std::vector<float> tile(static_cast<size_t>(kLookupTileDepth * ldc));
      for (int64_t r0 = 0; r0 < p.m; r0 += kLookupRowBlock) {
        const int64_t rows = std::min(kLookupRowBlock, p.m - r0);
        std::fill(acc.begin(), acc.end(), 0.0f);
        if (p.cb_f16)
          gemm_block_avx2(p, p.cb_f16, r0, rows, j0, nv, ldc, acc.data(), tile.data());
        else
          gemm_block_avx2(p, p.cb, r0, rows, j0, nv, ldc, acc.data(), tile.data());
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
      if (lookup_detail::cpu_has_f16c()) {
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

/// Bytes of w's code panels (lookup_pack_code_panels), or 0 when lookup_gemm would not read them
/// on this CPU (no AVX2/FMA, or d outside {2, 4, 8, 16}): then there is nothing to build. About
/// the size of the packed codes for 8- and 16-bit codes (codes are stored in 1 or 2 bytes: more for
/// other widths), plus a 64-byte header and at most one panel's padding per input row.
inline int64_t lookup_code_panels_bytes(const AnyCodebookView& w) {
  if (!lookup_detail::check_view(w, "lookup_code_panels_bytes").ok()) return 0;
  if (!lookup_detail::cpu_has_avx2_fma() || !lookup_detail::panel_supported_d(w.d)) return 0;
  return lookup_detail::panel_geometry(w).total_bytes;
}

/// Rearranges w's codes into the layout the few-row (decode) kernels stream: the output columns
/// are cut into panels of 64 (64 / d vectors); panel p holds, for every input row i in ascending
/// order, the codes of its vectors at row i, each in 1 byte (code_bits <= 8) or 2, clamped to
/// K-1; vectors past the last one read code 0. A 64-byte header records the tensor's geometry, and
/// lookup_gemm refuses panels built for another geometry. dst: lookup_code_panels_bytes(w) bytes
/// (dst_bytes says how many it holds). Pure data movement: a lookup_gemm with the panels gives
/// the same bits as without. kInvalidArgument for a bad view, null dst, a wrong size, or a w
/// whose panels are not used here (lookup_code_panels_bytes(w) == 0).
inline Status lookup_pack_code_panels(const AnyCodebookView& w, void* dst, int64_t dst_bytes) {
  if (Status s = lookup_detail::check_view(w, "lookup_pack_code_panels"); !s.ok()) return s;
  const int64_t need = lookup_code_panels_bytes(w);
  if (need == 0)
    return Status(StatusCode::kInvalidArgument,
                  "lookup_pack_code_panels: lookup_gemm reads no panels for d = " + std::to_string(w.d) +
                      " on this CPU (panels need AVX2/FMA and d in {2, 4, 8, 16})");
  if (!dst) return Status(StatusCode::kInvalidArgument, "lookup_pack_code_panels: null output");
  if (dst_bytes != need)
    return Status(StatusCode::kInvalidArgument, "lookup_pack_code_panels: output holds " + std::to_string(dst_bytes) +
                                                    " bytes, the panels need " + std::to_string(need));
  const lookup_detail::PanelGeometry g = lookup_detail::panel_geometry(w);
  uint64_t h[8];
  lookup_detail::panel_header(w, h);
  unsigned char* out = static_cast<unsigned char*>(dst);
  std::memcpy(out, h, sizeof h);
  std::memset(out + sizeof h, 0, static_cast<size_t>(lookup_detail::kPanelHeaderBytes) - sizeof h);
  unsigned char* body = out + lookup_detail::kPanelHeaderBytes;
  const int64_t vpr = w.out_pad / w.d, t = g.vectors;
  try {
    std::vector<uint32_t> row(static_cast<size_t>(g.panels * t), 0u);  // padded vectors read code 0
    for (int64_t i = 0; i < w.in; ++i) {
      lookup_detail::load_codes(w.codes, i * vpr, vpr, w.code_bits, static_cast<uint32_t>(w.k - 1), row.data());
      for (int64_t pan = 0; pan < g.panels; ++pan) {
        const uint32_t* src = row.data() + pan * t;
        const int64_t at = (pan * w.in + i) * t;
        if (g.code_bytes == 1) {
          for (int64_t v = 0; v < t; ++v) body[at + v] = static_cast<unsigned char>(src[v]);
        } else {
          for (int64_t v = 0; v < t; ++v) {
            const uint16_t c = static_cast<uint16_t>(src[v]);
            std::memcpy(body + 2 * (at + v), &c, 2);
          }
        }
      }
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, "lookup_pack_code_panels: out of memory for one row of codes");
  }
  return Status();
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
inline bool lookup_gemm_uses_avx2() { return lookup_detail::cpu_has_avx2_fma(); }

/// y = x . W^T (+ bias) from codes and centroids: see the file comment for the numerics (fp32
/// accumulation, one fma per product in ascending input order; bit-identical across paths, m,
/// blocking and thread counts: deterministic). Parallel over blocks of about 128 output columns
/// on `pool` (null: calling thread). Allocates per-task buffers (a few hundred KiB at most) and,
/// for fp16/bf16 centroids without centroids_f32, an (S, K, d) fp32 copy.
/// Errors: kInvalidArgument (shapes, pointers, view fields), kUnsupported (centroid dtype, or a
/// path this CPU lacks), kOutOfMemory. Never throws.
inline Status lookup_gemm(const LookupGemmArgs& a, ThreadPool* pool = nullptr,
                          const LookupGemmOptions& opt = {}) {
  if (Status s = check_lookup_gemm_args(a); !s.ok() || a.m == 0) return s;
  bool avx2 = lookup_detail::cpu_has_avx2_fma();
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
    p.cb = cb;
    if (f16_direct) p.cb_f16 = static_cast<const uint16_t*>(a.w.centroids);
    p.codes = a.w.codes;
    p.out = a.w.out;
    p.in = a.w.in;
    p.vpr = a.w.out_pad / a.w.d;
    p.k = a.w.k;
    p.d = a.w.d;
    p.s = a.w.num_codebooks;
    p.bits = a.w.code_bits;
    p.x = a.x;
    p.ldx = a.ldx;
    p.bias = a.bias;
    p.y = a.y;
    p.ldy = a.ldy;
    p.m = a.m;
    // Small products (tiny models, tests) are not worth waking the pool for.
    ThreadPool* tp = (a.m * p.out * p.in < (int64_t{1} << 16)) ? nullptr : pool;
#if CLUSCOMP_LOOKUP_X86
    if (avx2 && a.code_panels && a.m < lookup_detail::kLookupTileRows && lookup_detail::panel_supported_d(p.d)) {
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
    const int64_t cols = std::max(lookup_detail::kColumnsPerTask, std::min(widest, (p.out + threads - 1) / threads));
    const int64_t nv = std::max<int64_t>(1, cols / p.d);
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
