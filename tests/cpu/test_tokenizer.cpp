// Tokenizers on tiny hand-built vocabularies: pre-tokeniser pieces, byte-level BPE merge order,
// SentencePiece score-ordered merges and byte fallback, special tokens, round trips on random
// UTF-8, invalid UTF-8, chat templates, GGUF and tokenizer.json loading.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/tokenizer/chat_template.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "support/require_error.hpp"
#include "support/test_data.hpp"

namespace test_tokenizer {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;

namespace {

using Pieces = std::vector<std::string>;

/// The GPT-2 alphabet form of a byte string ("\x20a" -> "Ġa").
std::string to_byte_level(const std::string& bytes) {
  std::string out;
  for (unsigned char b : bytes) unicode::append_utf8(out, unicode::kByteUnicode.to_cp[b]);
  return out;
}

/// A byte-level vocabulary: the 256 byte tokens, then one token per merge result, then extras.
TokenizerVocab tiny_byte_level(const std::vector<std::pair<std::string, std::string>>& merges_bytes,
                               PreTokenizer pre = PreTokenizer::kGpt2) {
  TokenizerVocab v;
  v.model = TokenizerModel::kByteLevelBpe;
  v.pre = pre;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(to_byte_level(std::string(1, static_cast<char>(b))));
  for (const auto& m : merges_bytes) {
    v.merges.emplace_back(to_byte_level(m.first), to_byte_level(m.second));
    const std::string merged = to_byte_level(m.first + m.second);
    if (std::find(v.tokens.begin(), v.tokens.end(), merged) == v.tokens.end()) v.tokens.push_back(merged);
  }
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  return v;
}

std::vector<std::string> as_pieces(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.token_to_piece(id));
  return out;
}

/// Random valid UTF-8 drawn from a mix that stresses the pre-tokenisers.
std::string random_utf8(std::mt19937& rng, size_t n_chars) {
  static const std::vector<std::string> atoms = {
      "a", "Z", "q", " ", "  ", "\t", "\n", "\r\n", "\n\n", "0", "7", "123", "'", "'s", "'LL", "'re",
      ".", ",", "!", "?", "-", "_", "(", ")", "é", "ñ", "ü", "Å", "ß", "中", "文", "日本", "한",
      "😀", "👍🏽", "🇫🇷", "\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xAF", "\xC2\x85", "٣", "Ⅻ", "½",
      "\xCC\x81", "ـ", "\xEF\xBB\xBF", "\x7F", "\x01", "<", ">", "|", "\xF4\x8F\xBF\xBF"};
  std::string s;
  std::uniform_int_distribution<size_t> pick(0, atoms.size() - 1);
  for (size_t i = 0; i < n_chars; ++i) s += atoms[pick(rng)];
  return s;
}

}  // namespace

TEST_CASE("UTF-8 validation: strict, names the offset", "[tokenizer][utf8]") {
  CHECK(unicode::find_invalid_utf8("héllo 😀") == std::string("héllo 😀").size());
  CHECK(unicode::find_invalid_utf8("ab\x80") == 2);          // lone continuation
  CHECK(unicode::find_invalid_utf8("\xC0\xAF") == 0);         // overlong
  CHECK(unicode::find_invalid_utf8("x\xED\xA0\x80") == 1);    // surrogate
  CHECK(unicode::find_invalid_utf8("\xF4\x90\x80\x80") == 0); // > U+10FFFF
  CHECK(unicode::find_invalid_utf8("\xE2\x82") == 0);         // truncated
  CHECK(unicode::find_invalid_utf8("\xFF") == 0);
  try {
    unicode::require_valid_utf8("ok\xFE", "text");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kInvalidArgument);
    CHECK(std::string(e.what()).find("offset 2") != std::string::npos);
    CHECK(std::string(e.what()).find("0xfe") != std::string::npos);
  }
}

