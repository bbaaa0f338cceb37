#pragma once
/// Causal grouped-query attention over a key/value cache, for a batch of new queries (prefill) or
/// one (decode): query head h reads kv head h / (heads / kv_heads); the query at position p sees
/// keys 0..p (or, with a sliding window w, keys p-w+1..p).
///
/// Numerics: scores are fp32 dot products from matmul_nt (per-element order independent of the
/// batch), times scale, softmax_inplace over exactly the visible keys (double normaliser), then
/// the value rows are accumulated in fp32 in key order: out[d] = p_0 v_0[d], then
/// out[d] += p_j v_j[d] for j = 1.. (each output element its own accumulator, so vectorising over
/// d reorders nothing). On x86-64 CPUs with AVX2+FMA (checked at run time, like matmul_nt) that
/// accumulation is a fused multiply-add, 8 elements of d per instruction with the running sums
/// kept in registers; elsewhere a portable loop does a separate multiply and add. The two paths
/// differ in the last bits; on one machine the path is fixed, so every output element goes
/// through the same operations whether its query arrives in a batch or alone: a prefill and a
/// token-by-token decode agree bit for bit, and results do not depend on the thread count.
/// Tolerance class against reference::causal_attention_ref: fp32 dot products of length head_dim
/// plus a softmax (relative error ~1e-6).

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/cpu_features.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/softmax.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Arguments of causal_attention; all buffers fp32 row-major.
struct AttentionArgs {
  const float* q = nullptr;  // (n, heads * head_dim): the new queries, RoPE applied
  int64_t ldq = 0;
  const float* k = nullptr;  // (pos0 + n, kv_heads * head_dim): cached keys incl. the new ones
  const float* v = nullptr;  // (pos0 + n, kv_heads * head_dim): cached values
  int64_t ldkv = 0;
  float* out = nullptr;  // (n, heads * head_dim)
  int64_t ldo = 0;
  int64_t n = 0;         // new queries, at positions pos0 .. pos0 + n - 1
  int64_t pos0 = 0;
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t window = 0;  // sliding window in keys (0: full causal attention)
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
};

namespace ops_detail {
inline constexpr int64_t kAttentionQueryBlock = 16;

/// Portable value sum: o (hd) = sum_j p[j] v_j in key order, v_j = v + j * ldv; separate multiply
/// and add per element.
inline void attention_value_sum_portable(const float* p, int64_t len, const float* v, int64_t ldv, int64_t hd,
                                         float* o) {
  for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
  for (int64_t j = 0; j < len; ++j) {
    const float pj = p[j];
    const float* vr = v + j * ldv;
    for (int64_t d = 0; d < hd; ++d) {
      const float prod = pj * vr[d];
      o[d] = o[d] + prod;
    }
  }
}

#if CLUSCOMP_OPS_X86
/// One column chunk of the AVX2 value sum: NV 8-lane accumulators (8 * NV elements of d) held in
/// registers across all keys. NV = 8 covers head_dim 64 with 8 independent FMA chains (enough to
/// hide the FMA latency) and leaves registers for the broadcast probability and the loads.
template <int NV>
__attribute__((target("avx2,fma"))) inline void value_sum_chunk_avx2(const float* p, int64_t len, const float* v,
                                                                     int64_t ldv, float* o) {
  __m256 acc[NV];
  for (int i = 0; i < NV; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t j = 0; j < len; ++j) {
    const __m256 pj = _mm256_broadcast_ss(p + j);
    const float* vr = v + j * ldv;
    for (int i = 0; i < NV; ++i) acc[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vr + 8 * i), acc[i]);
  }
  for (int i = 0; i < NV; ++i) _mm256_storeu_ps(o + 8 * i, acc[i]);
}

/// AVX2+FMA value sum; each element of o is fma(p[j], v_j[d], acc) over j in key order, whatever
/// chunk it falls in (the d % 8 tail uses scalar FMAs, the same operation).
__attribute__((target("avx2,fma"))) inline void attention_value_sum_avx2(const float* p, int64_t len, const float* v,
                                                                         int64_t ldv, int64_t hd, float* o) {
  int64_t d = 0;
  for (; d + 64 <= hd; d += 64) value_sum_chunk_avx2<8>(p, len, v + d, ldv, o + d);
  if (d + 32 <= hd) {
    value_sum_chunk_avx2<4>(p, len, v + d, ldv, o + d);
    d += 32;
  }
  if (d + 16 <= hd) {
    value_sum_chunk_avx2<2>(p, len, v + d, ldv, o + d);
    d += 16;
  }
  if (d + 8 <= hd) {
    value_sum_chunk_avx2<1>(p, len, v + d, ldv, o + d);
    d += 8;
  }
  for (; d < hd; ++d) {
    __m128 acc = _mm_setzero_ps();
    for (int64_t j = 0; j < len; ++j) acc = _mm_fmadd_ss(_mm_set_ss(p[j]), _mm_set_ss(v[j * ldv + d]), acc);
    o[d] = _mm_cvtss_f32(acc);
  }
}
#endif

