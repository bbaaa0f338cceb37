// ops/lookup_gemm.hpp against its twin reference::lookup_gemm_ref (reference/lookup_gemm_ref.hpp:
// naive, double, own geometry and unpacking). Small-integer data: bit-identical to the twin on
// the AVX2 path and the portable path. Realistic data: within kLookupGemmRelTol. Both paths, every
// m, every thread count: bit-identical to each other (one fma per product, inputs ascending).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/configs.hpp"
#include "cluscomp/ops/lookup_gemm.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/reference/lookup_gemm_ref.hpp"
#include "support/lookup_data.hpp"
#include "support/runtime_tolerances.hpp"

namespace test_lookup_gemm {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::kLookupGemmRelTol;
using cluscomp_test::rel_err;

namespace {

constexpr uint32_t kSeed = 20251124;

struct Case {
  int64_t out, in;
  int d;
  int64_t k;
  int s;
  int bits;  // 0: bits_for_count(k)
  DType dtype;
};

std::string describe(const Case& c, int64_t m) {
  return "out " + std::to_string(c.out) + " in " + std::to_string(c.in) + " d " + std::to_string(c.d) +
         " K " + std::to_string(c.k) + " S " + std::to_string(c.s) + " bits " + std::to_string(c.bits) +
         " dtype " + dtype_name(c.dtype) + " m " + std::to_string(m) + " seed " + std::to_string(kSeed);
}

/// Random tensor (support/lookup_data.hpp): small integers in [-3, 3] or Gaussian values.
CodebookTensor make_tensor(const Case& c, bool integers, std::mt19937& rng) {
  CodebookShape sh;
  sh.out = c.out;
  sh.in = c.in;
  sh.d = c.d;
  sh.k = c.k;
  sh.num_codebooks = c.s;
  sh.code_bits = c.bits;
  sh.centroid_dtype = c.dtype;
  return cluscomp_test::lookup_tensor(sh, integers, rng);
}

std::vector<float> make_x(int64_t n, bool integers, std::mt19937& rng) { return cluscomp_test::lookup_x(n, integers, rng); }

std::vector<float> run(const CodebookTensor& t, const std::vector<float>& x, int64_t m, const float* bias,
                       LookupGemmPath path, ThreadPool* pool = nullptr, const float* cb32 = nullptr,
                       const void* panels = nullptr) {
  std::vector<float> y(static_cast<size_t>(m * t.shape().out), -7.0f);
  LookupGemmArgs a;
  a.w = t.any_view();
  a.centroids_f32 = cb32;
  a.code_panels = panels;
  a.x = x.data();
  a.ldx = t.shape().in;
  a.bias = bias;
  a.y = y.data();
  a.ldy = t.shape().out;
  a.m = m;
  LookupGemmOptions o;
  o.path = path;
  const Status s = lookup_gemm(a, pool, o);
  INFO(s.message());
  REQUIRE(s.ok());
  return y;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool equals_exactly(const std::vector<float>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (static_cast<double>(got[i]) != ref[i]) return false;
  return true;
}

std::vector<LookupGemmPath> paths() {
  std::vector<LookupGemmPath> p{LookupGemmPath::kPortable};
  if (lookup_gemm_uses_avx2()) p.push_back(LookupGemmPath::kAvx2);
  return p;
}

const DType kDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

/// lookup_pack_code_panels of t, or empty when this CPU reads no panels for it.
std::vector<unsigned char> make_panels(const AnyCodebookView& w) {
  const int64_t n = lookup_code_panels_bytes(w);
  std::vector<unsigned char> p(static_cast<size_t>(n));
  if (n > 0) {
    const Status s = lookup_pack_code_panels(w, p.data(), n);
    INFO(s.message());
    REQUIRE(s.ok());
  }
  return p;
}

}  // namespace

TEST_CASE("lookup_gemm: small integers are bit-identical to the twin on every path", "[ops][lookup]") {
  if (!lookup_gemm_uses_avx2()) WARN("no AVX2/FMA on this CPU: only the portable path is tested");
  std::mt19937 rng(kSeed);
  std::vector<Case> cases;
  // Every code width 1..16 (K = 2^bits, or fewer), each dtype, d in {1..16}, S > 1, ragged out.
  for (int bits = 1; bits <= 16; ++bits) {
    const int d = (bits % 4 == 0) ? 4 : (bits % 4 == 1 ? 8 : (bits % 4 == 2 ? 3 : 16));
    const int64_t k = bits <= 10 ? (int64_t{1} << bits) : (int64_t{1} << 10) + 3;
    cases.push_back({37 + bits, 29 + 2 * bits, d, k, 1 + bits % 3, bits, kDtypes[bits % 3]});
  }
  cases.push_back({64, 96, 8, 256, 1, 0, DType::kF32});
  cases.push_back({130, 70, 4, 16, 4, 0, DType::kF16});
  cases.push_back({31, 50, 2, 3, 2, 5, DType::kBF16});
  for (const Case& c : cases) {
    const CodebookTensor t = make_tensor(c, true, rng);
    for (int64_t m : {1, 3, 16, 257}) {
      const std::vector<float> x = make_x(m * c.in, true, rng);
      std::vector<float> bias = make_x(c.out, true, rng);
      const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
      const std::vector<double> ref_nb = reference::lookup_gemm_ref(t, x.data(), m, nullptr);
      for (LookupGemmPath p : paths()) {
        INFO(describe(c, m) << " path " << (p == LookupGemmPath::kAvx2 ? "avx2" : "portable"));
        CHECK(equals_exactly(run(t, x, m, bias.data(), p), ref));
        CHECK(equals_exactly(run(t, x, m, nullptr, p), ref_nb));
      }
    }
  }
}

TEST_CASE("lookup_gemm: realistic data within budget; paths, m and threads agree bit for bit",
          "[ops][lookup]") {
  std::mt19937 rng(kSeed + 1);
  ThreadPool pool(3);
  const std::vector<Case> cases = {
      {576, 576, 4, 4096, 1, 0, DType::kF32},   {192, 576, 8, 256, 2, 0, DType::kF16},
      {515, 300, 4, 1000, 3, 11, DType::kBF16}, {100, 1536, 8, 65536, 1, 16, DType::kF16},
      {70, 130, 6, 50, 2, 7, DType::kF32},
  };
  for (const Case& c : cases) {
    const CodebookTensor t = make_tensor(c, false, rng);
    const int64_t m = 257;
    const std::vector<float> x = make_x(m * c.in, false, rng);
    const std::vector<float> bias = make_x(c.out, false, rng);
    const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
    INFO(describe(c, m));
    const std::vector<float> base = run(t, x, m, bias.data(), LookupGemmPath::kPortable);
    CHECK(rel_err(base, ref) < kLookupGemmRelTol);
    for (LookupGemmPath p : paths()) {
      INFO("path " << (p == LookupGemmPath::kAvx2 ? "avx2" : "portable"));
      CHECK(same_bits(run(t, x, m, bias.data(), p, &pool), base));
      // One-row decode and smaller batches give the same rows as the 257-row prefill.
      for (int64_t mm : {1, 3, 16}) {
        const std::vector<float> y = run(t, x, mm, bias.data(), p, &pool);
        CHECK(std::memcmp(y.data(), base.data(), y.size() * sizeof(float)) == 0);
      }
    }
    // A caller-held fp32 copy of the centroids gives the same result.
    std::vector<float> cb32(static_cast<size_t>(c.s * c.k * c.d));
    REQUIRE(lookup_centroids_f32(t.any_view(), cb32.data()).ok());
    CHECK(same_bits(run(t, x, m, bias.data(), LookupGemmPath::kAuto, nullptr, cb32.data()), base));
  }
}

TEST_CASE("lookup_gemm: thread count never changes a bit", "[ops][lookup]") {
  std::mt19937 rng(kSeed + 2);
  const Case c{1000, 256, 4, 4096, 2, 0, DType::kF16};
  const CodebookTensor t = make_tensor(c, false, rng);
  for (int64_t m : {1, 16}) {
    const std::vector<float> x = make_x(m * c.in, false, rng);
    const std::vector<float> y1 = run(t, x, m, nullptr, LookupGemmPath::kAuto);
    for (int threads : {2, 3, 5}) {
      ThreadPool pool(threads);
      INFO(describe(c, m) << " threads " << threads);
      CHECK(same_bits(run(t, x, m, nullptr, LookupGemmPath::kAuto, &pool), y1));
    }
  }
}

TEST_CASE("lookup_gemm: bad arguments give a status naming the problem", "[ops][lookup][errors]") {
  std::mt19937 rng(kSeed + 3);
  const Case c{10, 12, 4, 5, 1, 0, DType::kF32};
  const CodebookTensor t = make_tensor(c, true, rng);
  std::vector<float> x(24), y(20);
  auto args = [&] {
    LookupGemmArgs a;
    a.w = t.any_view();
    a.x = x.data();
    a.ldx = 12;
    a.y = y.data();
    a.ldy = 10;
    a.m = 2;
    return a;
  };
  auto expect = [](const LookupGemmArgs& a, StatusCode code, const std::string& words) {
    const Status s = lookup_gemm(a);
    INFO(s.message());
    CHECK(s.code() == code);
    CHECK(s.message().find(words) != std::string::npos);
  };
  REQUIRE(lookup_gemm(args()).ok());
  {
    LookupGemmArgs a = args();
    a.m = 0;
    a.x = nullptr;
    CHECK(lookup_gemm(a).ok());  // nothing to do
  }
  LookupGemmArgs a = args();
  a.m = -1;
  expect(a, StatusCode::kInvalidArgument, "negative row count m = -1");
  a = args();
  a.x = nullptr;
  expect(a, StatusCode::kInvalidArgument, "null x");
  a = args();
  a.y = nullptr;
  expect(a, StatusCode::kInvalidArgument, "null y");
  a = args();
  a.ldx = 11;
  expect(a, StatusCode::kInvalidArgument, "ldx 11 is below in = 12");
  a = args();
  a.ldy = 9;
  expect(a, StatusCode::kInvalidArgument, "ldy 9 is below out = 10");
  a = args();
  a.w.codes = nullptr;
  expect(a, StatusCode::kInvalidArgument, "null centroid or code pointer");
  a = args();
  a.w.d = 17;
  expect(a, StatusCode::kInvalidArgument, "d must be in 1..16, got 17");
  a = args();
  a.w.out_pad = 13;
  expect(a, StatusCode::kInvalidArgument, "out_pad 13");
  a = args();
  a.w.code_bits = 2;
  expect(a, StatusCode::kInvalidArgument, "K = 5 centroids cannot be indexed by 2-bit codes");
  a = args();
  a.w.code_bits = 17;
  expect(a, StatusCode::kInvalidArgument, "code width must be in 1..16 bits, got 17");
  a = args();
  a.w.num_codebooks = 13;
  expect(a, StatusCode::kInvalidArgument, "S must be in 1..in, got 13");
  a = args();
  a.w.centroid_dtype = DType::kI8;
  expect(a, StatusCode::kUnsupported, "centroid dtype");
  if (!lookup_gemm_uses_avx2()) {
    LookupGemmOptions o;
    o.path = LookupGemmPath::kAvx2;
    const Status s = lookup_gemm(args(), nullptr, o);
    CHECK(s.code() == StatusCode::kUnsupported);
    CHECK(s.message().find("AVX2") != std::string::npos);
  }
  CHECK(lookup_centroids_f32(t.any_view(), nullptr).code() == StatusCode::kInvalidArgument);
}

// --- Code panels (lookup_pack_code_panels): the decode structure's layout -----------------------

TEST_CASE("lookup_gemm: code panels give the twin's bits for small integers", "[ops][lookup][panels]") {
  if (!lookup_gemm_uses_avx2()) {
    WARN("no AVX2/FMA on this CPU: lookup_gemm reads no code panels, nothing to test");
    return;
  }
  std::mt19937 rng(kSeed + 4);
  std::vector<Case> cases;
  // Every panel d with 8-bit-or-narrower (1-byte) and wider (2-byte) codes, every dtype, S > 1
  // with codebook boundaries inside a panel walk, out not a multiple of d, and the number of
  // vectors not a multiple of the panel width (64 / d).
  const int ds[] = {2, 4, 8, 16};
  for (int di = 0; di < 4; ++di)
    for (int bits : {1, 3, 8, 9, 12, 16}) {
      const int d = ds[di];
      const int64_t k = bits <= 10 ? (int64_t{1} << bits) : (int64_t{1} << 10) + 5;
      const int s = 1 + (bits + di) % 3;
      cases.push_back({61 + 7 * bits + 3 * d, 23 + 3 * bits, d, k, s, bits, kDtypes[(bits + di) % 3]});
    }
  cases.push_back({200, 40, 4, 256, 1, 8, DType::kF16});   // 50 vectors: one partial panel of 16
  cases.push_back({130, 37, 2, 100, 37, 7, DType::kF32});  // S = in: a codebook per input row
  for (const Case& c : cases) {
    const CodebookTensor t = make_tensor(c, true, rng);
    const std::vector<unsigned char> panels = make_panels(t.any_view());
    REQUIRE(!panels.empty());
    for (int64_t m : {1, 2, 3, 5}) {
      const std::vector<float> x = make_x(m * c.in, true, rng);
      const std::vector<float> bias = make_x(c.out, true, rng);
      const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
      const std::vector<double> ref_nb = reference::lookup_gemm_ref(t, x.data(), m, nullptr);
      INFO(describe(c, m));
      CHECK(equals_exactly(run(t, x, m, bias.data(), LookupGemmPath::kAvx2, nullptr, nullptr, panels.data()), ref));
      CHECK(equals_exactly(run(t, x, m, nullptr, LookupGemmPath::kAvx2, nullptr, nullptr, panels.data()), ref_nb));
      // The portable path ignores the panels and still gives the same bits.
      CHECK(equals_exactly(run(t, x, m, bias.data(), LookupGemmPath::kPortable, nullptr, nullptr, panels.data()), ref));
    }
  }
}

TEST_CASE("lookup_gemm: code panels change no bit (realistic data, threads, fp32 copy)", "[ops][lookup][panels]") {
  if (!lookup_gemm_uses_avx2()) {
    WARN("no AVX2/FMA on this CPU: lookup_gemm reads no code panels, nothing to test");
    return;
  }
  std::mt19937 rng(kSeed + 5);
  const std::vector<Case> cases = {
      {1000, 300, 4, 65536, 1, 16, DType::kF16}, {576, 576, 4, 4096, 1, 0, DType::kF16},
      {515, 300, 2, 256, 3, 0, DType::kBF16},    {300, 200, 8, 65536, 2, 16, DType::kF32},
      {1536, 100, 16, 512, 1, 0, DType::kF16},   {777, 129, 4, 256, 5, 8, DType::kF32},
  };
  for (const Case& c : cases) {
    const CodebookTensor t = make_tensor(c, false, rng);
    const std::vector<unsigned char> panels = make_panels(t.any_view());
    REQUIRE(!panels.empty());
    std::vector<float> cb32(static_cast<size_t>(c.s * c.k * c.d));
    REQUIRE(lookup_centroids_f32(t.any_view(), cb32.data()).ok());
    const int64_t m = 3;
    const std::vector<float> x = make_x(m * c.in, false, rng);
    const std::vector<float> bias = make_x(c.out, false, rng);
    const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
    INFO(describe(c, m));
    const std::vector<float> base = run(t, x, m, bias.data(), LookupGemmPath::kPortable);
    CHECK(rel_err(base, ref) < kLookupGemmRelTol);
    CHECK(same_bits(run(t, x, m, bias.data(), LookupGemmPath::kAvx2, nullptr, nullptr, panels.data()), base));
    CHECK(same_bits(run(t, x, m, bias.data(), LookupGemmPath::kAvx2, nullptr, cb32.data(), panels.data()), base));
    for (int threads : {2, 3, 5}) {
      ThreadPool pool(threads);
      INFO("threads " << threads);
      CHECK(same_bits(run(t, x, m, bias.data(), LookupGemmPath::kAuto, &pool, nullptr, panels.data()), base));
      // One row with panels equals the first row of the 3-row product, and the 16-row tile
      // structure (which ignores the panels) agrees too.
      const std::vector<float> y1 = run(t, x, 1, bias.data(), LookupGemmPath::kAuto, &pool, nullptr, panels.data());
      CHECK(std::memcmp(y1.data(), base.data(), y1.size() * sizeof(float)) == 0);
    }
    const std::vector<float> x16 = make_x(16 * c.in, false, rng);
    CHECK(same_bits(run(t, x16, 16, nullptr, LookupGemmPath::kAvx2, nullptr, nullptr, panels.data()),
                    run(t, x16, 16, nullptr, LookupGemmPath::kPortable)));
  }
}

TEST_CASE("lookup_gemm: code panels of a view with codes >= K read them as K-1", "[ops][lookup][panels]") {
  if (!lookup_gemm_uses_avx2()) return;
  std::mt19937 rng(kSeed + 6);
  const Case c{64, 20, 4, 200, 1, 8, DType::kF32};  // 8-bit codes can hold 200..255 (invalid)
  CodebookTensor t = make_tensor(c, true, rng);
  CodebookTensor clamped = t;
  std::vector<uint32_t> codes(static_cast<size_t>(t.shape().num_vectors()));
  for (auto& v : codes) v = static_cast<uint32_t>(rng() % 256);
  std::vector<uint32_t> codes_c = codes;
  for (auto& v : codes_c) v = std::min<uint32_t>(v, 199);
  REQUIRE(clamped.set_codes(codes_c.data(), static_cast<int64_t>(codes_c.size())).ok());
  // Write the out-of-range codes straight into the packed words (set_codes would refuse them).
  std::vector<uint32_t>& words = t.code_words();
  std::fill(words.begin(), words.end(), 0u);
  for (size_t v = 0; v < codes.size(); ++v) words[v / 4] |= codes[v] << (8 * (v % 4));
  const std::vector<unsigned char> panels = make_panels(t.any_view());
  const std::vector<float> x = make_x(c.in, true, rng);
  const std::vector<double> ref = reference::lookup_gemm_ref(clamped, x.data(), 1, nullptr);
  CHECK(equals_exactly(run(t, x, 1, nullptr, LookupGemmPath::kAvx2, nullptr, nullptr, panels.data()), ref));
  CHECK(equals_exactly(run(t, x, 1, nullptr, LookupGemmPath::kAvx2), ref));
}

TEST_CASE("lookup_gemm: code panel errors name the problem", "[ops][lookup][panels][errors]") {
  std::mt19937 rng(kSeed + 7);
  const CodebookTensor t = make_tensor({64, 12, 4, 16, 1, 0, DType::kF32}, true, rng);
  const CodebookTensor t3 = make_tensor({63, 12, 3, 16, 1, 0, DType::kF32}, true, rng);
  CHECK(lookup_code_panels_bytes(t3.any_view()) == 0);  // d = 3: no panel kernel
  if (!lookup_gemm_uses_avx2()) {
    CHECK(lookup_code_panels_bytes(t.any_view()) == 0);
    return;
  }
  const int64_t n = lookup_code_panels_bytes(t.any_view());
  REQUIRE(n > 0);
  std::vector<unsigned char> buf(static_cast<size_t>(n));
  auto expect = [](const Status& s, StatusCode code, const std::string& words) {
    INFO(s.message());
    CHECK(s.code() == code);
    CHECK(s.message().find(words) != std::string::npos);
  };
  expect(lookup_pack_code_panels(t3.any_view(), buf.data(), n), StatusCode::kInvalidArgument, "no panels for d = 3");
  expect(lookup_pack_code_panels(t.any_view(), nullptr, n), StatusCode::kInvalidArgument, "null output");
  expect(lookup_pack_code_panels(t.any_view(), buf.data(), n - 1), StatusCode::kInvalidArgument,
         "holds " + std::to_string(n - 1) + " bytes, the panels need " + std::to_string(n));
  AnyCodebookView bad = t.any_view();
  bad.d = 17;
  expect(lookup_pack_code_panels(bad, buf.data(), n), StatusCode::kInvalidArgument, "d must be in 1..16, got 17");
  REQUIRE(lookup_pack_code_panels(t.any_view(), buf.data(), n).ok());
  // Panels of another tensor geometry are refused, not misread.
  const CodebookTensor other = make_tensor({64, 12, 4, 32, 1, 0, DType::kF32}, true, rng);
  std::vector<float> x(12), y(64);
  LookupGemmArgs a;
  a.w = other.any_view();
  a.code_panels = buf.data();
  a.x = x.data();
  a.ldx = 12;
  a.y = y.data();
  a.ldy = 64;
  a.m = 1;
  expect(lookup_gemm(a), StatusCode::kInvalidArgument, "code_panels were not built by lookup_pack_code_panels");
  a.w = t.any_view();
  CHECK(lookup_gemm(a).ok());
}

}  // namespace test_lookup_gemm
