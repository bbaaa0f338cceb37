// Safetensors reader and writer: round trips of every dtype, metadata, determinism, streaming,
// one negative test per validation rule, and atomicity under a full disk.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/safetensors.hpp"
#include "support/test_data.hpp"

namespace test_safetensors {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

namespace {

std::vector<unsigned char> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

/// 8-byte length + header text + data bytes.
std::vector<unsigned char> make_file(const std::string& header, const std::vector<unsigned char>& data = {},
                                     uint64_t declared_len = ~uint64_t{0}) {
  const uint64_t n = declared_len == ~uint64_t{0} ? header.size() : declared_len;
  // Sized once and filled in place: growing an 8-byte vector with insert() trips GCC 12's
  // -Warray-bounds false positive at -O2.
  std::vector<unsigned char> f(8 + header.size() + data.size());
  std::memcpy(f.data(), &n, 8);
  std::copy(header.begin(), header.end(), f.begin() + 8);
  std::copy(data.begin(), data.end(), f.begin() + 8 + static_cast<std::ptrdiff_t>(header.size()));
  return f;
}

/// Parses `bytes` expecting an Error with `code` whose message contains every fragment.
void expect_error(const std::vector<unsigned char>& bytes, StatusCode code,
                  std::initializer_list<const char*> fragments) {
  try {
    SafetensorsFile::from_buffer(bytes.data(), bytes.size(), "bad.safetensors");
    FAIL("parsed without error");
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(e.code() == code);
    const std::string msg = e.what();
    CHECK(msg.find("bad.safetensors") != std::string::npos);
    for (const char* f : fragments) {
      INFO("expected fragment: " << f);
      CHECK(msg.find(f) != std::string::npos);
    }
  }
}

bool has_tmp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("every dtype round-trips through file and buffer", "[safetensors]") {
  cluscomp_test::TempDir dir;
  SafetensorsWriter w;
  std::vector<std::vector<unsigned char>> payloads;
  std::vector<std::vector<int64_t>> shapes;
  for (int i = 0; i < kNumDTypes; ++i) {
    const DType t = static_cast<DType>(i);
    std::vector<int64_t> shape = {3, static_cast<int64_t>(i % 4) + 1};
    const size_t n = static_cast<size_t>(shape[0] * shape[1]) * static_cast<size_t>(dtype_size(t));
    auto bytes = random_bytes(n, 100 + static_cast<uint32_t>(i));
    if (t == DType::kBool)
      for (auto& b : bytes) b &= 1u;
    payloads.push_back(bytes);
    shapes.push_back(shape);
  }
  // Add in an order that is not sorted by element size, so the writer's reordering is exercised.
  for (int i = kNumDTypes - 1; i >= 0; --i) {
    const DType t = static_cast<DType>(i);
    w.add(std::string("t_") + dtype_name(t), t, shapes[i], payloads[i].data(), payloads[i].size());
  }
  const float scalar = 3.25f;
  w.add("scalar", DType::kF32, {}, &scalar, 4);
  w.add("empty", DType::kF16, {0, 5}, nullptr, 0);
  w.set_metadata("format", "pt");
  w.set_metadata("note", "h\xc3\xa9llo \"quoted\"");
  const fs::path p = dir / "all.safetensors";
  w.write(p.string());

  const auto bytes = w.to_bytes();
  REQUIRE(read_all(p) == std::string(bytes.begin(), bytes.end()));

  for (int pass = 0; pass < 2; ++pass) {
    SafetensorsFile f = pass == 0 ? SafetensorsFile::open(p.string())
                                  : SafetensorsFile::from_buffer(bytes.data(), bytes.size(), "mem");
    REQUIRE(f.tensors().size() == static_cast<size_t>(kNumDTypes) + 2);
    REQUIRE(f.data_offset() % 8 == 0);
    for (int i = 0; i < kNumDTypes; ++i) {
      const DType t = static_cast<DType>(i);
      const TensorRef& r = f.at(std::string("t_") + dtype_name(t));
      REQUIRE(r.dtype == t);
      REQUIRE(r.shape == shapes[i]);
      REQUIRE(r.nbytes == payloads[i].size());
      REQUIRE(std::memcmp(r.data, payloads[i].data(), payloads[i].size()) == 0);
      if (pass == 0) REQUIRE(r.aligned());  // mmap is page-aligned, offsets are element-aligned
    }
    REQUIRE(f.at("scalar").shape.empty());
    REQUIRE(f.at("scalar").numel() == 1);
    REQUIRE(tensor_to_float(f.at("scalar"))[0] == 3.25f);
    REQUIRE(f.at("empty").nbytes == 0);
    REQUIRE(f.at("empty").numel() == 0);
    REQUIRE(f.metadata().at("format") == "pt");
    REQUIRE(f.metadata().at("note") == "h\xc3\xa9llo \"quoted\"");
    REQUIRE(f.find("missing") == nullptr);
    try {
      (void)f.at("missing");
      FAIL("no throw");
    } catch (const Error& e) {
      REQUIRE(e.code() == StatusCode::kNotFound);
      REQUIRE(std::string(e.what()).find("'missing'") != std::string::npos);
    }
    // File order is ascending offset: element sizes 8, 4, 2, 1 in that order.
    int prev = 8;
    for (const auto& t : f.tensors()) {
      REQUIRE(dtype_size(t.dtype) <= prev);
      prev = dtype_size(t.dtype);
    }
  }
}

TEST_CASE("writer output is deterministic and padded", "[safetensors]") {
  const std::vector<float> a = {1, 2, 3};
  const std::vector<uint8_t> b = {7};
  auto build = [&] {
    SafetensorsWriter w;
    w.add("b", DType::kU8, {1}, b.data(), 1);
    w.add("a", DType::kF32, {3}, a.data(), 12);
    w.set_metadata("z", "1");
    w.set_metadata("a", "2");
    return w;
  };
  const auto x = build().to_bytes();
  const auto y = build().to_bytes();
  REQUIRE(x == y);
  uint64_t n;
  std::memcpy(&n, x.data(), 8);
  REQUIRE((8 + n) % 8 == 0);
  const std::string h(x.begin() + 8, x.begin() + 8 + static_cast<long>(n));
  REQUIRE(h.rfind(R"({"__metadata__":{"a":"2","z":"1"},"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"b":{"dtype":"U8","shape":[1],"data_offsets":[12,13]}})", 0) == 0);
  REQUIRE(h.find_first_not_of(' ', h.find_last_of('}') + 1) == std::string::npos);
}

TEST_CASE("to_float converts every float dtype exactly", "[safetensors]") {
  const uint16_t h[2] = {0x3e00, 0xc000};             // 1.5, -2
  const uint16_t bf[2] = {0x3fc0, 0xbf80};            // 1.5, -1
  const double dd[2] = {0.1, -3.0};
  const uint8_t e4[2] = {0x38, 0x7e};                 // 1, 448
  const uint8_t e5[2] = {0x3c, 0xc0};                 // 1, -2
  SafetensorsWriter w;
  w.add("h", DType::kF16, {2}, h, 4);
  w.add("bf", DType::kBF16, {2}, bf, 4);
  w.add("d", DType::kF64, {2}, dd, 16);
  w.add("e4", DType::kF8E4M3, {2}, e4, 2);
  w.add("e5", DType::kF8E5M2, {2}, e5, 2);
  const int32_t ints[3] = {-5, 0, 70000};
  w.add("i", DType::kI32, {3}, ints, 12);
  const auto bytes = w.to_bytes();
  const auto f = SafetensorsFile::from_buffer(bytes.data(), bytes.size(), "mem");
  REQUIRE(tensor_to_float(f.at("h")) == std::vector<float>{1.5f, -2.0f});
  REQUIRE(tensor_to_float(f.at("bf")) == std::vector<float>{1.5f, -1.0f});
  REQUIRE(tensor_to_float(f.at("d")) == std::vector<float>{0.1f, -3.0f});
  REQUIRE(tensor_to_float(f.at("e4")) == std::vector<float>{1.0f, 448.0f});
  REQUIRE(tensor_to_float(f.at("e5")) == std::vector<float>{1.0f, -2.0f});
  REQUIRE(tensor_to_int64(f.at("i")) == std::vector<int64_t>{-5, 0, 70000});
  REQUIRE_THROWS_AS(tensor_to_float(f.at("i")), Error);
  REQUIRE_THROWS_AS(tensor_to_int64(f.at("h")), Error);
}

TEST_CASE("streamed tensors are written in chunks and byte counts are enforced", "[safetensors]") {
  cluscomp_test::TempDir dir;
  const fs::path p = dir / "s.safetensors";
  SafetensorsWriter w;
  w.add_streamed("big", DType::kI32, {1000}, [](const SafetensorsWriter::ByteSink& sink) {
    for (int32_t c = 0; c < 10; ++c) {
      std::vector<int32_t> chunk(100);
      for (int32_t i = 0; i < 100; ++i) chunk[static_cast<size_t>(i)] = c * 100 + i;
      sink(chunk.data(), chunk.size() * 4);
    }
  });
  w.write(p.string());
  const auto f = SafetensorsFile::open(p.string());
  const auto v = tensor_to_int64(f.at("big"));
  for (int64_t i = 0; i < 1000; ++i) REQUIRE(v[static_cast<size_t>(i)] == i);

  // A producer that delivers too few or too many bytes fails the write and leaves no file.
  for (int extra : {-4, 4}) {
    SafetensorsWriter bad;
    bad.add_streamed("x", DType::kF32, {4}, [extra](const SafetensorsWriter::ByteSink& sink) {
      std::vector<unsigned char> z(static_cast<size_t>(16 + extra));
      sink(z.data(), z.size());
    });
    const fs::path q = dir / "bad.safetensors";
    try {
      bad.write(q.string());
      FAIL("no throw");
    } catch (const Error& e) {
      REQUIRE(e.code() == StatusCode::kInvalidArgument);
      REQUIRE(std::string(e.what()).find("'x'") != std::string::npos);
    }
    REQUIRE(!fs::exists(q));
    REQUIRE(!has_tmp_files(dir.path()));
  }
}

TEST_CASE("writer rejects bad tensors", "[safetensors]") {
  SafetensorsWriter w;
  const float x[4] = {};
  w.add("a", DType::kF32, {4}, x, 16);
  auto code = [&](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return e.code();
    }
    return StatusCode::kOk;
  };
  REQUIRE(code([&] { w.add("a", DType::kF32, {4}, x, 16); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.add("b", DType::kF32, {4}, x, 15); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.add("c", DType::kF32, {-1}, x, 0); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.add("", DType::kF32, {4}, x, 16); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.add("n", DType::kF32, {4}, nullptr, 16); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.add("__metadata__", DType::kF32, {4}, x, 16); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.add("\xff", DType::kF32, {4}, x, 16); }) == StatusCode::kInvalidArgument);
  REQUIRE(code([&] { w.set_metadata("k", "\xc0\x80"); }) == StatusCode::kInvalidArgument);
  REQUIRE(w.size() == 1);
}

TEST_CASE("reader accepts what the official implementation accepts", "[safetensors]") {
  // Unpadded header, tensors listed out of offset order, null metadata, no tensors at all.
  const std::vector<unsigned char> data = {1, 0, 0, 0, 2, 0};
  auto f = make_file(R"({"__metadata__":null,"b":{"dtype":"I16","shape":[1],"data_offsets":[4,6]},)"
                     R"("a":{"shape":[1],"dtype":"I32","data_offsets":[0,4]}})", data);
  const auto s = SafetensorsFile::from_buffer(f.data(), f.size(), "ok");
  REQUIRE(s.names() == std::vector<std::string>{"a", "b"});
  REQUIRE(tensor_to_int64(s.at("a"))[0] == 1);
  REQUIRE(tensor_to_int64(s.at("b"))[0] == 2);
  REQUIRE(!s.at("b").aligned() == (reinterpret_cast<uintptr_t>(s.at("b").data) % 2 != 0));
  auto e = make_file("{}  ");
  REQUIRE(SafetensorsFile::from_buffer(e.data(), e.size(), "empty").tensors().empty());
}

TEST_CASE("one negative test per validation rule", "[safetensors]") {
  const auto F = StatusCode::kFormatError;
  const std::vector<unsigned char> four(4, 0);
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";

  SECTION("file shorter than 8 bytes") {
    expect_error({1, 2, 3}, F, {"3 bytes", "shorter than"});
  }
  SECTION("header length over the limit") {
    expect_error(make_file("{}", {}, 200'000'000), F, {"200000000", "exceeds the limit"});
  }
  SECTION("header length past the end of the file") {
    expect_error(make_file("{}", {}, 1000), F, {"1000", "runs past the end"});
  }
  SECTION("header does not start with {") {
    expect_error(make_file(" {}"), F, {"does not start with '{'"});
    expect_error(make_file("[]"), F, {"does not start with '{'"});
    expect_error(make_file("", four), F, {"does not start with '{'"});
  }
  SECTION("header not UTF-8") {
    expect_error(make_file("{\"\xff\":1}"), F, {"not valid UTF-8", "byte 2"});
    expect_error(make_file("{\"\xed\xa0\x80\":1}"), F, {"not valid UTF-8"});  // surrogate
    expect_error(make_file("{\"\xc0\xaf\":1}"), F, {"not valid UTF-8"});      // overlong
  }
  SECTION("header not valid JSON") {
    expect_error(make_file("{\"a\":"), F, {"not valid JSON"});
    expect_error(make_file("{} {}"), F, {"not valid JSON"});
  }
  SECTION("JSON nested too deep (recursive JSON code must not exhaust the stack)") {
    const std::string deep(100000, '[');
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":)" + deep + std::string(100000, ']') + "}}"),
                 F, {"deeper than 64 levels"});
    // Brackets inside strings do not count.
    const auto f = make_file(R"({"__metadata__":{"k":")" + deep + R"("}})");
    REQUIRE(SafetensorsFile::from_buffer(f.data(), f.size(), "ok").metadata().at("k") == deep);
  }
  SECTION("duplicate tensor name") {
    expect_error(make_file("{" + ok_entry + "," + ok_entry + "}", four), F, {"'a' twice"});
  }
  SECTION("entry not an object") {
    expect_error(make_file(R"({"a":[1,2]})"), F, {"tensor 'a'", "not an object"});
  }
  SECTION("entry missing a field") {
    expect_error(make_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", four), F, {"tensor 'a'", "missing 'dtype'"});
    expect_error(make_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", four), F, {"tensor 'a'", "missing 'shape'"});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1]}})", four), F, {"tensor 'a'", "missing 'data_offsets'"});
  }
  SECTION("entry with an unknown key") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", four), F,
                 {"tensor 'a'", "unknown key 'x'"});
  }
  SECTION("fields with wrong JSON types") {
    expect_error(make_file(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "'dtype'", "not a string"});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "'shape'", "not an array"});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", four), F,
                 {"tensor 'a'", "'data_offsets' must be an array of two integers"});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":{"0":4}}})", four), F,
                 {"tensor 'a'", "'data_offsets' must be an array of two integers"});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,"4"]}})", four), F,
                 {"tensor 'a'", "data offset \"4\""});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-1,4]}})", four), F,
                 {"tensor 'a'", "data offset -1"});
  }
  SECTION("unknown dtype") {
    expect_error(make_file(R"({"a":{"dtype":"F4","shape":[1],"data_offsets":[0,4]}})", four),
                 StatusCode::kUnsupported, {"tensor 'a'", "unknown dtype 'F4'"});
  }
  SECTION("negative dimension") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "dimension -1 is negative"});
  }
  SECTION("non-integer dimension") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "dimension 1.5", "not a non-negative integer"});
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "dimension true"});
  }
  SECTION("element count overflow") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "overflows 64 bits"});
    // numel fits but numel * 4 bytes does not
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "overflows 64 bits"});
  }
  SECTION("data_offsets end before begin") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", four), F,
                 {"tensor 'a'", "end 0 is before begin 4"});
  }
  SECTION("byte length disagrees with the shape") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four), F,
                 {"tensor 'a'", "hold 4 bytes", "needs 8"});
  }
  SECTION("offsets past the data area") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four), F,
                 {"tensor 'a'", "past the data area (4 bytes)"});
  }
  SECTION("overlapping tensors") {
    expect_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"I16","shape":[1],"data_offsets":[2,4]}})", four), F,
                 {"'a' and 'b' overlap"});
  }
  SECTION("hole between tensors") {
    expect_error(make_file(R"({"a":{"dtype":"I16","shape":[1],"data_offsets":[0,2]},)"
                           R"("b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})", four), F,
                 {"bytes [2, 3)", "not covered", "before 'b'"});
    expect_error(make_file(R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})", four), F,
                 {"bytes [0, 3)", "not covered"});
  }
  SECTION("uncovered bytes after the last tensor") {
    expect_error(make_file(R"({"a":{"dtype":"I16","shape":[1],"data_offsets":[0,2]}})", four), F,
                 {"bytes [2, 4) at the end", "not covered"});
    expect_error(make_file("{}", four), F, {"bytes [0, 4) at the end"});
  }
  SECTION("__metadata__ not a string map") {
    expect_error(make_file(R"({"__metadata__":[1]})"), F, {"__metadata__ must be an object"});
    expect_error(make_file(R"({"__metadata__":{"k":1}})"), F, {"__metadata__", "key 'k'", "number"});
    expect_error(make_file(R"({"__metadata__":{"k":{"x":"y"}}})"), F, {"__metadata__", "key 'k'", "object"});
  }
}

