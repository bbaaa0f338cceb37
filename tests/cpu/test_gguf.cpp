// GGUF: writer -> reader round trips, v2/v3, dequantisers and quantisers against their reference
// twins (reference/gguf_quant_ref.hpp), and one negative test per validation rule of the reader.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/reference/gguf_quant_ref.hpp"
#include "support/test_data.hpp"

namespace test_gguf {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

namespace {

using Bytes = std::vector<unsigned char>;

/// Hand-built GGUF bytes for the negative tests (and a hand-written v2 file).
struct ByteBuilder {
  Bytes b;
  template <class T>
  ByteBuilder& raw(T v) {
    const auto* p = reinterpret_cast<const unsigned char*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  ByteBuilder& u8(uint8_t v) { return raw(v); }
  ByteBuilder& u32(uint32_t v) { return raw(v); }
  ByteBuilder& u64(uint64_t v) { return raw(v); }
  ByteBuilder& str(const std::string& s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  ByteBuilder& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    return u32(0x46554747u).u32(version).u64(n_tensors).u64(n_kv);
  }
  ByteBuilder& kv_u32(const std::string& key, uint32_t v) { return str(key).u32(4).u32(v); }
  ByteBuilder& kv_str(const std::string& key, const std::string& v) { return str(key).u32(8).str(v); }
  ByteBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                      uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) u64(d);
    return u32(type).u64(offset);
  }
  ByteBuilder& pad(size_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
  ByteBuilder& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
};

/// Parses `bytes`, requiring failure with `code` and a message containing the file name and
/// every one of `needles`.
void require_error(const Bytes& bytes, StatusCode code, std::vector<std::string> needles) {
  try {
    GgufReader r(bytes.data(), bytes.size(), "bad.gguf");
    FAIL("parse succeeded; expected " << status_code_name(code));
  } catch (const Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    REQUIRE(e.code() == code);
    REQUIRE(msg.find("bad.gguf") != std::string::npos);
    for (const auto& n : needles) {
      INFO("missing: " << n);
      REQUIRE(msg.find(n) != std::string::npos);
    }
  }
}

template <class F>
void require_throws_code(F&& f, StatusCode code, const std::string& needle) {
  try {
    f();
    FAIL("no exception; expected " << status_code_name(code));
  } catch (const Error& e) {
    INFO("message: " << e.what());
    REQUIRE(e.code() == code);
    REQUIRE(std::string(e.what()).find(needle) != std::string::npos);
  }
}

/// One metadata entry of every value type, arrays of every element type, nested arrays.
std::vector<GgufKeyValue> all_type_metadata() {
  std::vector<GgufKeyValue> kv;
  kv.push_back({"t.u8", GgufValue::u8(250)});
  kv.push_back({"t.i8", GgufValue::i8(-120)});
  kv.push_back({"t.u16", GgufValue::u16(65000)});
  kv.push_back({"t.i16", GgufValue::i16(-32000)});
  kv.push_back({"t.u32", GgufValue::u32(4000000000u)});
  kv.push_back({"t.i32", GgufValue::i32(-2000000000)});
  kv.push_back({"t.f32", GgufValue::f32(-1.5e-7f)});
  kv.push_back({"t.f32nan", GgufValue::f32(std::numeric_limits<float>::quiet_NaN())});
  kv.push_back({"t.f32negzero", GgufValue::f32(-0.0f)});
  kv.push_back({"t.true", GgufValue::boolean(true)});
  kv.push_back({"t.false", GgufValue::boolean(false)});
  kv.push_back({"t.str", GgufValue::string("h\xc3\xa9llo \xe2\x96\x81world")});
  kv.push_back({"t.str_empty", GgufValue::string("")});
  kv.push_back({"t.str_nul", GgufValue::string(std::string("a\0b", 3))});
  kv.push_back({"t.u64", GgufValue::u64(UINT64_MAX)});
  kv.push_back({"t.i64", GgufValue::i64(INT64_MIN)});
  kv.push_back({"t.f64", GgufValue::f64(3.141592653589793)});
  kv.push_back({"a.u8", GgufValue::array(GgufType::kUint8, {GgufValue::u8(0), GgufValue::u8(255)})});
  kv.push_back({"a.i8", GgufValue::array(GgufType::kInt8, {GgufValue::i8(-128), GgufValue::i8(127)})});
  kv.push_back({"a.u16", GgufValue::array(GgufType::kUint16, {GgufValue::u16(1), GgufValue::u16(65535)})});
  kv.push_back({"a.i16", GgufValue::array(GgufType::kInt16, {GgufValue::i16(-32768)})});
  kv.push_back({"a.u32", GgufValue::array(GgufType::kUint32, {GgufValue::u32(7), GgufValue::u32(8)})});
  kv.push_back({"a.i32", GgufValue::i32_array({-1, 0, 1, INT32_MAX, INT32_MIN})});
  kv.push_back({"a.f32", GgufValue::f32_array({0.25f, -3.0f, 1e30f})});
  kv.push_back({"a.bool", GgufValue::array(GgufType::kBool, {GgufValue::boolean(true), GgufValue::boolean(false)})});
  kv.push_back({"a.str", GgufValue::string_array({"<s>", "", "\xe2\x96\x81the", "a b"})});
  kv.push_back({"a.u64", GgufValue::array(GgufType::kUint64, {GgufValue::u64(1ull << 40)})});
  kv.push_back({"a.i64", GgufValue::array(GgufType::kInt64, {GgufValue::i64(-5), GgufValue::i64(1ll << 50)})});
  kv.push_back({"a.f64", GgufValue::array(GgufType::kFloat64, {GgufValue::f64(-2.5), GgufValue::f64(1e300)})});
  kv.push_back({"a.empty", GgufValue::array(GgufType::kFloat32, {})});
  kv.push_back({"a.nested",
                GgufValue::array(GgufType::kArray,
                                 {GgufValue::i32_array({1, 2, 3}), GgufValue::i32_array({}),
                                  GgufValue::array(GgufType::kInt32, {GgufValue::i32(-4)})})});
  kv.push_back({"a.nested2",
                GgufValue::array(GgufType::kArray,
                                 {GgufValue::array(GgufType::kArray,
                                                   {GgufValue::string_array({"x", "yz"})})})});
  return kv;
}

/// Random floats with a spread of magnitudes (finite).
std::vector<float> random_floats(std::mt19937& rng, int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

/// A small valid model: metadata of several kinds and tensors of several types.
GgufWriter small_model_writer(std::mt19937& rng, std::vector<Bytes>* datas = nullptr) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add("tokenizer.ggml.tokens", GgufValue::string_array({"a", "b", "cc"}));
  const struct {
    const char* name;
    GgmlType type;
    std::vector<int64_t> ne;
  } specs[] = {{"tok_embd.weight", GgmlType::kQ8_0, {64, 3}},
               {"blk.0.attn_q.weight", GgmlType::kQ4_1, {32, 4}},
               {"blk.0.attn_k.weight", GgmlType::kQ4_0, {96, 2}},
               {"output_norm.weight", GgmlType::kF32, {7}},
               {"blk.0.ffn_up.weight", GgmlType::kF16, {5, 3}},
               {"blk.0.ffn_down.weight", GgmlType::kBF16, {3, 1, 2}}};
  for (const auto& s : specs) {
    int64_t n = 1;
    for (auto d : s.ne) n *= d;
    const auto x = random_floats(rng, n);
    const Bytes q = quantize(s.type, x.data(), n);
    w.add_tensor(s.name, s.type, s.ne, q.data(), q.size());
    if (datas) datas->push_back(q);
  }
  return w;
}

}  // namespace

// ---- round trips ---------------------------------------------------------------------------------

TEST_CASE("writer -> reader round-trips every metadata type bit-exactly", "[gguf]") {
  GgufWriter w;
  const auto kvs = all_type_metadata();
  for (const auto& kv : kvs) w.add(kv.key, kv.value);
  const Bytes bytes = w.to_bytes();
  GgufReader r(bytes.data(), bytes.size(), "mem.gguf");
  REQUIRE(r.version() == 3);
  REQUIRE(r.alignment() == 32);
  REQUIRE(r.tensors().empty());
  REQUIRE(r.metadata().size() == kvs.size());
  for (size_t i = 0; i < kvs.size(); ++i) {
    INFO("key " << kvs[i].key);
    REQUIRE(r.metadata()[i].key == kvs[i].key);
    REQUIRE(r.metadata()[i].value == kvs[i].value);
  }
  // Typed accessors.
  REQUIRE(r.get_u32("t.u8") == 250);
  REQUIRE(r.get_i32("t.i8") == -120);
  REQUIRE(r.get_u32("t.u16") == 65000);
  REQUIRE(r.get_i32("t.i16") == -32000);
  REQUIRE(r.get_u32("t.u32") == 4000000000u);
  REQUIRE(r.get_i64("t.u32") == 4000000000ll);
  REQUIRE(r.get_i32("t.i32") == -2000000000);
  REQUIRE(r.get_f32("t.f32") == -1.5e-7f);
  REQUIRE(std::isnan(r.get_f32("t.f32nan")));
  REQUIRE(std::signbit(r.get_f32("t.f32negzero")));
  REQUIRE(r.get_bool("t.true"));
  REQUIRE_FALSE(r.get_bool("t.false"));
  REQUIRE(r.get_string("t.str") == "h\xc3\xa9llo \xe2\x96\x81world");
  REQUIRE(r.get_string("t.str_empty").empty());
  REQUIRE(r.get_string("t.str_nul") == std::string("a\0b", 3));
  REQUIRE(r.get_u64("t.u64") == UINT64_MAX);
  REQUIRE(r.get_i64("t.i64") == INT64_MIN);
  REQUIRE(r.get_f64("t.f64") == 3.141592653589793);
  REQUIRE(r.get_f32("t.f64") == 3.14159265f);
  REQUIRE(r.get_string_array("a.str") ==
          std::vector<std::string>{"<s>", "", "\xe2\x96\x81the", "a b"});
  REQUIRE(r.get_int_array("a.i32") == std::vector<int64_t>{-1, 0, 1, INT32_MAX, INT32_MIN});
  REQUIRE(r.get_int_array("a.u16") == std::vector<int64_t>{1, 65535});
  REQUIRE(r.get_f32_array("a.f32") == std::vector<float>{0.25f, -3.0f, 1e30f});
  REQUIRE(r.get_f32_array("a.f64") == std::vector<float>{-2.5f, static_cast<float>(1e300)});
  REQUIRE(r.get_f32_array("a.empty").empty());
  REQUIRE(r.get("a.nested").items.size() == 3);
  REQUIRE(r.get("a.nested").items[0].items[2].signed_value() == 3);
  REQUIRE(r.get("a.nested2").items[0].items[0].items[1].str == "yz");
  REQUIRE(r.has("t.u8"));
  REQUIRE_FALSE(r.has("t.nope"));
  REQUIRE(r.find("t.nope") == nullptr);
  REQUIRE(r.get_u32_or("t.nope", 7) == 7);
  REQUIRE(r.get_string_or("t.nope", "x") == "x");
  REQUIRE(r.get_f32_or("t.f32", 0.0f) == -1.5e-7f);
}

TEST_CASE("metadata accessors report missing keys, wrong types and out-of-range values", "[gguf]") {
  GgufWriter w;
  for (const auto& kv : all_type_metadata()) w.add(kv.key, kv.value);
  const Bytes bytes = w.to_bytes();
  GgufReader r(bytes.data(), bytes.size(), "mem.gguf");
  require_throws_code([&] { (void)r.get_u32("no.such.key"); }, StatusCode::kNotFound, "no.such.key");
  require_throws_code([&] { (void)r.get_u32("t.str"); }, StatusCode::kFormatError, "expected an integer");
  require_throws_code([&] { (void)r.get_string("t.u32"); }, StatusCode::kFormatError, "expected string");
  require_throws_code([&] { (void)r.get_f32("t.u32"); }, StatusCode::kFormatError, "expected a float");
  require_throws_code([&] { (void)r.get_bool("t.u8"); }, StatusCode::kFormatError, "expected bool");
  require_throws_code([&] { (void)r.get_u32("t.u64"); }, StatusCode::kOutOfRange, "t.u64");
  require_throws_code([&] { (void)r.get_u32("t.i8"); }, StatusCode::kOutOfRange, "-120");
  require_throws_code([&] { (void)r.get_i32("t.u32"); }, StatusCode::kOutOfRange, "4000000000");
  require_throws_code([&] { (void)r.get_string_array("a.i32"); }, StatusCode::kFormatError,
                      "array of int32, expected an array of string");
  require_throws_code([&] { (void)r.get_f32_array("t.f32"); }, StatusCode::kFormatError, "expected an array");
  GgufWriter w2;
  w2.add("big", GgufValue::array(GgufType::kUint64, {GgufValue::u64(UINT64_MAX)}));
  const Bytes b2 = w2.to_bytes();
  GgufReader r2(b2.data(), b2.size(), "mem2.gguf");
  require_throws_code([&] { (void)r2.get_int_array("big"); }, StatusCode::kOutOfRange, "big");
  require_throws_code([&] { (void)r.tensor("nope"); }, StatusCode::kNotFound, "nope");
}

TEST_CASE("tensors round-trip through a file: infos, offsets, alignment, bytes", "[gguf]") {
  std::mt19937 rng(42);
  std::vector<Bytes> datas;
  GgufWriter w = small_model_writer(rng, &datas);
  cluscomp_test::TempDir tmp;
  const std::string path = (tmp / "model.gguf").string();
  w.write_file(path);
  // Only the final file is left: no temporaries.
  int n_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    (void)e;
    ++n_files;
  }
  REQUIRE(n_files == 1);

