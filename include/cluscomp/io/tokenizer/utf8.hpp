#pragma once
/// UTF-8 decoding with strict validation, an incremental decoder for streamed output
/// (Utf8StreamDecoder), Unicode character classes for the tokenisers, and the GPT-2 byte <->
/// printable-character mapping used by byte-level BPE vocabularies.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/unicode_tables.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace unicode {

/// Decodes one code point of `s` at byte offset `pos` into `cp` and returns its length in bytes, or
/// 0 when the bytes there are not well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates,
/// nothing above U+10FFFF, no truncated sequence). Deterministic, no allocation.
inline size_t decode_utf8(std::string_view s, size_t pos, uint32_t& cp) {
  const size_t n = s.size();
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t c0 = b(pos);
  if (c0 < 0x80) {
    cp = c0;
    return 1;
  }
  size_t len;
  uint32_t lo = 0x80;  // smallest valid second byte (tightened for E0/ED/F0/F4)
  uint32_t hi = 0xBF;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    len = 2;
    cp = c0 & 0x1Fu;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    len = 3;
    cp = c0 & 0x0Fu;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    len = 4;
    cp = c0 & 0x07u;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (pos + len > n) return 0;
  for (size_t k = 1; k < len; ++k) {
    const uint32_t ck = b(pos + k);
    if (k == 1 ? (ck < lo || ck > hi) : (ck < 0x80 || ck > 0xBF)) return 0;
    cp = (cp << 6) | (ck & 0x3Fu);
  }
  return len;
}

/// Byte offset of the first ill-formed UTF-8 sequence in `s`, or `s.size()` when all of it is
/// well-formed. Deterministic.
inline size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  uint32_t cp = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = decode_utf8(s, i, cp);
    if (len == 0) return i;
    i += len;
  }
  return s.size();
}

/// Throws Error(kInvalidArgument) naming the byte offset and value when `s` is not valid UTF-8;
/// `what` names the input in the message.
inline void require_valid_utf8(std::string_view s, const char* what) {
  const size_t bad = find_invalid_utf8(s);
  if (bad != s.size()) {
    static const char* hex = "0123456789abcdef";
    const auto v = static_cast<uint8_t>(s[bad]);
    throw Error(StatusCode::kInvalidArgument,
                std::string(what) + " is not valid UTF-8: ill-formed sequence at byte offset " +
                    std::to_string(bad) + " (byte 0x" + hex[v >> 4] + hex[v & 15] + ")");
  }
}

/// Appends the UTF-8 encoding of code point `cp` (which must be <= U+10FFFF) to `out`.
inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

/// Result of looking at the bytes of `s` from `pos` (s[pos] must be >= 0x80): `need` is the length
/// of the sequence its lead byte announces (0: the byte cannot start one), `valid` how many bytes
/// from `pos` form a prefix of a well-formed sequence (RFC 3629, as decode_utf8; at least the lead
/// byte when need > 0), never more than need nor than the bytes available.
struct Utf8Prefix {
  size_t need = 0;
  size_t valid = 0;
};

inline Utf8Prefix utf8_prefix(std::string_view s, size_t pos) {
  const auto c0 = static_cast<uint8_t>(s[pos]);
  Utf8Prefix r;
  uint8_t lo = 0x80, hi = 0xBF;  // bounds of the second byte, tightened for E0/ED/F0/F4
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    r.need = 2;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    r.need = 3;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    r.need = 4;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    return r;
  }
  r.valid = 1;
  while (r.valid < r.need && pos + r.valid < s.size()) {
    const auto c = static_cast<uint8_t>(s[pos + r.valid]);
    if (r.valid == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
    ++r.valid;
  }
  return r;
}

