#pragma once
/// The GPU lookup GEMV (cuda/lookup_gemm.cuh, M = 1..16) in pieces the CPU can run too: its work
/// mapping (which block and thread do which outputs and read which words) and its per-element
/// math. Plain C++17, CLUSCOMP_HOST_DEVICE. The kernel (cuda/device/lookup_gemm_kernel.cuh) only
/// maps ids to work and calls these; tests/cpu/test_lookup_gemv_map.cpp replays every (block,
/// warp, lane) of it on the CPU through the same functions (every partial written once, every read
/// in bounds, the result equal to the `_ref` twin), because the build machines have no GPU.
///
/// Structure (the lesson of the lost first attempt, docs/benchmarks.md gpu-lookup-gemv: one code
/// load and one dependent gather per row per thread made it latency-bound):
///  - A lane owns one output d-vector j (d outputs) for up to kMaxRows rows of x: the centroid a
///    code selects is gathered once and applied to every row of x (row_tile accumulators per
///    output, row_tile * d <= kAccumulators registers).
///  - A warp owns a group of 32 consecutive vectors of Wt's rows; their codes are 32 * b
///    consecutive bits of each row. Per step the warp stages the code words of kRowsPerStep input
///    rows into shared memory with the widest aligned load the layout allows (16 bytes per lane
///    when b % 4 == 0 and rows start on 16-byte boundaries, else 8 or 4; every byte of a sector is
///    used), then each lane extracts its kRowsPerStep codes and issues their gathers before using
///    any: several independent gathers in flight per thread.
///  - A work item is (row tile of x, chunk of input rows, block of kWarps groups). Its partial sums
///    go to a fixed slot of the workspace; a second kernel adds the chunks' partials in chunk order
///    and the bias. No atomics, no dependence on the grid size: the same bits on every run and on
///    every GPU (the grid is a persistent loop over items, sized by the SM count).
///
/// Numerics: per output, per chunk, acc = +0 then acc = fma(x[r, i], W[o, i], acc) for i ascending
/// over the chunk (the CPU's per-element step, fma_rn of core/lookup_row.hpp); then
/// y = ((p_0 + p_1) + ... + p_{C-1}) + bias. The CPU sums all `in` products in one chain, so on
/// general data the two differ by rounding (fp32 sum of `in` products, a different association);
/// with small-integer data whose partial sums stay below 2^24 every step is exact and both equal
/// the `_ref` twin bit for bit.

#include <cstdint>

#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/lookup_row.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace lookup_gemv_map {

inline constexpr int kWarps = 4;           // warps per block; warp w takes group gb * kWarps + w
inline constexpr int kLanes = 32;          // vectors per group: lane L owns vector 32 * g + L
inline constexpr int kThreads = kWarps * kLanes;
inline constexpr int kRowsPerStep = 8;     // input rows a warp stages and gathers per step
inline constexpr int kMaxRows = 16;        // largest M of the lookup GEMV (more: decode + cuBLAS)
inline constexpr int kAccumulators = 64;   // fp32 accumulators per thread (row_tile * d)
inline constexpr int kGatherFloats = 32;   // gathered centroid floats a thread holds at once
inline constexpr int kMinChunkRows = 64;   // fewer rows per item: partial sums cost more than codes
/// The shared x chunk holds chunk_rows x row_tile floats: at most this many (16 KiB), so
/// chunk_rows <= kMaxXFloats / row_tile (4096 rows at m = 1, 256 at a tile of 16).
inline constexpr int kMaxXFloats = 4096;
inline constexpr int64_t kTargetItems = 2048;  // enough items to fill 132 SMs several times
/// Words one row's window of a group may need (32 codes of <= 16 bits, plus one word when the
/// group does not start on a word boundary), padded so each row's window stays 16-byte aligned.
inline constexpr int kWindowWords = 20;

/// Rows of x one pass handles for vector dimension d (a power of two >= 1, at most 16).
CLUSCOMP_HOST_DEVICE constexpr int max_row_tile(int d) {
  return kAccumulators / d < kMaxRows ? kAccumulators / d : kMaxRows;
}

