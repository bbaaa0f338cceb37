// The real model's tokenizer (SmolLM2-135M-Instruct GGUF: byte-level BPE, "smollm" pre-tokeniser)
// against an independent implementation: the PyPI `tokenizers` package (Hugging Face, Rust),
// assembled from the GGUF's vocabulary and merges by tests/model/tokenizer_dump.py. Token ids must
// be identical on tricky strings, 300 seeded random strings and the whole evaluation text, both
// from the GGUF and from the tokenizer.json the dump saved; decode(encode(text)) == text.
#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "support/test_data.hpp"

namespace test_tokenizer_real {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

namespace {

const char* kHowTo =
    "run scripts/test.sh, or by hand: $CLUSCOMP_DATA/venv-test/bin/python tests/model/tokenizer_dump.py "
    "MODEL $CLUSCOMP_DATA/text/kjv.evaluation.txt $CLUSCOMP_DATA/reference/tokenizer "
    "(needs the PyPI packages gguf and tokenizers: scripts/setup.sh --test-env)";

fs::path dump_dir() { return cluscomp_test::data_dir() / "reference" / "tokenizer"; }

std::string from_hex(const std::string& h) {
  std::string out(h.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

void require_model() {
  if (!fs::exists(cluscomp_test::real_model_path()))
    FAIL("real model missing: " << cluscomp_test::real_model_path().string()
                                << "\nrun scripts/setup.sh to download it");
}

const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    const fs::path p = dump_dir() / "manifest.json";
    if (!fs::exists(p)) return nlohmann::json();
    return nlohmann::json::parse(read_text_file(p.string()));
  }();
  if (m.is_null()) FAIL("tokenizer reference dump missing: " << (dump_dir() / "manifest.json").string() << "\n" << kHowTo);
  return m;
}

const Tokenizer& gguf_tokenizer() {
  static const Tokenizer t = [] {
    GgufReader r(cluscomp_test::real_model_path().string());
    return Tokenizer::from_gguf(r);
  }();
  return t;
}

/// First index where the two id lists differ (or the shorter length), for the failure message.
size_t first_mismatch(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

void check_cases(const Tokenizer& t) {
  const nlohmann::json& m = manifest();
  for (const auto& c : m["cases"]) {
    const std::string text = from_hex(c["hex"].get<std::string>());
    const auto want = c["ids"].get<std::vector<int32_t>>();
    const auto got = t.encode(text, false, c["parse_special"].get<bool>());
    if (got != want) {
      const size_t k = first_mismatch(got, want);
      FAIL("case '" << c["name"].get<std::string>() << "' text '" << text << "': ids differ at index " << k
                    << " (ours " << (k < got.size() ? std::to_string(got[k]) : "end") << ", HF "
                    << (k < want.size() ? std::to_string(want[k]) : "end") << ")");
    }
    CHECK(t.decode(got) == text);
  }
}

}  // namespace

TEST_CASE("real tokenizer: GGUF metadata", "[model][tokenizer]") {
  require_model();
  const Tokenizer& t = gguf_tokenizer();
  CHECK(t.vocab_size() == 49152);
  CHECK(t.model() == TokenizerModel::kByteLevelBpe);
  CHECK(t.pre_tokenizer() == PreTokenizer::kDigitsThenGpt2);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK_FALSE(t.add_bos_default());
  CHECK(t.token_text(1) == "<|im_start|>");
  CHECK(t.token_type(1) == TokenType::kControl);
  const std::string prompt = t.apply_chat_template({{"user", "What is 2+2?"}}, true);
  CHECK(prompt ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  const auto ids = t.encode(prompt, false, true);
  CHECK(ids.front() == 1);
  CHECK(t.decode(ids) == prompt);
}

TEST_CASE("real tokenizer (GGUF) = HF tokenizers on tricky and random strings", "[model][tokenizer]") {
  require_model();
  check_cases(gguf_tokenizer());
}

TEST_CASE("real tokenizer (tokenizer.json written by HF) = HF tokenizers", "[model][tokenizer]") {
  (void)manifest();
  const Tokenizer t = Tokenizer::from_tokenizer_json((dump_dir() / "tokenizer.json").string());
  CHECK(t.vocab_size() == 49152);
  CHECK(t.pre_tokenizer() == PreTokenizer::kDigitsThenGpt2);
  check_cases(t);
}

TEST_CASE("real tokenizer = HF tokenizers on the whole evaluation text; round trip; speed", "[model][tokenizer]") {
  require_model();
  const nlohmann::json& m = manifest();
  const fs::path eval = cluscomp_test::data_dir() / "text" / "kjv.evaluation.txt";
  if (!fs::exists(eval)) FAIL("evaluation text missing: " << eval.string() << "\nrun scripts/setup.sh");
  const std::string text = read_text_file(eval.string());
  REQUIRE(m["eval"]["size"].get<size_t>() == text.size());  // else the dump is stale: re-run it
  const auto want = m["eval"]["ids"].get<std::vector<int32_t>>();
  const Tokenizer& t = gguf_tokenizer();
  (void)t.encode(text.substr(0, 10000), false);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  const auto got = t.encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN("encoded " << text.size() << " bytes into " << got.size() << " tokens in " << s * 1e3
                  << " ms: " << static_cast<double>(got.size()) / s << " tokens/s");
  if (got != want) {
    const size_t k = first_mismatch(got, want);
    FAIL("evaluation text ids differ at index " << k << " of " << want.size() << " (ours "
                                                << (k < got.size() ? std::to_string(got[k]) : "end") << ", HF "
                                                << (k < want.size() ? std::to_string(want[k]) : "end") << ")");
  }
  CHECK(t.decode(got) == text);
  CHECK(s < 1.0);
}

TEST_CASE("real tokenizer: the state a compressed file embeds tokenises like HF", "[model][tokenizer][state]") {
  require_model();
  const std::string state = gguf_tokenizer().to_state_json();
  WARN("tokenizer state: " << state.size() << " bytes");
  CHECK(state.size() < (2u << 20));  // docs/format.md quotes its size
  const Tokenizer t = Tokenizer::from_state_json(state, "state");
  CHECK(t.to_state_json() == state);
  CHECK(t.apply_chat_template({{"user", "What is 2+2?"}}, true) ==
        gguf_tokenizer().apply_chat_template({{"user", "What is 2+2?"}}, true));
  check_cases(t);
}

}  // namespace test_tokenizer_real
