// SentencePiece through libsentencepiece (the optional sentencepiece_tokenizer.hpp), and the
// native SentencePiece-BPE path (GGUF "llama" vocabularies) checked against it: a small BPE model
// with byte fallback is trained here by libsentencepiece_train on a seeded synthetic corpus, then
// both segment the same random texts and must give identical ids. Built only where
// find_library(sentencepiece) succeeds (tests/CMakeLists.txt); label cpu.
#include <catch2/catch.hpp>

#include <sentencepiece_trainer.h>

#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/tokenizer/sentencepiece_tokenizer.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "support/test_data.hpp"

using namespace cluscomp;

namespace {

const std::vector<std::string>& words() {
  static const std::vector<std::string> w = {
      "the", "and", "of", "to", "in", "that", "he", "shall", "unto", "for", "his", "lord", "they",
      "be", "is", "him", "not", "them", "with", "all", "thou", "thy", "was", "which", "my", "me",
      "said", "but", "ye", "have", "café", "naïve", "résumé", "über", "Straße", "2024", "42", "3.14",
      "Hello", "World", "It's", "don't", "中文", "日本語", "😀", "e-mail", "(note)", "\"quoted\""};
  return w;
}

std::string random_sentence(std::mt19937& rng, int n_words) {
  std::uniform_int_distribution<size_t> pick(0, words().size() - 1);
  std::string s;
  for (int i = 0; i < n_words; ++i) {
    if (i) s += (rng() % 7 == 0) ? "  " : " ";
    s += words()[pick(rng)];
  }
  return s;
}

/// Trains (once per process) a 500-piece BPE model with byte fallback and no normalisation,
/// like LLaMA's tokenizer.model; returns the serialized model.
const std::string& trained_model() {
  static const std::string model = [] {
    cluscomp_test::TempDir dir;
    std::mt19937 rng(99);
    {
      std::ofstream corpus(dir / "corpus.txt");
      for (int i = 0; i < 3000; ++i) corpus << random_sentence(rng, 4 + static_cast<int>(rng() % 12)) << "\n";
    }
    std::string serialized;
    const auto st = sentencepiece::SentencePieceTrainer::Train(
        {{"input", (dir / "corpus.txt").string()},
         {"model_type", "bpe"},
         {"vocab_size", "500"},
         {"byte_fallback", "true"},
         {"character_coverage", "0.9995"},
         {"normalization_rule_name", "identity"},
         {"remove_extra_whitespaces", "false"},
         {"add_dummy_prefix", "true"},
         {"split_digits", "true"},
         {"minloglevel", "2"}},
        nullptr, &serialized);
    if (!st.ok()) throw Error(StatusCode::kInvalidArgument, "training failed: " + st.ToString());
    return serialized;
  }();
  return model;
}

}  // namespace

TEST_CASE("SentencePieceTokenizer wraps libsentencepiece", "[sentencepiece]") {
  const SentencePieceTokenizer sp = SentencePieceTokenizer::from_serialized(trained_model());
  CHECK(sp.vocab_size() == 500);
  CHECK(sp.bos_id() == 1);
  CHECK(sp.eos_id() == 2);
  const std::string text = "the lord said unto him, Hello World 2024";
  const auto ids = sp.encode(text, true);
  CHECK(ids.front() == sp.bos_id());
  CHECK(ids.size() < text.size() / 2);  // merges happened
  CHECK(sp.decode(ids) == text);
  std::string streamed;
  for (size_t i = 1; i < ids.size(); ++i) streamed += sp.token_to_piece(ids[i]);
  CHECK(streamed == " " + text);  // the dummy-prefix space
  CHECK_THROWS_AS(sp.encode("bad \xFF", false), Error);
  CHECK_THROWS_AS(sp.decode({500}), Error);
  CHECK_THROWS_AS(SentencePieceTokenizer::from_model_file("/nonexistent/tokenizer.model"), Error);
  CHECK_THROWS_AS(SentencePieceTokenizer::from_serialized("not a model"), Error);
}

TEST_CASE("native SentencePiece-BPE = libsentencepiece on random text", "[sentencepiece]") {
  const SentencePieceTokenizer sp = SentencePieceTokenizer::from_serialized(trained_model());
  const Tokenizer native = Tokenizer::from_vocab(sp.to_vocab());
  CHECK(native.model() == TokenizerModel::kSentencePieceBpe);
  std::mt19937 rng(4242);
  INFO("seed 4242");
  std::vector<std::string> texts = {"", " ", "hello", "  leading", "trailing  ", "a\nb\tc",
                                    "unseen: ñ Ωmega ₿ 👍🏽 한국어", "digits 1234567890"};
  for (int i = 0; i < 500; ++i) {
    std::string s = random_sentence(rng, 1 + static_cast<int>(rng() % 20));
    if (i % 5 == 0) s += " ✓ ǅ ẞ";  // characters outside the training corpus: byte fallback
    texts.push_back(s);
  }
  for (const std::string& s : texts) {
    INFO("text '" << s << "'");
    const auto want = sp.encode(s, false);
    const auto got = native.encode(s, false);
    REQUIRE(got == want);
    CHECK(native.decode(got) == sp.decode(want));
    CHECK(native.decode(native.encode(s, true), true) == s);
  }
}