TEST_CASE("Unicode classes: letters, numbers, White_Space", "[tokenizer][utf8]") {
  using unicode::CharClass;
  CHECK(unicode::char_class('a') == CharClass::kLetter);
  CHECK(unicode::char_class(0xE9) == CharClass::kLetter);    // é
  CHECK(unicode::char_class(0x4E2D) == CharClass::kLetter);  // 中
  CHECK(unicode::char_class('7') == CharClass::kNumber);
  CHECK(unicode::char_class(0x0663) == CharClass::kNumber);  // Arabic-Indic 3
  CHECK(unicode::char_class(0x216B) == CharClass::kNumber);  // Ⅻ (Nl)
  CHECK(unicode::char_class(0xBD) == CharClass::kNumber);    // ½ (No)
  CHECK(unicode::char_class(0xA0) == CharClass::kSpace);
  CHECK(unicode::char_class(0x85) == CharClass::kSpace);
  CHECK(unicode::char_class(0x3000) == CharClass::kSpace);
  CHECK(unicode::char_class(0x1C) == CharClass::kOther);     // not White_Space (Python's isspace says yes)
  CHECK(unicode::char_class(0x200B) == CharClass::kOther);   // zero-width space is Cf
  CHECK(unicode::char_class(0x301) == CharClass::kOther);    // combining acute (Mn)
  CHECK(unicode::char_class(0x1F600) == CharClass::kOther);  // emoji
  CHECK(unicode::char_class(0x10FFFF) == CharClass::kOther);
}

TEST_CASE("GPT-2 byte map is a bijection onto 256 printable code points", "[tokenizer][utf8]") {
  for (int b = 0; b < 256; ++b) CHECK(unicode::kByteUnicode.to_byte(unicode::kByteUnicode.to_cp[static_cast<size_t>(b)]) == b);
  CHECK(unicode::kByteUnicode.to_cp[' '] == 0x120);  // Ġ
  CHECK(unicode::kByteUnicode.to_cp['\n'] == 0x10A);  // Ċ
  CHECK(unicode::kByteUnicode.to_cp['a'] == 'a');
}

TEST_CASE("GPT-2 pre-tokeniser pieces", "[tokenizer][pretokenize]") {
  const auto p = [](const std::string& s) { return pre_tokenize(PreTokenizer::kGpt2, s); };
  CHECK(p("Hello world") == Pieces{"Hello", " world"});
  CHECK(p("I'm don't we'll THEY'RE") == Pieces{"I", "'m", " don", "'t", " we", "'ll", " THEY", "'", "RE"});
  CHECK(p("a   b") == Pieces{"a", "  ", " b"});
  CHECK(p("a \n b") == Pieces{"a", " \n", " b"});
  CHECK(p("a\nb") == Pieces{"a", "\n", "b"});
  CHECK(p("x  ") == Pieces{"x", "  "});
  CHECK(p("12345 67") == Pieces{"12345", " 67"});
  CHECK(p("3.14!!") == Pieces{"3", ".", "14", "!!"});
  CHECK(p(" 'x") == Pieces{" '", "x"});
  CHECK(p("café 中文 😀😀") == Pieces{"café", " 中文", " 😀😀"});
  CHECK(p("") == Pieces{});
}

TEST_CASE("SmolLM / StarCoder pre-tokeniser isolates every digit first", "[tokenizer][pretokenize]") {
  const auto p = [](const std::string& s) { return pre_tokenize(PreTokenizer::kDigitsThenGpt2, s); };
  CHECK(p("abc 123") == Pieces{"abc", " ", "1", "2", "3"});
  CHECK(p("x  1") == Pieces{"x", "  ", "1"});
  CHECK(p("v2.0 ½") == Pieces{"v", "2", ".", "0", " ", "½"});
}