/// o (hd) = sum_j p[j] * v_j (j = 0..len-1 in order, v_j = v + j * ldv) on the chosen path.
inline void attention_value_sum(const float* p, int64_t len, const float* v, int64_t ldv, int64_t hd, float* o,
                                bool avx2) {
#if CLUSCOMP_OPS_X86
  if (avx2) {
    attention_value_sum_avx2(p, len, v, ldv, hd, o);
    return;
  }
#else
  (void)avx2;
#endif
  attention_value_sum_portable(p, len, v, ldv, hd, o);
}
}  // namespace ops_detail

/// Checks the arguments; the message names the bad value.
inline Status check_attention_args(const AttentionArgs& a) {
  auto bad = [](const std::string& m) { return Status(StatusCode::kInvalidArgument, "attention: " + m); };
  if (a.n < 0 || a.pos0 < 0 || a.heads <= 0 || a.kv_heads <= 0 || a.head_dim <= 0 || a.window < 0)
    return bad("bad extents (n " + std::to_string(a.n) + ", pos0 " + std::to_string(a.pos0) +
               ", heads " + std::to_string(a.heads) + ", kv heads " + std::to_string(a.kv_heads) +
               ", head_dim " + std::to_string(a.head_dim) + ")");
  if (a.heads % a.kv_heads != 0)
    return bad("kv heads " + std::to_string(a.kv_heads) + " do not divide heads " + std::to_string(a.heads));
  if (a.ldq < a.heads * a.head_dim || a.ldo < a.heads * a.head_dim || a.ldkv < a.kv_heads * a.head_dim)
    return bad("leading dimension too small");
  if (a.n > 0 && (!a.q || !a.k || !a.v || !a.out)) return bad("null pointer");
  return Status();
}

/// out = softmax(q K^T * scale, causal) V per head; see the file comment for numerics and
/// determinism. Parallel over (head, block of 16 queries) on `pool`.
inline Status causal_attention(const AttentionArgs& a, ThreadPool* pool = nullptr) {
  Status st = check_attention_args(a);
  if (!st.ok() || a.n == 0) return st;
  const int64_t qb = ops_detail::kAttentionQueryBlock;
  const int64_t blocks = (a.n + qb - 1) / qb;
  const int64_t group = a.heads / a.kv_heads;
  const int64_t hd = a.head_dim;
  const bool avx2 = cpu_has_avx2_fma();  // one path for the whole call (and machine)
  auto task = [&](int64_t t) {
    const int64_t h = t / blocks, b = t % blocks;
    const int64_t kvh = h / group;
    const int64_t r0 = b * qb, r1 = std::min(a.n, r0 + qb);
    auto first_key = [&](int64_t pos) { return a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0; };
    const int64_t k_lo = first_key(a.pos0 + r0);
    const int64_t k_hi = a.pos0 + r1;  // exclusive: the last query's own position + 1
    const int64_t nk = k_hi - k_lo;
    std::vector<float> scores(static_cast<size_t>((r1 - r0) * nk));
    MatmulArgs m;
    m.x = a.q + r0 * a.ldq + h * hd;
    m.ldx = a.ldq;
    m.w = a.k + k_lo * a.ldkv + kvh * hd;
    m.ldw = a.ldkv;
    m.y = scores.data();
    m.ldy = nk;
    m.m = r1 - r0;
    m.n = nk;
    m.k = hd;
    throw_if_error(matmul_nt(m, nullptr));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t pos = a.pos0 + r;
      const int64_t lo = first_key(pos);
      float* s = scores.data() + (r - r0) * nk + (lo - k_lo);
      const int64_t len = pos + 1 - lo;
      for (int64_t j = 0; j < len; ++j) s[j] *= a.scale;
      softmax_inplace(s, len);
      ops_detail::attention_value_sum(s, len, a.v + lo * a.ldkv + kvh * hd, a.ldkv, hd,
                                      a.out + r * a.ldo + h * hd, avx2);
    }
  };
  return status_from([&] { parallel_for(pool, a.heads * blocks, task); });
}

CLUSCOMP_NAMESPACE_END
