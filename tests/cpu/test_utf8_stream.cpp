// unicode::Utf8StreamDecoder, the incremental decoder behind `cluscomp generate`'s streamed output:
// every split point (and byte-by-byte feeding) of strings with 2-, 3- and 4-byte characters and
// emoji ZWJ sequences returns the input unchanged and never a cut character; invalid sequences
// become U+FFFD per maximal subpart (expected strings from CPython's bytes.decode('utf-8',
// 'replace'), an implementation we did not write); flush() of an unfinished tail; random bytes fed
// in random pieces give the same text as one feed. Fixed seeds, printed on failure.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/tokenizer/utf8.hpp"

namespace test_utf8_stream {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using unicode::Utf8StreamDecoder;

namespace {

bool valid_utf8(const std::string& s) { return unicode::find_invalid_utf8(s) == s.size(); }

/// Feeds `s` cut at the given byte offsets (ascending); checks every returned chunk is valid
/// UTF-8 on its own; returns the concatenation including flush().
std::string feed_split(const std::string& s, const std::vector<size_t>& cuts) {
  Utf8StreamDecoder dec;
  std::string out;
  size_t prev = 0;
  std::vector<size_t> all = cuts;
  all.push_back(s.size());
  for (size_t c : all) {
    const std::string chunk = dec.feed(std::string_view(s).substr(prev, c - prev));
    INFO("chunk after byte " << c << " of " << s.size());
    CHECK(valid_utf8(chunk));
    CHECK(dec.pending() <= 3);
    out += chunk;
    prev = c;
  }
  const std::string tail = dec.flush();
  CHECK(valid_utf8(tail));
  CHECK(dec.pending() == 0);
  return out + tail;
}

std::string hex(const std::string& s) {
  static const char* h = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) {
    o += h[c >> 4];
    o += h[c & 15];
    o += ' ';
  }
  return o;
}

const std::string kFffd = "\xEF\xBF\xBD";

}  // namespace

TEST_CASE("utf8 stream: valid text survives every split point", "[utf8]") {
  const std::vector<std::string> texts = {
      "plain ascii",
      "caf\xC3\xA9 na\xC3\xAFve \xC3\x9F",                       // 2-byte: é ï ß
      "\xE2\x82\xAC 5, \xE4\xB8\xAD\xE6\x96\x87, \xE2\x80\x94",  // 3-byte: € 中文 —
      "\xF0\x9F\x98\x80\xF0\x9D\x84\x9E\xF4\x8F\xBF\xBF",        // 4-byte: 😀 𝄞 U+10FFFF
      // Emoji ZWJ sequences: family (man ZWJ woman ZWJ girl), rainbow flag (flag VS16 ZWJ rainbow),
      // a skin-tone modifier, and a regional-indicator flag pair.
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
      "\xF0\x9F\x8F\xB3\xEF\xB8\x8F\xE2\x80\x8D\xF0\x9F\x8C\x88",
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok \xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
      "mix: a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z\n\t",
      std::string("nul\0byte", 8),
  };
  for (const std::string& t : texts) {
    INFO("text " << hex(t));
    REQUIRE(valid_utf8(t));
    CHECK(feed_split(t, {}) == t);
    for (size_t c = 0; c <= t.size(); ++c) {
      INFO("split at " << c);
      CHECK(feed_split(t, {c}) == t);
    }
    for (size_t a = 0; a <= t.size(); ++a)
      for (size_t b = a; b <= t.size(); ++b) CHECK(feed_split(t, {a, b}) == t);
    std::vector<size_t> every;
    for (size_t c = 1; c < t.size(); ++c) every.push_back(c);
    CHECK(feed_split(t, every) == t);  // byte by byte
  }
}

