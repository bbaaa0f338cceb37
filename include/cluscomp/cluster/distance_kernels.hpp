#pragma once
/// Squared-L2 nearest-centroid kernels for small d (1..16), used by the CPU k-means.
///
/// Centroid blocks are structure-of-arrays: coordinate k of entry m is at soa[k * stride + m],
/// with `stride` a multiple of 8 and the padding entries holding NaN coordinates (a NaN distance
/// never wins) and index INT32_MAX.
///
/// Numerics, shared by every path: core/distance.hpp's squared_distance (fp32, a fixed order, no
/// FMA whatever the includer's flags) and its tie-break `precedes` (lowest index among minimal
/// distances). The AVX2 code performs the same IEEE operations per pair lane by lane, so every
/// path gives bit-identical distances and therefore identical argmins.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/host/cpu_features.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CLUSCOMP_KMEANS_HAVE_AVX2 1
#include <immintrin.h>
#else
#define CLUSCOMP_KMEANS_HAVE_AVX2 0
#endif

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

inline constexpr int32_t kNoIndex = std::numeric_limits<int32_t>::max();

/// A structure-of-arrays centroid block. `center_d2`, when not null, is sorted ascending and
/// lets a scan stop at the first block of 8 whose first entry exceeds the caller's threshold.
struct SoaBlock {
  const float* coords = nullptr;    // (D, stride): coordinate k of entry m at coords[k*stride+m]
  const int32_t* index = nullptr;   // (stride) centroid ids, kNoIndex on padding
  const float* center_d2 = nullptr; // (stride) ascending, +inf on padding; or null
  int64_t count = 0;                // entries in use, padded up to a multiple of 8 by the owner
  int64_t stride = 0;
};

/// Portable scan: updates (best_d, best_i) with the lexicographic minimum over the entries of
/// `blk`, visiting blocks of 8 while center_d2[first of block] <= limit. Returns entries visited.
/// With `second` not null, also lowers *second to the smallest distance among the visited
/// entries (and the incoming best) whose index differs from the final best index: a lower bound
/// for every other visited centroid (the Hamerly bound; an entry equal to the incoming best's
/// index, e.g. a seed visited again, is not counted twice).
template <int D>
inline int64_t scan_block_portable(const float* x, const SoaBlock& blk, float limit, float& best_d,
                                   int32_t& best_i, float* second = nullptr) {
  int64_t b = 0;
  for (; b < blk.count; b += 8) {
    if (blk.center_d2 && !(blk.center_d2[b] <= limit)) break;
    for (int64_t m = b; m < b + 8; ++m) {
      const float d = squared_distance<D>(x, blk.coords + m, blk.stride);
      if (precedes(d, blk.index[m], best_d, best_i)) {
        if (second && best_d < *second) *second = best_d;
        best_d = d;
        best_i = blk.index[m];
      } else if (second && blk.index[m] != best_i && d < *second) {
        *second = d;
      }
    }
  }
  return b;
}

/// Points per tile of the register-blocked brute-force scan.
inline constexpr int kTilePoints = 4;

/// Brute-force scan of a tile of kTilePoints points xs[p] against every entry of `blk`, for
/// blocks whose indices ascend along each lane (entry m + 8 has a larger index than entry m, e.g.
/// all K centroids in index order); center_d2 is ignored. Updates (best_d[p], best_i[p]) with
/// the lexicographic minimum of (distance, index), exactly as kTilePoints calls of
/// scan_block_portable would (this is that loop). Returns entries visited per point.
template <int D>
inline int64_t scan_ascending_tile_portable(const float* const* xs, const SoaBlock& blk, float* best_d,
                                            int32_t* best_i) {
  int64_t visited = 0;
  for (int p = 0; p < kTilePoints; ++p) {
    const SoaBlock all{blk.coords, blk.index, nullptr, blk.count, blk.stride};
    visited = scan_block_portable<D>(xs[p], all, 0.0f, best_d[p], best_i[p]);
  }
  return visited;
}

