#pragma once
/// Reference twins of io/gguf_quant.hpp, written independently from the format descriptions
/// (ggml's block structs and gguf-py's numpy formulation): one element at a time, addressing each
/// field by its byte/bit position, with their own block table and their own fp16 decoding
/// (dtype_ref.hpp). Slow; tests only.
///
/// Numerics: arithmetic is done in double and rounded to float at exactly the points where ggml
/// rounds (scale products, the product with the quant, the added/subtracted minimum). Because
/// double has more than 2 * 24 + 2 significand bits, rounding an exact-in-double sum, product or
/// quotient of two floats to float gives the correctly rounded float result, so these twins are
/// expected to agree with the optimised code BIT FOR BIT, and tests compare with ==.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/reference/dtype_ref.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

/// (elements per block, bytes per block) for the ggml type ids the twins cover; {0, 0} otherwise.
struct GgmlBlockRef {
  int elems;
  int bytes;
};
inline GgmlBlockRef ggml_block_ref(uint32_t type_id) {
  switch (type_id) {
    case 0: return {1, 4};      // F32
    case 1: return {1, 2};      // F16
    case 30: return {1, 2};     // BF16
    case 28: return {1, 8};     // F64
    case 2: return {32, 18};    // Q4_0: d, qs[16]
    case 3: return {32, 20};    // Q4_1: d, m, qs[16]
    case 6: return {32, 22};    // Q5_0: d, qh[4], qs[16]
    case 7: return {32, 24};    // Q5_1: d, m, qh[4], qs[16]
    case 8: return {32, 34};    // Q8_0: d, qs[32]
    case 10: return {256, 84};  // Q2_K: scales[16], qs[64], d, dmin
    case 11: return {256, 110}; // Q3_K: hmask[32], qs[64], scales[12], d
    case 12: return {256, 144}; // Q4_K: d, dmin, scales[12], qs[128]
    case 13: return {256, 176}; // Q5_K: d, dmin, scales[12], qh[32], qs[128]
    case 14: return {256, 210}; // Q6_K: ql[128], qh[64], scales[16], d
    case 15: return {256, 292}; // Q8_K: float d, qs[256], bsums[16]
    default: return {0, 0};
  }
}

