#pragma once
/// Box-pruned filtered brute force: scan_filtered_tile (distance_kernels.hpp) over centroids kept
/// in k-d order, skipping every group of centroids whose bounding box is provably farther from
/// each point of the tile than that point's best exact distance so far. Exact: returns what
/// scan_ascending_tile returns over all K centroids, bit for bit (same label, same fp32 distance,
/// ties to the lower index).
///
/// Layout (BoxFilter, built by build_box_filter once per set of centroids):
///  * The centroids are permuted into k-d order: the whole set is split recursively at the median
///    of its widest coordinate into super-groups of kBoxSuper entries, and each super-group the
///    same way into leaves of kBoxLeaf entries (split points at multiples of the unit, so a super
///    is kBoxSuper / kBoxLeaf whole leaves; only the last leaf and super may be short). The
///    permuted entries form one SoaBlock (padding: NaN coordinates, index kNoIndex) and its
///    FilterBlock; stage 2's merge is lexicographic on (distance, original index), so the order
///    does not change the answer.
///  * Every leaf and every super has its axis-aligned bounding box (min / max per coordinate over
///    its real entries, exact fp32 copies; +inf / -inf for an empty one), in groups of 8 boxes:
///    group q holds lo[k][8] then hi[k][8].
///
/// The scan, per tile of kFilterTilePoints points (AVX2 + FMA): for 8 boxes at a time and each
/// point, b = sum_k max(lo_k - x_k, x_k - hi_k, 0)^2 in fp32 (one FMA per coordinate); a box is
/// opened only if b <= beta(f_best) for some point of the tile, beta = filter_threshold(f_best, 0).
/// Supers first, then the leaves of every opened super, then the blocks of 8 entries of every
/// opened leaf through the filter's stage 1 and stage 2 (which lower f_best, tau and beta); from
/// d = kBoxPerPointMinD on, a leaf that only some points of the tile open runs stages 1 and 2 for
/// those points alone (skipping a box for one point is as safe as for the tile).
///
/// Why a skipped box holds no answer (u = 2^-24, g = (D + 2) u as in distance_kernels.hpp): every
/// entry c of the box lies inside it (the box is made of its exact coordinates), so its real
/// squared distance e >= B, the real distance from x to the box. The fp32 value b rounds each of
/// the D subtractions (fl is monotone, so the max of rounded values is the rounded max) and each
/// of the D FMAs once: b <= (1 + u)^(2D) B + 2D 2^-150 <= (1 + g)^2 B + 2D 2^-150. The exact kernel
/// gives f >= (1 - g) e - D 2^-150. With b > beta >= f_best (1 + 8g) + 2^-140:
/// f >= (1 - g) (b - 2D 2^-150) / (1 + g)^2 - D 2^-150 > f_best, since (1 - g)(1 + 8g) > (1 + g)^2.
/// So every entry of a skipped box has an exact distance strictly above the best one found, ties
/// included. Coordinates are below 1e15 in magnitude (the filter's norm guard), so nothing
/// overflows; with f_best = +inf (no seed), beta = +inf and nothing is skipped until the first
/// re-check.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "cluscomp/cluster/distance_kernels.hpp"
#include "cluscomp/host/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

/// Entries per leaf (four blocks of 8) and per super-group (8 leaves). Measured on the ffn_up
/// weights (d = 4 / 8, K = 4096 / 65536; docs/benchmarks.md): 32 / 256 beat 8 / 64, 8 / 128,
/// 16 / 256 (the box tests cost more than the finer pruning saves) and 32 / 512, 64 / 512,
/// 32 / 1024 (within noise, no better).
inline constexpr int64_t kBoxLeaf = 32;
inline constexpr int64_t kBoxSuper = 256;
inline constexpr int64_t kBoxLeavesPerSuper = kBoxSuper / kBoxLeaf;
static_assert(kBoxLeaf % 8 == 0 && kBoxSuper % kBoxLeaf == 0 && kBoxLeavesPerSuper % 8 == 0,
              "leaves are whole blocks of 8 entries; a super's leaves are whole groups of 8 boxes");