#if CLUSCOMP_KMEANS_HAVE_AVX2
/// One block of 8 entries (coordinate k of lane l at c[k * stride + l], indices idx[0..8)) for
/// one point (xb: its coordinates broadcast): the exact fp32 distances (no contraction, the
/// shared order) folded into the lane-wise lexicographic minimum (bv, bi); NaN never wins.
/// Returns the distances.
template <int D>
__attribute__((target("avx2"))) CLUSCOMP_FORCEINLINE __m256 lex_block_avx2(const __m256* xb, const float* c,
                                                                            const int32_t* idx, int64_t stride,
                                                                            __m256& bv, __m256i& bi) {
  __m256 t = _mm256_sub_ps(xb[0], _mm256_loadu_ps(c));
  __m256 acc = _mm256_mul_ps(t, t);
  CLUSCOMP_NO_CONTRACT(acc);
  for (int k = 1; k < D; ++k) {
    t = _mm256_sub_ps(xb[k], _mm256_loadu_ps(c + k * stride));
    __m256 q = _mm256_mul_ps(t, t);
    CLUSCOMP_NO_CONTRACT(q);
    acc = _mm256_add_ps(acc, q);
  }
  const __m256i iv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx));
  const __m256 lt = _mm256_cmp_ps(acc, bv, _CMP_LT_OQ);
  const __m256 eq = _mm256_cmp_ps(acc, bv, _CMP_EQ_OQ);
  const __m256 ilt = _mm256_castsi256_ps(_mm256_cmpgt_epi32(bi, iv));
  const __m256 m = _mm256_or_ps(lt, _mm256_and_ps(eq, ilt));
  bv = _mm256_blendv_ps(bv, acc, m);
  bi = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bi), _mm256_castsi256_ps(iv), m));
  return acc;
}

/// AVX2 scan, same contract and bit-identical results as scan_block_portable. Built with
/// target("avx2") only (no "fma"), and every product behind CLUSCOMP_NO_CONTRACT (for code built
/// with FMA enabled anyway, e.g. -march=native), so the multiply and add are never contracted.
template <int D, bool kSecond = false>
__attribute__((target("avx2"))) inline int64_t scan_block_avx2(const float* x, const SoaBlock& blk,
                                                                float limit, float& best_d,
                                                                int32_t& best_i, float* second = nullptr) {
  __m256 xb[D];
  for (int k = 0; k < D; ++k) xb[k] = _mm256_set1_ps(x[k]);
  __m256 bv = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  __m256i bi = _mm256_set1_epi32(kNoIndex);
  // Per lane, the smallest distance other than the lane's best: max(best, d) is the value that
  // loses the comparison (the old best when d wins); NaN padding leaves it unchanged because
  // max_ps returns its second operand (d) on NaN and min_ps then keeps b2.
  __m256 b2 = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  int64_t b = 0;
  for (; b < blk.count; b += 8) {
    if (blk.center_d2 && !(blk.center_d2[b] <= limit)) break;
    const __m256 old = bv;
    const __m256 acc = lex_block_avx2<D>(xb, blk.coords + b, blk.index + b, blk.stride, bv, bi);
    if (kSecond) b2 = _mm256_min_ps(_mm256_max_ps(old, acc), b2);
  }
  alignas(32) float vd[8];
  alignas(32) int32_t vi[8];
  _mm256_store_ps(vd, bv);
  _mm256_store_si256(reinterpret_cast<__m256i*>(vi), bi);
  const float in_d = best_d;
  const int32_t in_i = best_i;
  for (int l = 0; l < 8; ++l) {
    if (precedes(vd[l], vi[l], best_d, best_i)) {
      best_d = vd[l];
      best_i = vi[l];
    }
  }
  if (kSecond) {
    // Second best: every lane's b2, and every lane best (and the incoming best) whose index is
    // not the final best's. A lane's b2 never holds the final best's index (see above).
    alignas(32) float v2[8];
    _mm256_store_ps(v2, b2);
    float s2 = *second;
    if (in_i != best_i && in_d < s2) s2 = in_d;
    for (int l = 0; l < 8; ++l) {
      if (v2[l] < s2) s2 = v2[l];
      if (vi[l] != best_i && vd[l] < s2) s2 = vd[l];
    }
    *second = s2;
  }
  return b;
}

