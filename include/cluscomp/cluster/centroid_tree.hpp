#pragma once
/// A k-d tree over the K centroids of one k-means iteration (rebuilt every iteration, O(K log K)).
/// It answers two questions exactly enough for the ball rule: "which centroids lie within radius r
/// of a centroid" (a superset is fine, a miss is not) and "a good first guess for a point's nearest
/// centroid" (any answer is fine; a better one prunes more).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "cluscomp/cluster/distance_kernels.hpp"
#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

template <int D>
class CentroidTree {
 public:
  static constexpr int kLeafSize = 8;

  /// Builds over `k` centroids (k, D) row-major. Deterministic: median splits on the widest
  /// dimension with std::nth_element over (coordinate, id), a strict total order.
  void build(const float* centroids, int64_t k) {
    k_ = k;
    ids_.resize(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) ids_[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    coords_.resize(static_cast<size_t>(k) * D);
    nodes_.clear();
    nodes_.reserve(static_cast<size_t>(2 * (k / kLeafSize + 1)));
    src_ = centroids;
    build_node(0, k);
    for (int64_t i = 0; i < k; ++i)
      for (int c = 0; c < D; ++c)
        coords_[static_cast<size_t>(i) * D + c] = centroids[static_cast<size_t>(ids_[static_cast<size_t>(i)]) * D + c];
    src_ = nullptr;
    // Leaf blocks in SoA form (see SoaBlock), so that leaf scans use the SIMD kernel.
    leaf_soa_.clear();
    leaf_idx_.clear();
    for (Node& n : nodes_) {
      if (n.left >= 0) continue;
      const int64_t cnt = n.end - n.begin, stride = (cnt + 7) / 8 * 8;
      n.soa_offset = static_cast<int64_t>(leaf_idx_.size());
      n.stride = stride;
      leaf_idx_.resize(leaf_idx_.size() + static_cast<size_t>(stride), kNoIndex);
      leaf_soa_.resize(leaf_soa_.size() + static_cast<size_t>(stride) * D, std::numeric_limits<float>::quiet_NaN());
      for (int64_t m = 0; m < cnt; ++m) {
        const size_t src = static_cast<size_t>(n.begin + m);
        leaf_idx_[static_cast<size_t>(n.soa_offset + m)] = ids_[src];
        for (int c = 0; c < D; ++c)
          leaf_soa_[static_cast<size_t>(n.soa_offset * D + c * stride + m)] = coords_[src * D + c];
      }
    }
  }

  /// Exact nearest centroid of q by depth-first branch and bound, starting from a known candidate
  /// (best_d, best_i) (best_d = its fp32 distance). Visits every leaf whose box may hold a
  /// centroid at fp32 distance <= best_d (boxes tested with a relative margin), and keeps the
  /// lexicographic minimum (distance, index): the same answer as a brute-force scan. Returns the
  /// number of distances evaluated.
  ///
  /// With `second` not null, also lowers *second to a lower bound (fp32, up to the box test's
  /// rounding) on the squared distance from q to every centroid other than the final best: the
  /// smallest of the other visited distances and of the pruned boxes' lower bounds.
  int64_t nearest(bool use_avx2, const float* q, float& best_d, int32_t& best_i, float* second = nullptr) const {
    if (k_ == 0) return 0;
    int64_t evals = 0;
    struct Entry {
      int32_t node;
      float lb;
    };
    Entry stack[128];
    int sp = 0;
    stack[sp++] = Entry{0, 0.0f};
    while (sp > 0) {
      const Entry en = stack[--sp];
      if (en.lb > best_d * 1.0001f + 1e-30f) {
        if (second && en.lb < *second) *second = en.lb;
        continue;
      }
      const Node& n = nodes_[static_cast<size_t>(en.node)];
      if (n.left < 0) {
        const SoaBlock blk{&leaf_soa_[static_cast<size_t>(n.soa_offset * D)], &leaf_idx_[static_cast<size_t>(n.soa_offset)],
                           nullptr, n.stride, n.stride};
        if (second)
          evals += scan_block_second<D>(use_avx2, q, blk, 0.0f, best_d, best_i, *second);
        else
          evals += scan_block<D>(use_avx2, q, blk, 0.0f, best_d, best_i);
        continue;
      }
      const float lbl = box_lower_bound(nodes_[static_cast<size_t>(n.left)], q);
      const float lbr = box_lower_bound(nodes_[static_cast<size_t>(n.right)], q);
      // Push the farther child first so the nearer one is explored first.
      if (lbl <= lbr) {
        stack[sp++] = Entry{n.right, lbr};
        stack[sp++] = Entry{n.left, lbl};
      } else {
        stack[sp++] = Entry{n.left, lbl};
        stack[sp++] = Entry{n.right, lbr};
      }
    }
    return evals;
  }

  /// Appends (squared distance, id) for every centroid whose squared distance to q (fp32, the
  /// kernels' evaluation) is <= r2, plus possibly a few slightly farther ones (boxes are tested
  /// with a relative margin so that rounding never drops a centroid).
  void within(const float* q, float r2, std::vector<std::pair<float, int32_t>>& out) const {
    if (k_ == 0) return;
    const float r2_box = r2 * 1.0001f + 1e-30f;
    int32_t stack[128];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      const Node& n = nodes_[static_cast<size_t>(stack[--sp])];
      float lb = 0.0f;
      for (int c = 0; c < D; ++c) {
        const float lo = n.lo[c] - q[c], hi = q[c] - n.hi[c];
        const float g = lo > 0.0f ? lo : (hi > 0.0f ? hi : 0.0f);
        lb += g * g;
      }
      if (lb > r2_box) continue;
      if (n.left < 0) {
        for (int32_t i = n.begin; i < n.end; ++i) {
          const float d = squared_distance<D>(q, &coords_[static_cast<size_t>(i) * D]);
          if (d <= r2) out.emplace_back(d, ids_[static_cast<size_t>(i)]);
        }
      } else {
        stack[sp++] = n.left;
        stack[sp++] = n.right;
      }
    }
  }

