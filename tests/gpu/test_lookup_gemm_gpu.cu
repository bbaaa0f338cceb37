// CUDA lookup GEMV/GEMM (cuda/lookup_gemm.cuh) against reference::lookup_gemm_ref:
//  - bit-exact on small-integer data for every centroid dtype x activation dtype (at m = 3 and
//    40), d, code width (straddling and not), S, m (1..16 on the lookup path, row tiles above it,
//    and the decode + cuBLAS path), both table placements, padded leading dimensions;
//  - the same bits on a second run (determinism);
//  - within kLookupGemmGpu*RelTol on Gaussian data, for fp32/fp16/bf16 outputs;
//  - fp16/bf16 centroids with large-magnitude activations (|x| up to ~3e4, the range where fp16
//    products and sums overflow if anything is kept in 16 bits): finite and within tolerance
//    (the lost first attempt produced NaN there, docs/benchmarks.md gpu-lookup-gemv);
//  - every Status path: unsupported d, dtypes, a table too large for the shared placement, a short
//    workspace, m above the lookup range without a cuBLAS handle, misaligned pointers.
// The GPU main skips (exit 77) without a CUDA device. tests/cpu/test_lookup_gemv_map.cpp replays
// the same kernel on the CPU.
#include <catch2/catch.hpp>

#include <cublas_v2.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/cuda/lookup_gemm.cuh"
#include "cluscomp/reference/lookup_gemm_ref.hpp"
#include "support/gpu_test.cuh"
#include "support/lookup_data.hpp"
#include "support/runtime_tolerances.hpp"

using namespace cluscomp;
using cluscomp_test::DeviceBuffer;

namespace {

// Host floats stored as dtype t (round to nearest even), as bytes.
std::vector<unsigned char> to_bytes(const std::vector<float>& v, DType t) {
  std::vector<unsigned char> b(v.size() * static_cast<size_t>(dtype_size(t)));
  for (size_t e = 0; e < v.size(); ++e) {
    if (t == DType::kF16) {
      const f16 h(v[e]);
      std::memcpy(b.data() + 2 * e, &h.bits, 2);
    } else if (t == DType::kBF16) {
      const bf16 h(v[e]);
      std::memcpy(b.data() + 2 * e, &h.bits, 2);
    } else {
      std::memcpy(b.data() + 4 * e, &v[e], 4);
    }
  }
  return b;
}

std::vector<float> from_bytes(const std::vector<unsigned char>& b, DType t, size_t n) {
  std::vector<float> v(n);
  for (size_t e = 0; e < n; ++e) {
    if (t == DType::kF16) {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * e, 2);
      v[e] = half_bits_to_float(h);
    } else if (t == DType::kBF16) {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * e, 2);
      v[e] = bf16_bits_to_float(h);
    } else {
      std::memcpy(&v[e], b.data() + 4 * e, 4);
    }
  }
  return v;
}

// x as the GPU sees it: rounded to its dtype (the reference gets the same values).
std::vector<float> rounded(const std::vector<float>& x, DType t) { return from_bytes(to_bytes(x, t), t, x.size()); }

struct Call {
  DType x_dtype = DType::kF32;
  DType y_dtype = DType::kF32;
  LookupGpuPath path = LookupGpuPath::kAuto;
  LookupTablePlacement placement = LookupTablePlacement::kAuto;
  int64_t xpad = 0;  // ldx = in + xpad; the padding holds NaN, so reading it would show in y
  int64_t ypad = 0;  // ldy = out + ypad; the padding must keep its 0xff bytes
};

struct Out {
  std::vector<float> y;              // (m, out), dense
  std::vector<unsigned char> raw;    // (m, ldy) as stored
  bool padding_untouched = true;
};