/// AVX2 form of scan_ascending_tile_portable, bit-identical to it. Each block of 8 centroid
/// coordinates is loaded once and used for all points of the tile; every distance is still the
/// shared `t0*t0 + t1*t1 + ...` sequence (no FMA). Because a lane's indices ascend, a strict
/// `<` per lane keeps the lowest index among equal distances (NaN never wins), and the final
/// cross-lane merge is lexicographic: the result is the lexicographic minimum, as in the
/// one-point kernels.
template <int D>
__attribute__((target("avx2"))) inline int64_t scan_ascending_tile_avx2(const float* const* xs, const SoaBlock& blk,
                                                                         float* best_d, int32_t* best_i) {
  constexpr int P = kTilePoints;
  __m256 bv[P];
  __m256i bi[P];
  for (int p = 0; p < P; ++p) {
    bv[p] = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    bi[p] = _mm256_set1_epi32(kNoIndex);
  }
  int64_t b = 0;
  for (; b < blk.count; b += 8) {
    __m256 acc[P];
    {
      const __m256 c = _mm256_loadu_ps(blk.coords + b);
      for (int p = 0; p < P; ++p) {
        const __m256 t = _mm256_sub_ps(_mm256_broadcast_ss(xs[p]), c);
        acc[p] = _mm256_mul_ps(t, t);
        CLUSCOMP_NO_CONTRACT(acc[p]);
      }
    }
    for (int k = 1; k < D; ++k) {
      const __m256 c = _mm256_loadu_ps(blk.coords + k * blk.stride + b);
      for (int p = 0; p < P; ++p) {
        const __m256 t = _mm256_sub_ps(_mm256_broadcast_ss(xs[p] + k), c);
        __m256 q = _mm256_mul_ps(t, t);
        CLUSCOMP_NO_CONTRACT(q);
        acc[p] = _mm256_add_ps(acc[p], q);
      }
    }
    const __m256 iv = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.index + b)));
    for (int p = 0; p < P; ++p) {
      const __m256 lt = _mm256_cmp_ps(acc[p], bv[p], _CMP_LT_OQ);
      bv[p] = _mm256_blendv_ps(bv[p], acc[p], lt);
      bi[p] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bi[p]), iv, lt));
    }
  }
  for (int p = 0; p < P; ++p) {
    alignas(32) float vd[8];
    alignas(32) int32_t vi[8];
    _mm256_store_ps(vd, bv[p]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(vi), bi[p]);
    for (int l = 0; l < 8; ++l) {
      if (precedes(vd[l], vi[l], best_d[p], best_i[p])) {
        best_d[p] = vd[l];
        best_i[p] = vi[l];
      }
    }
  }
  return b;
}

#endif

/// Dispatches to the AVX2 scan when the CPU has it (and `allow_simd`), else the portable scan.
/// Both give the same answer bit for bit.
template <int D>
CLUSCOMP_FORCEINLINE int64_t scan_block(bool use_avx2, const float* x, const SoaBlock& blk,
                                        float limit, float& best_d, int32_t& best_i) {
#if CLUSCOMP_KMEANS_HAVE_AVX2
  if (use_avx2) return scan_block_avx2<D>(x, blk, limit, best_d, best_i);
#else
  (void)use_avx2;
#endif
  return scan_block_portable<D>(x, blk, limit, best_d, best_i);
}

/// scan_block that also lowers *second to the smallest distance among the visited entries (and
/// the incoming best) whose index differs from the final best's (see scan_block_portable). The
/// best is the same as scan_block's; *second may differ between the AVX2 and portable forms only
/// if an entry is visited twice, and is in both a lower bound for every other visited entry.
template <int D>
CLUSCOMP_FORCEINLINE int64_t scan_block_second(bool use_avx2, const float* x, const SoaBlock& blk, float limit,
                                               float& best_d, int32_t& best_i, float& second) {
#if CLUSCOMP_KMEANS_HAVE_AVX2
  if (use_avx2) return scan_block_avx2<D, true>(x, blk, limit, best_d, best_i, &second);
#else
  (void)use_avx2;
#endif
  return scan_block_portable<D>(x, blk, limit, best_d, best_i, &second);
}