/// The row tile for m rows: the smallest power of two >= m, capped by max_row_tile(d). m > the
/// cap runs several row tiles (each reads the codes again; documented in the host API).
CLUSCOMP_HOST_DEVICE constexpr int row_tile_for(int m, int d) {
  int t = 1;
  while (t < m && t < max_row_tile(d)) t *= 2;
  return t;
}

/// Centroids gathered together per batch (their loads are all issued before any is used).
CLUSCOMP_HOST_DEVICE constexpr int gather_batch(int d) {
  return kGatherFloats / d < 1 ? 1 : (kGatherFloats / d > kRowsPerStep ? kRowsPerStep : kGatherFloats / d);
}

/// Everything about one call's mapping; a pure function of the shape (never of the GPU), so the
/// workspace size and the result bits do not depend on the device.
struct Geometry {
  int64_t in = 0;            // input rows of Wt (columns of W)
  int64_t out = 0;           // live outputs
  int64_t vpr = 0;           // vectors per Wt row (out_pad / d)
  int64_t groups = 0;        // ceil(vpr / 32)
  int64_t group_blocks = 0;  // ceil(groups / kWarps)
  int64_t chunk_rows = 0;    // input rows per item (a multiple of kRowsPerStep)
  int64_t chunks = 0;        // ceil(in / chunk_rows)
  int64_t row_tiles = 0;     // ceil(m / row_tile)
  int64_t items = 0;         // row_tiles * chunks * group_blocks
  int m = 0;                 // rows of x
  int row_tile = 0;          // rows of x per pass
  int d = 0;
  int code_bits = 0;
};

CLUSCOMP_HOST_DEVICE inline Geometry make_geometry(int64_t out, int64_t in, int d, int code_bits, int m) {
  Geometry g;
  g.in = in;
  g.out = out;
  g.d = d;
  g.code_bits = code_bits;
  g.m = m;
  g.vpr = (out + d - 1) / d;
  g.groups = (g.vpr + kLanes - 1) / kLanes;
  g.group_blocks = (g.groups + kWarps - 1) / kWarps;
  g.row_tile = row_tile_for(m, d);
  g.row_tiles = (m + g.row_tile - 1) / g.row_tile;
  // As many chunks as needed to reach kTargetItems, but each item long enough that its partial
  // sums (128 vectors x d x row_tile floats, written and read again) stay small next to its codes
  // (chunk_rows x 128 x b bits): chunk_rows >= 16 * d * row_tile keeps them below 2/b of the
  // code bytes; and short enough for the shared x chunk (kMaxXFloats), which wins when both apply.
  const int64_t per_split = g.group_blocks * g.row_tiles;
  const int64_t want = (kTargetItems + per_split - 1) / per_split;
  int64_t rows = (in + want - 1) / want;
  int64_t lower = int64_t{16} * d * g.row_tile;
  if (lower < kMinChunkRows) lower = kMinChunkRows;
  const int64_t upper = kMaxXFloats / g.row_tile;
  if (rows < lower) rows = lower;
  if (rows > upper) rows = upper;
  rows = (rows + kRowsPerStep - 1) / kRowsPerStep * kRowsPerStep;
  g.chunk_rows = rows;
  g.chunks = (in + rows - 1) / rows;
  g.items = g.row_tiles * g.chunks * g.group_blocks;
  return g;
}

/// Which item a number names. Group blocks vary fastest, so blocks running at the same time share
/// the chunk of x (and of the codebook rows) they read.
struct Item {
  int64_t row_tile = 0;
  int64_t chunk = 0;
  int64_t group_block = 0;
};

CLUSCOMP_HOST_DEVICE inline Item item_coords(const Geometry& g, int64_t item) {
  Item it;
  it.group_block = item % g.group_blocks;
  const int64_t rest = item / g.group_blocks;
  it.chunk = rest % g.chunks;
  it.row_tile = rest / g.chunks;
  return it;
}

/// The input rows [begin, end) of a chunk.
CLUSCOMP_HOST_DEVICE inline int64_t chunk_begin(const Geometry& g, int64_t chunk) { return chunk * g.chunk_rows; }
CLUSCOMP_HOST_DEVICE inline int64_t chunk_end(const Geometry& g, int64_t chunk) {
  const int64_t e = (chunk + 1) * g.chunk_rows;
  return e < g.in ? e : g.in;
}