  GgufReader r(path);
  REQUIRE(r.name() == path);
  REQUIRE(r.version() == 3);
  REQUIRE(r.data_offset() % 32 == 0);
  REQUIRE(r.tensors().size() == 6);
  REQUIRE(r.get_string("general.architecture") == "llama");
  REQUIRE(r.get_u32("llama.block_count") == 2);
  const auto& t1 = r.tensor("blk.0.attn_q.weight");
  REQUIRE(t1.type == GgmlType::kQ4_1);
  REQUIRE(t1.ne == std::vector<int64_t>{32, 4});
  REQUIRE(t1.n_elements == 128);
  REQUIRE(t1.n_bytes == 4 * 20);
  REQUIRE(t1.n_rows() == 4);
  REQUIRE(r.tensor("blk.0.ffn_down.weight").ne == std::vector<int64_t>{3, 1, 2});
  uint64_t expect_off = 0;
  for (size_t i = 0; i < r.tensors().size(); ++i) {
    const auto& t = r.tensors()[i];
    REQUIRE(t.offset == expect_off);
    REQUIRE(t.offset % 32 == 0);
    REQUIRE(t.n_bytes == datas[i].size());
    REQUIRE(std::memcmp(r.tensor_data(t), datas[i].data(), datas[i].size()) == 0);
    expect_off += (t.n_bytes + 31) / 32 * 32;
  }
  // Padding after the last tensor, as ggml writes it.
  REQUIRE(r.size() == r.data_offset() + expect_off);
  // The reader survives a move (the mapping moves with it).
  GgufReader moved = std::move(r);
  REQUIRE(std::memcmp(moved.tensor_data(moved.tensors()[0]), datas[0].data(), datas[0].size()) == 0);
}

