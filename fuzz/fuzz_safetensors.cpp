// libFuzzer harness: parses the input as a safetensors file and, when that succeeds, reads every
// tensor through the conversion helpers and parses it as a cluscomp-format model (and its stored
// config.json). Any cluscomp::Error is an expected outcome; crashes, sanitizer reports, leaks
// and other exceptions are findings. Seeds: fuzz/corpus/safetensors (written by the library).
//
//   clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//       fuzz/fuzz_safetensors.cpp -o fuzz_safetensors
//   ./fuzz_safetensors -max_total_time=60 fuzz/corpus/safetensors
#include <cstddef>
#include <cstdint>

#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cluscomp;
  try {
    SafetensorsFile f = SafetensorsFile::from_buffer(data, size, "fuzz");
    // Touch every byte the reader vouched for.
    for (const TensorRef& t : f.tensors()) {
      try {
        if (is_float_dtype(t.dtype)) {
          (void)tensor_to_float(t);
        } else {
          (void)tensor_to_int64(t);
        }
      } catch (const Error&) {
      }
    }
    CluscompModel m = read_cluscomp_model(std::move(f));
    for (const auto& kv : m.clustered) {
      const CodebookTensor& t = kv.second;
      if (t.shape().num_vectors() > 0) (void)t.code(t.shape().num_vectors() - 1);
    }
    if (!m.config_json().empty()) (void)parse_llama_config(m.config_json(), "fuzz config");
  } catch (const Error&) {
  }
  return 0;
}
