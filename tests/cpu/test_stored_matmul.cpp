// Products with weights in their stored type (ops/stored_matmul.hpp) on realistic data: Gaussian
// weights with per-row scales and a few outliers, quantised by io's ggml quantisers (F16, BF16,
// Q8_0, Q4_0, Q4_1), and valid random blocks (sane fp16 scales) for the formats we cannot
// quantise (Q5_x, K-quants). Twins: io's dequantize_row and reference::dequantize_ref for the
// decoding (bit for bit), reference::matmul_nt_ref of the reference-dequantised matrix for the
// product (relative error budget). The properties the runtime relies on: AVX2 and portable paths
// bit-identical, batch rows equal to one-row calls, thread counts change no bit, and on AVX2+FMA
// CPUs the result equals matmul_nt of the dequantised fp32 matrix bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/parallel.hpp"
#include "cluscomp/ops/stored_matmul.hpp"
#include "cluscomp/reference/gguf_quant_ref.hpp"
#include "cluscomp/reference/ops_ref.hpp"
#include "support/runtime_tolerances.hpp"

namespace test_stored_matmul {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::kStoredMatmulRelTol;

namespace {

constexpr uint32_t kSeed = 20261208;

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// (rows, cols) weights like a trained projection's: N(0, s_r) with a per-row scale s_r in
/// [0.01, 0.08] and one outlier of 10 s_r in every 97 values.
std::vector<float> realistic_weights(std::mt19937& rng, int64_t rows, int64_t cols) {
  std::uniform_real_distribution<float> scale(0.01f, 0.08f);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float s = scale(rng);
    for (int64_t c = 0; c < cols; ++c) w[static_cast<size_t>(r * cols + c)] = nd(rng) * s * ((r * cols + c) % 97 == 5 ? 10.0f : 1.0f);
  }
  return w;
}

/// The stored bytes of a (rows, cols) matrix of type `t`: quantised from realistic weights where
/// io has a quantiser, else random bytes with every block's fp16/fp32 scale fields set to small
/// positive values (so that every value is finite and of a weight's magnitude).
std::vector<unsigned char> stored_bytes(std::mt19937& rng, StoredType t, int64_t rows, int64_t cols) {
  const GgmlType g = static_cast<GgmlType>(static_cast<uint32_t>(t));
  if (ggml::can_quantize(g)) {
    const std::vector<float> w = realistic_weights(rng, rows, cols);
    return quantize(g, w.data(), rows * cols);
  }
  const StoredTypeInfo info = stored_type_info(t);
  std::vector<unsigned char> b(static_cast<size_t>(stored_row_bytes(t, cols) * rows));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& x : b) x = static_cast<unsigned char>(byte(rng));
  std::vector<int> f16_fields;  // byte offsets of fp16 scales within a block
  switch (t) {
    case StoredType::kQ5_0: f16_fields = {0}; break;
    case StoredType::kQ5_1: f16_fields = {0, 2}; break;
    case StoredType::kQ2_K: f16_fields = {80, 82}; break;
    case StoredType::kQ3_K: f16_fields = {108}; break;
    case StoredType::kQ4_K: case StoredType::kQ5_K: f16_fields = {0, 2}; break;
    case StoredType::kQ6_K: f16_fields = {208}; break;
    default: break;
  }
  std::uniform_real_distribution<float> sd(0.0005f, 0.004f);
  for (size_t blk = 0; blk < b.size(); blk += static_cast<size_t>(info.block_bytes)) {
    for (int off : f16_fields) ggml::store_f16(&b[blk + static_cast<size_t>(off)], sd(rng));
    if (t == StoredType::kQ8_K) {
      const float d = sd(rng) / 100.0f;
      std::memcpy(&b[blk], &d, 4);
    }
  }
  return b;
}

const std::vector<StoredType> kAllTypes = {
    StoredType::kF32,  StoredType::kF16,  StoredType::kBF16, StoredType::kQ4_0, StoredType::kQ4_1,
    StoredType::kQ5_0, StoredType::kQ5_1, StoredType::kQ8_0, StoredType::kQ2_K, StoredType::kQ3_K,
    StoredType::kQ4_K, StoredType::kQ5_K, StoredType::kQ6_K, StoredType::kQ8_K};

}  // namespace

