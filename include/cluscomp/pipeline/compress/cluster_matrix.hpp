#pragma once
/// One matrix clustered (CLUSCOMP.md §1) and its error. Part of pipeline/compress.hpp.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/cluster/weight_vectors.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/pipeline/compress/options.hpp"

CLUSCOMP_NAMESPACE_BEGIN

namespace compress_detail {
/// The compress pipeline's device check, before any work: the device must have a k-means backend
/// here (everything else in compress runs on the CPU).
inline Status compress_backend_status(Device device) {
  const Status s = kmeans_backend_status(device);
  if (s.ok()) return s;
  return Status(s.code(), "compress: " + s.message());
}
}  // namespace compress_detail

/// Clusters W (out, in) row-major with settings `c`: per codebook s, exact k-means (kmeans.hpp;
/// `iterations` Lloyd updates, seed compress_detail::matrix_seed(seed, name, s)) of the d-vectors
/// of its input rows; centroids are then rounded to the storage dtype (RNE) and the codes are the
/// k-means codes (against the fp32 centroids). Deterministic for any thread count. `on_iteration`
/// (may be empty) sees each k-means iteration; returning false cancels (Error kCancelled).
/// Throws Error naming `name` when k-means refuses (e.g. K above the number of distinct vectors).
/// `column_weight` (empty, or (in) values >= 0): activation-aware clustering, every d-vector of
/// input column i weighted by column_weight[i] in the k-means (KMeansOptions::point_weights).
/// `device`: where the k-means runs (KMeansOptions::device).
inline CodebookTensor cluster_matrix(const std::vector<float>& w, int64_t out, int64_t in, const ClusterSettings& c,
                                     const std::string& name, int iterations, uint64_t seed, int threads,
                                     const std::function<bool(int s, int iteration)>& on_iteration = {},
                                     const std::vector<float>& column_weight = {}, Device device = Device::kCpu) {
  CodebookShape shape;
  shape.out = out;
  shape.in = in;
  shape.d = c.d;
  shape.k = c.k;
  shape.num_codebooks = c.num_codebooks;
  shape.code_bits = c.code_bits;
  shape.centroid_dtype = c.centroid_dtype;
  const Status sv = shape.validate();
  if (!sv.ok()) throw Error(sv.code(), name + ": " + sv.message());
  if (static_cast<int64_t>(w.size()) != out * in)
    throw Error(StatusCode::kInvalidArgument, name + ": " + std::to_string(w.size()) + " values for (" +
                                                  std::to_string(out) + ", " + std::to_string(in) + ")");
  if (!column_weight.empty() && static_cast<int64_t>(column_weight.size()) != in)
    throw Error(StatusCode::kInvalidArgument, name + ": " + std::to_string(column_weight.size()) +
                                                  " column weights for " + std::to_string(in) + " input columns");
  const std::vector<float> vec = weight_vectors<float>(make_matrix_view(w.data(), out, in), c.d);  // (in*out_pad/d, d)
  CodebookTensor t(shape);
  const int64_t per_row = shape.vectors_per_row();
  std::vector<uint32_t> codes(static_cast<size_t>(shape.num_vectors()));
  std::vector<float> point_weight;  // (num_vectors): the weight of each vector's input column
  if (!column_weight.empty()) {
    point_weight.resize(codes.size());
    for (size_t v = 0; v < point_weight.size(); ++v)
      point_weight[v] = column_weight[v / static_cast<size_t>(per_row)];
  }
  for (int s = 0; s < c.num_codebooks; ++s) {
    const int64_t r0 = codebook_row_begin(s, c.num_codebooks, in), r1 = codebook_row_begin(s + 1, c.num_codebooks, in);
    const int64_t v0 = r0 * per_row, n = (r1 - r0) * per_row;
    KMeansOptions ko;
    ko.k = c.k;
    ko.iterations = iterations;
    ko.seed = compress_detail::matrix_seed(seed, name, s);
    ko.threads = threads;
    ko.device = device;  // the same answer on either backend (cluster/kmeans.hpp)
    if (!point_weight.empty()) ko.point_weights = point_weight.data() + v0;
    if (on_iteration) ko.progress = [&](const KMeansProgress& p) { return on_iteration(s, p.iteration); };
    KMeansResult r;
    const Status st = kmeans(MatrixView<const float>{vec.data() + v0 * c.d, n, c.d, c.d, 1}, ko, &r);
    if (!st.ok())
      throw Error(st.code(), name + (c.num_codebooks > 1 ? " codebook " + std::to_string(s) : std::string()) +
                                 ": k-means (d = " + std::to_string(c.d) + ", K = " + std::to_string(c.k) +
                                 ", " + std::to_string(n) + " vectors): " + st.message());
    for (int64_t kk = 0; kk < c.k; ++kk)
      for (int e = 0; e < c.d; ++e) t.set_centroid(s, kk, e, r.centroids[static_cast<size_t>(kk * c.d + e)]);
    std::copy(r.codes.begin(), r.codes.end(), codes.begin() + v0);
  }
  throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

/// ||W - decode(t)||_F^2 in double (the stored, dtype-rounded centroids); with `column_weight`
/// ((in) values) every input column's squared error is multiplied by its weight.
inline double codebook_sq_error(const CodebookTensor& t, const std::vector<float>& w,
                                const std::vector<float>& column_weight = {}) {
  const CodebookShape& s = t.shape();
  const std::vector<uint32_t> codes = t.codes();
  const int64_t per_row = s.vectors_per_row();
  double e = 0;
  for (int64_t i = 0; i < s.in; ++i) {
    const int64_t cb = codebook_of_row(i, s.num_codebooks, s.in);
    const bool weighted = !column_weight.empty();
    double ei = 0;  // weighted: this column's error, scaled once (unweighted sums straight into e)
    double& acc = weighted ? ei : e;
    for (int64_t o = 0; o < s.out; ++o) {
      const uint32_t c = codes[static_cast<size_t>(i * per_row + o / s.d)];
      const double diff = static_cast<double>(w[static_cast<size_t>(o * s.in + i)]) -
                          t.centroid(cb, c, static_cast<int>(o % s.d));
      acc += diff * diff;
    }
    if (weighted) e += ei * static_cast<double>(column_weight[static_cast<size_t>(i)]);
  }
  return e;
}

CLUSCOMP_NAMESPACE_END