TEST_CASE("custom alignments round-trip (1, 64, 4096)", "[gguf]") {
  for (uint32_t align : {1u, 64u, 4096u}) {
    std::mt19937 rng(align);
    GgufWriter w;
    w.set_alignment(align);
    const auto x = random_floats(rng, 96);
    const Bytes q = quantize(GgmlType::kQ8_0, x.data(), 96);
    w.add_tensor("a", GgmlType::kQ8_0, {32, 3}, q.data(), q.size());
    w.add_tensor("b", GgmlType::kQ8_0, {96}, q.data(), q.size());
    const Bytes bytes = w.to_bytes();
    GgufReader r(bytes.data(), bytes.size(), "align.gguf");
    REQUIRE(r.alignment() == align);
    REQUIRE(r.data_offset() % align == 0);
    REQUIRE(r.tensor("b").offset % align == 0);
    REQUIRE(dequantize_tensor(r, r.tensor("a")) == dequantize_tensor(r, r.tensor("b")));
  }
}

TEST_CASE("version 2 files are read: hand-written, and a writer file with the version patched",
          "[gguf]") {
  // Hand-written v2: one kv (a string), one F32 tensor of 3 elements.
  ByteBuilder bb;
  bb.header(2, 1, 2).kv_str("general.name", "tiny").kv_u32("n", 5);
  bb.tensor("w", {3}, 0, 0).pad(32);
  for (float f : {1.0f, -2.0f, 0.5f}) bb.raw(f);
  GgufReader r(bb.b.data(), bb.b.size(), "v2.gguf");
  REQUIRE(r.version() == 2);
  REQUIRE(r.get_string("general.name") == "tiny");
  REQUIRE(r.get_u32("n") == 5);
  REQUIRE(dequantize_tensor(r, r.tensor("w")) == std::vector<float>{1.0f, -2.0f, 0.5f});

  std::mt19937 rng(7);
  Bytes bytes = small_model_writer(rng).to_bytes();
  bytes[4] = 2;
  GgufReader r2(bytes.data(), bytes.size(), "v2b.gguf");
  REQUIRE(r2.version() == 2);
  REQUIRE(r2.tensors().size() == 6);
}