class Cublas {
 public:
  Cublas() { REQUIRE(cublasCreate(&h_) == CUBLAS_STATUS_SUCCESS); }
  ~Cublas() { (void)cublasDestroy(h_); }
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// One call on the device: uploads, queries and allocates the workspace, runs, downloads y.
Out run_gpu(const CodebookTensor& t, const std::vector<float>& x, int64_t m, const std::vector<float>& bias,
            const Call& c, cublasHandle_t cublas) {
  const CodebookShape& sh = t.shape();
  DeviceBuffer<unsigned char> cent(t.centroid_bytes().data(), t.centroid_bytes().size());
  DeviceBuffer<uint32_t> codes(t.code_words().data(), t.code_words().size());
  const int64_t ldx = sh.in + c.xpad, ldy = sh.out + c.ypad;
  std::vector<float> xp(static_cast<size_t>(m * ldx), std::nanf(""));
  for (int64_t r = 0; r < m; ++r)
    std::copy(x.begin() + r * sh.in, x.begin() + (r + 1) * sh.in, xp.begin() + r * ldx);
  const std::vector<unsigned char> xb = to_bytes(xp, c.x_dtype);
  DeviceBuffer<unsigned char> dx(xb.data(), xb.size());
  DeviceBuffer<float> dbias(bias.data(), bias.size());
  const size_t ybytes = static_cast<size_t>(m * ldy) * static_cast<size_t>(dtype_size(c.y_dtype));
  DeviceBuffer<unsigned char> dy(ybytes);
  dy.fill_bytes(0xff);  // NaN in every dtype: an output never written shows
  LookupGemmGpuArgs a;
  a.w = make_any_codebook_view(sh, cent.get(), codes.get());
  a.x = dx.get();
  a.x_dtype = c.x_dtype;
  a.ldx = ldx;
  a.bias = bias.empty() ? nullptr : dbias.get();
  a.y = dy.get();
  a.y_dtype = c.y_dtype;
  a.ldy = ldy;
  a.m = m;
  a.path = c.path;
  a.placement = c.placement;
  a.cublas = cublas;
  const size_t ws = lookup_gemm_gpu_workspace_size(a);
  DeviceBuffer<unsigned char> dws(ws);
  a.workspace = dws.get();
  a.workspace_bytes = ws;
  const Status s = lookup_gemm_gpu(a, nullptr);
  INFO(s.message());
  REQUIRE(s.ok());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  Out o;
  o.raw = dy.download();
  const std::vector<float> all = from_bytes(o.raw, c.y_dtype, static_cast<size_t>(m * ldy));
  const size_t es = static_cast<size_t>(dtype_size(c.y_dtype));
  for (int64_t r = 0; r < m; ++r) {
    o.y.insert(o.y.end(), all.begin() + r * ldy, all.begin() + r * ldy + sh.out);
    for (size_t b = static_cast<size_t>(r * ldy + sh.out) * es; b < static_cast<size_t>((r + 1) * ldy) * es; ++b)
      o.padding_untouched = o.padding_untouched && o.raw[b] == 0xff;
  }
  return o;
}

using Case = cluscomp_test::LookupCase;

std::string describe(const Case& c, DType dt, int64_t m, const Call& call) {
  return "out " + std::to_string(c.out) + " in " + std::to_string(c.in) + " d " + std::to_string(c.d) + " K " +
         std::to_string(c.k) + " bits " + std::to_string(c.bits) + " S " + std::to_string(c.s) + " centroids " +
         dtype_name(dt) + " m " + std::to_string(m) + " x " + dtype_name(call.x_dtype) + " y " +
         dtype_name(call.y_dtype) + " path " + std::to_string(static_cast<int>(call.path)) + " placement " +
         std::to_string(static_cast<int>(call.placement));
}

const std::vector<Case> kCases = {
    {40, 24, 2, 2, 1, 1},       {130, 37, 4, 8, 3, 1},       {256, 300, 4, 256, 8, 1},
    {250, 129, 8, 512, 9, 3},   {1000, 203, 4, 4096, 12, 2}, {96, 515, 16, 300, 15, 1},
    {128, 64, 8, 65536, 16, 1}, {4100, 70, 4, 1024, 10, 4},  {512, 1100, 2, 5, 5, 2},
};

}  // namespace