namespace gguf_ref_detail {

inline float fl(double x) { return static_cast<float>(x); }

inline double f16_at(const unsigned char* p) {
  return half_bits_to_double_ref(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}

/// Bit `i` of a little-endian bit stream starting at p.
inline int bit_at(const unsigned char* p, int i) { return (p[i / 8] >> (i % 8)) & 1; }

/// `width` bits starting at bit `i` of a little-endian bit stream (LSB first).
inline int bits_at(const unsigned char* p, int i, int width) {
  int v = 0;
  for (int k = 0; k < width; ++k) v |= bit_at(p, i + k) << k;
  return v;
}

/// Legacy 32-blocks: element e is the low nibble of byte e (e < 16) or the high nibble of byte
/// e - 16.
inline int legacy_nibble(const unsigned char* qs, int e) {
  return e < 16 ? bits_at(qs, 8 * e, 4) : bits_at(qs, 8 * (e - 16) + 4, 4);
}

/// Q4_K/Q5_K 6-bit (scale, min) j, following gguf-py's description: bytes 0..3 = "d",
/// 4..7 = "m", 8..11 = "m_d"; scale j<4 = d[j] & 63, j>=4 = (m_d[j-4] & 15) | ((d[j-4] >> 2) & 48);
/// min j<4 = m[j] & 63, j>=4 = (m_d[j-4] >> 4) | ((m[j-4] >> 2) & 48).
inline void k4_scale_min_ref(const unsigned char* s, int j, int* sc, int* mn) {
  const unsigned char* dd = s;
  const unsigned char* mm = s + 4;
  const unsigned char* md = s + 8;
  if (j < 4) {
    *sc = dd[j] & 63;
    *mn = mm[j] & 63;
  } else {
    *sc = (md[j - 4] & 15) | ((dd[j - 4] >> 2) & 48);
    *mn = (md[j - 4] >> 4) | ((mm[j - 4] >> 2) & 48);
  }
}

/// Q3_K scale i (signed), ggml's formulation on three little-endian 32-bit words.
inline int q3k_scale_ref(const unsigned char* s12, int i) {
  uint32_t aux[4];
  std::memcpy(aux, s12, 12);
  const uint32_t tmp = aux[2];
  const uint32_t m2 = 0x0f0f0f0fu, m1 = 0x03030303u;
  aux[2] = ((aux[0] >> 4) & m2) | (((tmp >> 4) & m1) << 4);
  aux[3] = ((aux[1] >> 4) & m2) | (((tmp >> 6) & m1) << 4);
  aux[0] = (aux[0] & m2) | (((tmp >> 0) & m1) << 4);
  aux[1] = (aux[1] & m2) | (((tmp >> 2) & m1) << 4);
  unsigned char b[16];
  std::memcpy(b, aux, 16);
  return static_cast<int>(b[i]) - 32;
}

}  // namespace gguf_ref_detail

/// Element e (0 <= e < elems) of one block of type `type_id`, as float.
inline float dequantize_element_ref(uint32_t type_id, const unsigned char* blk, int e) {
  using namespace gguf_ref_detail;
  switch (type_id) {
    case 0: {
      float f;
      std::memcpy(&f, blk, 4);
      return f;
    }
    case 1: return fl(f16_at(blk));
    case 30: {
      const uint32_t u = static_cast<uint32_t>(blk[0] | (blk[1] << 8)) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case 28: {
      double v;
      std::memcpy(&v, blk, 8);
      return fl(v);
    }
    case 2: return fl(f16_at(blk) * (legacy_nibble(blk + 2, e) - 8));
    case 3: return fl(fl(f16_at(blk) * legacy_nibble(blk + 4, e)) + f16_at(blk + 2));
    case 6: {
      const int q = legacy_nibble(blk + 6, e) + 16 * bit_at(blk + 2, e);
      return fl(f16_at(blk) * (q - 16));
    }
    case 7: {
      const int q = legacy_nibble(blk + 8, e) + 16 * bit_at(blk + 4, e);
      return fl(fl(f16_at(blk) * q) + f16_at(blk + 2));
    }
    case 8: return fl(f16_at(blk) * static_cast<int8_t>(blk[2 + e]));
    case 10: {  // Q2_K
      const int half = e / 128, shift = 2 * ((e % 128) / 32), l = e % 32;
      const int q = (blk[16 + 32 * half + l] >> shift) & 3;
      const int sc = blk[e / 16];
      const double dl = fl(f16_at(blk + 80) * (sc & 15));
      const double ml = fl(f16_at(blk + 82) * (sc >> 4));
      return fl(fl(dl * q) - ml);
    }
    case 11: {  // Q3_K
      const int half = e / 128, j = (e % 128) / 32, l = e % 32;
      const int low = (blk[32 + 32 * half + l] >> (2 * j)) & 3;
      const int high = bit_at(blk + l, 4 * half + j);  // bit (4*half + j) of hmask[l]
      const int q = low - (high ? 0 : 4);
      const double dl = fl(f16_at(blk + 108) * q3k_scale_ref(blk + 96, e / 16));
      return fl(dl * q);
    }
    case 12:    // Q4_K
    case 13: {  // Q5_K
      const bool five = type_id == 13;
      const int sub = e / 32, l = e % 32;
      const unsigned char* qs = blk + (five ? 48 : 16);
      int q = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 15;
      if (five) q += 16 * bit_at(blk + 16 + l, sub);
      int sc, mn;
      k4_scale_min_ref(blk + 4, sub, &sc, &mn);
      const double d1 = fl(f16_at(blk) * sc);
      const double m1 = fl(f16_at(blk + 2) * mn);
      return fl(fl(d1 * q) - m1);
    }
    case 14: {  // Q6_K
      const int half = e / 128, k = (e % 128) / 32, l = e % 32;
      const unsigned char ql = blk[64 * half + 32 * (k % 2) + l];
      const int low = k < 2 ? (ql & 15) : (ql >> 4);
      const int high = (blk[128 + 32 * half + l] >> (2 * k)) & 3;
      const int q = (low | (high << 4)) - 32;
      const int sc = static_cast<int8_t>(blk[192 + e / 16]);
      const double dl = fl(f16_at(blk + 208) * sc);
      return fl(dl * q);
    }
    case 15: {  // Q8_K
      float d;
      std::memcpy(&d, blk, 4);
      return fl(static_cast<double>(d) * static_cast<int8_t>(blk[4 + e]));
    }
    default: throw std::invalid_argument("dequantize_element_ref: unsupported type");
  }
}

/// Dequantises n elements (a multiple of the block size) of a buffer, element by element.
inline std::vector<float> dequantize_ref(uint32_t type_id, const void* data, int64_t n) {
  const GgmlBlockRef b = ggml_block_ref(type_id);
  if (b.elems == 0 || n % b.elems != 0) throw std::invalid_argument("dequantize_ref: bad type/n");
  const auto* p = static_cast<const unsigned char*>(data);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    out[static_cast<size_t>(i)] =
        dequantize_element_ref(type_id, p + (i / b.elems) * b.bytes, static_cast<int>(i % b.elems));
  return out;
}

namespace gguf_ref_detail {
inline void put_f16(unsigned char* p, double v) {
  const uint16_t h = float_to_half_bits_ref(fl(v));
  p[0] = static_cast<unsigned char>(h & 0xff);
  p[1] = static_cast<unsigned char>(h >> 8);
}
inline void put_nibble(unsigned char* qs, int e, int q) {
  if (e < 16)
    qs[e] = static_cast<unsigned char>((qs[e] & 0xf0) | q);
  else
    qs[e - 16] = static_cast<unsigned char>((qs[e - 16] & 0x0f) | (q << 4));
}
}  // namespace gguf_ref_detail

/// ggml's reference round-to-nearest quantisers (quantize_row_q8_0/q4_0/q4_1_ref) for finite
/// input, one 32-block at a time, bytes out.
inline std::vector<unsigned char> quantize_ref(uint32_t type_id, const float* x, int64_t n) {
  using namespace gguf_ref_detail;
  const GgmlBlockRef b = ggml_block_ref(type_id);
  if ((type_id != 2 && type_id != 3 && type_id != 8) || n % 32 != 0)
    throw std::invalid_argument("quantize_ref: bad type/n");
  std::vector<unsigned char> out(static_cast<size_t>(n / 32 * b.bytes), 0);
  for (int64_t blk = 0; blk < n / 32; ++blk) {
    const float* v = x + blk * 32;
    unsigned char* o = out.data() + blk * b.bytes;
    if (type_id == 8) {
      double amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<double>(v[j])));
      const double d = fl(amax / 127.0);
      const double id = d != 0 ? fl(1.0 / d) : 0.0;
      put_f16(o, d);
      for (int j = 0; j < 32; ++j) {
        const double q = std::round(fl(v[j] * id));  // halves away from zero, like roundf
        o[2 + j] = static_cast<unsigned char>(static_cast<int8_t>(q));
      }
    } else if (type_id == 2) {
      double amax = 0, vmax = 0;
      for (int j = 0; j < 32; ++j)
        if (std::fabs(static_cast<double>(v[j])) > amax) {
          amax = std::fabs(static_cast<double>(v[j]));
          vmax = v[j];
        }
      const double d = fl(vmax / -8.0);
      const double id = d != 0 ? fl(1.0 / d) : 0.0;
      put_f16(o, d);
      for (int j = 0; j < 32; ++j) {
        const double t = std::trunc(fl(fl(v[j] * id) + 8.5));
        put_nibble(o + 2, j, static_cast<int>(std::min(15.0, std::max(0.0, t))));
      }
    } else {
      double lo = v[0], hi = v[0];
      for (int j = 1; j < 32; ++j) {
        lo = std::min(lo, static_cast<double>(v[j]));
        hi = std::max(hi, static_cast<double>(v[j]));
      }
      const double d = fl(fl(hi - lo) / 15.0);
      const double id = d != 0 ? fl(1.0 / d) : 0.0;
      put_f16(o, d);
      put_f16(o + 2, lo);
      for (int j = 0; j < 32; ++j) {
        const double t = std::trunc(fl(fl(fl(v[j] - lo) * id) + 0.5));
        put_nibble(o + 4, j, static_cast<int>(std::min(15.0, std::max(0.0, t))));
      }
    }
  }
  return out;
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