/// Dispatches the register-blocked brute-force scan (see scan_ascending_tile_portable); the AVX2
/// and portable forms give the same answer bit for bit.
template <int D>
CLUSCOMP_FORCEINLINE int64_t scan_ascending_tile(bool use_avx2, const float* const* xs, const SoaBlock& blk,
                                                 float* best_d, int32_t* best_i) {
#if CLUSCOMP_KMEANS_HAVE_AVX2
  if (use_avx2) {
    float in_d[kTilePoints];
    int32_t in_i[kTilePoints];
    for (int p = 0; p < kTilePoints; ++p) {
      in_d[p] = best_d[p];
      in_i[p] = best_i[p];
    }
    const int64_t visited = scan_ascending_tile_avx2<D>(xs, blk, best_d, best_i);
    // A lane that met only +inf distances (fp32 overflow) keeps no index, so when the minimum is
    // +inf the lexicographic tie-break among them is redone by the portable scan (rare).
    for (int p = 0; p < kTilePoints; ++p) {
      if (best_d[p] < std::numeric_limits<float>::infinity()) continue;
      best_d[p] = in_d[p];
      best_i[p] = in_i[p];
      const SoaBlock all{blk.coords, blk.index, nullptr, blk.count, blk.stride};
      scan_block_portable<D>(xs[p], all, 0.0f, best_d[p], best_i[p]);
    }
    return visited;
  }
#else
  (void)use_avx2;
#endif
  return scan_ascending_tile_portable<D>(xs, blk, best_d, best_i);
}

// ---- Filtered brute force: an exact two-stage scan -------------------------------------------
//
// scan_filtered_tile returns exactly what scan_ascending_tile returns (same label, same fp32
// distance bit for bit, ties to the lower index, NaN padding never wins) at about 40% of its cost
// (d >= 4), in two stages per tile of kFilterTilePoints points:
//  1. Filter: everything is first translated by a fixed centre m (the mean of the centroids):
//     x' = fl(x - m), c'_j = fl(c_j - m), so that the values below are small for data far from the
//     origin. For every entry j, a_j = fl(||c'_j||^2) + sum_k x'_k * (-2 c'_jk), accumulated with
//     one FMA per coordinate (the GEMM form of ||x' - c'_j||^2 - ||x'||^2; centroids stored
//     pre-scaled by -2, which is exact, plus a row of squared norms), register-blocked over the
//     tile's points. Entry j is a candidate only while a_j <= tau, tau derived below from the best
//     exact distance f_best known so far for that point (the incoming best; in k-means the exact
//     distance to the point's current centroid, so tau is tight from the first block; then every
//     improvement).
//  2. Re-check: every candidate's distance is evaluated with the exact kernel on the original
//     coordinates (squared_distance: the shared `t0*t0 + t1*t1 + ...` sequence without FMA, in a
//     function built without "fma" and never inlined into the filter) and merged into
//     (best_d, best_i) by the lexicographic rule; then tau is lowered.
// Only entries whose exact fp32 distance provably exceeds f_best are dropped, and f_best is always
// the exact distance of a real entry (or the incoming best), so the lexicographic minimum over the
// candidates equals the one over all entries.
//
// The bound (u = 2^-24; real arithmetic: e_j = ||x - c_j||^2, e'_j = ||x' - c'_j||^2, X' = ||x'||^2,
// S_j = ||x'|| + ||c'_j||; f_j = the exact kernel's fp32 value; g = (D + 2) u >= 3u):
//  * exact kernel: each t_k = fl(x_k - c_k) has relative error <= u (exact when subnormal), each
//    square <= u relative plus <= 2^-150 absolute (underflow), each of the D - 1 additions of
//    nonnegative terms <= u relative: f_j >= (1 - u)^(D+2) e_j - D 2^-150 >= (1 - g) e_j - D 2^-150.
//  * filter: fl(||c'||^2) (double sum rounded once) is within 1.01 u ||c'||^2 + 2^-150; each of the D
//    FMAs rounds once, by <= u |partial| + 2^-150, and every partial sum is bounded by ||c'||^2 +
//    2 ||x'|| ||c'|| <= S^2 (Cauchy-Schwarz): |a_j - (e'_j - X')| <= g S_j^2 + (D + 2) 2^-150 (the
//    1 + O(u) growth of the partials fits in the 0.99 u left over).
//  * centring: x'_k - c'_jk = (x_k - c_jk) + delta_k with |delta_k| <= u (|x_k - m_k| + |c_jk - m_k|),
//    so | sqrt(e_j) - sqrt(e'_j) | <= eta = 1.01 u S_j, and e_j >= e'_j - 2 eta sqrt(e'_j) >=
//    (1 - u) e'_j - 1.03 u S_j^2 (2ab <= u a^2 + b^2 / u).
//  * ||c'_j|| <= ||x'|| + sqrt(e'_j) gives S_j^2 <= (2 sqrt(X') + sqrt(e'_j))^2 <= 8 X' + 2 e'_j. So
//    e'_j (1 + 2g) >= a_j + X' (1 - 8g) - (D + 2) 2^-150 and e_j >= (1 - 3.1u) e'_j - 8.3 u X'.
//  * Hence f_j > f_best (entry j cannot be the answer) as soon as a_j > tau* =
//      (F + 8.3 u X') (1 + 2g) / (1 - 3.1u) - X' (1 - 8g) + (D + 2) 2^-150,  F = (f_best + D 2^-150) / (1 - g),
//    i.e. tau* <= f_best (1 + 4.1g) - X' (1 - 10.8g) + (D + 2) 2^-150 + D 2^-149 (to first order;
//    the O(u^2) terms are far below the margins that follow).
// filter_threshold evaluates tau = f_best (1 + 4g') - X' (1 - 8g') + 2^-140 with g' = 2g, which
// exceeds tau* with a margin of ~2x on the f_best term and ~1.5x on the X' term (covering the double
// rounding of this evaluation and of X'), in double, rounded up to fp32. The bound is relative to
// max(f_best, X'), independent of the centroid norms: a centroid far from the point costs nothing.
// Overflow: with X' and every ||c'_j||^2 below kFilterMaxNorm2 no intermediate can overflow (|a_j|,
// e'_j <= 4e30); above it (and for a NaN incoming best) the tile takes the exact scan instead.
//
// Tie and NaN handling: padding entries have a NaN norm, so a_j is NaN and `a_j <= tau` is false;
// a real entry whose f_j equals f_best is not dropped (the test is strict), and the re-check's
// `precedes` keeps the lower index.

