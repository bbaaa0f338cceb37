#pragma once
/// UTF-8 decoding with strict validation, Unicode character classes for the tokenisers, and the
/// GPT-2 byte <-> printable-character mapping used by byte-level BPE vocabularies.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/unicode_tables.hpp"

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
