#pragma once
/// The CPU engine of exact Lloyd k-means for many short vectors (d in 1..16), as ClusComp's reference
/// runs it (CLUSCOMP.md section 1): seeded random-permutation initialisation (the first K distinct
/// points), Lloyd iterations with exact squared-L2 assignment, faiss's empty-cluster split
/// (1 +- 1/1024), and a final reassignment.
///
/// How it is fast without changing the answer:
///  * Points are kept physically in cluster order. The points of cluster a (in pieces of <= 8192)
///    share one candidate list: the centroids within 2 * q of c_a, q the 99th percentile of the
///    points' distances to c_a (a k-d tree range query), sorted by distance to c_a. By the
///    triangle inequality a point's nearest centroid lies within 2 * ||x - c_a|| of c_a, so a
///    point scans only the prefix of the list inside its own ball (with a 1e-4 relative margin
///    covering fp32 rounding). Points whose ball is wider than the list's, pieces of < 16 points,
///    and lists longer than 64 per point go to an exact per-point k-d tree search seeded with the
///    current centroid (K >= 16384, or d < 4 with the filtered scan below, d < 8 without it) or a
///    SIMD brute-force scan (otherwise, and K <= 64).
///  * Brute-force scans against all K centroids run a tile of points per pass (register-blocked:
///    each centroid block is loaded once per tile). With AVX2 + FMA (d >= 2) they are two-stage
///    and still exact (scan_filtered_tile, distance_kernels.hpp): a GEMM-form filter
///    ||c||^2 - 2 x.c (one FMA per coordinate, data centred on the centroids' mean) drops every
///    centroid that a rigorous fp32 error bound proves farther than the best exact distance so far
///    (seeded with the point's current centroid), and only the survivors (~1.2 per point) are
///    evaluated with the exact kernel. About 2.5x cheaper per pair than the exact scan, so for
///    d >= 5, K <= 16384 (d < 8) or 32768 (d >= 8) and at most 192 (d < 8) or 512 (d >= 8) points
///    per cluster, every point goes straight to it: no lists, no tree search (kFilterAllMinD).
///  * With few points per cluster (N <= K * box_max_per_cluster(d): 16 at d < 4, 128 at d = 4, 512
///    from d = 5; for d >= 12 only from K = 16384) every point goes to a box-pruned form of that
///    filtered scan instead (box_filter.hpp): the centroids in k-d order, with bounding boxes for
///    groups of 256 and leaves of 32; a tile of 4 points (clusters taken in the same k-d order,
///    so close together) skips every group whose box is provably farther from each of its points
///    than that point's best exact distance (a rigorous fp32 bound again), and runs the filter on
///    the rest. At d = 8, K = 65536 it runs stage 1 on ~1800 (ffn_up) to ~5000 (7B-shaped
///    weight-like) of the 65536 centroids per point; 5-15x faster than the lists and the tree
///    search there (docs/benchmarks.md). KMeansOptions::box_pruning overrides
///    the rule.
///  * The first labels (before the first exact assignment) are each point's nearest centroid
///    among the 64 of two sibling leaves of the box k-d order (box_region_guess_many, eight
///    points' descents at a time), so the first assignment's balls are already tight. Where the
///    lists serve later assignments, the first one still takes the box scan for 4 <= d < 12 with
///    K >= 16384 or <= 256 points per cluster (kBoxFirstMinK): seeded with guesses, not with the
///    last assignment, the first lists are long, and the box scan tightens as it goes.
///  * After an update in box mode, a point whose centroid did not move scans only the centroids
///    that moved (a box filter of those alone, find_moved): every unmoved centroid has the same
///    fp32 distance to it as in the last exact assignment, where it lost. Late iterations at
///    large K, where few centroids still move, cost next to nothing.
///  * An assignment that repeats the previous labels after an update that split no cluster is a
///    Lloyd fixed point: the next update would give the same centroids bit for bit (same points
///    in the same order per cluster), so the remaining iterations are reported with the same
///    objective and not recomputed (KMeansStats::fixed_point_iteration).
///  * Distances come from one SIMD kernel (AVX2 when the CPU has it, else portable code) whose
///    per-pair arithmetic is the same in every path, so the pruned scan returns exactly what a
///    brute-force scan with the same kernel returns: the lowest index among the minimal fp32
///    distances. The filter's approximate values only decide what to evaluate, never an answer.
///  * Because points are in cluster order, the centroid update is a segmented reduction in double
///    in a fixed order, and the objective is summed in double over fixed chunks: results are
///    bit-identical for a given seed whatever the thread count.
///  * Optionally (KMeansOptions::use_bounds), Hamerly-style bounds carried across iterations: per
///    point a lower bound on its distance to every centroid but its own (from the second-best
///    distance of its last search, the ball's edge, or the k-d tree's pruned boxes), lowered after
///    each update by the largest move among the centroids near its cluster (a k-d tree query on
///    per-subtree maxima; centroids farther than rho are bounded by the triangle inequality, and a
///    split centroid's move is taken from its donor, whose points are then all searched). A point
///    whose distance to its own centroid is below that bound keeps it without a search.
///  * Optionally (KMeansOptions::point_weights), weighted Lloyd: a point's weight multiplies its
///    squared distance in the objective. A positive per-point factor does not change which
///    centroid is nearest, so the assignment (everything above) is the same; only the centroid
///    update (weighted mean) and the objective (weighted sum) change. The weights travel with
///    their points through the sort.
/// Memory beyond the input: about 2 * N * (4d + 4) + 8N bytes plus O(K * list length); + 4N bytes
/// with use_bounds; + 8N bytes with point_weights.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cluscomp/cluster/box_filter.hpp"
#include "cluscomp/cluster/centroid_tree.hpp"
#include "cluscomp/cluster/distance_kernels.hpp"
#include "cluscomp/host/kmeans_split.hpp"
#include "cluscomp/cluster/kmeans_types.hpp"
#include "cluscomp/core/centroid_update.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/view.hpp"
#include "cluscomp/host/checked.hpp"
#include "cluscomp/host/parallel.hpp"
#include "cluscomp/host/uninit.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