/// Points per tile of the filtered scan.
inline constexpr int kFilterTilePoints = 4;
/// Magnitude guard of the filtered scan (see above).
inline constexpr float kFilterMaxNorm2 = 1e30f;

/// Centroids prepared for scan_filtered_tile: the entries of an ascending SoaBlock, translated by
/// `center` and blocked by 8 (one contiguous chunk per block of 8 entries, so the scan reads a
/// single stream: no cache-set aliasing between coordinate rows at large power-of-two strides):
/// for block g, lane l, with c' = fl(c - center),
/// data[g * (D + 1) * 8 + l] = fl(||c'||^2) (summed in double, rounded once; NaN on padding) and
/// data[g * (D + 1) * 8 + (k + 1) * 8 + l] = -2 * c'_k (exact).
struct FilterBlock {
  const float* data = nullptr;    // 32-byte aligned
  const float* center = nullptr;  // (D) the mean of the entries, rounded to fp32
  float max_norm2 = 0.0f;         // max of ||c'_m||^2 over the entries (rounded up), for the guard
  int64_t count = 0;              // entries, = the SoaBlock's count (a multiple of 8)
};

/// A 32-byte aligned pointer into buf, resized to n floats (+ 8 spare, so that the start can move
/// to the boundary: no split vector loads) and filled with `fill`.
inline float* aligned_floats(std::vector<float>& buf, int64_t n, float fill) {
  buf.assign(static_cast<size_t>(n) + 8, fill);
  float* p = buf.data();
  while (reinterpret_cast<uintptr_t>(p) % 32 != 0) ++p;
  return p;
}

/// Fills `buf` (resized) from `blk` (padding: entries whose index is kNoIndex) and returns the
/// FilterBlock pointing into it.
template <int D>
inline FilterBlock make_filter_block(const SoaBlock& blk, std::vector<float>& buf) {
  // The blocks, then the centre.
  float* base = aligned_floats(buf, blk.count * (D + 1) + D, std::numeric_limits<float>::quiet_NaN());
  float* center = base + blk.count * (D + 1);
  double sum[D] = {};
  int64_t real = 0;
  for (int64_t m = 0; m < blk.count; ++m) {
    if (blk.index[m] == kNoIndex) continue;
    ++real;
    for (int k = 0; k < D; ++k) sum[k] += blk.coords[k * blk.stride + m];
  }
  for (int k = 0; k < D; ++k) center[k] = real > 0 ? static_cast<float>(sum[k] / static_cast<double>(real)) : 0.0f;
  double mx = 0.0;
  for (int64_t m = 0; m < blk.count; ++m) {
    if (blk.index[m] == kNoIndex) continue;
    float* g = base + m / 8 * (D + 1) * 8 + m % 8;
    double s = 0.0;
    for (int k = 0; k < D; ++k) {
      const float c = blk.coords[k * blk.stride + m] - center[k];
      g[(k + 1) * 8] = -2.0f * c;
      s += static_cast<double>(c) * static_cast<double>(c);
    }
    g[0] = static_cast<float>(std::min(s, 3.0e38));
    mx = std::max(mx, s);
  }
  FilterBlock fb;
  fb.data = base;
  fb.center = center;
  fb.max_norm2 = mx < 1e38 ? static_cast<float>(mx * (1.0 + 1e-6)) : std::numeric_limits<float>::infinity();
  fb.count = blk.count;
  return fb;
}