TEST_CASE("writer rejects invalid input with kInvalidArgument", "[gguf]") {
  GgufWriter w;
  w.add_u32("k", 1);
  require_throws_code([&] { w.add_u32("k", 2); }, StatusCode::kInvalidArgument, "duplicate metadata key 'k'");
  require_throws_code([&] { w.set_alignment(48); }, StatusCode::kInvalidArgument, "power of two");
  require_throws_code([&] { w.add("general.alignment", GgufValue::u64(64)); },
                      StatusCode::kInvalidArgument, "power of two");
  GgufValue bad = GgufValue::i32_array({1, 2});
  bad.items.push_back(GgufValue::string("x"));
  require_throws_code([&] { w.add("bad", bad); }, StatusCode::kInvalidArgument, "holds an item of type string");
  require_throws_code([] { (void)GgufValue::array(GgufType::kInt32, {GgufValue::u8(1)}); },
                      StatusCode::kInvalidArgument, "item 0");
  GgufValue deep = GgufValue::i32_array({1});
  for (int i = 0; i < 8; ++i) deep = GgufValue::array(GgufType::kArray, {deep});
  require_throws_code([&] { w.add("deep", deep); }, StatusCode::kInvalidArgument, "nested deeper");
  const float f[32] = {};
  require_throws_code([&] { w.add_tensor("t", GgmlType::kF32, {32}, f, 64); },
                      StatusCode::kInvalidArgument, "needs 128");
  w.add_tensor("t", GgmlType::kF32, {32}, f, 128);
  require_throws_code([&] { w.add_tensor("t", GgmlType::kF32, {32}, f, 128); },
                      StatusCode::kInvalidArgument, "duplicate tensor name");
  require_throws_code([&] { w.add_tensor("u", GgmlType::kQ8_0, {16}, f, 17); },
                      StatusCode::kInvalidArgument, "block size 32");
  require_throws_code([&] { w.add_tensor("v", GgmlType::kF32, {1, 1, 1, 1, 1}, f, 4); },
                      StatusCode::kInvalidArgument, "5 dims");
  require_throws_code([&] { w.add_tensor("v", GgmlType::kF32, {0}, f, 0); },
                      StatusCode::kInvalidArgument, "dim 0");
  require_throws_code([&] { w.add_tensor("v", static_cast<GgmlType>(4), {32}, f, 128); },
                      StatusCode::kInvalidArgument, "unknown ggml type");
  // The writer is still usable after rejected calls.
  const Bytes bytes = w.to_bytes();
  GgufReader r(bytes.data(), bytes.size(), "ok.gguf");
  REQUIRE(r.metadata().size() == 1);
  REQUIRE(r.tensors().size() == 1);
  cluscomp_test::TempDir tmp;
  require_throws_code([&] { w.write_file((tmp / "no_dir" / "x.gguf").string()); },
                      StatusCode::kIoError, "no_dir");
}

// ---- dequantisation vs the reference twins ------------------------------------------------------

namespace {

/// Random block bytes of `type` with every fp16/fp32 scale field replaced by a finite value, so
/// that results are comparable with ==. Quant bits stay fully random.
Bytes random_blocks(std::mt19937& rng, GgmlType type, int64_t n_blocks) {
  const GgmlTypeTraits tr = ggml_type_traits(type);
  Bytes b(static_cast<size_t>(n_blocks * tr.type_size));
  for (auto& x : b) x = static_cast<unsigned char>(rng());
  std::normal_distribution<float> nd(0.0f, 0.05f);
  auto put_f16 = [&](unsigned char* p) {
    const uint16_t h = float_to_half_bits(nd(rng));
    std::memcpy(p, &h, 2);
  };
  for (int64_t i = 0; i < n_blocks; ++i) {
    unsigned char* p = b.data() + i * tr.type_size;
    switch (type) {
      case GgmlType::kQ4_0: case GgmlType::kQ5_0: case GgmlType::kQ8_0: put_f16(p); break;
      case GgmlType::kQ4_1: case GgmlType::kQ5_1: case GgmlType::kQ4_K: case GgmlType::kQ5_K:
        put_f16(p);
        put_f16(p + 2);
        break;
      case GgmlType::kQ2_K: put_f16(p + 80); put_f16(p + 82); break;
      case GgmlType::kQ3_K: put_f16(p + 108); break;
      case GgmlType::kQ6_K: put_f16(p + 208); break;
      case GgmlType::kQ8_K: {
        const float d = nd(rng);
        std::memcpy(p, &d, 4);
        break;
      }
      case GgmlType::kF16:
      case GgmlType::kBF16: {
        const uint16_t h = type == GgmlType::kF16 ? float_to_half_bits(nd(rng) * 100)
                                                  : float_to_bf16_bits(nd(rng) * 1e10f);
        std::memcpy(p, &h, 2);
        break;
      }
      case GgmlType::kF32: {
        const float f = nd(rng) * 1e6f;
        std::memcpy(p, &f, 4);
        break;
      }
      case GgmlType::kF64: {
        const double d = static_cast<double>(nd(rng)) * 1e-3 + 1e-12 * nd(rng);
        std::memcpy(p, &d, 8);
        break;
      }
      default: break;
    }
  }
  return b;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, 4) == 0; }

}  // namespace

