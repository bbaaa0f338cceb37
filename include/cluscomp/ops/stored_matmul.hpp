#pragma once
/// Products with a weight kept in the type its file stores: y (m, n) = x (m, k) . W (n, k)^T
/// (+ bias), W held as fp32, fp16, bf16 or one of ggml's block formats (Q4_0, Q4_1, Q5_0, Q5_1,
/// Q8_0, Q2_K .. Q6_K, Q8_K). The runtime keeps embeddings, lm_head and dense projections this
/// way so that a decoded token reads the file's bytes (a Q8_0 49152 x 576 lm_head: 29 MB) rather
/// than an fp32 copy of them (113 MB); the embedding lookup decodes only the rows it needs
/// (decode_stored_rows).
///
/// How: each parallel task owns 48 rows of W. It decodes a few of them at a time into a small
/// fp32 buffer (3 rows while the batch fits one 64-row block of x, i.e. decode, so they stay in
/// L1; all 48 for longer batches, so that each decoded row serves many rows of x), then runs
/// matmul_nt's micro-tiles on that buffer. One-row products (decode) of Q4_0 / Q4_1 on the
/// AVX2 path skip the buffer: each block is decoded into registers and fed to the same fused
/// lanes, so a decoded row is never stored and read back (docs/benchmarks.md has the
/// measurement). No copy of the whole matrix is ever built.
///
/// Numerics: decoding is exact where the format is (fp16/bf16 widen exactly) and otherwise
/// performs ggml's reference dequantisation operations in ggml's order (core/ggml_blocks.hpp), so
/// a decoded row equals io's dequantize_row bit for bit. The product then follows matmul_nt's
/// fixed order (8 lanes by k mod 8 with fused multiply-adds, a fixed lane tree, the k % 8 tail
/// in order, then the bias): an output element is computed by the same operations whatever m, the
/// blocking or the thread count, so batched and one-row calls give bit-identical rows and results
/// are deterministic. The AVX2 path (AVX2+FMA+F16C, checked at run time) and the portable path
/// (std::fma lanes, the scalar block decoders) are bit-identical: the AVX2 block decoders perform
/// the same roundings as the scalar ones (the one multiply followed by an add, Q4_1's, has a
/// CLUSCOMP_NO_CONTRACT barrier on both paths, so -march=native -ffp-contract=fast includers
/// cannot fuse it), and fma is fma. On an AVX2+FMA machine the result also equals matmul_nt of the
/// dequantised fp32 matrix bit for bit (same lane order, same fused lanes); matmul_nt's portable
/// path rounds its products separately and may differ from it in the last bits.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/core/ggml_blocks.hpp"
#include "cluscomp/host/cpu_features.hpp"
#include "cluscomp/host/uninit.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Element types a stored weight may have. The values are ggml's type ids, so a GGUF tensor's
/// type converts directly (stored_type_from_id) and the reference twins take the same ids.
enum class StoredType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

/// Elements and bytes per block of a stored type (1 element for fp32/fp16/bf16).
struct StoredTypeInfo {
  const char* name = nullptr;  // null: not a stored type
  int block_elems = 0;
  int block_bytes = 0;
};

inline StoredTypeInfo stored_type_info(StoredType t) {
  switch (t) {
    case StoredType::kF32: return {"F32", 1, 4};
    case StoredType::kF16: return {"F16", 1, 2};
    case StoredType::kBF16: return {"BF16", 1, 2};
    case StoredType::kQ4_0: return {"Q4_0", 32, 18};
    case StoredType::kQ4_1: return {"Q4_1", 32, 20};
    case StoredType::kQ5_0: return {"Q5_0", 32, 22};
    case StoredType::kQ5_1: return {"Q5_1", 32, 24};
    case StoredType::kQ8_0: return {"Q8_0", 32, 34};
    case StoredType::kQ2_K: return {"Q2_K", 256, 84};
    case StoredType::kQ3_K: return {"Q3_K", 256, 110};
    case StoredType::kQ4_K: return {"Q4_K", 256, 144};
    case StoredType::kQ5_K: return {"Q5_K", 256, 176};
    case StoredType::kQ6_K: return {"Q6_K", 256, 210};
    case StoredType::kQ8_K: return {"Q8_K", 256, 292};
  }
  return {};
}