/// Relative-error factor of the filter bound: g' = 2 (D + 2) 2^-24 (safety factor 2), and the
/// absolute slack. Exposed for the tests.
template <int D>
inline constexpr double kFilterG = 2.0 * (D + 2) * 0x1p-24;
inline constexpr double kFilterAbs = 0x1p-140;

/// tau for a point with X' = ||x'||^2 (in double from the centred fp32 coordinates) and best exact
/// distance f_best so far: an entry with a_j > tau has an exact fp32 distance > f_best (see
/// above). Rounded up to fp32; +inf when f_best is +inf.
template <int D>
inline float filter_threshold(float f_best, double xx) {
  constexpr double g = kFilterG<D>;
  const double t = static_cast<double>(f_best) * (1.0 + 4.0 * g) - xx * (1.0 - 8.0 * g) + kFilterAbs;
  if (!(t <= static_cast<double>(std::numeric_limits<float>::max()))) return std::numeric_limits<float>::infinity();
  float tf = static_cast<float>(t);
  if (static_cast<double>(tf) < t) tf = std::nextafter(tf, std::numeric_limits<float>::infinity());
  return tf;
}

/// ||x||^2 in double (each square exact; the sum's relative error is <= D 2^-53).
template <int D>
inline double point_norm2(const float* x) {
  double s = 0.0;
  for (int k = 0; k < D; ++k) s += static_cast<double>(x[k]) * static_cast<double>(x[k]);
  return s;
}

/// x' = fl(x - center) into xc (D floats); returns ||x'||^2 (point_norm2).
template <int D>
inline double center_point(const float* x, const float* center, float* xc) {
  for (int k = 0; k < D; ++k) xc[k] = x[k] - center[k];
  return point_norm2<D>(xc);
}

/// Stage 2 for one block of 8 entries starting at b: the exact distance of every entry whose bit
/// is set in `mask` (the shared fp32 sequence; this function has the default target, without
/// "fma", and is never inlined into the FMA filter, so the compiler cannot contract it), merged
/// lexicographically into (best_d, best_i). The entry that is the current best (most often the
/// seed: the point's own centroid, which always passes stage 1) is not evaluated again: the same
/// kernel on the same centroid gives the same distance, which cannot precede itself. Returns the
/// number of entries evaluated.
template <int D>
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
int filter_recheck(const float* x, const SoaBlock& blk, int64_t b, unsigned mask, float& best_d, int32_t& best_i) {
  int n = 0;
  for (int l = 0; l < 8; ++l) {
    if (!((mask >> l) & 1u)) continue;
    const int64_t m = b + l;
    if (blk.index[m] == best_i) continue;
    const float d = squared_distance<D>(x, blk.coords + m, blk.stride);
    ++n;
    if (precedes(d, blk.index[m], best_d, best_i)) {
      best_d = d;
      best_i = blk.index[m];
    }
  }
  return n;
}

/// Stage 1 in scalar form for the block of 8 entries at b and one centred point xc: bit l set when
/// entry b + l's a_j (norm + one std::fma per coordinate, in coordinate order) is <= tau.
template <int D>
inline unsigned filter_mask_portable(const FilterBlock& fb, int64_t b, const float* xc, float tau) {
  unsigned mask = 0;
  for (int l = 0; l < 8; ++l) {
    const float* g = fb.data + b * (D + 1) + l;
    float acc = g[0];
    for (int k = 0; k < D; ++k) acc = std::fma(xc[k], g[(k + 1) * 8], acc);
    if (acc <= tau) mask |= 1u << l;
  }
  return mask;
}

