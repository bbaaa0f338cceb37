// libFuzzer harness for the GGUF reader and the dequantisers: parse the input as a GGUF file,
// touch every metadata value through the typed accessors, and dequantise every tensor of a type
// the library handles. Any cluscomp::Error is an accepted outcome; crashes, sanitizer reports,
// leaks and uncaught exceptions are bugs.
//
//   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude fuzz/fuzz_gguf.cpp
//   ./a.out -max_total_time=60 CORPUS_DIR
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_quant.hpp"

namespace {

void touch(const cluscomp::GgufReader& r, const cluscomp::GgufKeyValue& kv) {
  using cluscomp::GgufType;
  const cluscomp::GgufValue& v = kv.value;
  // Each accessor either returns or throws Error; both are fine.
  try { (void)r.get_u32(kv.key); } catch (const cluscomp::Error&) {}
  try { (void)r.get_i64(kv.key); } catch (const cluscomp::Error&) {}
  try { (void)r.get_f32(kv.key); } catch (const cluscomp::Error&) {}
  try { (void)r.get_bool(kv.key); } catch (const cluscomp::Error&) {}
  try { (void)r.get_string(kv.key); } catch (const cluscomp::Error&) {}
  if (v.type == GgufType::kArray) {
    try { (void)r.get_string_array(kv.key); } catch (const cluscomp::Error&) {}
    try { (void)r.get_int_array(kv.key); } catch (const cluscomp::Error&) {}
    try { (void)r.get_f32_array(kv.key); } catch (const cluscomp::Error&) {}
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    cluscomp::GgufReader r(data, size, "fuzz.gguf");
    for (const auto& kv : r.metadata()) touch(r, kv);
    volatile float sink = 0.0f;
    for (const auto& t : r.tensors()) {
      if (!cluscomp::ggml::can_dequantize(t.type)) continue;
      const std::vector<float> v = cluscomp::dequantize_tensor(r, t);
      if (!v.empty()) sink = sink + v.back();
    }
  } catch (const cluscomp::Error&) {
  }
  return 0;
}