TEST_CASE("LLaMA 3 and Qwen 2 pre-tokenisers", "[tokenizer][pretokenize]") {
  const auto l3 = [](const std::string& s) { return pre_tokenize(PreTokenizer::kLlama3, s); };
  const auto q2 = [](const std::string& s) { return pre_tokenize(PreTokenizer::kQwen2, s); };
  CHECK(l3("Hello world") == Pieces{"Hello", " world"});
  CHECK(l3("1234567") == Pieces{"123", "456", "7"});
  CHECK(q2("1234") == Pieces{"1", "2", "3", "4"});
  CHECK(l3("THEY'RE") == Pieces{"THEY", "'RE"});
  CHECK(l3("(hello)") == Pieces{"(hello", ")"});
  CHECK(l3("a \n\n b") == Pieces{"a", " \n\n", " b"});
  CHECK(l3("x;\n\ny") == Pieces{"x", ";\n\n", "y"});
  CHECK(l3("a   b") == Pieces{"a", "  ", " b"});
}

TEST_CASE("byte-level BPE applies merges by rank, leftmost first", "[tokenizer][bpe]") {
  // Ranks: "a b" first, then "ab c", then "b c" (never reached for "abc": "ab" took the b).
  TokenizerVocab v = tiny_byte_level({{"a", "b"}, {"ab", "c"}, {"b", "c"}, {" ", "ab"}});
  const Tokenizer t = Tokenizer::from_vocab(v);
  CHECK(as_pieces(t, t.encode("abc", false)) == Pieces{"abc"});
  CHECK(as_pieces(t, t.encode("bc", false)) == Pieces{"bc"});
  CHECK(as_pieces(t, t.encode("abab ab", false)) == Pieces{"ab", "ab", " ab"});
  // Equal pairs: leftmost merge wins ("aaa" -> "aa" + "a").
  const Tokenizer t2 = Tokenizer::from_vocab(tiny_byte_level({{"a", "a"}}));
  CHECK(as_pieces(t2, t2.encode("aaa", false)) == Pieces{"aa", "a"});
  CHECK(as_pieces(t2, t2.encode("aaaa", false)) == Pieces{"aa", "aa"});
  // Rank order, not position: "b c" outranks "a b" here.
  const Tokenizer t3 = Tokenizer::from_vocab(tiny_byte_level({{"b", "c"}, {"a", "b"}}));
  CHECK(as_pieces(t3, t3.encode("abc", false)) == Pieces{"a", "bc"});
  // Bytes with no merges come out as single byte tokens; decode restores the text.
  const std::string s = "zé😀\x01";
  CHECK(t.encode(s, false).size() == std::string(s).size());
  CHECK(t.decode(t.encode(s, false)) == s);
}

TEST_CASE("byte-level BPE: ignore_merges keeps whole-token pre-tokens", "[tokenizer][bpe]") {
  TokenizerVocab v = tiny_byte_level({{"a", "b"}, {"b", "c"}});
  v.tokens.push_back(to_byte_level("abc"));  // a token no merge sequence reaches
  v.types.push_back(TokenType::kNormal);
  v.ignore_merges = false;
  CHECK(as_pieces(Tokenizer::from_vocab(v), Tokenizer::from_vocab(v).encode("abc", false)) == Pieces{"ab", "c"});
  v.ignore_merges = true;
  const Tokenizer t = Tokenizer::from_vocab(v);
  CHECK(as_pieces(t, t.encode("abc", false)) == Pieces{"abc"});
}

TEST_CASE("byte-level BPE drops bytes the vocabulary lacks, like HF tokenizers", "[tokenizer][bpe]") {
  TokenizerVocab v = tiny_byte_level({{"!", "!"}});
  v.tokens[4] = "<not a byte>";  // byte 0x04 has no token now
  const Tokenizer t = Tokenizer::from_vocab(v);
  // "!\x04!" is one pre-token; without the 0x04 its neighbours are adjacent and merge.
  CHECK(as_pieces(t, t.encode("!\x04!", false)) == Pieces{"!!"});
  CHECK(t.encode("\x04", false).empty());
  CHECK(t.decode(t.encode("a\x04" "b", false)) == "ab");
}