/// Portable form of the filter (same stages, scalar, FMA by std::fma): used by the tests to
/// exercise the bound without AVX2; kmeans() uses the exact scan when the CPU has no AVX2+FMA.
template <int D, int P = kFilterTilePoints>
inline int64_t scan_filtered_tile_portable(const float* const* xs, const SoaBlock& blk, const FilterBlock& fb,
                                           float* best_d, int32_t* best_i, int64_t* rechecks) {
  for (int p = 0; p < P; ++p) {
    float xc[D];
    const double xx = center_point<D>(xs[p], fb.center, xc);
    float tau = filter_threshold<D>(best_d[p], xx);
    for (int64_t b = 0; b < fb.count; b += 8) {
      const unsigned mask = filter_mask_portable<D>(fb, b, xc, tau);
      if (mask) {
        rechecks[p] += filter_recheck<D>(xs[p], blk, b, mask, best_d[p], best_i[p]);
        tau = filter_threshold<D>(best_d[p], xx);
      }
    }
  }
  return fb.count;
}

#if CLUSCOMP_KMEANS_HAVE_AVX2

/// Stage 2 of the AVX2 filter for the block at b whose compare mask is set (rare once the
/// thresholds are tight): re-checks each point's candidates and lowers its threshold.
/// With `beta` not null (the box-pruned scan, box_filter.hpp), also lowers each re-checked point's
/// box threshold filter_threshold(best_d, 0).
template <int D, int P>
__attribute__((noinline, target("avx2,fma"))) void filter_recheck_tile(const float* const* xs, const SoaBlock& blk,
                                                                       const __m256* acc, __m256* tv, const double* xx,
                                                                       int64_t b, float* best_d, int32_t* best_i,
                                                                       int64_t* rechecks, __m256* beta = nullptr) {
  for (int p = 0; p < P; ++p) {
    const unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(acc[p], tv[p], _CMP_LE_OQ)));
    if (!mask) continue;
    const float d0 = best_d[p];
    rechecks[p] += filter_recheck<D>(xs[p], blk, b, mask, best_d[p], best_i[p]);
    // The thresholds depend on best_d only (a new best with an equal distance leaves them).
    if (!(best_d[p] == d0)) {
      tv[p] = _mm256_set1_ps(filter_threshold<D>(best_d[p], xx[p]));
      if (beta) beta[p] = _mm256_set1_ps(filter_threshold<D>(best_d[p], 0.0));
    }
  }
}

/// Stage 1 for the block of 8 entries at g (a FilterBlock chunk) and P points whose centred
/// coordinates are pre-broadcast in xb: acc[p] lane l = a_j of entry l (norm + one FMA per
/// coordinate, in coordinate order).
template <int D, int P>
__attribute__((target("avx2,fma"))) CLUSCOMP_FORCEINLINE void filter_stage1_fma(const float* g, const float (*xb)[D][8],
                                                                                __m256* acc) {
  {
    const __m256 n = _mm256_load_ps(g);
    const __m256 c = _mm256_load_ps(g + 8);
    for (int p = 0; p < P; ++p) acc[p] = _mm256_fmadd_ps(_mm256_load_ps(xb[p][0]), c, n);
  }
  for (int k = 1; k < D; ++k) {
    const __m256 c = _mm256_load_ps(g + (k + 1) * 8);
    for (int p = 0; p < P; ++p) acc[p] = _mm256_fmadd_ps(_mm256_load_ps(xb[p][k]), c, acc[p]);
  }
}

