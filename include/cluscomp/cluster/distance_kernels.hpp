#pragma once
/// Squared-L2 nearest-centroid kernels for small d (1..16), used by the CPU k-means.
///
/// Centroid blocks are structure-of-arrays: coordinate k of entry m is at soa[k * stride + m],
/// with `stride` a multiple of 8 and the padding entries holding NaN coordinates (a NaN distance
/// never wins) and index INT32_MAX.
///
/// Numerics, shared by every path: the distance of x to c is evaluated in fp32 as
/// `s = t0*t0; s += t1*t1; ...` with t_k = x_k - c_k, in that order, without FMA. The scalar code
/// and the AVX2 code perform the same IEEE operations per pair, so they produce bit-identical
/// distances and therefore identical argmins. Ties are broken towards the lower centroid index
/// (lexicographic minimum of (distance, index)), independent of the scan order.

#include <cmath>
#include <cstdint>
#include <limits>

#include "cluscomp/core/config.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CLUSCOMP_KMEANS_HAVE_AVX2 1
#include <immintrin.h>
#else
#define CLUSCOMP_KMEANS_HAVE_AVX2 0
#endif

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

inline constexpr int32_t kNoIndex = std::numeric_limits<int32_t>::max();

/// Squared distance of x (D contiguous floats) to c (coordinate k at c[k * cstride]), fp32,
/// the shared evaluation order above.
template <int D>
CLUSCOMP_FORCEINLINE float squared_distance(const float* x, const float* c, int64_t cstride = 1) {
  float t = x[0] - c[0];
  float s = t * t;
  for (int k = 1; k < D; ++k) {
    t = x[k] - c[k * cstride];
    s += t * t;
  }
  return s;
}

/// True when (d, i) precedes (best_d, best_i) lexicographically; NaN never precedes.
CLUSCOMP_FORCEINLINE bool precedes(float d, int32_t i, float best_d, int32_t best_i) {
  return d < best_d || (d == best_d && i < best_i);
}

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
/// AVX2 scan, same contract and bit-identical results as scan_block_portable. Built with
/// target("avx2") only (no "fma"), so the compiler cannot contract the multiply and add.
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
    __m256 t = _mm256_sub_ps(xb[0], _mm256_loadu_ps(blk.coords + b));
    __m256 acc = _mm256_mul_ps(t, t);
    for (int k = 1; k < D; ++k) {
      t = _mm256_sub_ps(xb[k], _mm256_loadu_ps(blk.coords + k * blk.stride + b));
      acc = _mm256_add_ps(acc, _mm256_mul_ps(t, t));
    }
    const __m256i iv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.index + b));
    const __m256 lt = _mm256_cmp_ps(acc, bv, _CMP_LT_OQ);
    const __m256 eq = _mm256_cmp_ps(acc, bv, _CMP_EQ_OQ);
    const __m256 ilt = _mm256_castsi256_ps(_mm256_cmpgt_epi32(bi, iv));
    const __m256 m = _mm256_or_ps(lt, _mm256_and_ps(eq, ilt));
    if (kSecond) b2 = _mm256_min_ps(_mm256_max_ps(bv, acc), b2);
    bv = _mm256_blendv_ps(bv, acc, m);
    bi = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bi), _mm256_castsi256_ps(iv), m));
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
      }
    }
    for (int k = 1; k < D; ++k) {
      const __m256 c = _mm256_loadu_ps(blk.coords + k * blk.stride + b);
      for (int p = 0; p < P; ++p) {
        const __m256 t = _mm256_sub_ps(_mm256_broadcast_ss(xs[p] + k), c);
        acc[p] = _mm256_add_ps(acc[p], _mm256_mul_ps(t, t));
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

inline bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") != 0;
  return has;
}
#else
inline bool cpu_has_avx2() { return false; }
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

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
