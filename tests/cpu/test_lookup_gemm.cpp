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
#include "support/runtime_tolerances.hpp"

using namespace cluscomp;
using cluscomp_test::kLookupGemmRelTol;

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

/// Random tensor: small integers in [-3, 3] (exact in every dtype) or Gaussian values.
CodebookTensor make_tensor(const Case& c, bool integers, std::mt19937& rng) {
  CodebookShape sh;
  sh.out = c.out;
  sh.in = c.in;
  sh.d = c.d;
  sh.k = c.k;
  sh.num_codebooks = c.s;
  sh.code_bits = c.bits;
  sh.centroid_dtype = c.dtype;
  CodebookTensor t(sh);
  std::normal_distribution<float> g(0.0f, 0.05f);
  for (int s = 0; s < c.s; ++s)
    for (int64_t q = 0; q < c.k; ++q)
      for (int e = 0; e < c.d; ++e)
        t.set_centroid(s, q, e, integers ? static_cast<float>(static_cast<int>(rng() % 7) - 3) : g(rng));
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  for (auto& v : codes) v = static_cast<uint32_t>(rng() % static_cast<uint32_t>(c.k));
  REQUIRE(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())).ok());
  return t;
}

std::vector<float> make_x(int64_t n, bool integers, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = integers ? static_cast<float>(static_cast<int>(rng() % 5) - 2) : g(rng);
  return x;
}

std::vector<float> run(const CodebookTensor& t, const std::vector<float>& x, int64_t m, const float* bias,
                       LookupGemmPath path, ThreadPool* pool = nullptr, const float* cb32 = nullptr) {
  std::vector<float> y(static_cast<size_t>(m * t.shape().out), -7.0f);
  LookupGemmArgs a;
  a.w = t.any_view();
  a.centroids_f32 = cb32;
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

double rel_err(const std::vector<float>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

std::vector<LookupGemmPath> paths() {
  std::vector<LookupGemmPath> p{LookupGemmPath::kPortable};
  if (lookup_gemm_uses_avx2()) p.push_back(LookupGemmPath::kAvx2);
  return p;
}

const DType kDtypes[] = {DType::kF32, DType::kF16, DType::kBF16};

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