  /// Attaches one value per centroid (by centroid id) and the maximum of each subtree, for
  /// max_within(). O(K); call after build().
  void set_values(const float* by_id) {
    values_.resize(static_cast<size_t>(k_));
    for (int64_t i = 0; i < k_; ++i) values_[static_cast<size_t>(i)] = by_id[ids_[static_cast<size_t>(i)]];
    node_max_.assign(nodes_.size(), 0.0f);
    // Children are created after their parent, so a reverse sweep sees them first.
    for (size_t ni = nodes_.size(); ni-- > 0;) {
      const Node& n = nodes_[ni];
      float m = -std::numeric_limits<float>::infinity();
      if (n.left < 0) {
        for (int32_t i = n.begin; i < n.end; ++i) m = std::max(m, values_[static_cast<size_t>(i)]);
      } else {
        m = std::max(node_max_[static_cast<size_t>(n.left)], node_max_[static_cast<size_t>(n.right)]);
      }
      node_max_[ni] = m;
    }
  }

  /// An upper bound on the largest value (set_values) among the centroids within distance r of
  /// the box [lo, hi] (squared gap <= r * r): the exact maximum over a superset of them (tested
  /// with a relative margin). Subtrees whose maximum cannot raise the answer are not visited, so
  /// this is cheap when few centroids carry large values. Returns `floor` when none exceeds it.
  /// Centroid `skip` (an id; -1 for none) is left out.
  float max_near_box(const float* lo, const float* hi, float r, int32_t skip, float floor) const {
    if (k_ == 0) return floor;
    const float r2_box = r * r * 1.0004f + 1e-30f;
    auto gap2 = [&](const float* nlo, const float* nhi) {
      float g2 = 0.0f;
      for (int c = 0; c < D; ++c) {
        const float a = nlo[c] - hi[c], b = lo[c] - nhi[c];
        const float g = a > 0.0f ? a : (b > 0.0f ? b : 0.0f);
        g2 += g * g;
      }
      return g2;
    };
    float best = floor;
    int32_t stack[128];
    int sp = 0;
    stack[sp++] = 0;
    while (sp > 0) {
      const int32_t ni = stack[--sp];
      if (!(node_max_[static_cast<size_t>(ni)] > best)) continue;
      const Node& n = nodes_[static_cast<size_t>(ni)];
      if (gap2(n.lo, n.hi) > r2_box) continue;
      if (n.left < 0) {
        for (int32_t i = n.begin; i < n.end; ++i) {
          if (!(values_[static_cast<size_t>(i)] > best) || ids_[static_cast<size_t>(i)] == skip) continue;
          const float* p = &coords_[static_cast<size_t>(i) * D];
          if (gap2(p, p) <= r2_box) best = values_[static_cast<size_t>(i)];
        }
      } else {
        stack[sp++] = n.left;
        stack[sp++] = n.right;
      }
    }
    return best;
  }