TEST_CASE("special tokens: control only with parse_special, user-defined always", "[tokenizer][special]") {
  TokenizerVocab v = tiny_byte_level({{"a", "b"}});
  v.tokens.push_back("<|im_start|>");
  v.types.push_back(TokenType::kControl);
  v.tokens.push_back("<tool>");
  v.types.push_back(TokenType::kUserDefined);
  v.bos_id = static_cast<int32_t>(v.tokens.size()) - 2;
  const Tokenizer t = Tokenizer::from_vocab(v);
  const int32_t im = t.token_id("<|im_start|>");
  const int32_t tool = t.token_id("<tool>");
  const std::vector<int32_t> with = t.encode("ab<|im_start|>ab<tool>", false, true);
  CHECK(with == std::vector<int32_t>{t.token_id("ab"), im, t.token_id("ab"), tool});
  const std::vector<int32_t> without = t.encode("ab<|im_start|>ab<tool>", false, false);
  CHECK(std::find(without.begin(), without.end(), im) == without.end());
  CHECK(without.back() == tool);
  CHECK(t.decode(without) == "ab<|im_start|>ab<tool>");
  CHECK(t.decode(with) == "ab<|im_start|>ab<tool>");
  CHECK(t.decode(with, true) == "abab<tool>");
  CHECK(t.encode("ab", true).front() == t.bos_id());
  CHECK_THROWS_AS(t.decode({-1}), Error);
  CHECK_THROWS_AS(t.token_to_piece(t.vocab_size()), Error);
}

TEST_CASE("byte-level BPE round trip on random UTF-8 (all pre-tokenisers)", "[tokenizer][bpe]") {
  std::mt19937 rng(20240517);
  INFO("seed 20240517");
  for (PreTokenizer pre : {PreTokenizer::kGpt2, PreTokenizer::kDigitsThenGpt2, PreTokenizer::kLlama3,
                           PreTokenizer::kQwen2}) {
    const Tokenizer t = Tokenizer::from_vocab(
        tiny_byte_level({{" ", "a"}, {"1", "2"}, {"\xF0", "\x9F"}, {"\xF0\x9F", "\x98"}, {"\n", "\n"}, {" ", " "}}, pre));
    for (int i = 0; i < 300; ++i) {
      const std::string s = random_utf8(rng, static_cast<size_t>(i % 40));
      // The pieces tile the text exactly.
      std::string joined;
      for (const auto& p : pre_tokenize(pre, s)) joined += p;
      REQUIRE(joined == s);
      REQUIRE(t.decode(t.encode(s, false)) == s);
    }
  }
}

TEST_CASE("invalid UTF-8 text is a clear error", "[tokenizer][bpe]") {
  const Tokenizer t = Tokenizer::from_vocab(tiny_byte_level({}));
  try {
    (void)t.encode("abc\xC3", false);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kInvalidArgument);
    CHECK(std::string(e.what()).find("byte offset 3") != std::string::npos);
  }
}

TEST_CASE("bad vocabularies are errors that name the problem", "[tokenizer][bpe]") {
  TokenizerVocab v = tiny_byte_level({});
  v.merges.emplace_back("a", "zz");
  CHECK_THROWS_AS(Tokenizer::from_vocab(v), Error);
  TokenizerVocab bad_bos = tiny_byte_level({});
  bad_bos.bos_id = 100000;
  CHECK_THROWS_AS(Tokenizer::from_vocab(bad_bos), Error);
  CHECK_THROWS_AS(Tokenizer::from_vocab(TokenizerVocab{}), Error);
  CHECK_THROWS_AS(pre_tokenizer_from_gguf_name("deepseek-llm"), Error);
  CHECK(pre_tokenizer_from_gguf_name("smollm") == PreTokenizer::kDigitsThenGpt2);
}

namespace {

/// A SentencePiece-BPE vocabulary in GGUF "llama" form: <unk>, <s>, </s>, 256 byte tokens, pieces.
TokenizerVocab tiny_spm(const std::vector<std::pair<std::string, float>>& pieces) {
  TokenizerVocab v;
  v.model = TokenizerModel::kSentencePieceBpe;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl};
  v.scores = {0, 0, 0};
  static const char* hex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(std::string("<0x") + hex[b >> 4] + hex[b & 15] + ">");
    v.types.push_back(TokenType::kByte);
    v.scores.push_back(0);
  }
  for (const auto& p : pieces) {
    v.tokens.push_back(p.first);
    v.types.push_back(TokenType::kNormal);
    v.scores.push_back(p.second);
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

}  // namespace