/// Incremental UTF-8 decoder for streamed output (a byte-level BPE or byte-fallback token can end
/// inside a multi-byte character): feed() takes the next bytes and returns the longest prefix of
/// everything fed so far that is complete, holding back a tail (at most 3 bytes) that is a valid
/// but unfinished sequence; flush() ends the stream and returns what was held back.
///
/// Invalid bytes are replaced by U+FFFD, one per maximal subpart (Unicode's recommended practice,
/// also the WHATWG Encoding Standard's): a lead byte followed by as many bytes as can still start
/// a well-formed sequence becomes one U+FFFD, and decoding resumes at the first byte that broke it;
/// a byte that can start no sequence (0x80..0xC1, 0xF5..0xFF) is one U+FFFD. An unfinished
/// sequence at flush() is one U+FFFD. So every returned string is valid UTF-8, and the
/// concatenation of all results is the same however the input is split into feed() calls (equal
/// to feed(all) + flush()); valid input comes back byte for byte. Deterministic, allocation only
/// for the returned strings.
class Utf8StreamDecoder {
 public:
  /// Appends `bytes` to the stream; returns the newly completed text (possibly empty).
  std::string feed(std::string_view bytes) {
    std::string in;
    in.reserve(pending_len_ + bytes.size());
    in.append(pending_, pending_len_);
    in.append(bytes.data(), bytes.size());
    pending_len_ = 0;
    std::string out;
    out.reserve(in.size() + 2);
    size_t i = 0;
    while (i < in.size()) {
      if (static_cast<uint8_t>(in[i]) < 0x80) {
        out.push_back(in[i++]);
        continue;
      }
      const Utf8Prefix p = utf8_prefix(in, i);
      if (p.need > 0 && p.valid == p.need) {  // a whole well-formed character
        out.append(in, i, p.need);
        i += p.need;
      } else if (p.need > 0 && i + p.valid == in.size()) {  // valid so far, cut by the end of input
        for (size_t k = 0; k < p.valid; ++k) pending_[k] = in[i + k];
        pending_len_ = p.valid;
        break;
      } else {  // ill-formed: one U+FFFD for the maximal subpart
        out.append(kReplacement);
        i += p.valid > 0 ? p.valid : 1;
      }
    }
    return out;
  }

  /// Ends the stream: U+FFFD when an unfinished sequence was held back, else "". The decoder is
  /// then empty and can start a new stream.
  std::string flush() {
    const bool had = pending_len_ > 0;
    pending_len_ = 0;
    return had ? std::string(kReplacement) : std::string();
  }

  /// Bytes held back (0..3): the start of a character still waiting for its continuation bytes.
  size_t pending() const { return pending_len_; }

  static constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

 private:
  char pending_[4] = {};
  size_t pending_len_ = 0;
};

namespace detail {
struct AsciiClassTable {
  std::array<CharClass, 128> cls{};
  constexpr AsciiClassTable() {
    for (uint32_t c = 0; c < 128; ++c) {
      CharClass k = CharClass::kOther;
      if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) k = CharClass::kLetter;
      if (c >= '0' && c <= '9') k = CharClass::kNumber;
      if (c == ' ' || (c >= 0x09 && c <= 0x0D)) k = CharClass::kSpace;
      cls[c] = k;
    }
  }
};
inline constexpr AsciiClassTable kAsciiClasses{};
}  // namespace detail

/// The class of code point `cp` (\p{L}, \p{N}, \s or other) per the generated tables
/// (Unicode version `kUnicodeVersion`). ASCII by table, the rest by binary search.
inline CharClass char_class(uint32_t cp) {
  if (cp < 128) return detail::kAsciiClasses.cls[cp];
  size_t lo = 0, hi = sizeof(kCharClassRanges) / sizeof(kCharClassRanges[0]);
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (kCharClassRanges[mid].hi < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < sizeof(kCharClassRanges) / sizeof(kCharClassRanges[0]) && kCharClassRanges[lo].lo <= cp)
    return kCharClassRanges[lo].cls;
  return CharClass::kOther;
}

/// GPT-2's reversible map from the 256 byte values to printable code points: printable Latin-1
/// bytes map to themselves, the other 68 to U+0100.. in byte order. Byte-level BPE vocabularies
/// store their tokens in this alphabet.
struct ByteUnicodeMap {
  std::array<uint32_t, 256> to_cp{};
  constexpr ByteUnicodeMap() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = printable ? b : next++;
    }
  }
  /// The byte a code point stands for, or -1 when it is outside the 256-character alphabet.
  constexpr int to_byte(uint32_t cp) const {
    if (cp < 256) return to_cp[cp] == cp ? static_cast<int>(cp) : -1;
    for (uint32_t b = 0; b < 256; ++b)
      if (to_cp[b] == cp) return static_cast<int>(b);
    return -1;
  }
};
inline constexpr ByteUnicodeMap kByteUnicode{};

}  // namespace unicode
CLUSCOMP_NAMESPACE_END