TEST_CASE("a full disk leaves neither a partial file nor a temporary", "[safetensors]") {
  cluscomp_test::TempDir dir;
  const fs::path dst = dir / "model.safetensors";
  {
    std::ofstream old(dst, std::ios::binary);
    old << "previous content";
  }
  const std::vector<float> big(1 << 18, 1.0f);  // 1 MiB, far above the 64 KiB limit below
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: cap file size, make the kernel return EFBIG instead of killing us.
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {65536, 65536};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    SafetensorsWriter w;
    w.add("w", DType::kF32, {static_cast<int64_t>(big.size())}, big.data(), big.size() * 4);
    try {
      w.write(dst.string());
      ::_exit(11);  // must not succeed
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (e.code() != StatusCode::kIoError) ::_exit(12);
      if (msg.find(dst.string()) == std::string::npos) ::_exit(13);
      if (msg.find("disk full or file size limit") == std::string::npos) ::_exit(14);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(read_all(dst) == "previous content");
  REQUIRE(!has_tmp_files(dir.path()));

  // And without a pre-existing file, nothing appears.
  const fs::path fresh = dir / "fresh.safetensors";
  const pid_t pid2 = ::fork();
  REQUIRE(pid2 >= 0);
  if (pid2 == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    SafetensorsWriter w;
    w.add("w", DType::kF32, {static_cast<int64_t>(big.size())}, big.data(), big.size() * 4);
    try {
      w.write(fresh.string());
      ::_exit(11);
    } catch (const Error& e) {
      ::_exit(e.code() == StatusCode::kIoError ? 0 : 12);
    }
  }
  REQUIRE(::waitpid(pid2, &status, 0) == pid2);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(!fs::exists(fresh));
  REQUIRE(!has_tmp_files(dir.path()));
}

TEST_CASE("a producer that throws mid-write leaves the destination untouched", "[safetensors]") {
  cluscomp_test::TempDir dir;
  const fs::path dst = dir / "m.safetensors";
  {
    std::ofstream old(dst, std::ios::binary);
    old << "keep";
  }
  SafetensorsWriter w;
  w.add_streamed("x", DType::kU8, {1 << 20}, [](const SafetensorsWriter::ByteSink& sink) {
    std::vector<unsigned char> z(1 << 19);
    sink(z.data(), z.size());
    throw Error(StatusCode::kCancelled, "stop");
  });
  REQUIRE_THROWS_AS(w.write(dst.string()), Error);
  REQUIRE(read_all(dst) == "keep");
  REQUIRE(!has_tmp_files(dir.path()));
}

}  // namespace test_safetensors