TEST_CASE("utf8 stream: a cut character is held back, not printed", "[utf8]") {
  Utf8StreamDecoder dec;
  // U+1F600 in pieces, as byte-level BPE tokens can deliver it.
  CHECK(dec.feed("ok \xF0") == "ok ");
  CHECK(dec.pending() == 1);
  CHECK(dec.feed("\x9F\x98") == "");
  CHECK(dec.pending() == 3);
  CHECK(dec.feed("\x80!") == "\xF0\x9F\x98\x80!");
  CHECK(dec.pending() == 0);
  CHECK(dec.feed("") == "");
  CHECK(dec.flush() == "");
  // A held tail followed by ASCII is ill-formed: one U+FFFD, then the ASCII.
  CHECK(dec.feed("\xE2\x82") == "");
  CHECK(dec.feed("A") == kFffd + "A");
  CHECK(dec.pending() == 0);
}

TEST_CASE("utf8 stream: invalid sequences become U+FFFD per maximal subpart", "[utf8]") {
  // {input, expected}: expected from CPython 3 bytes.decode("utf-8", "replace").
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xF0\x80\x80", kFffd + kFffd + kFffd},            // F0 needs 90..BF next
      {"\xE2\x82" "A", kFffd + "A"},                        // truncated 3-byte, then ASCII
      {"\xED\xA0\x80", kFffd + kFffd + kFffd},            // surrogate U+D800
      {"\xC0\xAF", kFffd + kFffd},                         // overlong '/'
      {"\xE0\x80\xAF", kFffd + kFffd + kFffd},            // overlong 3-byte
      {"\xF4\x90\x80\x80", kFffd + kFffd + kFffd + kFffd},  // above U+10FFFF
      {"\xFF", kFffd},
      {"a\x80" "b", "a" + kFffd + "b"},                     // lone continuation byte
      {"\xE2\x82\xAC\xE2\x82", "\xE2\x82\xAC" + kFffd},     // unfinished at the end (flush)
      {"\xF0\x9F\x98", kFffd},                              // unfinished 4-byte at the end
      {"\xF0\x9F\x98\x80\x80", "\xF0\x9F\x98\x80" + kFffd},  // extra continuation byte
      {"\xC3\xC3\xA9", kFffd + "\xC3\xA9"},                 // lead byte interrupted by a lead byte
      {"\xF8\x88\x80\x80\x80", kFffd + kFffd + kFffd + kFffd + kFffd},  // 5-byte form
  };
  for (const auto& [in, want] : cases) {
    INFO("input " << hex(in));
    CHECK(feed_split(in, {}) == want);
    for (size_t c = 0; c <= in.size(); ++c) {
      INFO("split at " << c);
      CHECK(feed_split(in, {c}) == want);
    }
  }
}

TEST_CASE("utf8 stream: flush ends an unfinished character and resets", "[utf8]") {
  Utf8StreamDecoder dec;
  CHECK(dec.feed("x\xE4\xB8") == "x");
  CHECK(dec.pending() == 2);
  CHECK(dec.flush() == kFffd);
  CHECK(dec.pending() == 0);
  CHECK(dec.flush() == "");
  // The decoder starts a fresh stream after flush(): the old tail does not join new bytes.
  CHECK(dec.feed("\xAD") == kFffd);
  CHECK(dec.feed("\xE4\xB8\xAD") == "\xE4\xB8\xAD");
}

TEST_CASE("utf8 stream: random bytes, random pieces, same text as one feed", "[utf8]") {
  const uint32_t seed = 20240611;
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  // Bytes drawn mostly from UTF-8-shaped values so that valid and almost-valid sequences are common.
  const std::vector<uint8_t> alphabet = {0x41, 0x20, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2,
                                         0xC3, 0xDF, 0xE0, 0xE2, 0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5, 0xFF};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s(static_cast<size_t>(rng() % 24), '\0');
    for (char& c : s) c = static_cast<char>(alphabet[rng() % alphabet.size()]);
    Utf8StreamDecoder one;
    std::string whole = one.feed(s);  // two statements: the operands of + are unsequenced
    whole += one.flush();
    REQUIRE(valid_utf8(whole));
    if (valid_utf8(s)) REQUIRE(whole == s);
    std::vector<size_t> cuts;
    for (size_t c = 1; c < s.size(); ++c)
      if (rng() % 3 == 0) cuts.push_back(c);
    INFO("iteration " << iter << " input " << hex(s));
    REQUIRE(feed_split(s, cuts) == whole);
  }
}

}  // namespace test_utf8_stream