/// The group warp `warp` of a block takes, and the vector lane `lane` owns (>= vpr: no vector).
CLUSCOMP_HOST_DEVICE inline int64_t group_of(int64_t group_block, int warp) { return group_block * kWarps + warp; }
CLUSCOMP_HOST_DEVICE inline int64_t vector_of(int64_t group, int lane) { return group * kLanes + lane; }

/// The words of input row i that hold the codes of `group`: `words` words from `first`, the
/// group's first code at bit `offset` of the first word. Exactly the words those codes touch, so
/// every one is inside the packed buffer.
struct CodeWindow {
  int64_t first = 0;
  int offset = 0;
  int words = 0;
};

CLUSCOMP_HOST_DEVICE inline CodeWindow code_window(const Geometry& g, int64_t i, int64_t group) {
  const int64_t v0 = i * g.vpr + group * kLanes;
  const int64_t left = g.vpr - group * kLanes;
  const int64_t n = left < kLanes ? left : kLanes;
  const uint64_t bit0 = static_cast<uint64_t>(v0) * static_cast<uint64_t>(g.code_bits);
  CodeWindow w;
  w.first = static_cast<int64_t>(bit0 >> 5);
  w.offset = static_cast<int>(bit0 & 31u);
  w.words = static_cast<int>((static_cast<int64_t>(w.offset) + n * g.code_bits + 31) / 32);
  return w;
}

/// Words per load when staging windows (4, 2 or 1): the widest for which every window of every
/// row starts on a multiple of it, i.e. (vpr * b) and 32 * b are multiples of 32 * width, and the
/// buffer is aligned to it. A window then needs ceil(words / width) loads; the extra words of its
/// last load lie inside the buffer (its length in words is then a multiple of the width too).
CLUSCOMP_HOST_DEVICE inline int load_width(const Geometry& g, uintptr_t code_address) {
  for (int w = 4; w > 1; w /= 2) {
    const int64_t bits = 32 * w;
    if ((g.vpr * g.code_bits) % bits == 0 && (32 * g.code_bits) % bits == 0 &&
        code_address % static_cast<uintptr_t>(4 * w) == 0)
      return w;
  }
  return 1;
}

/// Where the centroid of code c of input row i lives in the (S, K, d) table: the codebook that
/// owns row i; a code >= K (impossible in a validated tensor) is read as K-1, as on the CPU, so a
/// bad code can never read outside the table.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE int64_t centroid_offset(int64_t i, uint32_t c, int64_t k, int d,
                                                                  int num_codebooks, int64_t in) {
  const int64_t cc = static_cast<int64_t>(c) < k ? static_cast<int64_t>(c) : k - 1;
  return (codebook_of_row(i, num_codebooks, in) * k + cc) * d;
}

/// The per-element math: acc[r][t] = fma(x_r, w_t, acc[r][t]) for one gathered centroid w and the
/// row_tile values x[r, i] of its input row (the CPU's lookup_row_step element operation).
template <int D, int MT>
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void accumulate(const float (&w)[D], const float* xs, float (&acc)[MT][D]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < MT; ++r) {
    const float xv = xs[r];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int t = 0; t < D; ++t) acc[r][t] = fma_rn(xv, w[t], acc[r][t]);
  }
}

/// Slot of the partial sum of (chunk, row r of x, output o) in the workspace: (chunks, m, out).
CLUSCOMP_HOST_DEVICE inline int64_t partial_index(const Geometry& g, int64_t chunk, int64_t r, int64_t o) {
  return (chunk * g.m + r) * g.out + o;
}

/// Floats of partial sums a call needs.
CLUSCOMP_HOST_DEVICE inline int64_t partial_floats(const Geometry& g) { return g.chunks * g.m * g.out; }

/// y[r, o] before the conversion to the output type: the chunks' partials added in chunk order,
/// then the bias (null: none). What the finalize kernel computes, and the CPU replay.
CLUSCOMP_HOST_DEVICE inline float reduce_partials(const Geometry& g, const float* partial, int64_t r, int64_t o,
                                                  const float* bias) {
  float s = partial[partial_index(g, 0, r, o)];
  for (int64_t c = 1; c < g.chunks; ++c) s += partial[partial_index(g, c, r, o)];
  if (bias) s += bias[o];
  return s;
}

}  // namespace lookup_gemv_map
CLUSCOMP_NAMESPACE_END