TEST_CASE("SentencePiece BPE: score order, ▁ spaces, byte fallback", "[tokenizer][spm]") {
  const std::string u = "\xE2\x96\x81";  // ▁
  const Tokenizer t = Tokenizer::from_vocab(tiny_spm({{u, -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2},
                                                      {"w", -2}, {"r", -2}, {"d", -2}, {"ll", -3},
                                                      {"he", -4}, {"hell", -5}, {u + "hell", -6},
                                                      {u + "hello", -7}, {"lo", -1.5f}, {"é", -2}}));
  const auto pieces = [&](const std::string& s) { return as_pieces(t, t.encode(s, false)); };
  // "lo" (-1.5) outranks "ll" (-3): h e l lo -> he l lo -> ...
  CHECK(pieces("hello") == Pieces{" ", "he", "l", "lo"});
  const std::vector<int32_t> ids = t.encode("hello", false);
  CHECK(t.token_text(ids[0]) == u);
  CHECK(t.token_text(ids[1]) == "he");
  CHECK(t.token_text(ids[2]) == "l");
  CHECK(t.token_text(ids[3]) == "lo");
  // Characters outside the vocabulary fall back to their UTF-8 bytes.
  const std::vector<int32_t> z = t.encode("z中", false);
  REQUIRE(z.size() == 5);
  CHECK(t.token_text(z[1]) == "<0x7A>");
  CHECK(t.token_text(z[2]) == "<0xE4>");
  CHECK(t.token_to_piece(z[2]) == "\xE4");
  // BOS and the space prefix; decode removes the prefix again.
  const std::vector<int32_t> b = t.encode("hello world", true);
  CHECK(b.front() == t.bos_id());
  CHECK(t.decode(b, true) == "hello world");
  CHECK(t.decode(b) == "<s>hello world");
  std::mt19937 rng(7);
  INFO("seed 7");
  for (int i = 0; i < 300; ++i) {
    const std::string s = random_utf8(rng, static_cast<size_t>(i % 30));
    REQUIRE(t.decode(t.encode(s, false)) == s);
  }
}

TEST_CASE("SentencePiece BPE: no byte tokens -> unknown token", "[tokenizer][spm]") {
  TokenizerVocab v;
  v.model = TokenizerModel::kSentencePieceBpe;
  v.tokens = {"<unk>", "a"};
  v.types = {TokenType::kUnknown, TokenType::kNormal};
  v.scores = {0, 0};
  v.unk_id = 0;
  v.add_space_prefix = false;
  const Tokenizer t = Tokenizer::from_vocab(v);
  CHECK(t.encode("ab", false) == std::vector<int32_t>{1, 0});
}

TEST_CASE("ChatML chat template, default system message, unsupported templates", "[tokenizer][chat]") {
  const std::string smol =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
      "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' "
      "}}{% endif %}";
  CHECK(detect_chat_template(smol) == ChatTemplateKind::kChatMl);
  CHECK(apply_chat_template(smol, {{"user", "Hi"}}, true) ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(apply_chat_template(smol, {{"system", "Be brief."}, {"user", "Hi"}}, false) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  try {
    (void)apply_chat_template("{{ bos_token }}[INST] {{ message }} [/INST]", {{"user", "x"}}, true);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kUnsupported);
  }
  try {
    (void)apply_chat_template("", {{"user", "x"}}, true);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kUnsupported);
  }
}

