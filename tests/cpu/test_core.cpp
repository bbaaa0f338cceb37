// Core types: fp16/bf16 conversions, bit packing, Status/Error, checked sizes.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/reference/bitpack_ref.hpp"
#include "cluscomp/reference/dtype_ref.hpp"

namespace test_core {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

TEST_CASE("half -> float -> half round-trips every finite and infinite binary16", "[dtype]") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t h = static_cast<uint16_t>(b);
    const float f = half_bits_to_float(h);
    // Independent decode (reference twin) must agree exactly.
    const double r = reference::half_bits_to_double_ref(h);
    if (std::isnan(r)) {
      REQUIRE(std::isnan(f));
      REQUIRE(float_to_half_bits(f) == 0x7fffu);
    } else {
      REQUIRE(static_cast<double>(f) == r);
      REQUIRE(float_to_half_bits(f) == h);
    }
  }
}

TEST_CASE("float -> half is round-to-nearest-even on every float of selected exponents", "[dtype]") {
  // Exhaustive over all mantissas of exponents spanning zero, subnormal halves, the normal range
  // and overflow; compared with a reference that rounds in double arithmetic.
  const int exps[] = {0, 1, 100, 101, 102, 103, 110, 111, 112, 113, 114, 127, 140, 141, 142, 143, 255};
  for (int e : exps) {
    for (uint32_t m = 0; m < (1u << 23); m += (e == 255 ? 4097u : 1u)) {
      for (uint32_t sign : {0u, 0x80000000u}) {
        const uint32_t u = sign | (static_cast<uint32_t>(e) << 23) | m;
        float f;
        std::memcpy(&f, &u, 4);
        const uint16_t got = float_to_half_bits(f);
        const uint16_t want = reference::float_to_half_bits_ref(f);
        if (got != want) {
          INFO("float bits 0x" << std::hex << u << " got 0x" << got << " want 0x" << want);
          REQUIRE(got == want);
        }
      }
    }
  }
}

TEST_CASE("float -> bf16 is round-to-nearest-even, NaN canonical", "[dtype]") {
  std::mt19937 rng(1234);
  for (int i = 0; i < 2000000; ++i) {
    const uint32_t u = rng();
    float f;
    std::memcpy(&f, &u, 4);
    REQUIRE(float_to_bf16_bits(f) == reference::float_to_bf16_bits_ref(f));
  }
  // Ties: exactly halfway rounds to even.
  REQUIRE(float_to_bf16_bits(bits_float(0x3f808000u)) == 0x3f80u);
  REQUIRE(float_to_bf16_bits(bits_float(0x3f818000u)) == 0x3f82u);
  REQUIRE(float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN()) == 0x7fffu);
  REQUIRE(float_to_bf16_bits(bits_float(0x7f7fffffu)) == 0x7f80u);  // FLT_MAX rounds to inf
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_bits_to_float(static_cast<uint16_t>(b));
    if (!std::isnan(f)) REQUIRE(float_to_bf16_bits(f) == b);
  }
}

TEST_CASE("fp8 decodes match the format definitions", "[dtype]") {
  REQUIRE(fp8_e4m3fn_to_float(0x00) == 0.0f);
  REQUIRE(fp8_e4m3fn_to_float(0x38) == 1.0f);         // e=7, m=0
  REQUIRE(fp8_e4m3fn_to_float(0x7e) == 448.0f);       // max finite
  REQUIRE(fp8_e4m3fn_to_float(0x01) == 1.0f / 512.0f);  // smallest subnormal
  REQUIRE(fp8_e4m3fn_to_float(0xb8) == -1.0f);
  REQUIRE(std::isnan(fp8_e4m3fn_to_float(0x7f)));
  REQUIRE(fp8_e5m2_to_float(0x3c) == 1.0f);
  REQUIRE(fp8_e5m2_to_float(0x7b) == 57344.0f);
  REQUIRE(std::isinf(fp8_e5m2_to_float(0x7c)));
}

TEST_CASE("dtype names round-trip and sizes are right", "[dtype]") {
  for (int i = 0; i < kNumDTypes; ++i) {
    DType t = static_cast<DType>(i), u;
    REQUIRE(parse_dtype(dtype_name(t), &u));
    REQUIRE(u == t);
  }
  DType u;
  REQUIRE_FALSE(parse_dtype("F128", &u));
  REQUIRE(dtype_size(DType::kBF16) == 2);
  REQUIRE(dtype_size(DType::kI64) == 8);
  REQUIRE(dtype_size(DType::kF8E5M2) == 1);
}