/// The stored type of ggml type id `id`; false when stored_matmul_nt has no decoder for it.
inline bool stored_type_from_id(uint32_t id, StoredType* out) {
  const StoredType t = static_cast<StoredType>(id);
  if (!stored_type_info(t).name) return false;
  *out = t;
  return true;
}

/// Bytes of one row of `cols` elements; -1 when cols is not a positive multiple of the block.
inline int64_t stored_row_bytes(StoredType t, int64_t cols) {
  const StoredTypeInfo i = stored_type_info(t);
  if (!i.name || cols <= 0 || cols % i.block_elems != 0) return -1;
  return cols / i.block_elems * i.block_bytes;
}

/// A (rows, cols) matrix in a stored type, rows contiguous (row r at data + r * row bytes), any
/// alignment.
struct StoredMatrixView {
  StoredType type = StoredType::kF32;
  const unsigned char* data = nullptr;
  int64_t rows = 0, cols = 0;
};

/// Which kernels run: kAuto takes AVX2 where the CPU has it; kPortable forces the portable path
/// (tests compare the two; they are bit-identical).
enum class StoredPath { kAuto, kPortable };

/// Checks a stored matrix: a known type, positive extents, cols a multiple of the block size,
/// data present. The message names the bad value.
inline Status check_stored_matrix(const StoredMatrixView& w) {
  const StoredTypeInfo i = stored_type_info(w.type);
  if (!i.name)
    return Status(StatusCode::kUnsupported,
                  "stored matrix: type id " + std::to_string(static_cast<uint32_t>(w.type)) + " is not supported");
  if (w.rows <= 0 || w.cols <= 0)
    return Status(StatusCode::kInvalidArgument, "stored matrix: extents (" + std::to_string(w.rows) + ", " +
                                                    std::to_string(w.cols) + ") must be positive");
  if (w.cols % i.block_elems != 0)
    return Status(StatusCode::kInvalidArgument, std::string("stored matrix: ") + i.name + " rows of " +
                                                    std::to_string(w.cols) + " elements are not a multiple of its block of " +
                                                    std::to_string(i.block_elems));
  if (!w.data) return Status(StatusCode::kInvalidArgument, "stored matrix: null data");
  return Status();
}

namespace stored_detail {

/// Row `r` of `w` decoded to fp32 by the scalar decoders (the portable path).
inline void decode_row_portable(const StoredMatrixView& w, int64_t r, float* out) {
  const StoredTypeInfo info = stored_type_info(w.type);
  const int64_t nb = w.cols / info.block_elems;
  const unsigned char* s = w.data + r * nb * info.block_bytes;
  auto blocks = [&](void (*fn)(const unsigned char*, float*)) {
    for (int64_t b = 0; b < nb; ++b) fn(s + b * info.block_bytes, out + b * info.block_elems);
  };
  switch (w.type) {
    case StoredType::kF32: std::memcpy(out, s, static_cast<size_t>(w.cols) * 4); return;
    case StoredType::kF16:
      for (int64_t i = 0; i < w.cols; ++i) out[i] = ggml::load_f16(s + 2 * i);
      return;
    case StoredType::kBF16:
      for (int64_t i = 0; i < w.cols; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        out[i] = bf16_bits_to_float(h);
      }
      return;
    case StoredType::kQ4_0: blocks(ggml::dequantize_block_q4_0); return;
    case StoredType::kQ4_1: blocks(ggml::dequantize_block_q4_1); return;
    case StoredType::kQ5_0: blocks(ggml::dequantize_block_q5_0); return;
    case StoredType::kQ5_1: blocks(ggml::dequantize_block_q5_1); return;
    case StoredType::kQ8_0: blocks(ggml::dequantize_block_q8_0); return;
    case StoredType::kQ2_K: blocks(ggml::dequantize_block_q2_k); return;
    case StoredType::kQ3_K: blocks(ggml::dequantize_block_q3_k); return;
    case StoredType::kQ4_K: blocks(ggml::dequantize_block_q4_k); return;
    case StoredType::kQ5_K: blocks(ggml::dequantize_block_q5_k); return;
    case StoredType::kQ6_K: blocks(ggml::dequantize_block_q6_k); return;
    case StoredType::kQ8_K: blocks(ggml::dequantize_block_q8_k); return;
  }
}

#if CLUSCOMP_OPS_X86
// The AVX2 decoders of the types real files use for dense weights (fp16/bf16 safetensors, the
// Q8_0 / Q4_0 / Q4_1 of GGUF files). Other block types decode with the scalar functions on this
// path too (same results by construction).

__attribute__((target("avx2,f16c"))) inline void decode_f16_avx2(const unsigned char* s, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i))));
  for (; i < n; ++i) out[i] = ggml::load_f16(s + 2 * i);
}