TEST_CASE("tokenizer.json: byte-level BPE with Digits + ByteLevel, config beside it", "[tokenizer][json]") {
  cluscomp_test::TempDir dir;
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[to_byte_level(std::string(1, static_cast<char>(b)))] = b;
  vocab[to_byte_level("ab")] = 256;
  vocab[to_byte_level(" ab")] = 257;
  nlohmann::json j = {
      {"version", "1.0"},
      {"normalizer", nullptr},
      {"added_tokens", nlohmann::json::array({{{"id", 258}, {"content", "<|endoftext|>"}, {"special", true}}})},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", nlohmann::json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                                 {{"type", "ByteLevel"}, {"add_prefix_space", false},
                                                  {"trim_offsets", true}, {"use_regex", true}}})}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab},
        {"merges", nlohmann::json::array({"a b", nlohmann::json::array({to_byte_level(" "), "ab"})})}}}};
  std::ofstream(dir / "tokenizer.json") << j.dump();
  std::ofstream(dir / "tokenizer_config.json")
      << nlohmann::json({{"eos_token", "<|endoftext|>"}, {"chat_template", "<|im_start|><|im_end|>"}}).dump();
  const Tokenizer t = Tokenizer::from_tokenizer_json((dir / "tokenizer.json").string());
  CHECK(t.vocab_size() == 259);
  CHECK(t.pre_tokenizer() == PreTokenizer::kDigitsThenGpt2);
  CHECK(t.eos_id() == 258);
  CHECK(t.bos_id() == -1);
  CHECK_FALSE(t.add_bos_default());
  CHECK(t.encode("ab ab12", false) == std::vector<int32_t>{256, 257, '1', '2'});
  CHECK(t.encode("<|endoftext|>", false, true) == std::vector<int32_t>{258});
  CHECK(detect_chat_template(t.chat_template()) == ChatTemplateKind::kChatMl);

  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  std::ofstream(dir / "tokenizer.json", std::ios::trunc) << j.dump();
  try {
    (void)Tokenizer::from_tokenizer_json((dir / "tokenizer.json").string());
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kUnsupported);
    CHECK(std::string(e.what()).find("Whitespace") != std::string::npos);
  }
  std::ofstream(dir / "tokenizer.json", std::ios::trunc) << "{not json";
  CHECK_THROWS_AS(Tokenizer::from_tokenizer_json((dir / "tokenizer.json").string()), Error);
  CHECK_THROWS_AS(Tokenizer::from_tokenizer_json((dir / "missing.json").string()), Error);
}

namespace {

std::vector<int32_t> to_i32(const std::vector<TokenType>& t) {
  std::vector<int32_t> out;
  for (TokenType x : t) out.push_back(static_cast<int32_t>(x));
  return out;
}

Tokenizer load_gguf(const GgufWriter& w) {
  const std::vector<unsigned char> bytes = w.to_bytes();
  GgufReader r(bytes.data(), bytes.size(), "tiny.gguf");
  return Tokenizer::from_gguf(r);
}

}  // namespace