/// The split tree of a BoxFilter's k-d order, for first guesses of labels (box_region_guess):
/// node n splits its range at coordinate `dim` (the widest of the range's bounding box, as
/// kd_order chose it) at `split` (the smallest such coordinate in its right half); a leaf node
/// (dim < 0) names the leaf of kBoxLeaf entries `left`. Built bottom-up from the leaf boxes
/// (build_box_guess), so it costs O(leaves x D).
struct BoxGuessTree {
  struct Node {
    float split;
    int32_t dim;
    int32_t left, right;
  };
  std::vector<Node> nodes;
};

struct BoxFilter {
  std::vector<float> soa;       // (D, stride) permuted centroid coordinates
  std::vector<int32_t> idx;     // (stride) original index of each permuted entry; kNoIndex: padding
  SoaBlock blk;                 // over soa / idx (count = stride = leaves * kBoxLeaf)
  std::vector<float> filter_buf;
  FilterBlock fb;               // make_filter_block(blk)
  std::vector<float> leaf_buf, super_buf;
  const float* leaf_box = nullptr;   // (ceil(leaves / 8), 2, D, 8), 32-byte aligned
  const float* super_box = nullptr;  // (ceil(supers / 8), 2, D, 8)
  int64_t leaves = 0, supers = 0;
  int64_t k = 0;
  BoxGuessTree guess;           // only after build_box_guess
};

namespace box_detail {

/// A centroid and its index, moved as one (the k-d ordering works on contiguous records).
template <int D>
struct KdEntry {
  float x[D];
  int32_t id;
};

/// Splits e[b, end) recursively at the median of its widest coordinate into runs of `unit`
/// entries (split points at multiples of `unit` from b). Ties on the coordinate are ordered by
/// index, so the order is a function of the centroids alone.
/// Ranges longer than `stop` (a multiple of unit) are split; with `out`, the ranges left are
/// appended to it in order (kd_order on each of them then finishes the same order).
template <int D>
inline void kd_order(KdEntry<D>* e, int64_t b, int64_t end, int64_t unit, int64_t stop = 0,
                     std::vector<std::pair<int64_t, int64_t>>* out = nullptr) {
  stop = std::max(stop, unit);
  while (end - b > stop) {
    float lo[D], hi[D];
    for (int k = 0; k < D; ++k) {
      lo[k] = std::numeric_limits<float>::infinity();
      hi[k] = -std::numeric_limits<float>::infinity();
    }
    for (int64_t i = b; i < end; ++i)
      for (int k = 0; k < D; ++k) {
        lo[k] = std::min(lo[k], e[i].x[k]);
        hi[k] = std::max(hi[k], e[i].x[k]);
      }
    int dim = 0;
    for (int k = 1; k < D; ++k)
      if (hi[k] - lo[k] > hi[dim] - lo[dim]) dim = k;
    const int64_t units = (end - b + unit - 1) / unit;
    const int64_t m = b + (units / 2) * unit;
    std::nth_element(e + b, e + m, e + end, [dim](const KdEntry<D>& x, const KdEntry<D>& y) {
      return x.x[dim] < y.x[dim] || (x.x[dim] == y.x[dim] && x.id < y.id);
    });
    kd_order<D>(e, b, m, unit, stop, out);
    b = m;  // the right half in the loop
  }
  if (out) out->emplace_back(b, end);
}

}  // namespace box_detail