TEST_CASE("lookup_gemm_gpu is bit-exact on small integers: every dtype, d, width, S, m, placement",
          "[lookup_gemm_gpu]") {
  Cublas cublas;
  uint32_t seed = 20;
  for (const Case& c : kCases)
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
      std::mt19937 rng(seed++);
      const CodebookTensor t = cluscomp_test::lookup_tensor(c, dt, true, rng);
      const int64_t table = int64_t{c.s} * c.k * c.d * dtype_size(dt);
      for (int64_t m : {1, 3, 16, 21, 40}) {
        const std::vector<float> x = cluscomp_test::lookup_x(m * c.in, true, rng);
        const std::vector<float> bias = cluscomp_test::lookup_x(c.out, true, rng);
        const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
        // Every activation dtype at m = 3 (lookup) and m = 40 (decode + cuBLAS: same-type and
        // widened GEMMs); fp16 elsewhere, to keep the run (and memcheck's) short.
        const std::vector<DType> xdts = m == 3 || m == 40 ? std::vector<DType>{DType::kF32, DType::kF16, DType::kBF16}
                                                          : std::vector<DType>{DType::kF16};
        for (DType xdt : xdts) {
          std::vector<Call> calls;
          if (m <= 21) {  // the lookup path, each placement that fits (m = 21: two row tiles)
            calls.push_back({xdt, DType::kF32, LookupGpuPath::kLookup, LookupTablePlacement::kL2, 0, 0});
            if (table <= kLookupSharedTableBytes)
              calls.push_back({xdt, DType::kF32, LookupGpuPath::kLookup, LookupTablePlacement::kShared, 0, 0});
          }
          if (m >= 16) calls.push_back({xdt, DType::kF32, LookupGpuPath::kDecodeCublas, LookupTablePlacement::kAuto, 0, 0});
          // Leading dimensions larger than the rows (x padding NaN, y padding must survive).
          calls.push_back({xdt, DType::kF32, LookupGpuPath::kAuto, LookupTablePlacement::kAuto, 5, 3});
          for (const Call& call : calls) {
            INFO("seed " << seed - 1 << " " << describe(c, dt, m, call));
            const Out o = run_gpu(t, x, m, bias, call, cublas.get());
            CHECK(o.padding_untouched);
            int64_t diff = 0;
            for (size_t e = 0; e < ref.size(); ++e) diff += static_cast<double>(o.y[e]) != ref[e];
            CHECK(diff == 0);
          }
        }
      }
    }
}

TEST_CASE("lookup_gemm_gpu gives the same bits on every run", "[lookup_gemm_gpu]") {
  Cublas cublas;
  std::mt19937 rng(7);
  const Case c{1000, 2048, 4, 4096, 12, 1};
  const CodebookTensor t = cluscomp_test::lookup_tensor(c, DType::kF16, false, rng);
  for (int64_t m : {1, 5, 64}) {
    const std::vector<float> x = cluscomp_test::lookup_x(m * c.in, false, rng);
    const Call call{DType::kF16, DType::kF32, LookupGpuPath::kAuto, LookupTablePlacement::kAuto, 0, 0};
    INFO(describe(c, DType::kF16, m, call));
    const Out a = run_gpu(t, x, m, {}, call, cublas.get());
    const Out b = run_gpu(t, x, m, {}, call, cublas.get());
    CHECK(a.raw == b.raw);
  }
}

TEST_CASE("lookup_gemm_gpu is within tolerance on Gaussian data, fp32/fp16/bf16 outputs", "[lookup_gemm_gpu]") {
  Cublas cublas;
  uint32_t seed = 2000;
  for (const Case& c : {Case{1000, 2048, 4, 4096, 12, 1}, Case{520, 1500, 8, 512, 9, 2}, Case{300, 777, 16, 64, 6, 1}})
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
      std::mt19937 rng(seed++);
      const CodebookTensor t = cluscomp_test::lookup_tensor(c, dt, false, rng);
      for (int64_t m : {1, 4, 16, 48}) {
        for (DType xdt : {DType::kF32, DType::kF16, DType::kBF16}) {
          const std::vector<float> x = rounded(cluscomp_test::lookup_x(m * c.in, false, rng), xdt);
          const std::vector<float> bias = cluscomp_test::lookup_x(c.out, false, rng);
          const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, bias.data());
          for (DType ydt : {DType::kF32, DType::kF16, DType::kBF16}) {
            const Call call{xdt, ydt, LookupGpuPath::kAuto, LookupTablePlacement::kAuto, 0, 0};
            INFO("seed " << seed - 1 << " " << describe(c, dt, m, call));
            const Out o = run_gpu(t, x, m, bias, call, cublas.get());
            const double tol = ydt == DType::kF16    ? cluscomp_test::kLookupGemmGpuF16OutRelTol
                               : ydt == DType::kBF16 ? cluscomp_test::kLookupGemmGpuBF16OutRelTol
                                                     : cluscomp_test::kLookupGemmGpuRelTol;
            const double err = cluscomp_test::rel_err(o.y, ref);
            INFO("relative error " << err << " budget " << tol);
            CHECK(err < tol);
          }
        }
      }
    }
}

