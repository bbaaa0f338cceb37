#pragma once
/// The AVX2/FMA lookup GEMM structures (ops/lookup_gemm.hpp has the design): the per-row structure
/// for few rows reading the packed codes, and the tile structure (decode a tile of Wt, then a
/// register-blocked micro-kernel) for many. Compiled with function-level target attributes and
/// chosen at run time (host/cpu_features.hpp), so the including code needs no -m flags.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/ops/lookup_gemm_common.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace lookup_detail {

#if CLUSCOMP_LOOKUP_X86
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
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p.w.codes);
  const bool full = p.w.k == (int64_t{1} << p.w.code_bits);
  const int64_t first = i * p.vpr + j0;
  if (full && p.w.code_bits == 16) {
    f(CodesU16{bytes + first * 2});
  } else if (full && p.w.code_bits == 8) {
    f(CodesU8{bytes + first});
  } else {
    CodesBits c;
    c.base = bytes;
    c.bit0 = static_cast<uint64_t>(first) * static_cast<uint64_t>(p.w.code_bits);
    c.max_off = packed_words(p.w.in * p.vpr, p.w.code_bits) * 4 - 4;
    c.bits = static_cast<uint32_t>(p.w.code_bits);
    c.mask = (1u << p.w.code_bits) - 1u;
    c.kmax = static_cast<uint32_t>(p.w.k - 1);
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
  const int d = p.w.d;
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
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(p.w.codes);
  const bool full = p.w.k == (int64_t{1} << p.w.code_bits);  // every bit pattern is a valid code
  const int64_t total_bytes = packed_words(p.w.in * p.vpr, p.w.code_bits) * 4;
  for (int64_t ib = 0; ib < p.w.in; ib += kRowGroup) {
    const int g = static_cast<int>(std::min<int64_t>(kRowGroup, p.w.in - ib));
    const Table* cbi[kRowGroup];
    for (int q = 0; q < g; ++q) cbi[q] = table + codebook_of_row(ib + q, p.w.num_codebooks, p.w.in) * p.w.k * p.w.d;
    if (full && p.w.code_bits == 16) {
      CodesU16 cq[kRowGroup];
      for (int q = 0; q < g; ++q) cq[q].p = bytes + ((ib + q) * p.vpr + j0) * 2;
      gemv_group_avx2(p, cbi, cq, g, ib, r0, rows, nv, acc);
    } else if (full && p.w.code_bits == 8) {
      CodesU8 cq[kRowGroup];
      for (int q = 0; q < g; ++q) cq[q].p = bytes + ((ib + q) * p.vpr + j0);
      gemv_group_avx2(p, cbi, cq, g, ib, r0, rows, nv, acc);
    } else {
      CodesBits cq[kRowGroup];
      for (int q = 0; q < g; ++q) {
        cq[q].base = bytes;
        cq[q].bit0 = static_cast<uint64_t>((ib + q) * p.vpr + j0) * static_cast<uint64_t>(p.w.code_bits);
        cq[q].max_off = total_bytes - 4;
        cq[q].bits = static_cast<uint32_t>(p.w.code_bits);
        cq[q].mask = (1u << p.w.code_bits) - 1u;
        cq[q].kmax = static_cast<uint32_t>(p.w.k - 1);
      }
      gemv_group_avx2(p, cbi, cq, g, ib, r0, rows, nv, acc);
    }
  }
  store_columns(p, acc, nv * p.w.d, r0, rows, j0, nv);
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
  const int d = p.w.d;
  const int64_t ncol = nv * d;
  for (int64_t kb = 0; kb < p.w.in; kb += kLookupTileDepth) {
    const int64_t depth = std::min(kLookupTileDepth, p.w.in - kb);
    for (int64_t q = 0; q < depth; ++q) {  // decode Wt rows kb+q, columns of the task (exact copies)
      const int64_t i = kb + q;
      const Table* cbi = table + codebook_of_row(i, p.w.num_codebooks, p.w.in) * p.w.k * d;
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
#endif

}  // namespace lookup_detail
CLUSCOMP_NAMESPACE_END