/// Builds bf for the k centroids c (k x D, row-major; every coordinate finite), with up to
/// `threads` workers (the order does not depend on their number). `ids` (k ascending indices, or
/// nullptr for 0..k-1): the index each centroid answers as (a subset of a larger set).
template <int D>
inline void build_box_filter(const float* c, int64_t k, BoxFilter& bf, int threads = 1, const int32_t* ids = nullptr) {
  std::vector<box_detail::KdEntry<D>> ent(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    std::memcpy(ent[static_cast<size_t>(j)].x, c + j * D, sizeof(float) * D);
    ent[static_cast<size_t>(j)].id = ids ? ids[j] : static_cast<int32_t>(j);
  }
  // The first splits in this thread, down to ranges of about k / 8; then each range's supers and
  // leaves in parallel.
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const int64_t stop = std::max<int64_t>(kBoxSuper, (k / 8 + kBoxSuper - 1) / kBoxSuper * kBoxSuper);
  box_detail::kd_order<D>(ent.data(), 0, k, kBoxSuper, stop, &ranges);
  parallel_chunks(threads, static_cast<int64_t>(ranges.size()), 1, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = ranges[static_cast<size_t>(r)].first, e = ranges[static_cast<size_t>(r)].second;
      box_detail::kd_order<D>(ent.data(), b, e, kBoxSuper);
      for (int64_t s = b; s < e; s += kBoxSuper) box_detail::kd_order<D>(ent.data(), s, std::min(e, s + kBoxSuper), kBoxLeaf);
    }
  });
  bf.k = k;
  bf.leaves = (k + kBoxLeaf - 1) / kBoxLeaf;
  bf.supers = (bf.leaves + kBoxLeavesPerSuper - 1) / kBoxLeavesPerSuper;
  const int64_t stride = bf.leaves * kBoxLeaf;
  bf.soa.assign(static_cast<size_t>(stride) * D, std::numeric_limits<float>::quiet_NaN());
  bf.idx.assign(static_cast<size_t>(stride), kNoIndex);
  for (int64_t m = 0; m < k; ++m) {
    const box_detail::KdEntry<D>& en = ent[static_cast<size_t>(m)];
    bf.idx[static_cast<size_t>(m)] = en.id;
    for (int kk = 0; kk < D; ++kk) bf.soa[static_cast<size_t>(kk * stride + m)] = en.x[kk];
  }
  bf.blk = SoaBlock{bf.soa.data(), bf.idx.data(), nullptr, stride, stride};
  bf.fb = make_filter_block<D>(bf.blk, bf.filter_buf);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  // Boxes: lo = +inf, hi = -inf until an entry widens them (so an empty box is never opened
  // unless the threshold is +inf).
  auto init_boxes = [](std::vector<float>& buf, int64_t boxes) {
    const int64_t groups = (boxes + 7) / 8;
    float* p = aligned_floats(buf, groups * 2 * D * 8, kInf);
    for (int64_t q = 0; q < groups; ++q)
      for (int64_t i = 0; i < D * 8; ++i) p[q * 2 * D * 8 + D * 8 + i] = -kInf;
    return p;
  };
  float* leaf = init_boxes(bf.leaf_buf, bf.leaves);
  float* super = init_boxes(bf.super_buf, bf.supers);
  auto widen = [](float* box, int64_t i, int kk, float v) {
    float* g = box + (i / 8) * 2 * D * 8;
    float& lo = g[kk * 8 + i % 8];
    float& hi = g[(D + kk) * 8 + i % 8];
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  };
  for (int64_t m = 0; m < k; ++m) {
    for (int kk = 0; kk < D; ++kk) {
      const float v = bf.soa[static_cast<size_t>(kk * stride + m)];
      widen(leaf, m / kBoxLeaf, kk, v);
      widen(super, m / kBoxSuper, kk, v);
    }
  }
  bf.leaf_box = leaf;
  bf.super_box = super;
}

namespace box_detail {
/// The node of range [b, end) of the k-d order (the splits kd_order made there with `unit`, then
/// with kBoxLeaf inside a super-group); fills the range's bounding box into lo / hi.
template <int D>
inline int32_t build_guess_node(const BoxFilter& bf, int64_t b, int64_t end, int64_t unit, float* lo, float* hi,
                                std::vector<BoxGuessTree::Node>& nodes) {
  if (end - b <= unit && unit == kBoxSuper) unit = kBoxLeaf;  // a super-group: its leaves
  const int32_t id = static_cast<int32_t>(nodes.size());
  nodes.push_back({0.0f, -1, 0, 0});
  if (end - b <= unit) {  // a leaf
    const int64_t l = b / kBoxLeaf;
    const float* g = bf.leaf_box + (l / 8) * 2 * D * 8;
    for (int k = 0; k < D; ++k) {
      lo[k] = g[k * 8 + l % 8];
      hi[k] = g[(D + k) * 8 + l % 8];
    }
    nodes[static_cast<size_t>(id)].left = static_cast<int32_t>(l);
    return id;
  }
  const int64_t m = b + ((end - b + unit - 1) / unit / 2) * unit;  // kd_order's split point
  float rlo[D], rhi[D];
  const int32_t left = build_guess_node<D>(bf, b, m, unit, lo, hi, nodes);
  const int32_t right = build_guess_node<D>(bf, m, end, unit, rlo, rhi, nodes);
  float blo[D], bhi[D];
  for (int k = 0; k < D; ++k) {
    blo[k] = std::min(lo[k], rlo[k]);
    bhi[k] = std::max(hi[k], rhi[k]);
  }
  int dim = 0;
  for (int k = 1; k < D; ++k)
    if (bhi[k] - blo[k] > bhi[dim] - blo[dim]) dim = k;
  nodes[static_cast<size_t>(id)] = {rlo[dim], dim, left, right};
  for (int k = 0; k < D; ++k) {
    lo[k] = blo[k];
    hi[k] = bhi[k];
  }
  return id;
}
}  // namespace box_detail

