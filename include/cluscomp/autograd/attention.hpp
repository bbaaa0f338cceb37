#pragma once
/// Causal grouped-query attention over positions 0..n-1 (optionally a sliding window).
/// Conventions: common.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/gemm.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/ops/attention.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace autograd {

/// Extents of one attention call. q is (n, heads*head_dim), k and v (n, kv_heads*head_dim),
/// out (n, heads*head_dim), all contiguous; query head h reads kv head h / (heads/kv_heads).
struct AttentionShape {
  int64_t n = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t window = 0;  // sliding window in keys (0: full causal)
  float scale = 0.0f;  // 0: 1/sqrt(head_dim) rounded to fp32, as the runtime
};

/// Saved by attention_forward: the inputs (non-owning), no probabilities. The backward recomputes
/// the scores and the softmax from q and k (activation memory O(n * heads), not O(n^2 * heads)).
template <class T>
struct AttentionCtx {
  AttentionShape shape;
  const T* q = nullptr;
  const T* k = nullptr;
  const T* v = nullptr;
};

namespace detail {

inline AttentionShape checked_attention_shape(AttentionShape s, const char* op) {
  require(s.n >= 0 && s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0 && s.window >= 0, op,
          "bad extents (n " + std::to_string(s.n) + ", heads " + std::to_string(s.heads) + ", kv heads " +
              std::to_string(s.kv_heads) + ", head_dim " + std::to_string(s.head_dim) + ")");
  require(s.heads % s.kv_heads == 0, op,
          "kv heads " + std::to_string(s.kv_heads) + " do not divide heads " + std::to_string(s.heads));
  if (s.scale == 0.0f) s.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  return s;
}

inline int64_t first_key(const AttentionShape& s, int64_t pos) {
  return s.window > 0 ? std::max<int64_t>(0, pos - s.window + 1) : 0;
}

inline constexpr int64_t kAttnBlock = 16;  // queries (pass A) or keys (pass B) per task

/// y (m, n) = a (m, hd) . b (n, hd)^T (contiguous y) for the attention backward's score tiles.
/// Element (i, j) is a[i] . b[j] with the same bits as b[j] . a[i] (float: one fused multiply-add
/// chain over hd by gemm_f32, whose products commute; double: gemm_nt), so pass B rebuilds pass
/// A's scores exactly.
template <class T>
void attention_scores(const T* a, int64_t lda, const T* b, int64_t ldb, T* y, int64_t m, int64_t n, int64_t hd) {
  if constexpr (std::is_same_v<T, float>)
    gemm_f32<false, true>(m, n, hd, a, lda, b, ldb, y, n, false, nullptr);
  else
    gemm_nt(a, lda, b, ldb, y, n, m, n, hd, false);
}

}  // namespace detail

/// out = softmax(q k^T * scale, causal) v per head. float: ops::causal_attention (bit for bit the
/// runtime's, pos0 = 0); double: the same definition with double accumulation. Deterministic.
template <class T>
AttentionCtx<T> attention_forward(const AttentionShape& shape, const T* q, const T* k, const T* v, T* out,
                                  ThreadPool* pool = nullptr) {
  const AttentionShape s = detail::checked_attention_shape(shape, "attention_forward");
  detail::require(s.n == 0 || (q && k && v && out), "attention_forward", "null pointer");
  const int64_t Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim, hd = s.head_dim;
  if (s.n > 0) {
    if constexpr (std::is_same_v<T, float>) {
      AttentionArgs a;
      a.q = q;
      a.ldq = Q;
      a.k = k;
      a.v = v;
      a.ldkv = KV;
      a.out = out;
      a.ldo = Q;
      a.n = s.n;
      a.pos0 = 0;
      a.heads = s.heads;
      a.kv_heads = s.kv_heads;
      a.head_dim = hd;
      a.window = s.window;
      a.scale = s.scale;
      throw_if_error(causal_attention(a, pool));
    } else {
      const int64_t group = s.heads / s.kv_heads;
      parallel_for(pool, s.heads, [&](int64_t h) {
        std::vector<double> p(static_cast<size_t>(s.n));
        const int64_t kvh = h / group;
        for (int64_t r = 0; r < s.n; ++r) {
          const int64_t lo = detail::first_key(s, r);
          double mx = -INFINITY;
          for (int64_t j = lo; j <= r; ++j) {
            double dot = 0.0;
            for (int64_t e = 0; e < hd; ++e) dot += static_cast<double>(q[r * Q + h * hd + e]) * k[j * KV + kvh * hd + e];
            p[static_cast<size_t>(j)] = dot * s.scale;
            mx = std::max(mx, p[static_cast<size_t>(j)]);
          }
          double sum = 0.0;
          for (int64_t j = lo; j <= r; ++j) sum += (p[static_cast<size_t>(j)] = std::exp(p[static_cast<size_t>(j)] - mx));
          for (int64_t e = 0; e < hd; ++e) {
            double o = 0.0;
            for (int64_t j = lo; j <= r; ++j) o += p[static_cast<size_t>(j)] / sum * v[j * KV + kvh * hd + e];
            out[r * Q + h * hd + e] = static_cast<T>(o);
          }
        }
      });
    }
  }
  return AttentionCtx<T>{s, q, k, v};
}