TEST_CASE("from_gguf: llama (SentencePiece BPE) and gpt2 (byte-level BPE) metadata", "[tokenizer][gguf]") {
  const std::string u = "\xE2\x96\x81";
  const TokenizerVocab spm = tiny_spm({{u, -1}, {"h", -2}, {"i", -2}, {"hi", -3}, {u + "hi", -4}});
  GgufWriter w;
  w.add_string("tokenizer.ggml.model", "llama");
  w.add("tokenizer.ggml.tokens", GgufValue::string_array(spm.tokens));
  w.add("tokenizer.ggml.scores", GgufValue::f32_array(spm.scores));
  w.add("tokenizer.ggml.token_type", GgufValue::i32_array(to_i32(spm.types)));
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  const Tokenizer t = load_gguf(w);
  CHECK(t.model() == TokenizerModel::kSentencePieceBpe);
  CHECK(t.add_bos_default());
  const std::vector<int32_t> ids = t.encode("hi hi", true);
  REQUIRE(ids.size() == 3);
  CHECK(ids[0] == 1);
  CHECK(t.token_text(ids[1]) == u + "hi");
  CHECK(t.token_text(ids[2]) == u + "hi");
  CHECK(t.decode(ids, true) == "hi hi");

  const TokenizerVocab bl = tiny_byte_level({{" ", "a"}});
  std::vector<std::string> merges;
  for (const auto& m : bl.merges) merges.push_back(m.first + " " + m.second);
  GgufWriter g;
  g.add_string("tokenizer.ggml.model", "gpt2");
  g.add_string("tokenizer.ggml.pre", "qwen2");
  g.add("tokenizer.ggml.tokens", GgufValue::string_array(bl.tokens));
  g.add("tokenizer.ggml.merges", GgufValue::string_array(merges));
  g.add_bool("tokenizer.ggml.add_bos_token", true);
  g.add_u32("tokenizer.ggml.bos_token_id", 0);
  g.add_string("tokenizer.chat_template", "<|im_start|>{{ x }}<|im_end|>");
  const Tokenizer b = load_gguf(g);
  CHECK(b.pre_tokenizer() == PreTokenizer::kQwen2);
  CHECK(b.add_bos_default());
  CHECK(b.encode(" a", false) == std::vector<int32_t>{256});
  CHECK(b.encode("12", false).size() == 2);

  GgufWriter bert;
  bert.add_string("tokenizer.ggml.model", "bert");
  try {
    (void)load_gguf(bert);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kUnsupported);
    CHECK(std::string(e.what()).find("bert") != std::string::npos);
  }
  GgufWriter no_pre;
  no_pre.add_string("tokenizer.ggml.model", "gpt2");
  CHECK_THROWS_AS(load_gguf(no_pre), Error);
  GgufWriter bad_pre;
  bad_pre.add_string("tokenizer.ggml.model", "gpt2");
  bad_pre.add_string("tokenizer.ggml.pre", "deepseek-coder");
  try {
    (void)load_gguf(bad_pre);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.code() == StatusCode::kUnsupported);
    CHECK(std::string(e.what()).find("deepseek-coder") != std::string::npos);
  }
}

namespace {

/// The state round trip: the rebuilt tokenizer has the same tables and encodes, decodes and
/// applies the chat template exactly as the original on `texts`.
void check_state_round_trip(const Tokenizer& a, const std::vector<std::string>& texts) {
  const std::string state = a.to_state_json();
  CHECK(state == Tokenizer::from_state_json(state, "x").to_state_json());  // deterministic, stable
  const Tokenizer b = Tokenizer::from_state_json(state, "x");
  const TokenizerVocab va = a.vocab(), vb = b.vocab();
  CHECK(vb.model == va.model);
  CHECK(vb.pre == va.pre);
  CHECK(vb.tokens == va.tokens);
  CHECK(vb.types == va.types);
  CHECK(vb.merges == va.merges);
  REQUIRE(vb.scores.size() == va.scores.size());
  for (size_t i = 0; i < va.scores.size(); ++i)
    CHECK(std::memcmp(&va.scores[i], &vb.scores[i], sizeof(float)) == 0);  // inf/nan included
  CHECK(b.bos_id() == a.bos_id());
  CHECK(b.eos_id() == a.eos_id());
  CHECK(b.unk_id() == a.unk_id());
  CHECK(b.add_bos_default() == a.add_bos_default());
  CHECK(b.chat_template() == a.chat_template());
  for (const std::string& s : texts) {
    INFO("text: " << s);
    for (bool special : {false, true}) {
      const std::vector<int32_t> ids = a.encode(s, false, special);
      CHECK(b.encode(s, false, special) == ids);
      CHECK(b.decode(ids) == a.decode(ids));
    }
  }
}

}  // namespace