 private:
  struct Node {
    float lo[D], hi[D];
    int32_t begin, end;
    int32_t left, right;  // -1 for a leaf
    int64_t soa_offset = 0, stride = 0;  // leaves: their block in leaf_soa_/leaf_idx_
  };

  static float box_lower_bound(const Node& n, const float* q) {
    float lb = 0.0f;
    for (int c = 0; c < D; ++c) {
      const float lo = n.lo[c] - q[c], hi = q[c] - n.hi[c];
      const float g = lo > 0.0f ? lo : (hi > 0.0f ? hi : 0.0f);
      lb += g * g;
    }
    return lb;
  }

  int32_t build_node(int64_t b, int64_t e) {
    const int32_t id = static_cast<int32_t>(nodes_.size());
    nodes_.emplace_back();
    Node n{};
    n.begin = static_cast<int32_t>(b);
    n.end = static_cast<int32_t>(e);
    for (int c = 0; c < D; ++c) {
      n.lo[c] = std::numeric_limits<float>::infinity();
      n.hi[c] = -std::numeric_limits<float>::infinity();
    }
    for (int64_t i = b; i < e; ++i) {
      const float* p = src_ + static_cast<size_t>(ids_[static_cast<size_t>(i)]) * D;
      for (int c = 0; c < D; ++c) {
        n.lo[c] = std::min(n.lo[c], p[c]);
        n.hi[c] = std::max(n.hi[c], p[c]);
      }
    }
    n.left = n.right = -1;
    int dim = 0;
    for (int c = 1; c < D; ++c)
      if (n.hi[c] - n.lo[c] > n.hi[dim] - n.lo[dim]) dim = c;
    if (e - b > kLeafSize && n.hi[dim] > n.lo[dim]) {
      const int64_t mid = b + (e - b) / 2;
      const float* src = src_;
      auto less = [src, dim](int32_t x, int32_t y) {
        const float a = src[static_cast<size_t>(x) * D + dim], c = src[static_cast<size_t>(y) * D + dim];
        return a < c || (a == c && x < y);
      };
      std::nth_element(ids_.begin() + b, ids_.begin() + mid, ids_.begin() + e, less);
      nodes_[static_cast<size_t>(id)] = n;
      const int32_t l = build_node(b, mid);
      const int32_t r = build_node(mid, e);
      nodes_[static_cast<size_t>(id)].left = l;
      nodes_[static_cast<size_t>(id)].right = r;
    } else {
      nodes_[static_cast<size_t>(id)] = n;
    }
    return id;
  }

  int64_t k_ = 0;
  std::vector<int32_t> ids_;   // (k) centroid ids in tree order
  std::vector<float> coords_;  // (k, D) coordinates in tree order
  std::vector<Node> nodes_;
  std::vector<float> leaf_soa_;
  std::vector<int32_t> leaf_idx_;
  const float* src_ = nullptr;
  std::vector<float> values_;    // (k) set_values() in tree order
  std::vector<float> node_max_;  // (nodes) max of values_ over each subtree
};

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
