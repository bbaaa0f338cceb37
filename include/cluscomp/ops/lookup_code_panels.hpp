#pragma once
/// Code panels: the layout the few-row (decode) lookup kernels stream, built once per layer by
/// lookup_pack_code_panels, and the AVX2 kernels that read it (ops/lookup_gemm.hpp has the
/// design). Pure data movement: results are the same bits with or without panels.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/cpu_features.hpp"
#include "cluscomp/ops/lookup_gemm_common.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace lookup_detail {

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
    const Code* pc = panels + pan * p.w.in * kT;
    const int64_t j0 = pan * kT;
    const int64_t nv = std::min(kT, p.vpr - j0);
    for (int64_t r = 0; r < p.m; ++r) {
      std::fill(acc, acc + kPanelColumns, 0.0f);
      const float* xr = p.x + r * p.ldx;
      for (int64_t i0 = 0, s = 0; i0 < p.w.in; ++s) {
        const int64_t i1 = p.w.num_codebooks == 1 ? p.w.in : codebook_rows_end(s, p.w.num_codebooks, p.w.in);
        if (i1 > i0) panel_rows_avx2<D>(pc + i0 * kT, table + s * p.w.k * D, xr, i0, i1, acc);
        i0 = std::max(i0, i1);
      }
      store_columns(p, acc, kPanelColumns, r, 1, j0, nv);
    }
  }
}

template <class Code, class Table>
inline void panel_task_avx2_d(const Plan& p, const void* panels, const Table* table, int64_t pan0, int64_t pan1) {
  const Code* c = reinterpret_cast<const Code*>(static_cast<const unsigned char*>(panels) + kPanelHeaderBytes);
  switch (p.w.d) {
    case 2: panel_task_avx2<2>(p, c, table, pan0, pan1); break;
    case 4: panel_task_avx2<4>(p, c, table, pan0, pan1); break;
    case 8: panel_task_avx2<8>(p, c, table, pan0, pan1); break;
    default: panel_task_avx2<16>(p, c, table, pan0, pan1); break;
  }
}

/// Panels [pan0, pan1): dispatch on code width and table type.
inline void run_panel_task(const Plan& p, const void* panels, int64_t pan0, int64_t pan1) {
  if (p.w.code_bits <= 8) {
    if (p.cb_f16) panel_task_avx2_d<uint8_t>(p, panels, p.cb_f16, pan0, pan1);
    else panel_task_avx2_d<uint8_t>(p, panels, p.w.centroids, pan0, pan1);
  } else {
    if (p.cb_f16) panel_task_avx2_d<uint16_t>(p, panels, p.cb_f16, pan0, pan1);
    else panel_task_avx2_d<uint16_t>(p, panels, p.w.centroids, pan0, pan1);
  }
}
#endif

}  // namespace lookup_detail

/// Bytes of w's code panels (lookup_pack_code_panels), or 0 when lookup_gemm would not read them
/// on this CPU (no AVX2/FMA, or d outside {2, 4, 8, 16}): then there is nothing to build. About
/// the size of the packed codes for 8- and 16-bit codes (codes are stored in 1 or 2 bytes: more for
/// other widths), plus a 64-byte header and at most one panel's padding per input row.
inline int64_t lookup_code_panels_bytes(const AnyCodebookView& w) {
  if (!lookup_detail::check_view(w, "lookup_code_panels_bytes").ok()) return 0;
  if (!cpu_has_avx2_fma_f16c() || !lookup_detail::panel_supported_d(w.d)) return 0;
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

CLUSCOMP_NAMESPACE_END