/// Fills bf.guess (after build_box_filter).
template <int D>
inline void build_box_guess(BoxFilter& bf) {
  bf.guess.nodes.clear();
  bf.guess.nodes.reserve(static_cast<size_t>(2 * bf.leaves));
  float lo[D], hi[D];
  box_detail::build_guess_node<D>(bf, 0, bf.k, kBoxSuper, lo, hi, bf.guess.nodes);
}

/// Points per batch of box_region_guess_many: their descents advance level by level together.
inline constexpr int kGuessBatch = 8;

#if CLUSCOMP_KMEANS_HAVE_AVX2
/// The lexicographic minimum of (distance, index) over entries [first[p], first[p] + len[p]) of
/// bf.blk for each of kGuessBatch points, the scans of four points interleaved (independent
/// chains) over their common length. Same fp32 distances as scan_block (no contraction) and the
/// same lexicographic order, so the same answer. NaN padding never wins; kNoIndex when nothing
/// did.
template <int D>
__attribute__((target("avx2"))) inline void scan_regions_avx2(const float* x, const int64_t* first,
                                                               const int64_t* len, int np, const BoxFilter& bf,
                                                               int32_t* out) {
  constexpr int P = 4;
  const float* coords = bf.blk.coords;
  const int32_t* index = bf.blk.index;
  const int64_t stride = bf.blk.stride;
  for (int p0 = 0; p0 < np; p0 += P) {
    const int q = std::min(P, np - p0);
    __m256 xb[P][D];
    __m256 bv[P];
    __m256i bi[P];
    for (int p = 0; p < P; ++p) {
      for (int k = 0; k < D; ++k) xb[p][k] = _mm256_set1_ps(x[(p0 + std::min(p, q - 1)) * D + k]);
      bv[p] = _mm256_set1_ps(std::numeric_limits<float>::infinity());
      bi[p] = _mm256_set1_epi32(kNoIndex);
    }
    int64_t common = len[p0];
    for (int p = 1; p < q; ++p) common = std::min(common, len[p0 + p]);
    if (q == P) {
      for (int64_t b = 0; b < common; b += 8)
        for (int p = 0; p < P; ++p) {
          const int64_t m = first[p0 + p] + b;
          (void)lex_block_avx2<D>(xb[p], coords + m, index + m, stride, bv[p], bi[p]);
        }
    }
    for (int p = 0; p < q; ++p)
      for (int64_t b = q == P ? common : 0; b < len[p0 + p]; b += 8) {
        const int64_t m = first[p0 + p] + b;
        (void)lex_block_avx2<D>(xb[p], coords + m, index + m, stride, bv[p], bi[p]);
      }
    for (int p = 0; p < q; ++p) {
      // Lexicographic minimum across lanes: the smallest distance, then the smallest index
      // among the lanes holding it (each lane holds its own lexicographic minimum).
      __m256 m = _mm256_min_ps(bv[p], _mm256_permute2f128_ps(bv[p], bv[p], 1));
      m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
      m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
      const __m256i cand = _mm256_castps_si256(_mm256_blendv_ps(
          _mm256_castsi256_ps(_mm256_set1_epi32(kNoIndex)), _mm256_castsi256_ps(bi[p]),
          _mm256_cmp_ps(bv[p], m, _CMP_EQ_OQ)));
      __m128i c = _mm_min_epi32(_mm256_castsi256_si128(cand), _mm256_extracti128_si256(cand, 1));
      c = _mm_min_epi32(c, _mm_shuffle_epi32(c, _MM_SHUFFLE(1, 0, 3, 2)));
      c = _mm_min_epi32(c, _mm_shuffle_epi32(c, _MM_SHUFFLE(2, 3, 0, 1)));
      out[p0 + p] = _mm_cvtsi128_si32(c);
    }
  }
}
#endif