inline constexpr float kBallMargin = 1e-4f;  // relative slack on (2u)^2 covering fp32 rounding
inline constexpr float kBallTiny = 1e-30f;   // absolute slack for underflowing distances
// Tuning (measured on SmolLM2 MLP weights and gaussian data; none changes the answer).
inline constexpr int64_t kBruteMaxK = 64;              // at or below this K, brute force wins
inline constexpr int64_t kSharedListMinPoints = 16;    // smaller pieces search point by point
inline constexpr int64_t kSharedListMaxPerPoint = 64;  // wider shared lists: point by point
inline constexpr double kSharedListQuantile = 0.99;    // list radius: this quantile's ball
inline constexpr int kTreeMaxD = 8;                    // from this d, per-point tree search ...
inline constexpr int64_t kTreeMinKHighD = 16384;       // ... only pays from this K on
inline constexpr int64_t kGuessLeaves = 2;             // first labels: best of this many box leaves (64 centroids)
// With the filtered brute force (scan_filtered_tile: AVX2 + FMA, d >= kFilterMinD; about 2.5x
// cheaper per pair than the exact tiled scan), brute force pays in more places. Measured on the
// ffn_up weights (d = 3..16) and gaussian data (N = 1M), docs/benchmarks.md, kmeans-vs-faiss:
inline constexpr int kFilterMinD = 2;  // d = 1: many near ties, the filter re-checks too much
// Every point of the assignment goes straight to the filtered brute force, with no lists and no
// tree search, when d >= kFilterAllMinD, K <= filter_all_max_k(d) and N <= K * filter_all_max_per_cluster(d):
// there a cluster's candidate list (k-d tree range query, sort, gather) costs more than scanning
// all K for each of its few points, and the per-point tree search degrades with d. With many
// points per cluster the lists are amortised and win; with very large K (few points per
// cluster, points close to their centroids) the tree search wins.
inline constexpr int kFilterAllMinD = 5;
constexpr int64_t filter_all_max_k(int d) { return d < 8 ? 16384 : 32768; }
constexpr int64_t filter_all_max_per_cluster(int d) { return d < 8 ? 192 : 512; }
// Every point of the assignment goes straight to the box-pruned filtered brute force
// (box_filter.hpp: centroids in k-d order, a tile of points skips every group whose bounding box
// is provably too far) when N <= K * box_max_per_cluster(d) and K > kBruteMaxK, and for d >= kBoxHighD
// only from K = kBoxHighDMinK (below it the plain filtered scan is as fast: boxes prune little in
// 12+ dimensions). This takes precedence over filter_all(). Measured on the ffn_up weights
// (d = 2..16, K = 1024..65536), gaussian and weight-like data (N up to 16.7M), docs/benchmarks.md:
// with many points per cluster the shared lists are amortised and win (sooner at small d).
inline constexpr int kBoxHighD = 12;
inline constexpr int64_t kBoxHighDMinK = 16384;
constexpr int64_t box_max_per_cluster(int d) { return d < 4 ? 16 : d == 4 ? 128 : 512; }
// Where the lists serve the later assignments, the FIRST one (from the initial centroids, seeded
// with the split tree's guesses) still takes the box-pruned scan when kBoxFirstMinD <= d <
// kBoxHighD and (K >= kBoxFirstMinK or N <= K * kBoxFirstMaxPerCluster): the guesses are far
// from exact there, and a list's radius comes from its points' seed distances, so the first
// lists are long, while the box scan tightens each point's threshold as it goes. Same answer
// either way (both exact). The bounds of the rule are where the box scan measured faster for the
// first assignment (docs/benchmarks.md, "box-pruned first assignment"); below d = 4, with many
// points per cluster at small K, and from d = 12 the lists are faster.
inline constexpr int kBoxFirstMinD = 4;
inline constexpr int64_t kBoxFirstMinK = 16384;
inline constexpr int64_t kBoxFirstMaxPerCluster = 256;
// Points the lists do not cover go to the filtered brute force instead of the tree search from
// this d (below kTreeMinKHighD); kTreeMaxD without the filter.
inline constexpr int kTreeMaxDFilter = 4;
// Carried bounds (Hamerly): every bound is a distance (not squared), lowered by this relative
// margin each time it is derived from fp32 distances (whose relative error is ~d * 2^-24).
inline constexpr float kBoundMargin = 1e-4f;
inline constexpr float kBoundReach = 2.5f;      // a ball scan goes on up to this * u for a lower bound
inline constexpr double kDriftQuantile = 0.95;  // local-drift radius: 2 * this quantile of the bounds

/// The per-iteration state of exact Lloyd for dimension D; see the file comment.
/// Each point's first label from a built box filter with its guess tree: its nearest centroid
/// among the centroids of kGuessLeaves sibling leaves (box_region_guess_many).
template <int D>
inline void first_labels_from(bool use_avx2, const BoxFilter& guess, const float* pts, int64_t n, int threads,
                              uint32_t* labels) {
  parallel_chunks(threads, n, 1 << 14, [&](int64_t b, int64_t e, int) {
    box_region_guess_many<D>(use_avx2, guess, pts + b * D, e - b, kGuessLeaves, labels + b);
  });
}

/// The labels a k-means run sorts its points by before the first exact assignment (points (n, D)
/// contiguous, centroids (k, D)): they fix the order of the points within each cluster, so the
/// order of the double sums of the first update. Every backend that must give the CPU engine's
/// centroids bit for bit starts from these (the CUDA k-means computes them here, on the host, and
/// uploads them). The AVX2 and portable paths give the same labels.
template <int D>
inline void kmeans_first_labels(bool use_avx2, const float* centroids, int64_t k, const float* pts, int64_t n,
                                int threads, uint32_t* labels) {
  BoxFilter own;
  build_box_filter<D>(centroids, k, own, threads);
  build_box_guess<D>(own);
  first_labels_from<D>(use_avx2, own, pts, n, threads, labels);
}

template <int D>
class LloydEngine {
 public:
  LloydEngine(int64_t n, int64_t k, int threads, bool pruning, bool simd, bool bounds = false,
              KMeansBoxPruning box = KMeansBoxPruning::kAuto)
      : n_(n), k_(k), threads_(threads), pruning_(pruning), simd_(simd && cpu_has_avx2()), bounds_(bounds), box_mode_(box) {
    if (bounds_) {
      lb_.assign(static_cast<size_t>(n), 0.0f);
      drift_.assign(static_cast<size_t>(k), 0.0f);
      local_drift_.assign(static_cast<size_t>(k), 0.0f);
      rho_.assign(static_cast<size_t>(k), 0.0f);
      dirty_.assign(static_cast<size_t>(k), 0);
    }
    for (auto& b : pts_) b.resize(static_cast<size_t>(n) * D);
    for (auto& b : ids_) b.resize(static_cast<size_t>(n));
    label_.resize(static_cast<size_t>(n));
    dist_.resize(static_cast<size_t>(n));
    seg_.assign(static_cast<size_t>(k + 1), 0);
    centroids_.resize(static_cast<size_t>(k) * D);
    counts_.assign(static_cast<size_t>(k), 0);
    scratch_.resize(static_cast<size_t>(threads));
  }

