#pragma once
/// Token embedding: y = table[ids]. Conventions: common.hpp.

#include <algorithm>
#include <cstdint>
#include <string>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// Saved by embedding_forward: the ids (non-owning).
struct EmbeddingCtx {
  const int32_t* ids = nullptr;
  int64_t n = 0, vocab = 0, dim = 0;
};

/// y (n, dim) = table[ids] (exact copies). Error(kOutOfRange) naming an id outside [0, vocab).
template <class T>
EmbeddingCtx embedding_forward(const T* table, int64_t vocab, int64_t dim, const int32_t* ids, int64_t n, T* y) {
  detail::require(vocab > 0 && dim > 0 && n >= 0 && table && (n == 0 || (ids && y)), "embedding_forward",
                  "bad extents or null pointer (vocab " + std::to_string(vocab) + ", dim " + std::to_string(dim) + ")");
  for (int64_t r = 0; r < n; ++r) {
    if (ids[r] < 0 || ids[r] >= vocab)
      throw Error(StatusCode::kOutOfRange, "embedding_forward: id " + std::to_string(ids[r]) + " at row " +
                                               std::to_string(r) + " is outside the vocabulary of " +
                                               std::to_string(vocab));
    std::copy(table + static_cast<int64_t>(ids[r]) * dim, table + (static_cast<int64_t>(ids[r]) + 1) * dim, y + r * dim);
  }
  return EmbeddingCtx{ids, n, vocab, dim};
}

/// dtable[ids[r]] += dy[r] for every row r, in row order (a repeated id sums its rows in order).
/// Parallel over column blocks; deterministic.
template <class T>
void embedding_backward(const EmbeddingCtx& c, const T* dy, T* dtable, ThreadPool* pool = nullptr) {
  if (c.n == 0) return;
  detail::require(c.ids && dy && dtable, "embedding_backward", "null pointer");
  constexpr int64_t kCols = 64;
  parallel_for(c.n * c.dim >= (int64_t{1} << 15) ? pool : nullptr, (c.dim + kCols - 1) / kCols, [&](int64_t t) {
    const int64_t j0 = t * kCols, j1 = std::min(c.dim, j0 + kCols);
    for (int64_t r = 0; r < c.n; ++r) {
      if (c.ids[r] < 0 || c.ids[r] >= c.vocab)
        detail::require(false, "embedding_backward", "id " + std::to_string(c.ids[r]) + " is outside the vocabulary");
      T* dst = dtable + static_cast<int64_t>(c.ids[r]) * c.dim;
      for (int64_t j = j0; j < j1; ++j) dst[j] += dy[r * c.dim + j];
    }
  });
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