/// First guesses (box_region_guess) for `count` points stored contiguously (count x D) into
/// out[i]. The descents of kGuessBatch points advance together, each level a branch-free select
/// (a data-dependent branch per level cost ~40% of the guess), and with AVX2 the region scans of
/// four points interleave; the AVX2 and portable scans give the same answer. At K = 4096 / 65536
/// (gaussian, one core) 37 / 60 ns per point instead of 110 / 167 for one point at a time.
template <int D>
inline void box_region_guess_many(bool use_avx2, const BoxFilter& bf, const float* x, int64_t count,
                                  int64_t leaves, uint32_t* out) {
  const BoxGuessTree::Node* nodes = bf.guess.nodes.data();
  const int64_t span = leaves * kBoxLeaf;
  for (int64_t i0 = 0; i0 < count; i0 += kGuessBatch) {
    const int np = static_cast<int>(std::min<int64_t>(kGuessBatch, count - i0));
    const float* xb = x + i0 * D;
    int32_t n[kGuessBatch] = {};
    for (bool active = true; active;) {
      active = false;
      for (int p = 0; p < np; ++p) {
        const BoxGuessTree::Node& nd = nodes[n[p]];
        if (nd.dim < 0) continue;
        // Branch-free form of `x < split ? left : right` (a compare that goes either way).
        const int32_t right = -static_cast<int32_t>(!(xb[p * D + nd.dim] < nd.split));
        n[p] = nd.left + ((nd.right - nd.left) & right);
        active = true;
      }
    }
    int64_t first[kGuessBatch], len[kGuessBatch];
    int32_t best[kGuessBatch];
    for (int p = 0; p < np; ++p) {
      first[p] = static_cast<int64_t>(nodes[n[p]].left) / leaves * span;
      len[p] = std::min(span, bf.blk.stride - first[p]);
    }
#if CLUSCOMP_KMEANS_HAVE_AVX2
    if (use_avx2) {
      scan_regions_avx2<D>(xb, first, len, np, bf, best);
    } else
#endif
    {
      for (int p = 0; p < np; ++p) {
        const SoaBlock region{bf.soa.data() + first[p], bf.idx.data() + first[p], nullptr, len[p], bf.blk.stride};
        float bd = std::numeric_limits<float>::infinity();
        best[p] = kNoIndex;
        scan_block<D>(false, xb + p * D, region, 0.0f, bd, best[p]);
      }
    }
    for (int p = 0; p < np; ++p)
      out[i0 + p] = static_cast<uint32_t>(best[p] == kNoIndex ? bf.idx[static_cast<size_t>(first[p])] : best[p]);
  }
}

/// A first guess of x's nearest centroid (an index): descend bf.guess to a leaf and take the
/// nearest entry (exact distances) of the `leaves` consecutive leaves (a power of 2 up to
/// kBoxLeavesPerSuper) around it, aligned (a leaf and its sibling for 2). Not the nearest in
/// general; only a seed. (box_region_guess_many for one point.)
template <int D>
inline int32_t box_region_guess(bool use_avx2, const BoxFilter& bf, const float* x, int64_t leaves = 1) {
  uint32_t out = 0;
  box_region_guess_many<D>(use_avx2, bf, x, 1, leaves, &out);
  return static_cast<int32_t>(out);
}