/// AVX2+FMA filter: stage 1 vectorised over 8 entries and register-blocked over P points; per
/// coordinate one load of 8 pre-scaled centroid coordinates, P loads of a pre-broadcast point
/// coordinate and P FMAs; per block P compares (one core, K = 4096, CPU time: 5.3e9 pairs/s at
/// d = 8 against 2.0e9 for scan_ascending_tile; 2 blocks x 3-4 points or 6-8 points per pass
/// measured no faster).
template <int D, int P = kFilterTilePoints>
__attribute__((target("avx2,fma"))) inline int64_t scan_filtered_tile_fma(const float* const* xs, const SoaBlock& blk,
                                                                          const FilterBlock& fb, float* best_d,
                                                                          int32_t* best_i, int64_t* rechecks) {
  // The point coordinates pre-broadcast to whole vectors, so that each FMA takes its x operand
  // straight from memory (no broadcast uop, no address registers).
  alignas(32) float xb[P][D][8];
  double xx[P];
  __m256 tv[P];
  for (int p = 0; p < P; ++p) {
    float xc[D];
    xx[p] = center_point<D>(xs[p], fb.center, xc);
    for (int k = 0; k < D; ++k) _mm256_store_ps(xb[p][k], _mm256_set1_ps(xc[k]));
    tv[p] = _mm256_set1_ps(filter_threshold<D>(best_d[p], xx[p]));
  }
  const int64_t count = fb.count;
  const float* g = fb.data;
  for (int64_t b = 0; b < count; b += 8, g += (D + 1) * 8) {
    __m256 acc[P];
    filter_stage1_fma<D, P>(g, xb, acc);
    __m256 hit = _mm256_cmp_ps(acc[0], tv[0], _CMP_LE_OQ);
    for (int p = 1; p < P; ++p) hit = _mm256_or_ps(hit, _mm256_cmp_ps(acc[p], tv[p], _CMP_LE_OQ));
    if (__builtin_expect(_mm256_movemask_ps(hit) != 0, 0))
      filter_recheck_tile<D, P>(xs, blk, acc, tv, xx, b, best_d, best_i, rechecks);
  }
  return count;
}
#endif

/// The filter's guards for a tile of kFilterTilePoints points: AVX2 + FMA (and `use_avx2`), the
/// centroids' and every centred point's squared norm below kFilterMaxNorm2, no NaN incoming best.
template <int D>
inline bool filter_tile_ok(bool use_avx2, const float* const* xs, const FilterBlock& fb, const float* best_d) {
  bool ok = use_avx2 && cpu_has_avx2_fma() && fb.max_norm2 < kFilterMaxNorm2;
  for (int p = 0; ok && p < kFilterTilePoints; ++p) {
    float xc[D];
    ok = !std::isnan(best_d[p]) && center_point<D>(xs[p], fb.center, xc) < static_cast<double>(kFilterMaxNorm2);
  }
  return ok;
}

/// The filter's exact fallback: scan_ascending_tile over kFilterTilePoints points, in tiles of
/// kTilePoints. Returns the entries visited per point.
template <int D>
inline int64_t exact_scan_tiles(bool use_avx2, const float* const* xs, const SoaBlock& blk, float* best_d,
                                int32_t* best_i) {
  static_assert(kFilterTilePoints % kTilePoints == 0, "the exact fallback runs in kTilePoints tiles");
  int64_t visited = 0;
  for (int p = 0; p < kFilterTilePoints; p += kTilePoints)
    visited = scan_ascending_tile<D>(use_avx2, xs + p, blk, best_d + p, best_i + p);
  return visited;
}

/// Exact brute-force scan of kFilterTilePoints points against every entry of `blk` (an ascending
/// block: entry m + 8 has a larger index than entry m), `fb` its make_filter_block form: updates
/// (best_d[p], best_i[p]) with the lexicographic minimum of (distance, index) over the entries and
/// the incoming best, bit-identical to scan_ascending_tile (see above). A good incoming best (an
/// exact distance of one of the entries, e.g. the point's current centroid) makes stage 2 rare;
/// +inf works too (the first blocks are all re-checked). Uses the two-stage filter when
/// `use_avx2` and the CPU has AVX2 and FMA, every centred point's ||x'||^2 and the centroids' max
/// ||c'||^2 are below kFilterMaxNorm2 and no incoming best is NaN; else the exact tiled scan (AVX2 when
/// `use_avx2`, else portable). Returns the entries visited per point; *filtered says which path
/// ran; rechecks[p] (added to) counts point p's stage-2 exact evaluations.
template <int D>
inline int64_t scan_filtered_tile(bool use_avx2, const float* const* xs, const SoaBlock& blk, const FilterBlock& fb,
                                  float* best_d, int32_t* best_i, int64_t* rechecks, bool* filtered) {
  const bool ok = filter_tile_ok<D>(use_avx2, xs, fb, best_d);
  *filtered = ok;
#if CLUSCOMP_KMEANS_HAVE_AVX2
  if (ok) return scan_filtered_tile_fma<D>(xs, blk, fb, best_d, best_i, rechecks);
#else
  (void)rechecks;
#endif
  return exact_scan_tiles<D>(use_avx2, xs, blk, best_d, best_i);
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