TEST_CASE("decode_stored_rows equals dequantize_row and dequantize_ref bit for bit, both paths", "[ops][stored]") {
  std::mt19937 rng(kSeed);
  INFO("seed " << kSeed << ", avx2 path " << stored_matmul_uses_avx2());
  const int64_t rows = 7, cols = 512;
  for (StoredType t : kAllTypes) {
    INFO("type " << stored_type_info(t).name);
    const std::vector<unsigned char> bytes = stored_bytes(rng, t, rows, cols);
    const StoredMatrixView w{t, bytes.data(), rows, cols};
    std::vector<float> io(static_cast<size_t>(rows * cols));
    dequantize_row(static_cast<GgmlType>(static_cast<uint32_t>(t)), bytes.data(), io.data(), rows * cols);
    const std::vector<float> ref = reference::dequantize_ref(static_cast<uint32_t>(t), bytes.data(), rows * cols);
    REQUIRE(same_bits(io, ref));
    for (StoredPath path : {StoredPath::kAuto, StoredPath::kPortable}) {
      std::vector<float> got(static_cast<size_t>(rows * cols));
      REQUIRE(decode_stored_rows(w, 0, rows, got.data(), cols, path).ok());
      CHECK(same_bits(got, io));
      // One row alone, into a wider buffer: the same bits in the row, the padding untouched.
      std::vector<float> one(static_cast<size_t>(cols + 3), -7.0f);
      REQUIRE(decode_stored_rows(w, 4, 1, one.data(), cols + 3, path).ok());
      CHECK(std::memcmp(one.data(), io.data() + 4 * cols, static_cast<size_t>(cols) * 4) == 0);
      CHECK(one[static_cast<size_t>(cols)] == -7.0f);
    }
  }
}

TEST_CASE("stored_matmul_nt: twin within budget; AVX2 == portable; batch == rows; threads; == matmul_nt",
          "[ops][stored]") {
  std::mt19937 rng(kSeed + 1);
  INFO("seed " << kSeed + 1 << ", avx2 path " << stored_matmul_uses_avx2());
  ThreadPool pool3(3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // n = 101: a last task of 5 rows and a last decode group of 2; k: block multiples, and for the
  // 1-element types a k with a tail (k % 8 != 0).
  struct Shape {
    int64_t n, k;
  };
  for (StoredType t : kAllTypes) {
    const StoredTypeInfo info = stored_type_info(t);
    std::vector<Shape> shapes = {{101, info.block_elems == 256 ? 768 : 576}};
    if (info.block_elems == 1) shapes.push_back({50, 579});
    for (const Shape sh : shapes) {
      INFO("type " << info.name << ", n " << sh.n << ", k " << sh.k);
      const std::vector<unsigned char> bytes = stored_bytes(rng, t, sh.n, sh.k);
      const StoredMatrixView w{t, bytes.data(), sh.n, sh.k};
      const std::vector<float> wf = reference::dequantize_ref(static_cast<uint32_t>(t), bytes.data(), sh.n * sh.k);
      std::vector<float> bias(static_cast<size_t>(sh.n));
      for (auto& b : bias) b = 0.1f * nd(rng);
      // m = 130 crosses both decode strategies' thresholds (64 rows: 48-row decode; below: 3).
      for (int64_t m : {1, 2, 5, 64, 130}) {
        INFO("m " << m);
        std::vector<float> x(static_cast<size_t>(m * sh.k));
        for (auto& v : x) v = nd(rng);
        auto run = [&](StoredPath path, ThreadPool* pool, int64_t rows, const float* xs) {
          std::vector<float> y(static_cast<size_t>(rows * sh.n));
          StoredMatmulArgs a{xs, sh.k, w, bias.data(), y.data(), sh.n, rows};
          REQUIRE(stored_matmul_nt(a, pool, path).ok());
          return y;
        };
        const std::vector<float> got = run(StoredPath::kAuto, nullptr, m, x.data());
        const std::vector<double> ref =
            reference::matmul_nt_ref(std::vector<double>(x.begin(), x.end()), std::vector<double>(wf.begin(), wf.end()),
                                     std::vector<double>(bias.begin(), bias.end()), m, sh.n, sh.k);
        double num = 0, den = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          num += (got[i] - ref[i]) * (got[i] - ref[i]);
          den += ref[i] * ref[i];
        }
        CHECK(std::sqrt(num / den) < kStoredMatmulRelTol);
        CHECK(same_bits(run(StoredPath::kPortable, nullptr, m, x.data()), got));
        CHECK(same_bits(run(StoredPath::kAuto, &pool3, m, x.data()), got));
        if (m > 1) {  // the last row alone
          const std::vector<float> last = run(StoredPath::kAuto, nullptr, 1, x.data() + (m - 1) * sh.k);
          CHECK(std::memcmp(last.data(), got.data() + (m - 1) * sh.n, static_cast<size_t>(sh.n) * 4) == 0);
        }
        if (matmul_uses_avx2()) {  // same fused lanes: matmul_nt of the dequantised matrix
          std::vector<float> yd(static_cast<size_t>(m * sh.n));
          MatmulArgs ma{x.data(), sh.k, wf.data(), sh.k, bias.data(), yd.data(), sh.n, m, sh.n, sh.k};
          REQUIRE(matmul_nt(ma).ok());
          CHECK(same_bits(yd, got));
        }
      }
    }
  }
}