/// Portable form of the box-pruned scan (scalar, FMA by std::fma), same decisions as the AVX2 one
/// up to which boxes are opened (a box the AVX2 form opens for a tile may be skipped here for a
/// point, both provably safe): for the tests and as the reference of the bound.
template <int D, int P = kFilterTilePoints>
inline void scan_box_filtered_tile_portable(const float* const* xs, const BoxFilter& bf, float* best_d,
                                            int32_t* best_i, int64_t* rechecks, int64_t* visited) {
  const FilterBlock& fb = bf.fb;
  for (int p = 0; p < P; ++p) {
    const float* x = xs[p];
    float xc[D];
    const double xx = center_point<D>(x, fb.center, xc);
    float tau = filter_threshold<D>(best_d[p], xx);
    float beta = filter_threshold<D>(best_d[p], 0.0);
    auto box_dist = [x](const float* box, int64_t i) {
      const float* g = box + (i / 8) * 2 * D * 8;
      float acc = 0.0f;
      for (int k = 0; k < D; ++k) {
        const float t = std::max(std::max(g[k * 8 + i % 8] - x[k], x[k] - g[(D + k) * 8 + i % 8]), 0.0f);
        acc = std::fma(t, t, acc);
      }
      return acc;
    };
    for (int64_t s = 0; s < bf.supers; ++s) {
      if (!(box_dist(bf.super_box, s) <= beta)) continue;
      const int64_t l1 = std::min(bf.leaves, (s + 1) * kBoxLeavesPerSuper);
      for (int64_t l = s * kBoxLeavesPerSuper; l < l1; ++l) {
        if (!(box_dist(bf.leaf_box, l) <= beta)) continue;
        visited[p] += kBoxLeaf;
        for (int64_t b = l * kBoxLeaf; b < (l + 1) * kBoxLeaf; b += 8) {
          const unsigned mask = filter_mask_portable<D>(fb, b, xc, tau);
          if (mask) {
            rechecks[p] += filter_recheck<D>(x, bf.blk, b, mask, best_d[p], best_i[p]);
            tau = filter_threshold<D>(best_d[p], xx);
            beta = filter_threshold<D>(best_d[p], 0.0);
          }
        }
      }
    }
  }
}

/// The low min(n, 8) bits set: the real boxes of a group of 8 with n real ones left.
inline unsigned valid_bits(int64_t n) { return n >= 8 ? 0xffu : (1u << n) - 1u; }

#if CLUSCOMP_KMEANS_HAVE_AVX2
/// Bit mask of the 8 boxes of group g (lo[k][8], hi[k][8]) that some point of the tile may reach:
/// box distance (fp32, one FMA per coordinate) <= beta[p]. xo: the points' coordinates broadcast.
template <int D, int P>
__attribute__((target("avx2,fma"))) CLUSCOMP_FORCEINLINE unsigned box_mask_fma(const float* g, const float (*xo)[D][8],
                                                                               const __m256* beta) {
  const __m256 zero = _mm256_setzero_ps();
  __m256 hit = zero;
  for (int p = 0; p < P; ++p) {
    __m256 acc = zero;
    for (int k = 0; k < D; ++k) {
      const __m256 x = _mm256_load_ps(xo[p][k]);
      const __m256 t = _mm256_max_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_load_ps(g + k * 8), x),
                                                   _mm256_sub_ps(x, _mm256_load_ps(g + (D + k) * 8))),
                                     zero);
      acc = _mm256_fmadd_ps(t, t, acc);
    }
    hit = _mm256_or_ps(hit, _mm256_cmp_ps(acc, beta[p], _CMP_LE_OQ));
  }
  return static_cast<unsigned>(_mm256_movemask_ps(hit));
}