TEST_CASE("dequantize_row equals the reference twin bit for bit, every type", "[gguf][quant]") {
  // Exact equality: both do ggml's fp32 operations in ggml's order (the twin in double, rounded
  // to float at the same points; correct because 53 >= 2*24 + 2).
  const GgmlType types[] = {GgmlType::kF32,  GgmlType::kF16,  GgmlType::kBF16, GgmlType::kF64,
                            GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ5_0, GgmlType::kQ5_1,
                            GgmlType::kQ8_0, GgmlType::kQ2_K, GgmlType::kQ3_K, GgmlType::kQ4_K,
                            GgmlType::kQ5_K, GgmlType::kQ6_K, GgmlType::kQ8_K};
  const uint32_t seed = 20240601;
  std::mt19937 rng(seed);
  for (GgmlType t : types) {
    const GgmlTypeTraits tr = ggml_type_traits(t);
    REQUIRE(reference::ggml_block_ref(static_cast<uint32_t>(t)).elems == tr.block_size);
    REQUIRE(reference::ggml_block_ref(static_cast<uint32_t>(t)).bytes == tr.type_size);
    const int64_t n_blocks = tr.block_size == 1 ? 999 : 64;
    const Bytes b = random_blocks(rng, t, n_blocks);
    const int64_t n = n_blocks * tr.block_size;
    std::vector<float> got(static_cast<size_t>(n));
    dequantize_row(t, b.data(), got.data(), n);
    const auto want = reference::dequantize_ref(static_cast<uint32_t>(t), b.data(), n);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (!same_bits(got[i], want[i]) && bad++ == 0) first = i;
    INFO("type " << tr.name << " seed " << seed << " first mismatch at " << first << ": "
                 << got[first] << " vs " << want[first]);
    REQUIRE(bad == 0);
  }
}

TEST_CASE("dequantisers decode hand-made blocks to known values", "[gguf][quant]") {
  // Q4_0: d = 0.5, nibbles: byte j holds element j (low) and j+16 (high).
  unsigned char q4[18] = {};
  const uint16_t half = float_to_half_bits(0.5f);
  std::memcpy(q4, &half, 2);
  q4[2] = 0x9f;  // element 0 = 15 -> 3.5, element 16 = 9 -> 0.5
  q4[3] = 0x08;  // element 1 = 8 -> 0, element 17 = 0 -> -4
  float y[32];
  dequantize_row(GgmlType::kQ4_0, q4, y, 32);
  REQUIRE(y[0] == 3.5f);
  REQUIRE(y[16] == 0.5f);
  REQUIRE(y[1] == 0.0f);
  REQUIRE(y[17] == -4.0f);
  // Q5_0: the 5th bit of element 17 in qh bit 17.
  unsigned char q5[22] = {};
  std::memcpy(q5, &half, 2);
  const uint32_t qh = 1u << 17;
  std::memcpy(q5 + 2, &qh, 4);
  dequantize_row(GgmlType::kQ5_0, q5, y, 32);
  REQUIRE(y[17] == 0.0f);  // (0 | 16) - 16
  REQUIRE(y[0] == -8.0f);  // 0 - 16 = -16 * 0.5
}