__attribute__((target("avx2"))) inline void decode_bf16_avx2(const unsigned char* s, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + 2 * i)));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, s + 2 * i, 2);
    out[i] = bf16_bits_to_float(h);
  }
}

/// fp16 scale at p: F16C's conversion, exact like ggml::load_f16 (and cheaper than its bit
/// manipulation, which cost a visible share of a Q4_1 row).
__attribute__((target("avx2,f16c"))) inline float scale_f16c(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

/// One Q8_0 block (34 bytes) as 4 x 8 floats: y = float(q) * d.
__attribute__((target("avx2,f16c"))) inline void q8_0_block_avx2(const unsigned char* s, __m256 y[4]) {
  const __m256 d = _mm256_set1_ps(scale_f16c(s));
  for (int p = 0; p < 4; ++p) {
    const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + 2 + 8 * p));
    y[p] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
  }
}

/// One Q4_0 (Affine = false, 18 bytes: y = float(q - 8) * d) or Q4_1 (Affine = true, 20 bytes:
/// y = (float(q) * d) + m) block as 4 x 8 floats; element j < 16 is the low nibble of byte j,
/// element j + 16 its high nibble.
template <bool Affine>
__attribute__((target("avx2,f16c"))) inline void q4_block_avx2(const unsigned char* s, __m256 y[4]) {
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m256 d = _mm256_set1_ps(scale_f16c(s));
  const __m256 m = _mm256_set1_ps(Affine ? scale_f16c(s + 2) : 0.0f);
  const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + (Affine ? 4 : 2)));
  const __m128i lo = _mm_and_si128(qs, low4), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), low4);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int p = 0; p < 4; ++p) {
    __m256i q = _mm256_cvtepu8_epi32(parts[p]);
    if (!Affine) q = _mm256_sub_epi32(q, _mm256_set1_epi32(8));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
    CLUSCOMP_NO_CONTRACT(v);  // never fused with the add, whatever the includer's flags
    if (Affine) v = _mm256_add_ps(v, m);
    y[p] = v;
  }
}

template <void (*Block)(const unsigned char*, __m256*), int kBytes>
__attribute__((target("avx2,f16c"))) inline void decode_blocks_avx2(const unsigned char* s, int64_t nb, float* out) {
  __m256 y[4];
  for (int64_t b = 0; b < nb; ++b, s += kBytes, out += 32) {
    Block(s, y);
    for (int p = 0; p < 4; ++p) _mm256_storeu_ps(out + 8 * p, y[p]);
  }
}

/// One-row products (decode) of rows [j, j + NR) of a block-format w: the block decoder feeds
/// the fused multiply-adds directly, without the fp32 row buffer. Lane l of row r accumulates
/// the products with k = l mod 8 in ascending k, then ops_detail::sum_lanes, then the bias: the
/// operations matmul_columns performs on the decoded rows (k is a multiple of 32, so there is no
/// tail), hence the same bits.
template <int NR, void (*Block)(const unsigned char*, __m256*), int kBytes>
__attribute__((target("avx2,fma,f16c"))) inline void gemv_rows_avx2(const StoredMatrixView& w, int64_t j,
                                                                    const float* x, const float* bias, float* y) {
  const int64_t nb = w.cols / 32, row_bytes = nb * kBytes;
  const unsigned char* s = w.data + j * row_bytes;
  __m256 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    __m256 xv[4];
    for (int p = 0; p < 4; ++p) xv[p] = _mm256_loadu_ps(x + 32 * b + 8 * p);
    for (int r = 0; r < NR; ++r) {
      __m256 wv[4];
      Block(s + r * row_bytes + b * kBytes, wv);
      for (int p = 0; p < 4; ++p) acc[r] = _mm256_fmadd_ps(xv[p], wv[p], acc[r]);
    }
  }
  alignas(32) float lanes[8];
  for (int r = 0; r < NR; ++r) {
    _mm256_store_ps(lanes, acc[r]);
    float v = ops_detail::sum_lanes(lanes);
    if (bias) v = v + bias[j + r];
    y[j + r] = v;
  }
}