/// Stage 1 and, where it hits, stage 2 of the Q points at xs (pre-broadcast xb, thresholds tv /
/// beta, ...: arrays of the tile offset to the first of them) over the kBoxLeaf entries of leaf l.
template <int D, int Q>
__attribute__((target("avx2,fma"))) CLUSCOMP_FORCEINLINE void box_leaf_stage(const BoxFilter& bf, int64_t l,
                                                                             const float* const* xs,
                                                                             const float (*xb)[D][8], __m256* tv,
                                                                             const double* xx, float* best_d,
                                                                             int32_t* best_i, int64_t* rechecks,
                                                                             __m256* beta) {
  if constexpr (Q == 1) {
    // One point: its four blocks' FMA chains interleaved (one chain alone waits on FMA latency).
    constexpr int kBlocks = static_cast<int>(kBoxLeaf / 8);
    const int64_t b0 = l * kBoxLeaf;
    const float* g = bf.fb.data + b0 * (D + 1);
    __m256 acc[kBlocks];
    for (int j = 0; j < kBlocks; ++j)
      acc[j] = _mm256_fmadd_ps(_mm256_load_ps(xb[0][0]), _mm256_load_ps(g + j * (D + 1) * 8 + 8), _mm256_load_ps(g + j * (D + 1) * 8));
    for (int k = 1; k < D; ++k)
      for (int j = 0; j < kBlocks; ++j)
        acc[j] = _mm256_fmadd_ps(_mm256_load_ps(xb[0][k]), _mm256_load_ps(g + j * (D + 1) * 8 + (k + 1) * 8), acc[j]);
    __m256 hit = _mm256_cmp_ps(acc[0], tv[0], _CMP_LE_OQ);
    for (int j = 1; j < kBlocks; ++j) hit = _mm256_or_ps(hit, _mm256_cmp_ps(acc[j], tv[0], _CMP_LE_OQ));
    if (__builtin_expect(_mm256_movemask_ps(hit) != 0, 0))
      for (int j = 0; j < kBlocks; ++j)  // each re-tests against the threshold as lowered so far
        filter_recheck_tile<D, 1>(xs, bf.blk, acc + j, tv, xx, b0 + 8 * j, best_d, best_i, rechecks, beta);
  } else {  // an else, not an early return: nvcc's front end flags the loop after it unreachable
    for (int64_t b = l * kBoxLeaf; b < (l + 1) * kBoxLeaf; b += 8) {
      __m256 acc[Q];
      filter_stage1_fma<D, Q>(bf.fb.data + b * (D + 1), xb, acc);
      __m256 hit = _mm256_cmp_ps(acc[0], tv[0], _CMP_LE_OQ);
      for (int p = 1; p < Q; ++p) hit = _mm256_or_ps(hit, _mm256_cmp_ps(acc[p], tv[p], _CMP_LE_OQ));
      if (__builtin_expect(_mm256_movemask_ps(hit) != 0, 0))
        filter_recheck_tile<D, Q>(xs, bf.blk, acc, tv, xx, b, best_d, best_i, rechecks, beta);
    }
  }
}

/// From this dimension on, a leaf that not every point of the tile opens by its own box test runs
/// stage 1 only for the points that do (one point at a time, its four blocks interleaved); below
/// it, for the whole tile. At d = 8 the points of a tile need only ~half of the union of their
/// leaves (32-entry boxes are wide there), but one point alone reuses no centroid load, so halving
/// the stage-1 pairs buys much less than half the time: it pays from d = 7 and costs a little at
/// d = 6 (docs/benchmarks.md, "per-point box filter").
inline constexpr int kBoxPerPointMinD = 7;