TEST_CASE("quantisers match ggml's reference quantisers and bound the error", "[gguf][quant]") {
  const uint32_t seed = 777;
  std::mt19937 rng(seed);
  for (GgmlType t : {GgmlType::kQ8_0, GgmlType::kQ4_0, GgmlType::kQ4_1}) {
    const int64_t n = 32 * 200;
    auto x = random_floats(rng, n, 0.02f);
    // Special blocks: all zero, constant, one outlier, exact ties for rounding.
    for (int j = 0; j < 32; ++j) {
      x[static_cast<size_t>(j)] = 0.0f;
      x[static_cast<size_t>(32 + j)] = 0.75f;
      x[static_cast<size_t>(64 + j)] = j == 5 ? -100.0f : 0.001f * j;
      x[static_cast<size_t>(96 + j)] = static_cast<float>(j - 16) * 0.5f;
    }
    const Bytes q = quantize(t, x.data(), n);
    const Bytes want = reference::quantize_ref(static_cast<uint32_t>(t), x.data(), n);
    INFO("type " << ggml_type_name(t) << " seed " << seed);
    REQUIRE(q == want);
    std::vector<float> y(static_cast<size_t>(n));
    dequantize_row(t, q.data(), y.data(), n);
    REQUIRE(y == reference::dequantize_ref(static_cast<uint32_t>(t), q.data(), n));
    // Error bound per block, from the stored fp16 scale: half a step for Q8_0/Q4_1 and a full step
    // for Q4_0 (whose code range -8..7 cannot reach +max exactly), plus fp16 rounding slack.
    const int64_t bs = ggml_type_traits(t).type_size;
    for (int64_t b = 0; b < n / 32; ++b) {
      float d16;
      {
        uint16_t h;
        std::memcpy(&h, q.data() + b * bs, 2);
        d16 = std::fabs(half_bits_to_float(h));
      }
      float amax = 0.0f;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[static_cast<size_t>(b * 32 + j)]));
      const float steps = t == GgmlType::kQ4_0 ? 1.0f : 0.5f;
      const float tol = steps * d16 + amax * 2e-3f + 1e-7f;
      for (int j = 0; j < 32; ++j) {
        const size_t i = static_cast<size_t>(b * 32 + j);
        INFO("block " << b << " elem " << j << " x " << x[i] << " y " << y[i] << " tol " << tol);
        REQUIRE(std::fabs(x[i] - y[i]) <= tol);
      }
    }
    // Exact cases.
    for (int j = 0; j < 32; ++j) REQUIRE(y[static_cast<size_t>(j)] == 0.0f);
  }
  // F16/BF16/F32 "quantisation" is RNE conversion.
  const float v[2] = {1.0f + 1.0f / 4096.0f, -3.0e-8f};
  const Bytes h = quantize(GgmlType::kF16, v, 2);
  float back[2];
  dequantize_row(GgmlType::kF16, h.data(), back, 2);
  REQUIRE(back[0] == 1.0f);
  REQUIRE(back[1] == half_bits_to_float(float_to_half_bits(-3.0e-8f)));
  const Bytes bf = quantize(GgmlType::kBF16, v, 2);
  dequantize_row(GgmlType::kBF16, bf.data(), back, 2);
  REQUIRE(back[0] == 1.0f);
}

TEST_CASE("quant entry points reject unsupported types and bad lengths", "[gguf][quant]") {
  float y[256];
  unsigned char b[512] = {};
  require_throws_code([&] { dequantize_row(GgmlType::kIQ2_XXS, b, y, 256); }, StatusCode::kUnsupported, "IQ2_XXS");
  require_throws_code([&] { dequantize_row(static_cast<GgmlType>(99), b, y, 256); }, StatusCode::kUnsupported, "99");
  require_throws_code([&] { dequantize_row(GgmlType::kQ4_K, b, y, 255); }, StatusCode::kInvalidArgument, "block size 256");
  require_throws_code([&] { dequantize_row(GgmlType::kQ8_0, b, y, -32); }, StatusCode::kInvalidArgument, "-32");
  require_throws_code([&] { quantize_row(GgmlType::kQ4_K, y, b, 256); }, StatusCode::kUnsupported, "Q4_K");
  require_throws_code([&] { quantize_row(GgmlType::kQ4_0, y, b, 31); }, StatusCode::kInvalidArgument, "block size 32");
  // dequantize_tensor names the tensor for a type the reader knows but cannot dequantise.
  ByteBuilder bb;
  bb.header(3, 1, 0).tensor("iq", {256}, 16, 0).pad(32).zeros(66);
  GgufReader r(bb.b.data(), bb.b.size(), "iq.gguf");
  require_throws_code([&] { (void)dequantize_tensor(r, r.tensor("iq")); }, StatusCode::kUnsupported, "tensor 'iq'");
}

// ---- negative tests: one per validation rule ----------------------------------------------------

TEST_CASE("reader: bad magic", "[gguf][negative]") {
  ByteBuilder bb;
  bb.u32(0x46554746u).u32(3).u64(0).u64(0);
  require_error(bb.b, StatusCode::kFormatError, {"bad magic"});
}

TEST_CASE("reader: version 1, unknown versions and big-endian files are unsupported", "[gguf][negative]") {
  for (uint32_t v : {0u, 1u, 4u, 1000u}) {
    ByteBuilder bb;
    bb.header(v, 0, 0);
    require_error(bb.b, StatusCode::kUnsupported, {"version " + std::to_string(v), "only versions 2 and 3"});
  }
  ByteBuilder be;
  be.header(0x03000000u, 0, 0);
  require_error(be.b, StatusCode::kUnsupported, {"big-endian"});
}

TEST_CASE("reader: a file truncated at any byte is rejected", "[gguf][negative]") {
  std::mt19937 rng(3);
  GgufWriter w = small_model_writer(rng);
  for (const auto& kv : all_type_metadata()) w.add(kv.key, kv.value);
  const Bytes full = w.to_bytes();
  GgufReader ok(full.data(), full.size(), "full.gguf");
  // The last tensor's data ends before the trailing padding; every cut before it must fail.
  uint64_t end = 0;
  for (const auto& t : ok.tensors()) end = std::max(end, ok.data_offset() + t.offset + t.n_bytes);
  for (size_t cut = 0; cut < end; ++cut) {
    const Bytes part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    try {
      GgufReader r(part.data(), part.size(), "bad.gguf");
      FAIL("cut at " << cut << " accepted");
    } catch (const Error& e) {
      const std::string msg = e.what();
      INFO("cut " << cut << ": " << msg);
      REQUIRE((e.code() == StatusCode::kFormatError || e.code() == StatusCode::kOutOfRange));
      REQUIRE(msg.find("bad.gguf") != std::string::npos);
      const bool named = msg.find("truncated") != std::string::npos ||
                         msg.find("absurd") != std::string::npos;
      REQUIRE(named);
    }
  }
  // Cutting only trailing padding keeps the file valid.
  const Bytes no_pad(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(end));
  GgufReader r(no_pad.data(), no_pad.size(), "nopad.gguf");
  REQUIRE(r.tensors().size() == ok.tensors().size());
}

