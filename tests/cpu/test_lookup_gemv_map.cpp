// The CUDA lookup GEMV (cuda/device/lookup_gemm_kernel.cuh) replayed on the CPU, because the build
// machines have no GPU: every (item, warp, lane) of the persistent kernel, through the same
// core/lookup_gemv_map.hpp functions the kernel calls, with the warp's shared-memory code staging
// emulated word by word. Checks that
//  - every staged load is inside the packed buffer and aligned to its width (16/8/4 bytes);
//  - every code a lane extracts from its staged window equals unpack_code of the whole stream
//    (windows pre-filled with a sentinel, so reading an unstaged word shows);
//  - every gather is inside the (S, K, d) table and every x read inside x;
//  - every partial-sum slot of the workspace is written exactly once, nothing outside it;
//  - the finalize step's result equals reference::lookup_gemm_ref bit for bit on small-integer data,
//    and is within the fp32 tolerance on Gaussian data, for every d, width, S, m, dtype tested;
//  - the workspace size the host API reports covers the slots (cuda/lookup_gemm.cuh uses the same
//    partial_floats).
// tests/gpu/test_lookup_gemm_gpu.cu runs the kernel itself on a GPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/lookup_gemv_map.hpp"
#include "cluscomp/reference/lookup_gemm_ref.hpp"
#include "support/lookup_data.hpp"
#include "support/runtime_tolerances.hpp"

