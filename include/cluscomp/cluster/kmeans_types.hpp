#pragma once
/// The k-means vocabulary shared by every backend: options, progress, results and statistics
/// (the algorithm: cluster/lloyd_engine.hpp; the entry points: cluster/kmeans.hpp).

#include <cstdint>
#include <functional>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"
#include "cluscomp/core/view.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// How the K initial centroids are chosen. Every method returns K distinct points of the input.
/// All are unweighted: KMeansOptions::point_weights does not change the initial centroids.
enum class KMeansInit {
  kRandomPermutation,  // the reference's: first K distinct points of a seeded permutation
  kKMeansPlusPlus,     // D^2 sampling (Arthur & Vassilvitskii); O(N K d), for small problems
  kKMeansParallel,     // k-means|| (Bahmani et al.): 5 rounds of 2K-oversampling, then weighted
                       // k-means++ on the candidates; O(N * candidates) per round, small problems
};

/// What the progress callback sees after each iteration's assignment step.
struct KMeansProgress {
  int iteration = 0;         // 0-based
  double objective = 0.0;    // (weighted) sum of squared distances to the assigned centroids (see KMeansResult)
  double elapsed_s = 0.0;    // since kmeans() was called
  MatrixView<const float> centroids;  // (K, d): the centroids this assignment used
  const uint32_t* codes = nullptr;    // (N) in input order, only with KMeansOptions::report_codes
};

/// Return false to cancel; kmeans() then returns StatusCode::kCancelled.
using KMeansCallback = std::function<bool(const KMeansProgress&)>;

/// See KMeansOptions::box_pruning.
enum class KMeansBoxPruning { kAuto, kNever, kAlways };

struct KMeansOptions {
  int64_t k = 0;
  int iterations = 20;     // Lloyd updates; a final reassignment always follows
  double tolerance = 0.0;  // stop when (obj[t-1] - obj[t]) <= tolerance * obj[t-1]; 0 disables
  uint64_t seed = 1234;
  KMeansInit init = KMeansInit::kRandomPermutation;
  int threads = 0;  // 0: std::thread::hardware_concurrency()
  KMeansCallback progress;
  bool report_codes = false;  // pass input-order codes to the callback (one O(N) pass each time)
  MatrixView<const float> initial_centroids;  // (K, d); when set, used instead of `init`
  bool use_pruning = true;  // false: brute-force assignment of every point (same answer, slower)
  bool use_simd = true;     // false: portable kernel only (same answer bit for bit)
  /// Hamerly-style bounds carried across iterations: same answer bit for bit, fewer point
  /// searches, one extra float per point (4N bytes; 235 MB at N = 58.7M) and an O(K log K)
  /// local-drift pass per update. Off by default: on this CPU path the assignment's cost is the
  /// per-cluster candidate lists, not the per-point scans the bounds skip, so it measured slower
  /// (docs/benchmarks.md, kmeans-vs-faiss). Ignored when use_pruning is false.
  bool use_bounds = false;
  /// Box-pruned filtered brute force (cluster/box_filter.hpp): kAuto takes it where it measured
  /// faster (the rule next to box_max_per_cluster in this file), kNever never, kAlways whenever it can run
  /// (AVX2 + FMA, use_pruning, no use_bounds, K > 64). Same answer bit for bit in every case.
  KMeansBoxPruning box_pruning = KMeansBoxPruning::kAuto;
  /// Optional per-point weights ("activation-aware" clustering): N weights in input order (the
  /// order of the points), each finite and >= 0 (else kInvalidArgument naming the index). Point i
  /// then counts w_i times its squared distance in the objective, and a centroid is the weighted
  /// mean sum_i w_i x_i / sum_i w_i of its points (summed in double in the same fixed order as the
  /// unweighted mean); a non-empty cluster whose weights sum to 0 takes the unweighted mean of its
  /// points. Assignments are unaffected (a nonnegative factor does not change the nearest
  /// centroid); the initialisation (`init`) and the empty-cluster split rule (point counts) stay
  /// unweighted. nullptr: every weight is 1, the unweighted algorithm bit for bit. The array must
  /// stay valid during the call; it is copied (in cluster order, + 8N bytes).
  const float* point_weights = nullptr;
  /// Where the clustering runs (core/device.hpp). kCuda runs the Lloyd iterations on the GPU
  /// (cuda/kmeans_gpu.cuh; needs cluscomp::kernels linked) with the same answers; where the build
  /// or the machine lacks it, a Status says which (never a CPU fallback). Under kCuda, use_pruning,
  /// use_simd, use_bounds, box_pruning and threads only shape the host-side preparation.
  Device device = Device::kCpu;
};