TEST_CASE("reader: string lengths pointing past the end", "[gguf][negative]") {
  ByteBuilder key;
  key.header(3, 0, 1).u64(1000).zeros(20);
  require_error(key.b, StatusCode::kFormatError, {"metadata entry #0", "key length 1000", "past the end"});
  ByteBuilder val;
  val.header(3, 0, 1).str("general.name").u32(8).u64(UINT64_MAX).zeros(20);
  require_error(val.b, StatusCode::kFormatError, {"general.name", "string value length", "past the end"});
  ByteBuilder tn;
  tn.header(3, 1, 0).u64(1ull << 40).zeros(40);
  require_error(tn.b, StatusCode::kFormatError, {"tensor info #0", "tensor name length", "past the end"});
}

TEST_CASE("reader: array lengths pointing past the end", "[gguf][negative]") {
  ByteBuilder bb;
  bb.header(3, 0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).u64(1000).zeros(64);
  require_error(bb.b, StatusCode::kFormatError, {"tokenizer.ggml.tokens", "array length 1000", "past the end"});
  ByteBuilder big;
  big.header(3, 0, 1).str("x").u32(9).u32(12).u64(UINT64_MAX / 4).zeros(64);
  require_error(big.b, StatusCode::kFormatError, {"'x'", "array length", "past the end"});
}

TEST_CASE("reader: absurd tensor and key/value counts", "[gguf][negative]") {
  ByteBuilder kv;
  kv.header(3, 0, UINT64_MAX).zeros(100);
  require_error(kv.b, StatusCode::kFormatError, {"key/value count", "absurd"});
  ByteBuilder t;
  t.header(3, 1ull << 60, 0).zeros(100);
  require_error(t.b, StatusCode::kFormatError, {"tensor count", "absurd"});
  ByteBuilder both;  // each fits alone, not together
  both.header(3, 3, 4).zeros(100);
  require_error(both.b, StatusCode::kFormatError, {"tensor count 3", "absurd"});
}

TEST_CASE("reader: unknown metadata value types and bad bools", "[gguf][negative]") {
  ByteBuilder t;
  t.header(3, 0, 1).str("k").u32(13).u32(0);
  require_error(t.b, StatusCode::kFormatError, {"'k'", "unknown value type 13"});
  ByteBuilder at;
  at.header(3, 0, 1).str("arr").u32(9).u32(77).u64(1).zeros(8);
  require_error(at.b, StatusCode::kFormatError, {"'arr'", "unknown array element type 77"});
  ByteBuilder b;
  b.header(3, 0, 1).str("flag").u32(7).u8(2);
  require_error(b.b, StatusCode::kFormatError, {"'flag'", "bool value 2"});
}

TEST_CASE("reader: arrays nested too deep", "[gguf][negative]") {
  ByteBuilder bb;
  bb.header(3, 0, 1).str("deep").u32(9);
  for (int i = 0; i < 100; ++i) bb.u32(9).u64(1);
  bb.u32(0).u64(0);
  require_error(bb.b, StatusCode::kFormatError, {"'deep'", "nested deeper than 8"});
}

TEST_CASE("reader: duplicate keys", "[gguf][negative]") {
  ByteBuilder bb;
  bb.header(3, 0, 2).kv_u32("llama.block_count", 1).kv_u32("llama.block_count", 2);
  require_error(bb.b, StatusCode::kFormatError, {"duplicate metadata key 'llama.block_count'"});
}

TEST_CASE("reader: bad general.alignment", "[gguf][negative]") {
  for (uint32_t a : {0u, 48u, 3u}) {
    ByteBuilder bb;
    bb.header(3, 0, 1).kv_u32("general.alignment", a);
    require_error(bb.b, StatusCode::kFormatError, {"general.alignment", "not a power of two"});
  }
  ByteBuilder ty;
  ty.header(3, 0, 1).str("general.alignment").u32(10).u64(32);
  require_error(ty.b, StatusCode::kFormatError, {"general.alignment", "must be uint32"});
}

TEST_CASE("reader: n_dims outside 1..4 and zero dims", "[gguf][negative]") {
  ByteBuilder five;
  five.header(3, 1, 0).tensor("t5", {1, 1, 1, 1, 1}, 0, 0).pad(32).zeros(4);
  require_error(five.b, StatusCode::kFormatError, {"tensor 't5'", "n_dims 5"});
  ByteBuilder none;
  none.header(3, 1, 0).tensor("t0", {}, 0, 0).zeros(40);
  require_error(none.b, StatusCode::kFormatError, {"tensor 't0'", "n_dims 0"});
  ByteBuilder zero;
  zero.header(3, 1, 0).tensor("tz", {4, 0}, 0, 0).pad(32).zeros(16);
  require_error(zero.b, StatusCode::kFormatError, {"tensor 'tz'", "ne[1] = 0"});
  ByteBuilder neg;
  neg.header(3, 1, 0).tensor("tn", {UINT64_MAX}, 0, 0).pad(32).zeros(16);
  require_error(neg.b, StatusCode::kFormatError, {"tensor 'tn'", "ne[0]"});
}