TEST_CASE("stored_matmul_nt and decode_stored_rows reject bad arguments", "[ops][stored][errors]") {
  std::mt19937 rng(kSeed + 2);
  const std::vector<unsigned char> bytes = stored_bytes(rng, StoredType::kQ8_0, 4, 64);
  std::vector<float> x(64, 1.0f), y(4, 0.0f);
  const StoredMatrixView w{StoredType::kQ8_0, bytes.data(), 4, 64};
  StoredMatmulArgs ok{x.data(), 64, w, nullptr, y.data(), 4, 1};
  REQUIRE(stored_matmul_nt(ok).ok());

  StoredMatmulArgs bad_type = ok;
  bad_type.w.type = static_cast<StoredType>(9u);  // Q8_1: a ggml type without a decoder here
  const Status s1 = stored_matmul_nt(bad_type);
  CHECK(s1.code() == StatusCode::kUnsupported);
  CHECK(s1.message().find("type id 9") != std::string::npos);

  StoredMatmulArgs bad_cols = ok;
  bad_cols.w.cols = 48;  // not a multiple of Q8_0's 32
  const Status s2 = stored_matmul_nt(bad_cols);
  CHECK(s2.code() == StatusCode::kInvalidArgument);
  CHECK(s2.message().find("Q8_0 rows of 48") != std::string::npos);

  StoredMatmulArgs null_x = ok;
  null_x.x = nullptr;
  CHECK(stored_matmul_nt(null_x).code() == StatusCode::kInvalidArgument);
  StoredMatmulArgs small_ld = ok;
  small_ld.ldx = 32;
  CHECK(stored_matmul_nt(small_ld).code() == StatusCode::kInvalidArgument);
  StoredMatmulArgs no_data = ok;
  no_data.w.data = nullptr;
  CHECK(stored_matmul_nt(no_data).code() == StatusCode::kInvalidArgument);

  std::vector<float> row(64);
  const Status s3 = decode_stored_rows(w, 3, 2, row.data(), 64);
  CHECK(s3.code() == StatusCode::kInvalidArgument);
  CHECK(s3.message().find("rows [3, 5) outside a matrix of 4 rows") != std::string::npos);
  CHECK(decode_stored_rows(w, 0, 1, row.data(), 63).code() == StatusCode::kInvalidArgument);

  StoredType t;
  CHECK(stored_type_from_id(8, &t));
  CHECK(t == StoredType::kQ8_0);
  CHECK_FALSE(stored_type_from_id(9, &t));
  CHECK(stored_row_bytes(StoredType::kQ4_1, 576) == 18 * 20);
  CHECK(stored_row_bytes(StoredType::kQ4_1, 575) == -1);
}

}  // namespace test_stored_matmul
