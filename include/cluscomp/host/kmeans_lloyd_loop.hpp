#pragma once
/// The control flow of a Lloyd k-means run, shared by every backend: when to assign, when a run
/// is at a fixed point, when to stop (iterations, tolerance, cancellation), and when to update and
/// split. The CPU engine (cluster/kmeans.hpp) and the GPU driver (cuda/kmeans_gpu.cuh) both run
/// this loop, so they take the same decisions from the same objectives. Plain C++17, host only.

#include <cstdint>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/host/kmeans_split.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

/// What lloyd_loop decided; the numbers KMeansResult / KMeansStats report.
struct LloydLoopResult {
  std::vector<double> objective;  // objective[t]: of the assignment of iteration t
  double final_objective = 0.0;   // of the last assignment (the final reassignment, or where it stopped)
  int iterations_run = 0;         // updates performed (or reported at a fixed point)
  int fixed_point_iteration = -1; // see KMeansStats::fixed_point_iteration
  int64_t splits = 0;             // empty clusters split
  bool cancelled = false;         // report() returned false
};

/// Runs `iterations` Lloyd updates and a final reassignment. Ops provides:
///   double assign()            exact assignment to the current centroids; returns the objective
///   bool labels_unchanged()    whether that assignment kept every point in the cluster it was
///                              sorted under (asked only after an update that split nothing)
///   bool report(int, double)   after each iteration's assignment; false cancels the run
///   int64_t update(uint64_t)   sort by label, centroid means, split with that seed; returns splits
/// An assignment that repeats the sorted labels after an update without splits is a fixed point:
/// the next update would give the same centroids bit for bit, so later iterations are reported
/// with the same objective and nothing is recomputed.
template <class Ops>
void lloyd_loop(Ops& ops, int iterations, double tolerance, uint64_t seed, LloydLoopResult& r) {
  int64_t last_splits = -1;  // splits of the last update (-1: none yet)
  bool fixed = false;
  double obj = 0;
  for (int it = 0;; ++it) {
    if (!fixed) {
      obj = ops.assign();
      if (last_splits == 0 && ops.labels_unchanged()) {
        fixed = true;
        r.fixed_point_iteration = it;
      }
    }
    if (it == iterations) {  // final reassignment
      r.final_objective = obj;
      break;
    }
    r.objective.push_back(obj);
    if (!ops.report(it, obj)) {
      r.cancelled = true;
      r.final_objective = obj;
      break;
    }
    if (tolerance > 0.0 && it > 0) {
      const double prev = r.objective[static_cast<size_t>(it - 1)];
      if (prev - obj <= tolerance * prev) {
        r.final_objective = obj;
        break;
      }
    }
    if (!fixed) {
      last_splits = ops.update(split_seed(seed, it));
      r.splits += last_splits;
    }
    r.iterations_run = it + 1;
  }
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