TEST_CASE("reader: element count and byte size overflow", "[gguf][negative]") {
  ByteBuilder ov;
  ov.header(3, 1, 0).tensor("huge", {1ull << 32, 1ull << 32}, 0, 0).pad(32).zeros(16);
  require_error(ov.b, StatusCode::kFormatError, {"tensor 'huge'", "element count overflows"});
  ByteBuilder big;
  big.header(3, 1, 0).tensor("big", {1ull << 62, 3}, 0, 0).pad(32).zeros(16);
  require_error(big.b, StatusCode::kFormatError, {"tensor 'big'", "exceeds 2^63-1"});
  ByteBuilder bytes;  // 2^61 F64 elements = 2^64 bytes
  bytes.header(3, 1, 0).tensor("f64", {1ull << 61}, 28, 0).pad(32).zeros(16);
  require_error(bytes.b, StatusCode::kFormatError, {"tensor 'f64'", "byte size overflows"});
}

TEST_CASE("reader: unknown ggml type", "[gguf][negative]") {
  for (uint32_t t : {4u, 5u, 31u, 42u, 0xffffffffu}) {
    ByteBuilder bb;
    bb.header(3, 1, 0).tensor("w", {32}, t, 0).pad(32).zeros(256);
    require_error(bb.b, StatusCode::kUnsupported, {"tensor 'w'", "unknown ggml type " + std::to_string(t)});
  }
}

TEST_CASE("reader: row size not a multiple of the block size", "[gguf][negative]") {
  ByteBuilder bb;
  bb.header(3, 1, 0).tensor("blk.0.attn_q.weight", {33, 2}, 2, 0).pad(32).zeros(256);
  require_error(bb.b, StatusCode::kFormatError,
                {"tensor 'blk.0.attn_q.weight'", "ne[0] = 33", "Q4_0 block size 32"});
}

TEST_CASE("reader: misaligned tensor data offset", "[gguf][negative]") {
  ByteBuilder bb;
  bb.header(3, 1, 0).tensor("w", {4}, 0, 16).pad(32).zeros(64);
  require_error(bb.b, StatusCode::kFormatError, {"tensor 'w'", "offset 16", "alignment 32"});
  ByteBuilder al;  // with a custom alignment of 64, offset 32 is misaligned
  al.header(3, 1, 1).kv_u32("general.alignment", 64).tensor("w", {4}, 0, 32).pad(64).zeros(128);
  require_error(al.b, StatusCode::kFormatError, {"tensor 'w'", "offset 32", "alignment 64"});
}

TEST_CASE("reader: tensor data past the end of the file", "[gguf][negative]") {
  ByteBuilder far;
  far.header(3, 1, 0).tensor("w", {4}, 0, 1ull << 40).pad(32).zeros(16);
  require_error(far.b, StatusCode::kOutOfRange, {"tensor 'w'", "past the end"});
  ByteBuilder edge;  // 8 floats need 32 bytes; 31 present
  edge.header(3, 1, 0).tensor("w", {8}, 0, 0).pad(32).zeros(31);
  require_error(edge.b, StatusCode::kOutOfRange, {"tensor 'w'", "[0, 32)", "past the end"});
  ByteBuilder wrap;  // offset + size wraps around 2^64
  wrap.header(3, 1, 0).tensor("w", {8}, 0, UINT64_MAX - 31).pad(32).zeros(64);
  require_error(wrap.b, StatusCode::kOutOfRange, {"tensor 'w'", "past the end"});
  ByteBuilder start;  // the header's padding itself is missing
  start.header(3, 1, 0).tensor("w", {1}, 0, 0);
  require_error(start.b, StatusCode::kOutOfRange, {"data section", "past the end"});
}

TEST_CASE("reader: overlapping tensors", "[gguf][negative]") {
  ByteBuilder bb;  // a: 16 floats at 0 (64 bytes); b: at 32
  bb.header(3, 2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad(32).zeros(128);
  require_error(bb.b, StatusCode::kFormatError, {"'a'", "'b'", "overlap"});
  ByteBuilder same;  // identical offsets, listed in reverse order of size
  same.header(3, 2, 0).tensor("x", {8}, 0, 0).tensor("y", {8}, 0, 0).pad(32).zeros(64);
  require_error(same.b, StatusCode::kFormatError, {"'x'", "'y'", "overlap"});
}

TEST_CASE("reader: duplicate tensor names", "[gguf][negative]") {
  ByteBuilder bb;
  bb.header(3, 2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad(32).zeros(64);
  require_error(bb.b, StatusCode::kFormatError, {"duplicate tensor name 'w'"});
}

TEST_CASE("reader: missing file is an I/O error naming the path", "[gguf][negative]") {
  require_throws_code([] { GgufReader r("/nonexistent/dir/model.gguf"); }, StatusCode::kIoError,
                      "/nonexistent/dir/model.gguf");
}

TEST_CASE("reader: random byte flips never crash", "[gguf][negative]") {
  // Not a proof (the fuzzer is): corrupt a valid file at random and require Error or success.
  std::mt19937 rng(11);
  GgufWriter w = small_model_writer(rng);
  for (const auto& kv : all_type_metadata()) w.add(kv.key, kv.value);
  const Bytes full = w.to_bytes();
  int accepted = 0, rejected = 0;
  for (int it = 0; it < 3000; ++it) {
    Bytes b = full;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] ^= static_cast<unsigned char>(1u << (rng() % 8));
    try {
      GgufReader r(b.data(), b.size(), "flip.gguf");
      for (const auto& t : r.tensors())
        if (ggml::can_dequantize(t.type)) (void)dequantize_tensor(r, t);
      ++accepted;
    } catch (const Error&) {
      ++rejected;
    }
  }
  REQUIRE(accepted + rejected == 3000);
  REQUIRE(rejected > 0);
}

}  // namespace test_gguf