/// AVX2 + FMA box-pruned scan (see the top of this file). Adds to visited[p] the entries whose
/// stage 1 ran for point p.
template <int D, int P = kFilterTilePoints>
__attribute__((target("avx2,fma"))) inline void scan_box_filtered_tile_fma(const float* const* xs, const BoxFilter& bf,
                                                                           float* best_d, int32_t* best_i,
                                                                           int64_t* rechecks, int64_t* visited) {
  const FilterBlock& fb = bf.fb;
  alignas(32) float xb[P][D][8];  // centred coordinates (stage 1)
  alignas(32) float xo[P][D][8];  // original coordinates (boxes)
  double xx[P];
  __m256 tv[P], beta[P];
  for (int p = 0; p < P; ++p) {
    float xc[D];
    xx[p] = center_point<D>(xs[p], fb.center, xc);
    for (int k = 0; k < D; ++k) {
      _mm256_store_ps(xb[p][k], _mm256_set1_ps(xc[k]));
      _mm256_store_ps(xo[p][k], _mm256_set1_ps(xs[p][k]));
    }
    tv[p] = _mm256_set1_ps(filter_threshold<D>(best_d[p], xx[p]));
    beta[p] = _mm256_set1_ps(filter_threshold<D>(best_d[p], 0.0));
  }
  const int64_t super_groups = (bf.supers + 7) / 8;
  const int64_t leaf_groups = (bf.leaves + 7) / 8;
  for (int64_t sg = 0; sg < super_groups; ++sg) {
    // Padding boxes (past the last super / leaf) are empty but would pass a +inf threshold.
    unsigned sm = box_mask_fma<D, P>(bf.super_box + sg * 2 * D * 8, xo, beta) & valid_bits(bf.supers - sg * 8);
    while (sm) {
      const int64_t s = sg * 8 + __builtin_ctz(sm);
      sm &= sm - 1;
      for (int64_t lg = s * (kBoxLeavesPerSuper / 8); lg < std::min(leaf_groups, (s + 1) * (kBoxLeavesPerSuper / 8)); ++lg) {
        const float* lb = bf.leaf_box + lg * 2 * D * 8;
        const unsigned valid = valid_bits(bf.leaves - lg * 8);
        if constexpr (D >= kBoxPerPointMinD) {
          unsigned pm[P];  // per point: which of the 8 leaves its own box test opens
          unsigned lm = 0;
          for (int p = 0; p < P; ++p) {
            pm[p] = box_mask_fma<D, 1>(lb, xo + p, beta + p) & valid;
            lm |= pm[p];
          }
          while (lm) {
            const int bit = __builtin_ctz(lm);
            lm &= lm - 1;
            const int64_t l = lg * 8 + bit;
            unsigned who = 0;  // the points that open leaf l
            for (int p = 0; p < P; ++p) who |= ((pm[p] >> bit) & 1u) << p;
            if (who == (1u << P) - 1) {
              for (int p = 0; p < P; ++p) visited[p] += kBoxLeaf;
              box_leaf_stage<D, P>(bf, l, xs, xb, tv, xx, best_d, best_i, rechecks, beta);
            } else {
              while (who) {
                const int p = __builtin_ctz(who);
                who &= who - 1;
                visited[p] += kBoxLeaf;
                box_leaf_stage<D, 1>(bf, l, xs + p, xb + p, tv + p, xx + p, best_d + p, best_i + p, rechecks + p,
                                     beta + p);
              }
            }
          }
        } else {
          unsigned lm = box_mask_fma<D, P>(lb, xo, beta) & valid;
          while (lm) {
            const int64_t l = lg * 8 + __builtin_ctz(lm);
            lm &= lm - 1;
            for (int p = 0; p < P; ++p) visited[p] += kBoxLeaf;
            box_leaf_stage<D, P>(bf, l, xs, xb, tv, xx, best_d, best_i, rechecks, beta);
          }
        }
      }
    }
  }
}
#endif

/// Exact brute-force scan of kFilterTilePoints points against every centroid of `bf` (all_: the
/// same centroids as an ascending SoaBlock, for the exact fallback): updates (best_d[p], best_i[p])
/// with the lexicographic minimum of (distance, index) over the centroids and the incoming best,
/// bit-identical to scan_ascending_tile over all_. Same guards as scan_filtered_tile (AVX2 + FMA,
/// norms below kFilterMaxNorm2, no NaN incoming best), else the exact tiled scan over all_.
/// visited[p] (added to) counts the entries whose stage 1 ran for point p (the exact scan: all
/// of all_); *filtered says which path ran; rechecks[p] (added to) counts point p's stage-2 exact
/// evaluations.
template <int D>
inline void scan_box_filtered_tile(bool use_avx2, const float* const* xs, const BoxFilter& bf, const SoaBlock& all,
                                   float* best_d, int32_t* best_i, int64_t* rechecks, int64_t* visited,
                                   bool* filtered) {
  const bool ok = filter_tile_ok<D>(use_avx2, xs, bf.fb, best_d);
  *filtered = ok;
#if CLUSCOMP_KMEANS_HAVE_AVX2
  if (ok) {
    scan_box_filtered_tile_fma<D>(xs, bf, best_d, best_i, rechecks, visited);
    return;
  }
#else
  (void)rechecks;
#endif
  const int64_t v = exact_scan_tiles<D>(use_avx2, xs, all, best_d, best_i);
  for (int p = 0; p < kFilterTilePoints; ++p) visited[p] += v;
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
