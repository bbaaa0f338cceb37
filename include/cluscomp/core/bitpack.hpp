#pragma once
/// Bit packing of codes at any width 1..16.
///
/// Layout (also the on-disk layout, see docs/format.md): a stream of little-endian 32-bit words;
/// code i occupies bits [i*w, i*w + w) of the stream, least significant bit first, and may
/// straddle two words. A buffer for n codes has `packed_words(n, w)` words; unused high bits of
/// the last word are zero. Read as bytes on a little-endian machine this is the LSB-first byte
/// stream, so the same buffer serves CPU, GPU and file.
///
/// Determinism: pure integer code, bit-exact everywhere.

#include <cstdint>
#include <cstring>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Number of 32-bit words holding n codes of `bits` bits each.
CLUSCOMP_HOST_DEVICE constexpr int64_t packed_words(int64_t n, int bits) {
  return (n * bits + 31) / 32;
}

/// Smallest width able to hold codes 0..k-1 (k >= 1): ceil(log2 k), at least 1.
CLUSCOMP_HOST_DEVICE constexpr int bits_for_count(int64_t k) {
  int b = 1;
  while ((int64_t{1} << b) < k) ++b;
  return b;
}

/// The `bits`-bit code that starts at bit `bit` of a packed buffer (1 <= bits <= 16). Reads the
/// word after the first only when the code straddles into it. The one extraction every reader
/// uses: unpack_code for a whole stream, the GPU lookup GEMV for a window of words it staged.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE uint32_t unpack_bits_at(const uint32_t* words, uint64_t bit,
                                                                  int bits) {
  const uint64_t w = bit >> 5;
  const uint32_t off = static_cast<uint32_t>(bit & 31u);
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t v = words[w] >> off;
  if (off + static_cast<uint32_t>(bits) > 32u) v |= words[w + 1] << (32u - off);
  return v & mask;
}

/// Code i from a packed buffer of `bits`-bit codes (1 <= bits <= 16).
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE uint32_t unpack_code(const uint32_t* words, int64_t i,
                                                               int bits) {
  return unpack_bits_at(words, static_cast<uint64_t>(i) * static_cast<uint64_t>(bits), bits);
}

/// Writes code i (only its low `bits` bits) into a packed buffer, leaving other codes intact.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void store_code(uint32_t* words, int64_t i, int bits,
                                                          uint32_t code) {
  const uint64_t bit = static_cast<uint64_t>(i) * static_cast<uint64_t>(bits);
  const uint64_t w = bit >> 5;
  const uint32_t off = static_cast<uint32_t>(bit & 31u);
  const uint32_t mask = (1u << bits) - 1u;
  code &= mask;
  words[w] = (words[w] & ~(mask << off)) | (code << off);
  if (off + static_cast<uint32_t>(bits) > 32u) {
    const uint32_t hi = 32u - off;
    words[w + 1] = (words[w + 1] & ~(mask >> hi)) | (code >> hi);
  }
}

/// Packs n codes into `out` (packed_words(n, bits) words, fully overwritten).
/// Codes wider than `bits` are truncated; callers validate codes first.
template <class CodeT>
inline void pack_codes(const CodeT* codes, int64_t n, int bits, uint32_t* out) {
  const int64_t nw = packed_words(n, bits);
  if (32 % bits == 0) {  // codes never straddle words: build each word in a register
    const int per = 32 / bits;
    const uint32_t mask = bits == 32 ? ~0u : ((1u << bits) - 1u);
    for (int64_t w = 0; w < nw; ++w) {
      uint32_t acc = 0;
      const int64_t base = w * per;
      const int64_t cnt = (n - base) < per ? (n - base) : per;
      for (int64_t k = 0; k < cnt; ++k)
        acc |= (static_cast<uint32_t>(codes[base + k]) & mask) << (k * bits);
      out[w] = acc;
    }
    return;
  }
  // General widths: a 64-bit accumulator flushes whole words.
  uint64_t acc = 0;
  int fill = 0;
  int64_t w = 0;
  const uint64_t mask = (uint64_t{1} << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    acc |= (static_cast<uint64_t>(codes[i]) & mask) << fill;
    fill += bits;
    if (fill >= 32) {
      out[w++] = static_cast<uint32_t>(acc);
      acc >>= 32;
      fill -= 32;
    }
  }
  if (fill > 0) out[w++] = static_cast<uint32_t>(acc);
}

/// Unpacks n codes from `words` into `codes`.
template <class CodeT>
inline void unpack_codes(const uint32_t* words, int64_t n, int bits, CodeT* codes) {
  if (32 % bits == 0) {
    const int per = 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t i = 0; i < n; ++i)
      codes[i] = static_cast<CodeT>((words[i / per] >> ((i % per) * bits)) & mask);
    return;
  }
  uint64_t acc = 0;
  int fill = 0;
  int64_t w = 0;
  const int64_t nw = packed_words(n, bits);
  const uint64_t mask = (uint64_t{1} << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    if (fill < bits) {
      if (w < nw) acc |= static_cast<uint64_t>(words[w++]) << fill;
      fill += 32;
    }
    codes[i] = static_cast<CodeT>(acc & mask);
    acc >>= bits;
    fill -= bits;
  }
}

/// Unpacks the n codes first .. first+n-1 (a run that may start anywhere inside a word) into
/// `codes`. Reads only the words that hold those codes. Bit-exact; used by decoders that walk one
/// row of codes at a time.
template <class CodeT>
CLUSCOMP_HOST_DEVICE inline void unpack_code_run(const uint32_t* words, int64_t first, int64_t n,
                                                 int bits, CodeT* codes) {
  if (n <= 0) return;
  const uint64_t bit = static_cast<uint64_t>(first) * static_cast<uint64_t>(bits);
  const uint32_t* w = words + (bit >> 5);
  const int off = static_cast<int>(bit & 31u);
  uint64_t acc = static_cast<uint64_t>(*w++) >> off;
  int fill = 32 - off;  // valid bits in acc
  const uint64_t mask = (uint64_t{1} << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    // The next word exists: code i ends at or after the bit where that word starts.
    if (fill < bits) {
      acc |= static_cast<uint64_t>(*w++) << fill;
      fill += 32;
    }
    codes[i] = static_cast<CodeT>(acc & mask);
    acc >>= bits;
    fill -= bits;
  }
}

CLUSCOMP_NAMESPACE_END
