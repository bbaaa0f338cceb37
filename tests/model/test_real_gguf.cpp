// The real model (SmolLM2-135M-Instruct Q4_1) read by cluscomp's GGUF reader and compared with an
// independent dump made by gguf-py + numpy (tests/model/gguf_dump.py): every metadata key, type
// and value (tokenizer arrays included), every tensor's type/shape/offset, and every tensor's
// dequantised values.
//
// Tolerance: none. gguf-py's numpy dequantisers perform the same fp32 operations in the same
// order as ggml's C code and ours (F32: copy; Q8_0: q * d; Q4_1: (d * q) + m, each rounded to
// fp32, and numpy never fuses multiply-add), so every value must match bit for bit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "support/test_data.hpp"

namespace test_real_gguf {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

namespace {

const char* kHowTo =
    "run scripts/setup.sh, or by hand: python tests/model/gguf_dump.py MODEL "
    "$CLUSCOMP_DATA/reference/gguf_dump (needs the PyPI packages gguf and numpy)";

fs::path dump_dir() { return cluscomp_test::data_dir() / "reference" / "gguf_dump"; }

std::string from_hex(const std::string& h) {
  std::string out(h.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

/// Compares one value with its dump encoding (see gguf_dump.py); returns "" or a description.
std::string compare_item(const GgufValue& v, const nlohmann::json& j) {
  switch (v.type) {
    case GgufType::kString: {
      const std::string want = from_hex(j.get<std::string>());
      return v.str == want ? "" : "string '" + v.str + "' != '" + want + "'";
    }
    case GgufType::kFloat32: case GgufType::kFloat64:
      return v.bits == j.get<uint64_t>() ? "" : "float bits " + std::to_string(v.bits) + " != " + j.dump();
    case GgufType::kInt8: case GgufType::kInt16: case GgufType::kInt32: case GgufType::kInt64:
      return v.signed_value() == j.get<int64_t>() ? "" : std::to_string(v.signed_value()) + " != " + j.dump();
    case GgufType::kArray: return "nested array";
    default:
      return v.bits == j.get<uint64_t>() ? "" : std::to_string(v.bits) + " != " + j.dump();
  }
}

nlohmann::json load_manifest() {
  const fs::path m = dump_dir() / "manifest.json";
  if (!fs::exists(m)) FAIL("gguf-py dump missing: " << m.string() << "\n" << kHowTo);
  return nlohmann::json::parse(read_text_file(m.string()));
}

void require_model() {
  if (!fs::exists(cluscomp_test::real_model_path()))
    FAIL("real model missing: " << cluscomp_test::real_model_path().string()
                                << "\nrun scripts/setup.sh to download it");
}

}  // namespace

TEST_CASE("real GGUF: header, metadata keys, types and values equal gguf-py's", "[model][gguf]") {
  require_model();
  const nlohmann::json man = load_manifest();
  GgufReader r(cluscomp_test::real_model_path().string());
  REQUIRE(man["model_size"].get<uint64_t>() == r.size());  // else the dump is stale: re-run it
  REQUIRE(man["version"].get<uint32_t>() == r.version());
  REQUIRE(man["alignment"].get<uint32_t>() == r.alignment());
  REQUIRE(man["data_offset"].get<uint64_t>() == r.data_offset());

  const auto& md = man["metadata"];
  REQUIRE(md.size() == r.metadata().size());
  REQUIRE(r.metadata().size() == 33);
  size_t array_items = 0;
  for (size_t i = 0; i < md.size(); ++i) {
    const auto& j = md[i];
    const GgufKeyValue& kv = r.metadata()[i];
    INFO("key #" << i << " " << kv.key);
    REQUIRE(kv.key == j["key"].get<std::string>());
    REQUIRE(std::string(gguf_type_name(kv.value.type)) == j["type"].get<std::string>());
    if (kv.value.type == GgufType::kArray) {
      REQUIRE(std::string(gguf_type_name(kv.value.elem_type)) == j["elem_type"].get<std::string>());
      const auto& vals = j["values"];
      REQUIRE(vals.size() == kv.value.items.size());
      for (size_t k = 0; k < vals.size(); ++k) {
        const std::string diff = compare_item(kv.value.items[k], vals[k]);
        if (!diff.empty()) FAIL("item " << k << ": " << diff);
      }
      array_items += vals.size();
    } else {
      const nlohmann::json& enc = kv.value.type == GgufType::kString ? j["hex"]
                                  : gguf_type_is_float(kv.value.type) ? j["bits"]
                                                                       : j["value"];
      const std::string diff = compare_item(kv.value, enc);
      if (!diff.empty()) FAIL(diff);
    }
  }
  REQUIRE(array_items == 1 + 49152 + 49152 + 48900);  // languages, tokens, token_type, merges
  // Typed accessors on the keys a loader needs.
  REQUIRE(r.get_string("general.architecture") == "llama");
  REQUIRE(r.get_u32("llama.block_count") == 30);
  REQUIRE(r.get_u32("llama.embedding_length") == 576);
  REQUIRE(r.get_u32("llama.attention.head_count") == 9);
  REQUIRE(r.get_u32("llama.attention.head_count_kv") == 3);
  REQUIRE(r.get_f32("llama.rope.freq_base") == 100000.0f);
  REQUIRE(r.get_string_array("tokenizer.ggml.tokens").size() == 49152);
  REQUIRE(r.get_int_array("tokenizer.ggml.token_type").size() == 49152);
  REQUIRE(r.get_string_array("tokenizer.ggml.merges").size() == 48900);
}

TEST_CASE("real GGUF: every tensor's info and dequantised values equal gguf-py's, bit for bit",
          "[model][gguf]") {
  require_model();
  const nlohmann::json man = load_manifest();
  GgufReader r(cluscomp_test::real_model_path().string());
  const auto& ts = man["tensors"];
  REQUIRE(ts.size() == r.tensors().size());
  REQUIRE(r.tensors().size() == 272);
  std::map<std::string, int> by_type;
  uint64_t total = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& j = ts[i];
    const GgufTensorInfo& t = r.tensors()[i];
    INFO("tensor #" << i << " " << t.name << " (" << ggml_type_name(t.type) << ")");
    REQUIRE(t.name == j["name"].get<std::string>());
    REQUIRE(ggml_type_name(t.type) == j["type"].get<std::string>());
    REQUIRE(static_cast<uint32_t>(t.type) == j["type_id"].get<uint32_t>());
    REQUIRE(t.ne == j["ne"].get<std::vector<int64_t>>());
    REQUIRE(t.offset == j["offset"].get<uint64_t>());
    REQUIRE(r.data_offset() + t.offset == j["abs_offset"].get<uint64_t>());
    REQUIRE(t.n_elements == j["n_elements"].get<uint64_t>());
    REQUIRE(t.n_bytes == j["n_bytes"].get<uint64_t>());
    ++by_type[ggml_type_name(t.type)];

    const fs::path f = dump_dir() / j["file"].get<std::string>();
    MappedFile want(f.string());
    REQUIRE(want.size() == t.n_elements * 4);
    const std::vector<float> got = dequantize_tensor(r, t);
    if (std::memcmp(got.data(), want.data(), want.size()) != 0) {
      size_t bad = 0, first = 0;
      double max_diff = 0;
      for (size_t k = 0; k < got.size(); ++k) {
        float w;
        std::memcpy(&w, want.data() + 4 * k, 4);
        if (std::memcmp(&w, &got[k], 4) != 0) {
          if (bad++ == 0) first = k;
          max_diff = std::max(max_diff, std::fabs(static_cast<double>(w) - got[k]));
        }
      }
      FAIL(bad << " of " << got.size() << " values differ; first at " << first
               << ", max |diff| " << max_diff);
    }
    total += t.n_elements;
  }
  REQUIRE(by_type["Q4_1"] == 210);
  REQUIRE(by_type["F32"] == 61);
  REQUIRE(by_type["Q8_0"] == 1);
  REQUIRE(total == 134515008u);
}

}  // namespace test_real_gguf