TEST_CASE("lookup_gemm_gpu: fp16/bf16 centroids with large activations stay finite and accurate",
          "[lookup_gemm_gpu]") {
  // Centroids N(0, 0.05) scaled by 200 (|w| up to ~40) and x N(0, 1) scaled by 8000 (|x| up to
  // ~3e4, near fp16's 65504): every product and partial sum exceeds fp16's range, so any 16-bit
  // intermediate would give inf and then NaN. With fp32 accumulation y is finite (|y| ~ 1e7).
  Cublas cublas;
  std::mt19937 rng(31);
  const Case c{1024, 1024, 4, 256, 8, 1};
  for (DType dt : {DType::kF16, DType::kBF16}) {
    CodebookTensor t = cluscomp_test::lookup_tensor(c, dt, false, rng);
    for (int s = 0; s < c.s; ++s)
      for (int64_t q = 0; q < c.k; ++q)
        for (int e = 0; e < c.d; ++e) t.set_centroid(s, q, e, 200.0f * t.centroid(s, q, e));
    for (int64_t m : {1, 16, 32}) {
      std::vector<float> x = cluscomp_test::lookup_x(m * c.in, false, rng);
      for (float& v : x) v *= 8000.0f;
      x = rounded(x, dt);
      const std::vector<double> ref = reference::lookup_gemm_ref(t, x.data(), m, nullptr);
      for (auto pl : {LookupTablePlacement::kShared, LookupTablePlacement::kL2}) {
        const Call call{dt, DType::kF32, m <= 16 ? LookupGpuPath::kLookup : LookupGpuPath::kDecodeCublas, pl, 0, 0};
        INFO(describe(c, dt, m, call));
        const Out o = run_gpu(t, x, m, {}, call, cublas.get());
        int64_t nonfinite = 0;
        for (float v : o.y) nonfinite += !std::isfinite(v);
        CHECK(nonfinite == 0);
        CHECK(cluscomp_test::rel_err(o.y, ref) < cluscomp_test::kLookupGemmGpuRelTol);
      }
    }
  }
}

TEST_CASE("lookup_gemm_gpu returns a Status naming each bad argument", "[lookup_gemm_gpu]") {
  std::mt19937 rng(5);
  const Case c{256, 300, 4, 65536, 16, 1};  // a 512 KiB fp16 table: too large for the shared placement
  const CodebookTensor t = cluscomp_test::lookup_tensor(c, DType::kF16, true, rng);
  DeviceBuffer<unsigned char> cent(t.centroid_bytes().data(), t.centroid_bytes().size());
  DeviceBuffer<uint32_t> codes(t.code_words().data(), t.code_words().size());
  DeviceBuffer<unsigned char> x(2 * 64 * 300 + 64), y(4 * 64 * 256);
  LookupGemmGpuArgs good;
  good.w = make_any_codebook_view(t.shape(), cent.get(), codes.get());
  good.x = x.get();
  good.x_dtype = DType::kF16;
  good.ldx = 300;
  good.y = y.get();
  good.ldy = 256;
  good.m = 4;
  const size_t ws_bytes = lookup_gemm_gpu_workspace_size(good);
  DeviceBuffer<unsigned char> ws(ws_bytes);
  good.workspace = ws.get();
  good.workspace_bytes = ws_bytes;
  auto expect = [](const LookupGemmGpuArgs& a, StatusCode code, const std::string& needle) {
    const Status s = lookup_gemm_gpu(a, nullptr);
    INFO("message: " << s.message());
    CHECK(s.code() == code);
    CHECK(s.message().find(needle) != std::string::npos);
  };
  {
    const Status s = lookup_gemm_gpu(good, nullptr);
    INFO(s.message());
    CHECK(s.ok());
    CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  }
  LookupGemmGpuArgs a = good;
  a.w.d = 3;
  a.w.out_pad = 258;
  expect(a, StatusCode::kUnsupported, "d = 3");
  a = good;
  a.x_dtype = DType::kF64;
  expect(a, StatusCode::kUnsupported, "x dtype");
  a = good;
  a.placement = LookupTablePlacement::kShared;
  expect(a, StatusCode::kUnsupported, "does not fit the shared-memory placement");
  a = good;
  a.workspace_bytes = ws_bytes - 1;
  expect(a, StatusCode::kInvalidArgument, "needed");
  a = good;
  a.m = 40;
  expect(a, StatusCode::kInvalidArgument, "args.cublas");
  a = good;
  a.w.centroids = cent.get() + 2;
  expect(a, StatusCode::kInvalidArgument, "aligned");
  a = good;
  a.ldx = 299;
  expect(a, StatusCode::kInvalidArgument, "ldx");
  a = good;
  a.w.code_bits = 17;
  expect(a, StatusCode::kInvalidArgument, "code width");
  a = good;
  a.m = 0;
  CHECK(lookup_gemm_gpu(a, nullptr).ok());
}