template <void (*Block)(const unsigned char*, __m256*), int kBytes>
inline void gemv_range_avx2(const StoredMatrixView& w, int64_t j0, int64_t j1, const float* x, const float* bias,
                            float* y) {
  int64_t j = j0;
  for (; j + 3 <= j1; j += 3) gemv_rows_avx2<3, Block, kBytes>(w, j, x, bias, y);
  for (; j < j1; ++j) gemv_rows_avx2<1, Block, kBytes>(w, j, x, bias, y);
}

/// Rows [j0, j1) of y = x . w^T (+ bias) for one row x, fused, for Q4_0 and Q4_1; false (nothing
/// done) for the others. Q8_0 stays on the buffered path: fused, its one-row product measured
/// slower than buffered on the real model's lm_head (docs/benchmarks.md), Q4_1's faster.
inline bool gemv_fused_avx2(const StoredMatrixView& w, int64_t j0, int64_t j1, const float* x, const float* bias,
                            float* y) {
  switch (w.type) {
    case StoredType::kQ4_0: gemv_range_avx2<q4_block_avx2<false>, 18>(w, j0, j1, x, bias, y); return true;
    case StoredType::kQ4_1: gemv_range_avx2<q4_block_avx2<true>, 20>(w, j0, j1, x, bias, y); return true;
    default: return false;
  }
}

/// Row `r` of `w` on the AVX2 path (types without an AVX2 decoder use the scalar one).
inline void decode_row_avx2(const StoredMatrixView& w, int64_t r, float* out) {
  const StoredTypeInfo info = stored_type_info(w.type);
  const int64_t nb = w.cols / info.block_elems;
  const unsigned char* s = w.data + r * nb * info.block_bytes;
  switch (w.type) {
    case StoredType::kF16: decode_f16_avx2(s, w.cols, out); return;
    case StoredType::kBF16: decode_bf16_avx2(s, w.cols, out); return;
    case StoredType::kQ8_0: decode_blocks_avx2<q8_0_block_avx2, 34>(s, nb, out); return;
    case StoredType::kQ4_0: decode_blocks_avx2<q4_block_avx2<false>, 18>(s, nb, out); return;
    case StoredType::kQ4_1: decode_blocks_avx2<q4_block_avx2<true>, 20>(s, nb, out); return;
    default: decode_row_portable(w, r, out); return;
  }
}
#endif

/// Rows [r0, r0 + n) of `w` into out (n, ldo).
inline void decode_rows(const StoredMatrixView& w, int64_t r0, int64_t n, float* out, int64_t ldo, bool avx2) {
  for (int64_t i = 0; i < n; ++i) {
#if CLUSCOMP_OPS_X86
    if (avx2) {
      decode_row_avx2(w, r0 + i, out + i * ldo);
      continue;
    }
#endif
    (void)avx2;
    decode_row_portable(w, r0 + i, out + i * ldo);
  }
}

/// True when the AVX2 path runs for `path` on this CPU.
inline bool use_avx2(StoredPath path) { return path == StoredPath::kAuto && cpu_has_avx2_fma_f16c(); }

}  // namespace stored_detail

/// True when stored_matmul_nt takes its AVX2 path on this CPU (benchmarks and reports).
inline bool stored_matmul_uses_avx2() { return stored_detail::use_avx2(StoredPath::kAuto); }

/// Rows [r0, r0 + n) of `w` decoded to fp32 into out (n, ldo), e.g. the embedding rows of a
/// batch's tokens. Exact decoding as described in the file comment (equal to io's dequantize_row
/// of those rows); both paths bit-identical. kInvalidArgument for rows outside the matrix or
/// ldo < cols; the errors of check_stored_matrix.
inline Status decode_stored_rows(const StoredMatrixView& w, int64_t r0, int64_t n, float* out, int64_t ldo,
                                 StoredPath path = StoredPath::kAuto) {
  Status s = check_stored_matrix(w);
  if (!s.ok()) return s;
  if (r0 < 0 || n < 0 || r0 + n > w.rows)
    return Status(StatusCode::kInvalidArgument, "decode_stored_rows: rows [" + std::to_string(r0) + ", " +
                                                    std::to_string(r0 + n) + ") outside a matrix of " +
                                                    std::to_string(w.rows) + " rows");
  if (n > 0 && (!out || ldo < w.cols))
    return Status(StatusCode::kInvalidArgument, "decode_stored_rows: null output or ldo " + std::to_string(ldo) +
                                                    " < cols " + std::to_string(w.cols));
  stored_detail::decode_rows(w, r0, n, out, ldo, stored_detail::use_avx2(path));
  return Status();
}