/// Gradients of attention_forward (dq, dk, dv overwritten). With P = softmax(S), S = q k^T scale:
/// dP = dout v^T, dS = P * (dP - rowsum(P * dP)), dq = scale dS k, dk = scale dS^T q, dv = P^T dout.
/// Two passes, both recomputing the scores (so P never takes O(n^2) memory):
/// pass A, parallel over (head, block of 16 queries), recomputes the softmax, writes dq and keeps
/// per (head, query) the max, the reciprocal normaliser and rowsum(P * dP) (in double);
/// pass B, parallel over (kv head, block of 16 keys), rebuilds the same P from those (the same
/// operations on the same bits) and accumulates dk and dv over its group's heads and the queries in
/// index order. The sums over keys (dq) and queries (dk, dv) run as products of the block's dS or P
/// tile (masked entries zero) with k, q or dout: float through detail::gemm_f32 (one fp32
/// multiply-add chain per element in index order), double in loops of the same order. Every element
/// is owned by one task: deterministic. Scratch: 2 * 16 * n values per
/// task plus 3 * heads * n. Throws Error for bad extents.
template <class T>
void attention_backward(const AttentionCtx<T>& c, const T* dout, T* dq, T* dk, T* dv, ThreadPool* pool = nullptr) {
  const AttentionShape s = detail::checked_attention_shape(c.shape, "attention_backward");
  if (s.n == 0) return;
  detail::require(c.q && c.k && c.v && dout && dq && dk && dv, "attention_backward", "null pointer");
  const int64_t n = s.n, Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim, hd = s.head_dim;
  const int64_t group = s.heads / s.kv_heads;
  const int64_t B = detail::kAttnBlock;
  const int64_t blocks = (n + B - 1) / B;
  const T scale = static_cast<T>(s.scale);
  std::vector<T> row_max(detail::count(s.heads, n)), row_inv(detail::count(s.heads, n));
  std::vector<double> row_dot(detail::count(s.heads, n));

  // Pass A: dq, and the row statistics.
  parallel_for(pool, s.heads * blocks, [&](int64_t task) {
    const int64_t h = task / blocks, b = task % blocks, kvh = h / group;
    const int64_t r0 = b * B, r1 = std::min(n, r0 + B);
    const int64_t k_lo = detail::first_key(s, r0), k_hi = r1, nk = k_hi - k_lo;
    std::vector<T> sc(detail::count(r1 - r0, nk)), dp(detail::count(r1 - r0, nk));
    detail::attention_scores(c.q + r0 * Q + h * hd, Q, c.k + k_lo * KV + kvh * hd, KV, sc.data(), r1 - r0, nk, hd);
    detail::attention_scores(dout + r0 * Q + h * hd, Q, c.v + k_lo * KV + kvh * hd, KV, dp.data(), r1 - r0, nk, hd);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t lo = detail::first_key(s, r), len = r + 1 - lo;
      T* p = sc.data() + (r - r0) * nk + (lo - k_lo);
      const T* g = dp.data() + (r - r0) * nk + (lo - k_lo);
      T mx = p[0] * scale;
      for (int64_t j = 0; j < len; ++j) {
        p[j] = p[j] * scale;
        mx = p[j] > mx ? p[j] : mx;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < len; ++j) {
        p[j] = std::exp(p[j] - mx);
        sum += static_cast<double>(p[j]);
      }
      const T inv = static_cast<T>(1.0 / sum);
      double dot = 0.0;
      for (int64_t j = 0; j < len; ++j) {
        p[j] = p[j] * inv;
        dot += static_cast<double>(p[j]) * static_cast<double>(g[j]);
      }
      const size_t st = static_cast<size_t>(h * n + r);
      row_max[st] = mx;
      row_inv[st] = inv;
      row_dot[st] = dot;
      // dS over the block's keys, zero outside [lo, r] (a zero term leaves the sums unchanged).
      T* ds = sc.data() + (r - r0) * nk;
      const int64_t off = lo - k_lo;
      for (int64_t j = 0; j < len; ++j)
        ds[off + j] = static_cast<T>(static_cast<double>(p[j]) * (static_cast<double>(g[j]) - dot));
      std::fill(ds, ds + off, T(0));
      std::fill(ds + off + len, ds + nk, T(0));
    }
    // dq (rows, hd) = scale * dS (rows, nk) . k (nk, hd), each element summed over keys in order.
    const T* kb = c.k + k_lo * KV + kvh * hd;
    if constexpr (std::is_same_v<T, float>) {
      detail::gemm_f32<false, false>(r1 - r0, hd, nk, sc.data(), nk, kb, KV, dq + r0 * Q + h * hd, Q, false, nullptr);
    } else {
      for (int64_t r = r0; r < r1; ++r) {
        T* o = dq + r * Q + h * hd;
        std::fill(o, o + hd, T(0));
        const T* ds = sc.data() + (r - r0) * nk;
        for (int64_t j = 0; j < nk; ++j)
          for (int64_t e = 0; e < hd; ++e) o[e] += ds[j] * kb[j * KV + e];
      }
    }
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t e = 0; e < hd; ++e) dq[r * Q + h * hd + e] *= scale;
  });

  // Pass B: dk, dv.
  parallel_for(pool, s.kv_heads * blocks, [&](int64_t task) {
    const int64_t kvh = task / blocks, b = task % blocks;
    const int64_t j0 = b * B, j1 = std::min(n, j0 + B), nb = j1 - j0;
    // Queries that see at least one key of the block: r in [j0, r_hi).
    const int64_t r_hi = s.window > 0 ? std::min(n, j1 - 1 + s.window) : n;
    const int64_t nr = r_hi - j0;
    for (int64_t j = j0; j < j1; ++j) {
      std::fill(dk + j * KV + kvh * hd, dk + j * KV + kvh * hd + hd, T(0));
      std::fill(dv + j * KV + kvh * hd, dv + j * KV + kvh * hd + hd, T(0));
    }
    std::vector<T> sc(detail::count(nb, nr)), dp(detail::count(nb, nr));
    for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
      detail::attention_scores(c.k + j0 * KV + kvh * hd, KV, c.q + j0 * Q + h * hd, Q, sc.data(), nb, nr, hd);
      detail::attention_scores(c.v + j0 * KV + kvh * hd, KV, dout + j0 * Q + h * hd, Q, dp.data(), nb, nr, hd);
      // P and dS of the block's keys (rows) and queries (columns), zero outside [j, r_end).
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t r_end = s.window > 0 ? std::min(n, j + s.window) : n;
        T* pr = sc.data() + (j - j0) * nr;
        T* dr = dp.data() + (j - j0) * nr;
        for (int64_t r = j; r < r_end; ++r) {
          const size_t st = static_cast<size_t>(h * n + r);
          const size_t at = static_cast<size_t>(r - j0);
          const T p = std::exp(pr[at] * scale - row_max[st]) * row_inv[st];
          dr[at] = static_cast<T>(static_cast<double>(p) * (static_cast<double>(dr[at]) - row_dot[st]));
          pr[at] = p;
        }
        std::fill(pr, pr + (j - j0), T(0));
        std::fill(pr + (r_end - j0), pr + nr, T(0));
        std::fill(dr, dr + (j - j0), T(0));
        std::fill(dr + (r_end - j0), dr + nr, T(0));
      }
      // dv (keys, hd) += P . dout (queries, hd), dk += dS . q: per element over this group's heads
      // (outer) and the queries in order.
      const T* gq = dout + j0 * Q + h * hd;
      const T* qq = c.q + j0 * Q + h * hd;
      T* dvb = dv + j0 * KV + kvh * hd;
      T* dkb = dk + j0 * KV + kvh * hd;
      if constexpr (std::is_same_v<T, float>) {
        detail::gemm_f32<false, false>(nb, hd, nr, sc.data(), nr, gq, Q, dvb, KV, true, nullptr);
        detail::gemm_f32<false, false>(nb, hd, nr, dp.data(), nr, qq, Q, dkb, KV, true, nullptr);
      } else {
        for (int64_t j = 0; j < nb; ++j)
          for (int64_t r = 0; r < nr; ++r) {
            const T p = sc[static_cast<size_t>(j * nr + r)], ds = dp[static_cast<size_t>(j * nr + r)];
            for (int64_t e = 0; e < hd; ++e) {
              dvb[j * KV + e] += p * gq[r * Q + e];
              dkb[j * KV + e] += ds * qq[r * Q + e];
            }
          }
      }
    }
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t e = 0; e < hd; ++e) dk[j * KV + kvh * hd + e] *= scale;
  });
}

}  // namespace autograd
CLUSCOMP_NAMESPACE_END