TEST_CASE("tokenizer state JSON round-trips every table (what cluscomp files embed)", "[tokenizer][state]") {
  std::mt19937 rng(99);
  INFO("seed 99");
  std::vector<std::string> texts = {"", "ab abc  bc\n\n12 345", "<|im_start|>ab<tool> é😀", "\x01\x04!!"};
  for (int i = 0; i < 40; ++i) texts.push_back(random_utf8(rng, static_cast<size_t>(i % 25)));

  // Byte-level: repeated merge (dropped by from_vocab), specials, a missing byte, a token that is
  // not valid UTF-8 (stored as hex), ignore_merges, a chat template.
  TokenizerVocab v = tiny_byte_level({{"a", "b"}, {"ab", "c"}, {"b", "c"}, {"a", "b"}, {" ", "ab"}}, PreTokenizer::kQwen2);
  v.tokens[4] = "<not a byte \xFF>";
  v.tokens.push_back("<|im_start|>");
  v.types.push_back(TokenType::kControl);
  v.tokens.push_back("<tool>");
  v.types.push_back(TokenType::kUserDefined);
  v.bos_id = static_cast<int32_t>(v.tokens.size()) - 2;
  v.add_bos = true;
  v.ignore_merges = true;
  v.chat_template = "<|im_start|>{{ m }}<|im_end|>";
  const Tokenizer bl = Tokenizer::from_vocab(v);
  CHECK(bl.vocab().merges.size() == 4);
  CHECK(bl.to_state_json().find("\"hex\"") != std::string::npos);
  check_state_round_trip(bl, texts);
  for (PreTokenizer pre : {PreTokenizer::kGpt2, PreTokenizer::kDigitsThenGpt2, PreTokenizer::kLlama3})
    CHECK(Tokenizer::from_state_json(Tokenizer::from_vocab(tiny_byte_level({}, pre)).to_state_json(), "x")
              .pre_tokenizer() == pre);

  // SentencePiece: scores (non-finite ones too), byte fallback, unknown token.
  const std::string u = "\xE2\x96\x81";
  TokenizerVocab sv = tiny_spm({{u, -1}, {"a", -2}, {"b", -2}, {"ab", -3}, {u + "ab", -1.25f}, {"x", -0.1f}});
  sv.scores[3] = -std::numeric_limits<float>::infinity();
  sv.scores[4] = std::numeric_limits<float>::quiet_NaN();
  check_state_round_trip(Tokenizer::from_vocab(sv), texts);
}

TEST_CASE("tokenizer state JSON: bad input is an error naming the origin", "[tokenizer][state]") {
  using cluscomp_test::require_error;
  const nlohmann::json good = nlohmann::json::parse(Tokenizer::from_vocab(tiny_byte_level({{"a", "b"}})).to_state_json());
  const auto load = [](const nlohmann::json& j) { (void)Tokenizer::from_state_json(j.dump(), "m.safetensors"); };
  require_error([&] { (void)Tokenizer::from_state_json("{nope", "m.safetensors"); }, StatusCode::kFormatError,
                "m.safetensors: tokenizer state is not valid JSON");
  require_error([&] { load(nlohmann::json::array()); }, StatusCode::kFormatError, "not a JSON object");
  nlohmann::json j = good;
  j["version"] = 2;
  require_error([&] { load(j); }, StatusCode::kUnsupported, "version 2 is newer");
  j = good;
  j.erase("merges");
  require_error([&] { load(j); }, StatusCode::kFormatError, "m.safetensors: unexpected tokenizer state content");
  j = good;
  j["merges"][0] = {0, 100000};
  require_error([&] { load(j); }, StatusCode::kFormatError, "outside the vocabulary");
  j = good;
  j["types"][3] = 9;
  require_error([&] { load(j); }, StatusCode::kFormatError, "token type 9");
  j = good;
  j["pre"] = "deepseek-llm";
  require_error([&] { load(j); }, StatusCode::kUnsupported, "m.safetensors: tokenizer.ggml.pre = 'deepseek-llm'");
  j = good;
  j["model"] = "wordpiece";
  require_error([&] { load(j); }, StatusCode::kUnsupported, "'wordpiece'");
  j = good;
  j["tokens"][2] = {{"hex", "zz"}};
  require_error([&] { load(j); }, StatusCode::kFormatError, "token 2");
  j = good;
  j["eos_id"] = 5000;
  require_error([&] { load(j); }, StatusCode::kFormatError, "eos_id 5000");
  j = good;
  j["tokens"][0] = "x";  // a duplicate token: from_vocab's own checks run, prefixed with the origin
  j["merges"] = nlohmann::json::array({nlohmann::json::array({0, 1})});
  require_error([&] { load(j); }, StatusCode::kFormatError, "m.safetensors: merge 0");
}

}  // namespace test_tokenizer