/// Arguments of stored_matmul_nt: y (m, w.rows) = x (m, w.cols) . w^T (+ bias).
struct StoredMatmulArgs {
  const float* x = nullptr;  // (m, w.cols), leading dimension ldx
  int64_t ldx = 0;
  StoredMatrixView w;           // (n, k) = (out, in), the HF layout
  const float* bias = nullptr;  // (n) or null
  float* y = nullptr;           // (m, n), leading dimension ldy
  int64_t ldy = 0;
  int64_t m = 0;
};

/// y = x . w^T (+ bias) with w in its stored type: numerics and determinism in the file comment
/// (fp32 accumulation in matmul_nt's fixed order; bit-identical rows however the batch is split
/// and whatever the thread count; AVX2 and portable paths bit-identical). Parallel over blocks of
/// 48 rows of w on `pool` (null: the calling thread). Scratch: one buffer of 3 (decode) or 48
/// (batches over 64 rows) decoded rows per task. Errors: those of check_stored_matrix, and
/// kInvalidArgument for a bad m, null operand or leading dimension.
inline Status stored_matmul_nt(const StoredMatmulArgs& a, ThreadPool* pool = nullptr,
                               StoredPath path = StoredPath::kAuto) {
  Status s = check_stored_matrix(a.w);
  if (!s.ok()) return s;
  MatmulArgs ma;
  ma.x = a.x;
  ma.ldx = a.ldx;
  ma.bias = a.bias;
  ma.y = a.y;
  ma.ldy = a.ldy;
  ma.m = a.m;
  ma.n = a.w.rows;
  ma.k = a.w.cols;
  ma.ldw = a.w.cols;
  ma.w = reinterpret_cast<const float*>(a.w.data);  // only for the null check: never read as fp32
  s = check_matmul_args(ma);
  if (!s.ok() || a.m == 0) return s;
  const bool avx2 = stored_detail::use_avx2(path);
  const ops_detail::LaneMath lm = avx2 ? ops_detail::LaneMath::kAvx2Fma : ops_detail::LaneMath::kPortableFma;
  const int64_t n = ma.n, k = ma.k, per_task = ops_detail::kColumnsPerTask;
  // Decode: 3 rows at a time stay in L1 next to the x rows. Longer batches: the task's 48 rows
  // once, each then used by every row of x (matmul_columns walks x in 64-row blocks).
  const int64_t rows_per_decode = a.m <= ops_detail::kRowsPerBlock ? ops_detail::kMaxNr : per_task;
  const int64_t tasks = (n + per_task - 1) / per_task;
  ThreadPool* p = (a.m * n * k < (int64_t{1} << 16)) ? nullptr : pool;
  parallel_for(p, tasks, [&](int64_t t) {
    const int64_t j0 = t * per_task, j1 = std::min(n, j0 + per_task);
#if CLUSCOMP_OPS_X86
    // One row (decode) of a block format: fused, no row buffer (same bits, see gemv_rows_avx2).
    if (avx2 && a.m == 1 && stored_detail::gemv_fused_avx2(a.w, j0, j1, a.x, a.bias, a.y)) return;
#endif
    uninit_vector<float> buf(static_cast<size_t>(std::min(rows_per_decode, j1 - j0) * k));
    MatmulArgs ta = ma;
    ta.w = buf.data();
    for (int64_t j = j0; j < j1; j += rows_per_decode) {
      const int64_t je = std::min(j1, j + rows_per_decode);
      stored_detail::decode_rows(a.w, j, je - j, buf.data(), k, avx2);
      ops_detail::matmul_columns(ta, j, je, lm, j);
    }
  });
  return Status();
}

CLUSCOMP_NAMESPACE_END