  /// Copies the input in, sets the centroids and orders points by a first guess of their label.
  /// `weights` (N, input order; validated by the caller) or nullptr: see KMeansOptions::point_weights.
  void start(MatrixView<const float> p, const float* init, const float* weights = nullptr) {
    parallel_chunks(threads_, n_, 1 << 15, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) {
        for (int c = 0; c < D; ++c) pts_[0][static_cast<size_t>(i) * D + c] = p(i, c);
        ids_[0][static_cast<size_t>(i)] = static_cast<uint32_t>(i);
      }
    });
    weighted_ = weights != nullptr;
    if (weighted_) {
      for (auto& b : w_) b.resize(static_cast<size_t>(n_));
      parallel_chunks(threads_, n_, 1 << 15, [&](int64_t b, int64_t e, int) {
        std::copy(weights + b, weights + e, w_[0].begin() + b);
      });
    }
    std::copy(init, init + k_ * D, centroids_.begin());
    moved_valid_ = false;  // the first labels are guesses: no previous exact assignment
    box_first_ = box_mode_ == KMeansBoxPruning::kAuto && box_possible() && !box_rule() && D >= kBoxFirstMinD &&
                 D < kBoxHighD && (k_ >= kBoxFirstMinK || n_ <= k_ * kBoxFirstMaxPerCluster);
    set_centroids(true);
    // The first labels come from the boxes' split tree in every mode (with the lists it is built
    // for this alone): the same first labels give the same point order within each cluster, so
    // the same double sums, so the answers stay bit-identical across box_pruning, use_pruning,
    // use_bounds and use_simd.
    if (box_all())
      first_labels_from<D>(simd_, box_, pts_[0].data(), n_, threads_, label_.data());
    else
      kmeans_first_labels<D>(simd_, centroids_.data(), k_, pts_[0].data(), n_, threads_, label_.data());
    sort_by_label();
  }

  /// Exact assignment of every point to its nearest current centroid; returns the objective.
  double assign(KMeansStats& st) {
    // Work items: pieces of at most kPiece points of one cluster, so that big clusters spread
    // over threads; each piece builds its own candidate list from its own radius.
    constexpr int64_t kPiece = 8192;
    items_.clear();
    constexpr int64_t kRun = 512;
    if (box_all()) {
      // Every point takes the box-pruned scan: items are runs of whole clusters taken in the
      // boxes' k-d order (so that a tile's points, and the boxes they open, are close together),
      // about kRun points each; a cluster larger than that is split into pieces of its own.
      int64_t m0 = 0, run = 0;
      for (int64_t m = 0; m < k_; ++m) {
        const int64_t a = box_.idx[static_cast<size_t>(m)];
        const int64_t b = seg_[static_cast<size_t>(a)], e = seg_[static_cast<size_t>(a + 1)];
        if (e - b > kRun) {
          if (m > m0) items_.push_back({kClusterRun, m0, m});
          for (int64_t s = b; s < e; s += kRun) items_.push_back({a, s, std::min(e, s + kRun)});
          m0 = m + 1;
          run = 0;
          continue;
        }
        run += e - b;
        if (run >= kRun) {
          items_.push_back({kClusterRun, m0, m + 1});
          m0 = m + 1;
          run = 0;
        }
      }
      if (m0 < k_) items_.push_back({kClusterRun, m0, k_});
    } else if (filter_all()) {
      // Every point takes the filtered brute force: items are runs of points in cluster order,
      // whose tiles may span clusters (no short tile at the end of every small cluster).
      for (int64_t s = 0; s < n_; s += kRun) items_.push_back({kPointRun, s, std::min(n_, s + kRun)});
    } else {
      for (int64_t a = 0; a < k_; ++a) {
        const int64_t b = seg_[static_cast<size_t>(a)], e = seg_[static_cast<size_t>(a + 1)];
        for (int64_t s = b; s < e; s += kPiece) items_.push_back({a, s, std::min(e, s + kPiece)});
      }
    }
    for (auto& s : scratch_) s.evals = s.brute = s.tree_points = s.skipped = s.filter_evals = s.rechecks = s.box = s.unmoved = 0;
    parallel_chunks(threads_, static_cast<int64_t>(items_.size()), 32, [&](int64_t b, int64_t e, int w) {
      for (int64_t it = b; it < e; ++it) assign_piece(items_[static_cast<size_t>(it)], scratch_[static_cast<size_t>(w)]);
    });
    for (auto& s : scratch_) {
      st.distance_evaluations += s.evals;
      st.brute_force_points += s.brute;
      st.tree_search_points += s.tree_points;
      st.bound_skipped_points += s.skipped;
      st.filter_evaluations += s.filter_evals;
      st.filter_rechecks += s.rechecks;
      st.box_points += s.box;
      st.unmoved_points += s.unmoved;
    }
    st.assignments += n_;
    if (box_first_) {
      box_first_ = false;
      box_ = BoxFilter();
    }
    // Objective: double partial sums over fixed chunks, combined in chunk order; with weights,
    // each fp32 distance times its weight in double.
    // (core/centroid_update.hpp's chunking and per-chunk sum, which the GPU k-means runs too.)
    const int64_t nch = (n_ + kObjectiveChunk - 1) / kObjectiveChunk;
    std::vector<double> part(static_cast<size_t>(nch));
    parallel_chunks(threads_, nch, 1, [&](int64_t cb, int64_t, int) {
      const int64_t lo = cb * kObjectiveChunk, hi = std::min(n_, (cb + 1) * kObjectiveChunk);
      part[static_cast<size_t>(cb)] = objective_chunk_sum(dist_.data(), weighted_ ? w_[0].data() : nullptr, lo, hi);
    });
    double obj = 0;
    for (double v : part) obj += v;
    return obj;
  }

  /// Stable counting sort of points (and their input ids, bounds and weights) by the labels of the
  /// last assignment.
  void sort_by_label() {
    const int nt = std::max(1, threads_);
    std::vector<int64_t> hist(static_cast<size_t>(nt) * static_cast<size_t>(k_), 0);
    parallel_static(nt, n_, [&](int t, int64_t b, int64_t e) {
      int64_t* h = &hist[static_cast<size_t>(t) * static_cast<size_t>(k_)];
      for (int64_t i = b; i < e; ++i) ++h[label_[static_cast<size_t>(i)]];
    });
    int64_t run = 0;
    for (int64_t a = 0; a < k_; ++a) {
      seg_[static_cast<size_t>(a)] = run;
      for (int t = 0; t < nt; ++t) {
        int64_t& h = hist[static_cast<size_t>(t) * static_cast<size_t>(k_) + static_cast<size_t>(a)];
        const int64_t c = h;
        h = run;
        run += c;
      }
    }
    seg_[static_cast<size_t>(k_)] = run;
    const float* sp = pts_[0].data();
    const uint32_t* si = ids_[0].data();
    float* dp = pts_[1].data();
    uint32_t* di = ids_[1].data();
    // The weighted scatter is a separate instantiation, so the unweighted loop is unchanged.
    auto scatter = [&](auto weighted) {
      constexpr bool kWeighted = decltype(weighted)::value;
      const float* sw = kWeighted ? w_[0].data() : nullptr;
      float* dw = kWeighted ? w_[1].data() : nullptr;
      parallel_static(nt, n_, [&](int t, int64_t b, int64_t e) {
        int64_t* off = &hist[static_cast<size_t>(t) * static_cast<size_t>(k_)];
        for (int64_t i = b; i < e; ++i) {
          const int64_t o = off[label_[static_cast<size_t>(i)]]++;
          std::memcpy(dp + o * D, sp + i * D, sizeof(float) * D);
          di[o] = si[i];
          if constexpr (kWeighted) dw[o] = sw[i];
          // The bounds travel with their points; dist_ (free until the next assignment rewrites
          // it) is the sort target, so they cost no second buffer.
          if (bounds_) dist_[static_cast<size_t>(o)] = lb_[static_cast<size_t>(i)];
        }
      });
    };
    if (weighted_)
      scatter(std::true_type{});
    else
      scatter(std::false_type{});
    std::swap(pts_[0], pts_[1]);
    std::swap(ids_[0], ids_[1]);
    if (weighted_) std::swap(w_[0], w_[1]);
    if (bounds_) std::swap(lb_, dist_);
    for (int64_t a = 0; a < k_; ++a)
      counts_[static_cast<size_t>(a)] = seg_[static_cast<size_t>(a + 1)] - seg_[static_cast<size_t>(a)];
  }

  /// Centroid = mean of its segment (core/centroid_update.hpp: double sums in segment order; with
  /// weights the weighted mean, a zero total weight falling back to the plain mean); then the
  /// split rule (point counts, host/kmeans_split.hpp). Returns the number of splits.
  int64_t update(uint64_t split_seed) {
    if (bounds_ || box_all()) old_centroids_ = centroids_;
    const float* pts = pts_[0].data();
    const float* w = weighted_ ? w_[0].data() : nullptr;
    parallel_chunks(threads_, k_, 256, [&](int64_t b, int64_t e, int) {
      for (int64_t a = b; a < e; ++a) {
        const int64_t lo = seg_[static_cast<size_t>(a)], hi = seg_[static_cast<size_t>(a + 1)];
        if (lo == hi) continue;
        float* c = &centroids_[static_cast<size_t>(a) * D];
        cluster_centroid<D>(pts, w, lo, hi, c);
      }
    });
    split_pairs_.clear();
    const int64_t splits = split_empty_clusters(counts_.data(), k_, n_, D, split_seed, centroids_.data(),
                                                bounds_ ? &split_pairs_ : nullptr);
    set_centroids();
    if (bounds_) update_bounds();
    if (box_all()) find_moved();
    return splits;
  }

  /// Input-order codes of the last assignment.
  void codes(uint32_t* out) const {
    parallel_chunks(threads_, n_, 1 << 15, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) out[ids_[0][static_cast<size_t>(i)]] = label_[static_cast<size_t>(i)];
    });
  }

  /// Per-code counts of the last assignment (histogram of labels, fixed order).
  std::vector<int64_t> label_counts() const {
    std::vector<int64_t> c(static_cast<size_t>(k_), 0);
    for (uint32_t l : label_) ++c[l];
    return c;
  }

  const std::vector<float>& centroids() const { return centroids_; }

  /// Whether the last assignment kept every point in the cluster it was sorted under (the labels
  /// before it). Each worker stops at its first changed point: next to free while labels change.
  bool labels_unchanged() const {
    const int nt = std::max(1, threads_);
    std::vector<uint8_t> changed(static_cast<size_t>(nt), 0);
    parallel_static(nt, k_, [&](int t, int64_t b, int64_t e) {
      for (int64_t a = b; a < e; ++a)
        for (int64_t i = seg_[static_cast<size_t>(a)]; i < seg_[static_cast<size_t>(a + 1)]; ++i)
          if (label_[static_cast<size_t>(i)] != static_cast<uint32_t>(a)) {
            changed[static_cast<size_t>(t)] = 1;
            return;
          }
    });
    for (uint8_t c : changed)
      if (c) return false;
    return true;
  }

 private:
  /// Item::cluster values that are not a cluster index.
  static constexpr int64_t kPointRun = -1;    // [begin, end): sorted points of any clusters (filter_all())
  static constexpr int64_t kClusterRun = -2;  // [begin, end): the clusters box_.idx[begin .. end) (box_all())
  struct Item {
    int64_t cluster, begin, end;  // a cluster index: [begin, end) are points of that cluster
  };
  struct Scratch {
    std::vector<std::pair<float, int32_t>> cand;
    std::vector<float> soa;
    std::vector<int32_t> idx;
    std::vector<float> cd2;
    std::vector<float> u2;
    std::vector<int64_t> pending;  // sorted points waiting for a tiled brute-force scan
    std::vector<int64_t> pending2;  // assign_run: points whose centroid did not move
    std::vector<int64_t> active;   // points of the piece that the bounds do not certify
    int64_t evals = 0, brute = 0, tree_points = 0, skipped = 0, filter_evals = 0, rechecks = 0, box = 0, unmoved = 0;
  };

  /// The centroids' search structures. With box_all() there is no k-d tree (the boxes' split
  /// tree, built at the start, `first`, gives the first labels).
  void set_centroids(bool first = false) {
    if (!box_all()) tree_.build(centroids_.data(), k_);
    const int64_t stride = (k_ + 7) / 8 * 8;
    all_soa_.assign(static_cast<size_t>(stride) * D, std::numeric_limits<float>::quiet_NaN());
    all_idx_.assign(static_cast<size_t>(stride), kNoIndex);
    for (int64_t j = 0; j < k_; ++j) {
      for (int c = 0; c < D; ++c) all_soa_[static_cast<size_t>(c * stride + j)] = centroids_[static_cast<size_t>(j) * D + c];
      all_idx_[static_cast<size_t>(j)] = static_cast<int32_t>(j);
    }
    all_ = SoaBlock{all_soa_.data(), all_idx_.data(), nullptr, stride, stride};
    // The filtered brute force's form of all_, only where a brute-force scan can happen.
    if (box_all()) {
      build_box_filter<D>(centroids_.data(), k_, box_, threads_);
      if (first) build_box_guess<D>(box_);
    } else if (use_filter() && (!pruning_ || k_ <= kBruteMaxK || k_ < kTreeMinKHighD || filter_all()))
      all_filter_ = make_filter_block<D>(all_, all_filter_buf_);
  }

  /// After an update in box mode: which centroids changed (any bit of a coordinate; splits
  /// included), and the box filter and ascending block of those alone, for the points whose own
  /// centroid did not change (assign_run). Why that is exact: the labels are the exact
  /// lexicographic minimum of (fp32 distance, index) over the centroids before the update; an
  /// unchanged centroid has bit for bit the same distance to every point as then, so against a
  /// point's unchanged centroid every other unchanged one loses as before, and the new minimum is
  /// that of the point's centroid and the moved ones.
  void find_moved() {
    moved_ids_.clear();
    for (int64_t a = 0; a < k_; ++a)
      if (std::memcmp(&old_centroids_[static_cast<size_t>(a) * D], &centroids_[static_cast<size_t>(a) * D],
                      sizeof(float) * D) != 0)
        moved_ids_.push_back(static_cast<int32_t>(a));
    moved_.assign(static_cast<size_t>(k_), 0);
    for (int32_t a : moved_ids_) moved_[static_cast<size_t>(a)] = 1;
    const int64_t m = static_cast<int64_t>(moved_ids_.size());
    moved_valid_ = m < k_;
    if (!moved_valid_ || m == 0) return;
    std::vector<float> c(static_cast<size_t>(m) * D);
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(&c[static_cast<size_t>(j) * D], &centroids_[static_cast<size_t>(moved_ids_[static_cast<size_t>(j)]) * D],
                  sizeof(float) * D);
    build_box_filter<D>(c.data(), m, moved_box_, threads_, moved_ids_.data());
    const int64_t stride = (m + 7) / 8 * 8;
    moved_soa_.assign(static_cast<size_t>(stride) * D, std::numeric_limits<float>::quiet_NaN());
    moved_idx_.assign(static_cast<size_t>(stride), kNoIndex);
    for (int64_t j = 0; j < m; ++j) {
      for (int cc = 0; cc < D; ++cc) moved_soa_[static_cast<size_t>(cc * stride + j)] = c[static_cast<size_t>(j) * D + cc];
      moved_idx_[static_cast<size_t>(j)] = moved_ids_[static_cast<size_t>(j)];
    }
    moved_all_ = SoaBlock{moved_soa_.data(), moved_idx_.data(), nullptr, stride, stride};
  }

  /// Lower bound (a distance) from a squared fp32 distance: rounded down by kBoundMargin.
  static float bound_from_d2(float d2) { return std::sqrt(d2) * (1.0f - kBoundMargin); }

  /// filter_all() / box_all(): the points of a run of sorted points or of clusters, each seeded
  /// with its current centroid, by the (box-pruned) filtered brute force.
  void assign_run(const Item& item, Scratch& s) {
    const float* pts = pts_[0].data();
    s.pending.clear();
    auto seed = [&](int64_t i, int64_t a) {
      label_[static_cast<size_t>(i)] = static_cast<uint32_t>(a);
      dist_[static_cast<size_t>(i)] = squared_distance<D>(pts + i * D, &centroids_[static_cast<size_t>(a) * D]);
      s.pending.push_back(i);
    };
    if (item.cluster == kClusterRun) {
      for (int64_t m = item.begin; m < item.end; ++m) {
        const int64_t a = box_.idx[static_cast<size_t>(m)];
        for (int64_t i = seg_[static_cast<size_t>(a)]; i < seg_[static_cast<size_t>(a + 1)]; ++i) seed(i, a);
      }
    } else {
      int64_t a = std::upper_bound(seg_.begin(), seg_.end(), item.begin) - seg_.begin() - 1;
      for (int64_t i = item.begin; i < item.end; ++i) {
        while (seg_[static_cast<size_t>(a + 1)] <= i) ++a;
        seed(i, a);
      }
    }
    // Box scans: points already on a centroid (seed distance 0: with few points per cluster most
    // of them, e.g. every one-point cluster after an update) open next to nothing, so they share
    // tiles with each other and not with points that open many boxes. Order within the run only
    // (each point's answer is its own exact minimum; tiles just share loads). Kept order
    // otherwise: sorting by distance breaks the tiles' locality (+30-50% pairs, measured).
    auto on_centroid = [&](int64_t i) { return dist_[static_cast<size_t>(i)] == 0.0f; };
    if (box_all() && moved_valid_) {
      // Points whose centroid did not move: only the moved centroids can take them (find_moved).
      s.pending2.clear();
      for (int64_t i : s.pending)
        if (!moved_[label_[static_cast<size_t>(i)]]) s.pending2.push_back(i);
      s.unmoved += static_cast<int64_t>(s.pending2.size());
      s.pending.erase(std::remove_if(s.pending.begin(), s.pending.end(),
                                     [&](int64_t i) { return !moved_[label_[static_cast<size_t>(i)]]; }),
                      s.pending.end());
      if (!moved_ids_.empty() && !s.pending2.empty()) {
        std::stable_partition(s.pending2.begin(), s.pending2.end(), on_centroid);
        std::swap(s.pending, s.pending2);
        assign_pending_brute(s, false, &moved_box_, &moved_all_);
        std::swap(s.pending, s.pending2);
      }
    }
    if (box_all()) std::stable_partition(s.pending.begin(), s.pending.end(), on_centroid);
    assign_pending_brute(s, false);
  }

  void assign_piece(const Item& item, Scratch& s) {
    if (item.cluster < 0) return assign_run(item, s);
    const int64_t a = item.cluster;
    const float* ca = &centroids_[static_cast<size_t>(a) * D];
    const float* pts = pts_[0].data();
    // label_ (rewritten by the search) holds the current cluster meanwhile: the seed of a tiled
    // brute-force scan (assign_pending_brute).
    for (int64_t i = item.begin; i < item.end; ++i) {
      dist_[static_cast<size_t>(i)] = squared_distance<D>(pts + i * D, ca);
      label_[static_cast<size_t>(i)] = static_cast<uint32_t>(a);
    }
    // Carried bounds: a point whose distance to its centroid is below the lower bound on every
    // other centroid keeps its label (the brute-force argmin, ties included: the test is strict
    // with margins far above fp32 rounding) and needs no search.
    s.active.clear();
    if (bounds_ && !dirty_[static_cast<size_t>(a)]) {
      const float ld = local_drift_[static_cast<size_t>(a)], rho = rho_[static_cast<size_t>(a)],
                  da = drift_[static_cast<size_t>(a)];
      for (int64_t i = item.begin; i < item.end; ++i) {
        const float u = std::sqrt(dist_[static_cast<size_t>(i)]) * (1.0f + kBoundMargin);
        const float l = std::min(lb_[static_cast<size_t>(i)] - ld, rho - u - da);
        if (u < l) {
          label_[static_cast<size_t>(i)] = static_cast<uint32_t>(a);
          lb_[static_cast<size_t>(i)] = l;
          continue;
        }
        s.active.push_back(i);
      }
      s.skipped += (item.end - item.begin) - static_cast<int64_t>(s.active.size());
    } else {
      for (int64_t i = item.begin; i < item.end; ++i) s.active.push_back(i);
    }
    const int64_t npts = static_cast<int64_t>(s.active.size());
    if (npts == 0) return;
    const bool brute = !pruning_ || k_ <= kBruteMaxK || filter_all() || box_all();
    // Radius of the shared candidate list: the ball of a high quantile of the points' distances
    // (not the maximum, so one outlier does not blow the list up). Points whose own ball is wider
    // than the list's radius are searched in the tree one by one, seeded with their centroid.
    float list_r2 = -1.0f;  // no shared list
    if (!brute && npts >= kSharedListMinPoints) {
      s.u2.resize(static_cast<size_t>(npts));
      for (int64_t j = 0; j < npts; ++j) s.u2[static_cast<size_t>(j)] = dist_[static_cast<size_t>(s.active[static_cast<size_t>(j)])];
      const size_t q = static_cast<size_t>(static_cast<double>(npts - 1) * kSharedListQuantile);
      std::nth_element(s.u2.begin(), s.u2.begin() + static_cast<std::ptrdiff_t>(q), s.u2.end());
      list_r2 = 4.0f * s.u2[q] * (1.0f + kBallMargin) + kBallTiny;
      s.cand.clear();
      tree_.within(ca, list_r2, s.cand);
      if (static_cast<int64_t>(s.cand.size()) > kSharedListMaxPerPoint * npts) list_r2 = -1.0f;
    }
    s.pending.clear();
    if (!brute && list_r2 < 0.0f) {
      for (int64_t i : s.active) search_point(i, a, s);
      assign_pending_brute(s, true);
      return;
    }
    if (brute) {
      for (int64_t i : s.active) s.pending.push_back(i);
      assign_pending_brute(s, false);
      return;
    }
    std::sort(s.cand.begin(), s.cand.end(), [](const std::pair<float, int32_t>& x, const std::pair<float, int32_t>& y) {
      return x.first < y.first || (x.first == y.first && x.second < y.second);
    });
    const int64_t m = static_cast<int64_t>(s.cand.size());
    const int64_t stride = (m + 7) / 8 * 8;
    s.soa.resize(static_cast<size_t>(stride) * D);
    s.idx.resize(static_cast<size_t>(stride));
    s.cd2.resize(static_cast<size_t>(stride));
    for (int64_t j = 0; j < stride; ++j) {
      const bool real = j < m;
      const int32_t id = real ? s.cand[static_cast<size_t>(j)].second : kNoIndex;
      s.idx[static_cast<size_t>(j)] = id;
      s.cd2[static_cast<size_t>(j)] = real ? s.cand[static_cast<size_t>(j)].first : std::numeric_limits<float>::infinity();
      for (int c = 0; c < D; ++c)
        s.soa[static_cast<size_t>(c * stride + j)] =
            real ? centroids_[static_cast<size_t>(id) * D + c] : std::numeric_limits<float>::quiet_NaN();
    }
    const SoaBlock blk{s.soa.data(), s.idx.data(), s.cd2.data(), stride, stride};
    for (int64_t i : s.active) {
      const float u2 = dist_[static_cast<size_t>(i)];
      const float limit = 4.0f * u2 * (1.0f + kBallMargin) + kBallTiny;
      if (!(limit <= list_r2)) {
        search_point(i, a, s);
        continue;
      }
      float bd = std::numeric_limits<float>::infinity();
      int32_t bi = kNoIndex;
      if (!bounds_) {
        s.evals += scan_block<D>(simd_, pts + i * D, blk, limit, bd, bi);
      } else {
        // The ball (2u) holds the nearest centroid; a lower bound on all the others needs the
        // scan to go on to u + (second best so far), capped at kBoundReach * u. Centroids the scan
        // does not reach are at least sqrt(cd2) - u away (triangle inequality through c_a).
        float sec = std::numeric_limits<float>::infinity();
        int64_t v = scan_block_second<D>(simd_, pts + i * D, blk, limit, bd, bi, sec);
        const float ua = std::sqrt(u2);
        const float reach = std::min(kBoundReach * ua, ua + std::sqrt(sec));
        const float limit2 = std::min(reach * reach * (1.0f + kBallMargin) + kBallTiny, list_r2);
        if (v < stride && s.cd2[static_cast<size_t>(v)] <= limit2) {
          const SoaBlock rest{s.soa.data() + v, s.idx.data() + v, s.cd2.data() + v, stride - v, stride};
          v += scan_block_second<D>(simd_, pts + i * D, rest, limit2, bd, bi, sec);
        }
        s.evals += v;
        const float next = std::min(v < stride ? s.cd2[static_cast<size_t>(v)] : std::numeric_limits<float>::infinity(),
                                    list_r2);
        lb_[static_cast<size_t>(i)] =
            std::min(bound_from_d2(sec), bound_from_d2(next) - ua * (1.0f + kBoundMargin));
      }
      label_[static_cast<size_t>(i)] = static_cast<uint32_t>(bi);
      dist_[static_cast<size_t>(i)] = bd;
    }
    assign_pending_brute(s, true);
  }

  /// After an update (bounds_ only): how far each centroid moved, and per cluster the largest
  /// move among the centroids near it. A split centroid's move is measured from its donor's old
  /// position when that is shorter (it is a copy of the donor); the donor's own points then have
  /// no valid bound to it and are all searched (dirty). Deterministic (per-cluster work only).
  void update_bounds() {
    std::vector<int64_t> root(static_cast<size_t>(k_));
    for (int64_t j = 0; j < k_; ++j) root[static_cast<size_t>(j)] = j;
    auto move = [&](int64_t j, int64_t from) {
      double s2 = 0;
      for (int c = 0; c < D; ++c) {
        const double t = static_cast<double>(centroids_[static_cast<size_t>(j) * D + c]) -
                         static_cast<double>(old_centroids_[static_cast<size_t>(from) * D + c]);
        s2 += t * t;
      }
      return static_cast<float>(std::sqrt(s2) * (1.0 + 1e-6)) + 1e-30f;
    };
    parallel_chunks(threads_, k_, 1024, [&](int64_t b, int64_t e, int) {
      for (int64_t j = b; j < e; ++j) drift_[static_cast<size_t>(j)] = move(j, j);
    });
    std::fill(dirty_.begin(), dirty_.end(), uint8_t{0});
    for (const auto& pr : split_pairs_) {
      const int64_t r = root[static_cast<size_t>(pr.second)];
      root[static_cast<size_t>(pr.first)] = r;
      drift_[static_cast<size_t>(pr.first)] = std::min(drift_[static_cast<size_t>(pr.first)], move(pr.first, r));
      dirty_[static_cast<size_t>(r)] = 1;
    }
    const float global = *std::max_element(drift_.begin(), drift_.end());
    tree_.set_values(drift_.data());
    // rho_[a]: twice a high quantile of the bounds of a's points (a point with bound l and
    // ||x - old c_a|| <= l then gets l back from the far term).
    parallel_chunks(threads_, k_, 64, [&](int64_t b, int64_t e, int w) {
      Scratch& sc = scratch_[static_cast<size_t>(w)];
      for (int64_t a = b; a < e; ++a) {
        const int64_t lo = seg_[static_cast<size_t>(a)], hi = seg_[static_cast<size_t>(a + 1)];
        rho_[static_cast<size_t>(a)] = 0.0f;
        local_drift_[static_cast<size_t>(a)] = global;
        if (lo == hi || dirty_[static_cast<size_t>(a)]) continue;
        sc.u2.assign(lb_.begin() + lo, lb_.begin() + hi);
        const size_t q = static_cast<size_t>(static_cast<double>(hi - lo - 1) * kDriftQuantile);
        std::nth_element(sc.u2.begin(), sc.u2.begin() + static_cast<std::ptrdiff_t>(q), sc.u2.end());
        const float rho = 2.0f * sc.u2[q];
        if (rho > 0.0f && rho < 1e18f) rho_[static_cast<size_t>(a)] = rho;
      }
    });
    // Local drift: the largest move among the other centroids whose new position lies within
    // rho_[a] of c_a's old position (the tree prunes subtrees that cannot raise the maximum).
    parallel_chunks(threads_, k_, 64, [&](int64_t b, int64_t e, int) {
      for (int64_t a = b; a < e; ++a) {
        const float rho = rho_[static_cast<size_t>(a)];
        if (!(rho > 0.0f)) continue;
        local_drift_[static_cast<size_t>(a)] =
            tree_.max_near_box(&old_centroids_[static_cast<size_t>(a) * D], &old_centroids_[static_cast<size_t>(a) * D],
                               rho * (1.0f + 2.0f * kBoundMargin), static_cast<int32_t>(a), 0.0f);
      }
    });
  }

  /// True when brute-force scans take the filtered two-stage kernel (AVX2 + FMA, d >= kFilterMinD).
  bool use_filter() const { return D >= kFilterMinD && simd_ && cpu_has_avx2_fma(); }

  /// True when every point goes straight to the filtered brute force (see kFilterAllMinD). Not with
  /// carried bounds: the tiled scans give no bound, so nothing would ever be skipped.
  bool filter_all() const {
    return use_filter() && !bounds_ && D >= kFilterAllMinD && k_ <= filter_all_max_k(D) &&
           n_ <= k_ * filter_all_max_per_cluster(D);
  }

  /// True when every point goes straight to the box-pruned filtered brute force (box_filter.hpp;
  /// the rule: box_max_per_cluster and kBoxHighD; KMeansOptions::box_pruning overrides it).
  bool box_all() const { return box_first_ || box_rule(); }
  /// The preconditions of the box-pruned scan (box_all()).
  bool box_possible() const {
    return box_mode_ != KMeansBoxPruning::kNever && use_filter() && !bounds_ && pruning_ && k_ > kBruteMaxK;
  }
  /// box_all() for every assignment (box_first_ aside).
  bool box_rule() const {
    if (!box_possible()) return false;
    if (box_mode_ == KMeansBoxPruning::kAlways) return true;
    return (D < kBoxHighD || k_ >= kBoxHighDMinK) && n_ <= k_ * box_max_per_cluster(D);
  }

  /// Brute-force assignment of the sorted points in s.pending (label_ their current cluster a,
  /// dist_ the exact distance to c_a) against all K centroids. With use_filter():
  /// scan_filtered_tile, a tile of kFilterTilePoints points per pass, each seeded with
  /// (dist_, a), so that the filter's threshold is tight from the first block; else the exact
  /// scan_ascending_tile, kTilePoints per pass. Both return the lexicographic minimum of
  /// (fp32 distance, index) over all K centroids bit for bit (the seed is one of them). Clears
  /// s.pending.
  /// `moved_bf` / `moved_all` (assign_run, points whose centroid did not move): scan these
  /// (the moved centroids) instead of all; such points are counted in s.unmoved, not s.brute.
  void assign_pending_brute(Scratch& s, bool count_as_search, const BoxFilter* moved_bf = nullptr,
                            const SoaBlock* moved_all = nullptr) {
    const float* pts = pts_[0].data();
    const int64_t m = static_cast<int64_t>(s.pending.size());
    const bool boxed = box_all();
    const bool filter = boxed || (use_filter() && all_filter_.data != nullptr);  // built where it can be used
    const int tile = filter ? kFilterTilePoints : kTilePoints;
    for (int64_t t = 0; t < m; t += tile) {
      const int64_t np = std::min<int64_t>(tile, m - t);
      const float* xs[kFilterTilePoints];
      float bd[kFilterTilePoints];
      int32_t bi[kFilterTilePoints];
      for (int p = 0; p < tile; ++p) {  // a short last tile repeats its last point
        const int64_t i = s.pending[static_cast<size_t>(t + std::min<int64_t>(p, np - 1))];
        xs[p] = pts + i * D;
        bd[p] = dist_[static_cast<size_t>(i)];
        bi[p] = static_cast<int32_t>(label_[static_cast<size_t>(i)]);
      }
      if (filter) {
        int64_t rc[kFilterTilePoints] = {};
        bool filtered = false;
        int64_t v = 0;  // entries visited by the tile's first np points together
        if (boxed) {
          int64_t vp[kFilterTilePoints] = {};
          scan_box_filtered_tile<D>(simd_, xs, moved_bf ? *moved_bf : box_, moved_all ? *moved_all : all_, bd, bi, rc,
                                    vp, &filtered);
          for (int64_t p = 0; p < np; ++p) v += vp[p];
        } else {
          v = np * scan_filtered_tile<D>(simd_, xs, all_, all_filter_, bd, bi, rc, &filtered);
        }
        int64_t exact = 0;
        for (int64_t p = 0; p < np; ++p) exact += rc[p];
        s.rechecks += exact;
        if (filtered) {
          s.filter_evals += v;
          s.evals += v + exact;
          if (boxed && !moved_bf) s.box += np;
        } else {
          s.evals += v;
        }
      } else {
        s.evals += np * scan_ascending_tile<D>(simd_, xs, all_, bd, bi);
      }
      for (int64_t p = 0; p < np; ++p) {
        const size_t i = static_cast<size_t>(s.pending[static_cast<size_t>(t + p)]);
        label_[i] = static_cast<uint32_t>(bi[p]);
        dist_[i] = bd[p];
        if (bounds_) lb_[i] = 0.0f;  // no bound from the tiled scan: searched again next time
      }
    }
    if (!moved_bf) s.brute += m;
    if (count_as_search) s.tree_points += m;
    s.pending.clear();
  }

  /// Exact tree search for sorted point i, seeded with its current cluster a; or, where a
  /// brute-force scan is cheaper, queues i on s.pending for assign_pending_brute.
  void search_point(int64_t i, int64_t a, Scratch& s) {
    float bd = dist_[static_cast<size_t>(i)];
    int32_t bi = static_cast<int32_t>(a);
    if (D >= (use_filter() ? kTreeMaxDFilter : kTreeMaxD) && k_ < kTreeMinKHighD) {  // the SIMD brute-force scan is cheaper
      s.pending.push_back(i);  // done in tiles by assign_pending_brute at the end of the piece
      return;
    }
    if (bounds_) {
      float sec = std::numeric_limits<float>::infinity();
      s.evals += tree_.nearest(simd_, &pts_[0][static_cast<size_t>(i) * D], bd, bi, &sec);
      lb_[static_cast<size_t>(i)] = bound_from_d2(sec);
    } else {
      s.evals += tree_.nearest(simd_, &pts_[0][static_cast<size_t>(i) * D], bd, bi);
    }
    label_[static_cast<size_t>(i)] = static_cast<uint32_t>(bi);
    dist_[static_cast<size_t>(i)] = bd;
    ++s.tree_points;
  }

  int64_t n_, k_;
  int threads_;
  bool pruning_, simd_, bounds_;
  KMeansBoxPruning box_mode_;
  // Carried bounds (only with bounds_). lb_[i]: lower bound on the distance (not squared) from
  // sorted point i to every centroid other than its label, at the centroids of the last
  // assignment. After an update, a point of cluster a keeps its label without a search when
  //   ||x - c_a|| < min(lb - local_drift_[a], rho_[a] - ||x - c_a|| - drift_[a]):
  // centroids whose new position lies within rho_[a] of c_a's old one moved by at most
  // local_drift_[a], and every other one is farther than rho_[a] - ||x - old c_a||.
  uninit_vector<float> lb_;         // (N)
  std::vector<float> drift_;        // (K) upper bound on how far each centroid moved
  std::vector<float> local_drift_;  // (K)
  std::vector<float> rho_;          // (K)
  std::vector<uint8_t> dirty_;      // (K) 1: the points of this cluster are all searched
  std::vector<float> old_centroids_;  // (K, D) the centroids before the last update
  std::vector<std::pair<int64_t, int64_t>> split_pairs_;  // (empty, donor) of the last update
  uninit_vector<float> pts_[2];     // (N, D) points in cluster order; [1] is the sort target
  uninit_vector<uint32_t> ids_[2];  // (N) input index of each sorted point
  bool weighted_ = false;           // KMeansOptions::point_weights given (start())
  uninit_vector<float> w_[2];       // (N) weight of each sorted point, only when weighted_; [1] sort target
  uninit_vector<uint32_t> label_;   // (N) label of each sorted point, last assignment
  uninit_vector<float> dist_;       // (N) fp32 squared distance to that label
  std::vector<int64_t> seg_;        // (K+1) segment offsets of each cluster in sorted order
  std::vector<int64_t> counts_;     // (K)
  std::vector<float> centroids_;    // (K, D)
  CentroidTree<D> tree_;
  std::vector<float> all_soa_;
  std::vector<int32_t> all_idx_;
  SoaBlock all_;
  std::vector<float> all_filter_buf_;
  FilterBlock all_filter_;  // all_ for the filtered brute force
  bool box_first_ = false;  // the first assignment takes the box path though later ones do not (start())
  BoxFilter box_;           // the centroids for the box-pruned filtered brute force (box_all())
  // find_moved(): the centroids the last update changed (box mode; moved_valid_: not all of them).
  bool moved_valid_ = false;
  std::vector<uint8_t> moved_;     // (K) 1: changed
  std::vector<int32_t> moved_ids_;  // ascending
  BoxFilter moved_box_;             // the changed centroids only (original indices)
  std::vector<float> moved_soa_;
  std::vector<int32_t> moved_idx_;
  SoaBlock moved_all_;              // the same, ascending (the exact fallback)
  std::vector<Item> items_;
  std::vector<Scratch> scratch_;
};

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