/// Where the time went and how much pruning saved.
struct KMeansStats {
  int64_t distance_evaluations = 0;  // point-centroid pairs evaluated, all assignments
  int64_t brute_force_points = 0;    // point assignments that scanned all K centroids
  int64_t tree_search_points = 0;    // point assignments by a per-point k-d tree search
  int64_t assignments = 0;           // point assignments (N per assignment step)
  int64_t splits = 0;                // empty clusters re-seeded by the split rule
  int64_t bound_skipped_points = 0;  // point assignments certified by the carried bounds alone
  /// Of distance_evaluations: point-centroid pairs evaluated only by the filtered brute force's
  /// approximate first stage (GEMM form, one FMA per coordinate; scan_filtered_tile). The rest
  /// are exact-kernel evaluations, among them filter_rechecks.
  int64_t filter_evaluations = 0;
  int64_t filter_rechecks = 0;  // of those exact evaluations: the filter's second-stage re-checks
  /// Of brute_force_points: assignments by the box-pruned filtered scan (KMeansOptions::box_pruning),
  /// which runs the first stage only on the centroid groups whose bounding box is within reach.
  int64_t box_points = 0;
  /// Point assignments (box-pruned path) whose centroid did not move in the last update: the
  /// previous assignment was exact and no unmoved centroid got closer, so only the centroids that
  /// moved were scanned (none when nothing moved). Not in brute_force_points / box_points.
  int64_t unmoved_points = 0;
  /// The iteration whose assignment reproduced the previous labels after an update that split no
  /// cluster, or -1. From there on Lloyd is at a fixed point: the next update would compute the
  /// same centroids bit for bit (same points in the same order per cluster, no empty cluster), so
  /// every later assignment would repeat this one. Those iterations are reported (same objective,
  /// progress callback) but not recomputed, and are not counted in `assignments`.
  int fixed_point_iteration = -1;
  double init_s = 0, assign_s = 0, sort_s = 0, update_s = 0;
};

struct KMeansResult {
  int64_t k = 0, d = 0, n = 0;
  std::vector<float> centroids;   // (K, d) row-major, after the last update
  std::vector<uint32_t> codes;    // (N) input order: nearest centroid (final reassignment)
  std::vector<int64_t> counts;    // (K) points per code
  /// objective[t]: sum over points of the squared distance to the centroid assigned in iteration
  /// t, against the centroids that iteration started from (faiss's semantics). Distances are fp32,
  /// the sum is double over fixed chunks (deterministic). With KMeansOptions::point_weights it is
  /// sum_i w_i * dist_i (the fp32 distance times its weight, product and sum in double, same
  /// chunks); without, every w_i is 1.
  std::vector<double> objective;
  double final_objective = 0.0;  // the same (weighted) sum for `codes` against `centroids`
  int iterations_run = 0;        // Lloyd updates performed
  bool cancelled = false;
  KMeansStats stats;
};

/// An exact assignment of points (N, d) to given centroids (K, d), and its objective.
struct KMeansAssignment {
  std::vector<uint32_t> codes;  // (N) nearest centroid, lowest index among equal fp32 distances
  double objective = 0.0;       // (weighted) sum of squared distances to `codes`, evaluated in double
};

CLUSCOMP_NAMESPACE_END