namespace test_lookup_gemv_map {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace lg = cluscomp::lookup_gemv_map;

namespace {

struct Replay {
  std::vector<float> y;          // (m, out) after the finalize step
  std::vector<int> writes;       // per partial slot
  bool loads_in_bounds = true;
  bool loads_aligned = true;
  bool codes_match = true;
  bool gathers_in_bounds = true;
  bool x_in_bounds = true;
  int load_width = 0;
  int64_t items = 0;
};

// The kernel's body for one item, warp by warp, lane by lane. `word_shift` offsets the code buffer
// by that many words from a 16-byte boundary, as a caller's sub-allocation could.
template <class T, int D, int MT>
void replay_item(const lg::Geometry& g, const CodebookView<T>& cb, const uint32_t* codes, int64_t nwords,
                 uintptr_t code_address, const std::vector<float>& x, int64_t ldx, int64_t item,
                 std::vector<float>& partial, Replay& r) {
  const lg::Item it = lg::item_coords(g, item);
  const int64_t i0 = lg::chunk_begin(g, it.chunk), i1 = lg::chunk_end(g, it.chunk);
  const int64_t r0 = it.row_tile * MT;
  std::vector<float> xs(static_cast<size_t>((i1 - i0) * MT));
  for (int64_t e = 0; e < (i1 - i0) * MT; ++e) {
    const int64_t ii = e / MT;
    const int rr = static_cast<int>(e % MT);
    if (r0 + rr < g.m) {
      const int64_t idx = (r0 + rr) * ldx + i0 + ii;
      if (idx < 0 || idx >= static_cast<int64_t>(x.size())) r.x_in_bounds = false;
      else xs[static_cast<size_t>(e)] = x[static_cast<size_t>(idx)];
    }
  }
  const int V = lg::load_width(g, code_address);
  r.load_width = V;
  for (int warp = 0; warp < lg::kWarps; ++warp) {
    const int64_t group = lg::group_of(it.group_block, warp);
    if (group >= g.groups) continue;
    float acc[lg::kLanes][MT][D] = {};
    for (int64_t s0 = i0; s0 < i1; s0 += lg::kRowsPerStep) {
      const int rows = i1 - s0 < lg::kRowsPerStep ? static_cast<int>(i1 - s0) : lg::kRowsPerStep;
      std::vector<uint32_t> stage(lg::kRowsPerStep * lg::kWindowWords, 0xdeadbeefu);
      const int loads_per_row = (g.code_bits + 1 + V - 1) / V;
      for (int e = 0; e < rows * loads_per_row; ++e) {  // every lane's share of the staging loop
        const int s = e / loads_per_row, q = e - s * loads_per_row;
        const lg::CodeWindow cw = lg::code_window(g, s0 + s, group);
        if (q * V >= cw.words) continue;
        const int64_t first = cw.first + q * V;
        if (first < 0 || first + V > nwords) {
          r.loads_in_bounds = false;
          continue;
        }
        if ((code_address + static_cast<uintptr_t>(first) * 4) % static_cast<uintptr_t>(4 * V) != 0)
          r.loads_aligned = false;
        if (q * V + V > lg::kWindowWords) r.loads_in_bounds = false;
        for (int w = 0; w < V; ++w) stage[static_cast<size_t>(s * lg::kWindowWords + q * V + w)] = codes[first + w];
      }
      for (int lane = 0; lane < lg::kLanes; ++lane) {
        const int64_t j = lg::vector_of(group, lane);
        if (j >= g.vpr) continue;
        for (int s = 0; s < rows; ++s) {
          const int64_t i = s0 + s;
          const int offset = lg::code_window(g, i, group).offset;
          const uint32_t c = unpack_bits_at(stage.data() + s * lg::kWindowWords,
                                            static_cast<uint64_t>(offset) + static_cast<uint64_t>(lane) * g.code_bits,
                                            g.code_bits);
          if (c != unpack_code(codes, i * g.vpr + j, g.code_bits)) r.codes_match = false;
          const int64_t off = lg::centroid_offset(i, c, cb.k, D, cb.num_codebooks, g.in);
          if (off < 0 || off + D > cb.num_codebooks * cb.k * D) {
            r.gathers_in_bounds = false;
            continue;
          }
          float w[D];
          for (int t = 0; t < D; ++t) w[t] = CodebookView<T>::decode_component(cb.centroids + off, t);
          lg::accumulate<D, MT>(w, xs.data() + (i - i0) * MT, acc[lane]);
        }
      }
    }
    for (int lane = 0; lane < lg::kLanes; ++lane) {
      const int64_t j = lg::vector_of(group, lane);
      if (j >= g.vpr) continue;
      const int64_t o0 = j * D;
      const int n = g.out - o0 < D ? static_cast<int>(g.out - o0) : D;
      for (int rr = 0; rr < MT && r0 + rr < g.m; ++rr)
        for (int t = 0; t < n; ++t) {
          const int64_t slot = lg::partial_index(g, it.chunk, r0 + rr, o0 + t);
          if (slot < 0 || slot >= lg::partial_floats(g)) {
            r.loads_in_bounds = false;  // an out-of-range store: reported with the reads
            continue;
          }
          partial[static_cast<size_t>(slot)] = acc[lane][rr][t];
          ++r.writes[static_cast<size_t>(slot)];
        }
    }
  }
}

template <class T, int D, int MT>
Replay replay_typed(const CodebookTensor& t, const std::vector<float>& x, int m, const float* bias, int word_shift) {
  const CodebookShape& sh = t.shape();
  const lg::Geometry g = lg::make_geometry(sh.out, sh.in, sh.d, sh.effective_code_bits(), m);
  REQUIRE(g.row_tile == MT);
  // The codes at a chosen distance from a 16-byte boundary (vector<uint32_t> storage is aligned
  // to at least 16 bytes by the allocator on the platforms we build on; checked).
  std::vector<uint32_t> buf(t.code_words().size() + 4);
  REQUIRE(reinterpret_cast<uintptr_t>(buf.data()) % 16 == 0);
  std::copy(t.code_words().begin(), t.code_words().end(), buf.begin() + word_shift);
  const uint32_t* codes = buf.data() + word_shift;
  CodebookView<T> cb = t.view<T>();
  Replay r;
  std::vector<float> partial(static_cast<size_t>(lg::partial_floats(g)), std::nanf(""));
  r.writes.assign(partial.size(), 0);
  r.items = g.items;
  for (int64_t item = 0; item < g.items; ++item)
    replay_item<T, D, MT>(g, cb, codes, static_cast<int64_t>(t.code_words().size()),
                          reinterpret_cast<uintptr_t>(codes), x, sh.in, item, partial, r);
  r.y.resize(static_cast<size_t>(m * sh.out));
  for (int64_t rr = 0; rr < m; ++rr)
    for (int64_t o = 0; o < sh.out; ++o)
      r.y[static_cast<size_t>(rr * sh.out + o)] = lg::reduce_partials(g, partial.data(), rr, o, bias);
  return r;
}

template <class T, int D>
Replay replay_d(const CodebookTensor& t, const std::vector<float>& x, int m, const float* bias, int word_shift) {
  switch (lg::row_tile_for(m, D)) {
    case 1: return replay_typed<T, D, 1>(t, x, m, bias, word_shift);
    case 2: return replay_typed<T, D, 2>(t, x, m, bias, word_shift);
    case 4: return replay_typed<T, D, 4>(t, x, m, bias, word_shift);
    case 8:
      if constexpr (8 * D <= lg::kAccumulators) return replay_typed<T, D, 8>(t, x, m, bias, word_shift);
      break;
    case 16:
      if constexpr (16 * D <= lg::kAccumulators) return replay_typed<T, D, 16>(t, x, m, bias, word_shift);
      break;
    default: break;
  }
  FAIL("no row tile for m = " << m << ", d = " << D);
  return {};
}

template <class T>
Replay replay(const CodebookTensor& t, const std::vector<float>& x, int m, const float* bias, int word_shift) {
  switch (t.shape().d) {
    case 2: return replay_d<T, 2>(t, x, m, bias, word_shift);
    case 4: return replay_d<T, 4>(t, x, m, bias, word_shift);
    case 8: return replay_d<T, 8>(t, x, m, bias, word_shift);
    case 16: return replay_d<T, 16>(t, x, m, bias, word_shift);
    default: break;
  }
  FAIL("d = " << t.shape().d);
  return {};
}

Replay replay_any(const CodebookTensor& t, const std::vector<float>& x, int m, const float* bias, int word_shift) {
  switch (t.shape().centroid_dtype) {
    case DType::kF16: return replay<f16>(t, x, m, bias, word_shift);
    case DType::kBF16: return replay<bf16>(t, x, m, bias, word_shift);
    default: return replay<float>(t, x, m, bias, word_shift);
  }
}

using Case = cluscomp_test::LookupCase;

void check_case(const Case& c, DType dtype, int m, bool integers, int word_shift, uint32_t seed) {
  std::mt19937 rng(seed);
  const CodebookTensor t = cluscomp_test::lookup_tensor(c, dtype, integers, rng);
  const std::vector<float> x = cluscomp_test::lookup_x(m * c.in, integers, rng);
  std::vector<float> bias = cluscomp_test::lookup_x(c.out, integers, rng);
  INFO("seed " << seed << " out " << c.out << " in " << c.in << " d " << c.d << " K " << c.k << " bits " << c.bits
               << " S " << c.s << " dtype " << dtype_name(dtype) << " m " << m << " shift " << word_shift
               << (integers ? " integers" : " gaussian"));
  const Replay r = replay_any(t, x, m, bias.data(), word_shift);
  INFO("load width " << r.load_width << ", items " << r.items);
  CHECK(r.loads_in_bounds);
  CHECK(r.loads_aligned);
  CHECK(r.codes_match);
  CHECK(r.gathers_in_bounds);
  CHECK(r.x_in_bounds);
  // Every slot of the workspace written exactly once (slots are exactly (chunk, row, live output)).
  int64_t wrong = 0;
  for (int w : r.writes) wrong += w != 1;
  CHECK(wrong == 0);
  const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
  if (integers) {
    int64_t diff = 0;
    for (size_t e = 0; e < ref.size(); ++e) diff += static_cast<double>(r.y[e]) != ref[e];
    CHECK(diff == 0);
  } else {
    CHECK(cluscomp_test::rel_err(r.y, ref) < cluscomp_test::kLookupGemmGpuRelTol);
  }
}

}  // namespace

TEST_CASE("lookup GEMV mapping: geometry is a pure function of the shape, within its bounds", "[lookup_gemv_map]") {
  for (int d : {2, 4, 8, 16})
    for (int m : {1, 2, 3, 5, 8, 9, 16, 17, 40}) {
      const lg::Geometry g = lg::make_geometry(4096, 11008, d, 12, m);
      INFO("d " << d << " m " << m);
      CHECK(g.row_tile * d <= lg::kAccumulators);
      CHECK(g.row_tile >= (m < lg::max_row_tile(d) ? m : lg::max_row_tile(d)));
      CHECK(g.row_tiles * g.row_tile >= m);
      CHECK(g.chunk_rows % lg::kRowsPerStep == 0);
      CHECK(g.chunk_rows >= lg::kMinChunkRows);
      CHECK(g.chunk_rows * g.row_tile <= lg::kMaxXFloats);  // the shared x chunk fits 16 KiB
      // Where the x chunk allows it, the partial sums (written once, read once) stay below about
      // 2/b of the code bytes read (3/b with the last chunk's rounding; each row tile reads the
      // codes once).
      if (16 * d * g.row_tile <= lg::kMaxXFloats / g.row_tile) {
        const double partial_bytes = 4.0 * static_cast<double>(lg::partial_floats(g));
        const double code_bytes = static_cast<double>(g.row_tiles * g.in * g.vpr) * 12 / 8;
        CHECK(partial_bytes * 12 <= 3 * code_bytes);
      }
      CHECK(g.chunks * g.chunk_rows >= g.in);
      CHECK((g.chunks - 1) * g.chunk_rows < g.in);
    }
  // 16-byte loads exactly when every window starts on a 16-byte boundary.
  CHECK(lg::load_width(lg::make_geometry(4096, 4096, 4, 16, 1), 0) == 4);
  CHECK(lg::load_width(lg::make_geometry(4096, 4096, 4, 12, 1), 0) == 4);
  CHECK(lg::load_width(lg::make_geometry(4096, 4096, 4, 12, 1), 4) == 1);
  CHECK(lg::load_width(lg::make_geometry(4096, 4096, 4, 10, 1), 8) == 2);
  CHECK(lg::load_width(lg::make_geometry(4096, 4096, 4, 9, 1), 0) == 1);
  CHECK(lg::load_width(lg::make_geometry(11008, 4096, 4, 10, 1), 0) == 2);  // vpr 2752: rows of 430 words
}

TEST_CASE("lookup GEMV mapping: replay equals the reference on small integers, every d, width, S", "[lookup_gemv_map]") {
  // Shapes with partial groups (vpr not a multiple of 32), outputs not a multiple of d, chunks not
  // a multiple of the step, several chunks, and widths that straddle words (3, 9, 15).
  const std::vector<Case> cases = {
      {40, 24, 2, 2, 1, 1},       {130, 37, 4, 8, 3, 1},      {256, 300, 4, 256, 8, 1},
      {250, 129, 8, 512, 9, 3},   {1000, 203, 4, 4096, 12, 2}, {96, 515, 16, 300, 15, 1},
      {128, 64, 8, 65536, 16, 1}, {4100, 70, 4, 1024, 10, 4},  {512, 1100, 2, 5, 5, 2},
  };
  uint32_t seed = 20;
  for (const Case& c : cases)
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (int m : {1, 3, 16})
        check_case(c, dt, m, /*integers=*/true, /*word_shift=*/0, seed++);
  // Row tiles (m above the tile), and a code buffer off the 16-byte boundary (narrower loads).
  check_case({256, 300, 4, 256, 8, 1}, DType::kF16, 21, true, 0, seed++);
  check_case({250, 129, 8, 512, 9, 3}, DType::kBF16, 13, true, 0, seed++);
  check_case({96, 100, 16, 300, 16, 1}, DType::kF32, 7, true, 0, seed++);
  for (int shift : {1, 2, 3}) check_case({256, 300, 4, 256, 8, 1}, DType::kF16, 2, true, shift, seed++);
}

TEST_CASE("lookup GEMV mapping: replay is within the fp32 tolerance on Gaussian data", "[lookup_gemv_map]") {
  uint32_t seed = 2000;
  for (const Case& c : {Case{1000, 2048, 4, 4096, 12, 1}, Case{520, 1500, 8, 512, 9, 2}, Case{300, 777, 16, 64, 6, 1}})
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16})
      for (int m : {1, 4})
        check_case(c, dt, m, /*integers=*/false, 0, seed++);
}

}  // namespace test_lookup_gemv_map