TEST_CASE("bit packing round-trips exhaustively on small sizes", "[bitpack]") {
  for (int bits = 1; bits <= 16; ++bits) {
    const uint32_t maxc = (1u << bits) - 1u;
    for (int n = 0; n <= 70; ++n) {
      std::vector<uint32_t> codes(n);
      for (int i = 0; i < n; ++i) codes[i] = static_cast<uint32_t>((i * 2654435761u) >> 7) & maxc;
      if (n > 0) codes[n - 1] = maxc;  // the widest code at the tail
      std::vector<uint32_t> packed(packed_words(n, bits) + 1, 0xdeadbeefu);
      pack_codes(codes.data(), n, bits, packed.data());
      REQUIRE(packed.back() == 0xdeadbeefu);  // wrote exactly packed_words words
      // Same bytes as the bit-by-bit reference.
      std::vector<uint32_t> ref(packed_words(n, bits), 0);
      reference::pack_codes_ref(codes.data(), n, bits, ref.data());
      for (size_t w = 0; w < ref.size(); ++w) REQUIRE(packed[w] == ref[w]);
      std::vector<uint16_t> back(n);
      unpack_codes(packed.data(), n, bits, back.data());
      for (int i = 0; i < n; ++i) {
        REQUIRE(back[i] == codes[i]);
        REQUIRE(unpack_code(packed.data(), i, bits) == codes[i]);
      }
    }
  }
}

TEST_CASE("every code value at every width and offset survives store_code/unpack_code", "[bitpack]") {
  for (int bits = 1; bits <= 16; ++bits) {
    const uint32_t count = 1u << bits;
    std::vector<uint32_t> words(packed_words(count + 33, bits), 0xffffffffu);
    for (uint32_t c = 0; c < count; ++c) {
      const int64_t pos = c + (c % 33);  // varies the bit offset within words
      store_code(words.data(), pos, bits, c);
      REQUIRE(unpack_code(words.data(), pos, bits) == c);
    }
  }
}

TEST_CASE("bit packing round-trips randomly on large sizes", "[bitpack]") {
  std::mt19937_64 rng(42);
  for (int bits = 1; bits <= 16; ++bits) {
    const int64_t n = 1000003 + bits;
    std::vector<uint16_t> codes(n);
    for (auto& c : codes) c = static_cast<uint16_t>(rng() & ((1u << bits) - 1u));
    std::vector<uint32_t> packed(packed_words(n, bits));
    pack_codes(codes.data(), n, bits, packed.data());
    std::vector<uint16_t> back(n);
    unpack_codes(packed.data(), n, bits, back.data());
    REQUIRE(back == codes);
    std::vector<uint16_t> back_ref(n);
    reference::unpack_codes_ref(packed.data(), n, bits, back_ref.data());
    REQUIRE(back_ref == codes);
    REQUIRE(bits_for_count(int64_t{1} << bits) == bits);
  }
  REQUIRE(bits_for_count(1) == 1);
  REQUIRE(bits_for_count(65535) == 16);
  REQUIRE(bits_for_count(19000) == 15);
  REQUIRE(bits_for_count(4097) == 13);
}

TEST_CASE("Status and Error carry code and message", "[error]") {
  Status ok;
  REQUIRE(ok.ok());
  Status bad(StatusCode::kFormatError, "x.gguf: tensor 'a': offset past end");
  REQUIRE_FALSE(bad.ok());
  REQUIRE(bad.to_string() == "format error: x.gguf: tensor 'a': offset past end");
  try {
    throw_if_error(bad);
    FAIL("no throw");
  } catch (const Error& e) {
    REQUIRE(e.code() == StatusCode::kFormatError);
    REQUIRE(std::string(e.what()).find("offset past end") != std::string::npos);
  }
  Status s = status_from([] { throw Error(StatusCode::kIoError, "disk"); });
  REQUIRE(s.code() == StatusCode::kIoError);
  REQUIRE_THROWS_AS(checked_mul(uint64_t{1} << 40, uint64_t{1} << 40, "x"), Error);
  REQUIRE(checked_mul(3, 5, "x") == 15);
  REQUIRE_THROWS_AS(checked_add(~uint64_t{0}, 1, "x"), Error);
}

}  // namespace test_core
