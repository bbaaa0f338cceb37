#pragma once
/// Reference twins of core/bitpack.hpp: one bit at a time over a byte stream. Tests only.

#include <cstdint>
#include <cstring>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

/// Packs LSB-first into a little-endian byte stream, then copies into 32-bit words.
template <class CodeT>
void pack_codes_ref(const CodeT* codes, int64_t n, int bits, uint32_t* out_words) {
  const int64_t nbytes = (n * bits + 31) / 32 * 4;
  std::vector<uint8_t> bytes(static_cast<size_t>(nbytes), 0);
  int64_t pos = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int b = 0; b < bits; ++b, ++pos)
      if ((static_cast<uint64_t>(codes[i]) >> b) & 1u) bytes[pos / 8] |= static_cast<uint8_t>(1u << (pos % 8));
  for (int64_t w = 0; w < nbytes / 4; ++w)
    out_words[w] = static_cast<uint32_t>(bytes[4 * w]) | (static_cast<uint32_t>(bytes[4 * w + 1]) << 8) |
                   (static_cast<uint32_t>(bytes[4 * w + 2]) << 16) |
                   (static_cast<uint32_t>(bytes[4 * w + 3]) << 24);
}

template <class CodeT>
void unpack_codes_ref(const uint32_t* words, int64_t n, int bits, CodeT* codes) {
  int64_t pos = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t c = 0;
    for (int b = 0; b < bits; ++b, ++pos) c |= static_cast<uint64_t>((words[pos / 32] >> (pos % 32)) & 1u) << b;
    codes[i] = static_cast<CodeT>(c);
  }
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
