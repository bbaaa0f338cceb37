#pragma once
/// ggml's block formats, one block at a time: the per-block dequantisers of Q4_0, Q4_1, Q5_0,
/// Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K, and the fp16 load/store they share.
///
/// They live in core/ because two layers read ggml blocks: io/gguf_quant.hpp dequantises whole
/// tensors with them, and ops/stored_matmul.hpp decodes rows of a weight kept in its stored type
/// (its portable path, and the reference its AVX2 block decoders must equal bit for bit).
///
/// Numerics: every dequantiser performs, in fp32, exactly the operations of ggml's reference
/// `dequantize_row_*` (and of gguf-py's numpy versions), in the same order: scales are products
/// like `d * sc` rounded to fp32 before they multiply the quant, and affine formats compute
/// `(d * q) - m` / `(d * q) + m` as two separately rounded fp32 operations. Results are therefore
/// bit-identical to ggml's on any IEEE machine. Every multiply whose result is then added is a
/// separate statement, so Clang's default -ffp-contract=on cannot fuse it into an FMA; GCC in
/// GNU mode (-ffp-contract=fast) on an FMA target (-march=native) could, so such builds should
/// add -ffp-contract=off to keep bit-exactness (the project builds ISO C++17, where GCC does not
/// contract).
///
/// Determinism: pure functions of their inputs; no threads, no global state.

#include <cstdint>
#include <cstring>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/core/dtype.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace ggml {

inline constexpr int kQK = 32;    // elements per block of the legacy formats
inline constexpr int kQKK = 256;  // elements per super-block of the K formats

CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float load_f16(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_bits_to_float(h);
}
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float load_f32(const unsigned char* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void store_f16(unsigned char* p, float v) {
  const uint16_t h = float_to_half_bits(v);
  std::memcpy(p, &h, 2);
}

// ---- per-block dequantisers (block bytes in, block_size floats out) ------------------------------

/// Q4_0: f16 d, 16 bytes of nibbles; element j < 16 is the low nibble of byte j, element j + 16
/// the high nibble; y = d * (q - 8).
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q4_0(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const unsigned char* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
    y[j + kQK / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

/// Q4_1: f16 d, f16 m, nibbles as Q4_0; y = d * q + m.
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q4_1(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  const unsigned char* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    // Barriers: even where the includer lets GCC contract across statements (-march=native), the
    // two roundings stay, as in ops/stored_matmul.hpp's AVX2 decoder of this format.
    const float lo = uncontracted_mul(static_cast<float>(qs[j] & 0x0f), d);
    const float hi = uncontracted_mul(static_cast<float>(qs[j] >> 4), d);
    y[j] = lo + m;
    y[j + kQK / 2] = hi + m;
  }
}

/// Q5_0: f16 d, u32 qh (bit i = 5th bit of element i), nibbles as Q4_0; y = d * (q - 16).
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q5_0(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const unsigned char* qs = b + 6;
  for (int j = 0; j < kQK / 2; ++j) {
    const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
    const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    y[j] = static_cast<float>(((qs[j] & 0x0f) | h0) - 16) * d;
    y[j + kQK / 2] = static_cast<float>(((qs[j] >> 4) | h1) - 16) * d;
  }
}

/// Q5_1: f16 d, f16 m, u32 qh, nibbles; y = d * q + m.
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q5_1(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const unsigned char* qs = b + 8;
  for (int j = 0; j < kQK / 2; ++j) {
    const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
    const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
    const float lo = static_cast<float>((qs[j] & 0x0f) | h0) * d;
    const float hi = static_cast<float>((qs[j] >> 4) | h1) * d;
    y[j] = lo + m;
    y[j + kQK / 2] = hi + m;
  }
}

/// Q8_0: f16 d, 32 x int8; y = d * q.
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q8_0(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

/// Q2_K: 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit quants, f16 d,
/// f16 dmin. Element 128h + 32s + l takes bits 2s..2s+1 of qs[32h + l]; its 16-group
/// (8h + 2s + l/16) has y = (d * sc) * q - (dmin * m).
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q2_k(const unsigned char* b, float* y) {
  const unsigned char* scales = b;
  const unsigned char* qs = b + 16;
  const float d = load_f16(b + 80);
  const float dmin = load_f16(b + 82);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      for (int g = 0; g < 2; ++g) {
        const unsigned char sc = scales[8 * h + 2 * s + g];
        const float dl = d * static_cast<float>(sc & 0x0f);
        const float ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 16 * g; l < 16 * g + 16; ++l) {
          const int q = (qs[32 * h + l] >> (2 * s)) & 3;
          const float scaled = dl * static_cast<float>(q);  // separate statement: no FMA
          y[128 * h + 32 * s + l] = scaled - ml;
        }
      }
    }
  }
}

/// Unpacks Q3_K's 16 six-bit scales (12 bytes): scale i has its low 4 bits in byte i % 8
/// (low nibble for i < 8, high nibble otherwise) and its high 2 bits in byte 8 + i % 4 at bit
/// 2 * (i / 4); stored with an offset of 32.
CLUSCOMP_HOST_DEVICE inline void unpack_q3_k_scales(const unsigned char* s12, int* sc) {
  for (int i = 0; i < 16; ++i) {
    const int lo = (i < 8 ? s12[i] : (s12[i - 8] >> 4)) & 0x0f;
    const int hi = (s12[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    sc[i] = (lo | (hi << 4)) - 32;
  }
}

/// Q3_K: 32 bytes hmask, 64 bytes 2-bit low quants, 12 bytes scales, f16 d. Element
/// 128h + 32s + l: low bits 2s..2s+1 of qs[32h + l], high bit (4h + s) of hmask[l]; a CLEAR high
/// bit subtracts 4; y = (d * scale) * q.
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q3_k(const unsigned char* b, float* y) {
  const unsigned char* hmask = b;
  const unsigned char* qs = b + 32;
  int sc[16];
  unpack_q3_k_scales(b + 96, sc);
  const float d = load_f16(b + 108);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 4; ++s) {
      const unsigned char bit = static_cast<unsigned char>(1u << (4 * h + s));
      for (int g = 0; g < 2; ++g) {
        const float dl = d * static_cast<float>(sc[8 * h + 2 * s + g]);
        for (int l = 16 * g; l < 16 * g + 16; ++l) {
          const int q = ((qs[32 * h + l] >> (2 * s)) & 3) - ((hmask[l] & bit) ? 0 : 4);
          y[128 * h + 32 * s + l] = dl * static_cast<float>(q);
        }
      }
    }
  }
}

/// The (scale, min) pair j (0..7) of the 12-byte 6-bit packing shared by Q4_K and Q5_K.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE void k_scale_min(int j, const unsigned char* q, int* sc,
                                                           int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/// Q4_K: f16 d, f16 dmin, 12 bytes scales/mins, 128 bytes nibbles. Sub-block j (32 elements)
/// of 64-chunk c = j / 2 uses the low (j even) or high (j odd) nibbles of qs[32c .. 32c + 32);
/// y = (d * sc_j) * q - (dmin * m_j).
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q4_k(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* qs = b + 16;
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    k_scale_min(j, scales, &sc, &mn);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = dmin * static_cast<float>(mn);
    const unsigned char* q = qs + 32 * (j / 2);
    const int shift = (j & 1) * 4;
    for (int l = 0; l < 32; ++l) {
      const float scaled = d1 * static_cast<float>((q[l] >> shift) & 0x0f);
      y[32 * j + l] = scaled - m1;
    }
  }
}

/// Q5_K: as Q4_K plus 32 bytes qh between scales and nibbles; sub-block j's 5th bit is bit j of
/// qh[l].
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q5_k(const unsigned char* b, float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const unsigned char* scales = b + 4;
  const unsigned char* qh = b + 16;
  const unsigned char* qs = b + 48;
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    k_scale_min(j, scales, &sc, &mn);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = dmin * static_cast<float>(mn);
    const unsigned char* q = qs + 32 * (j / 2);
    const int shift = (j & 1) * 4;
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> shift) & 0x0f) | (((qh[l] >> j) & 1) << 4);
      const float scaled = d1 * static_cast<float>(v);
      y[32 * j + l] = scaled - m1;
    }
  }
}

/// Q6_K: 128 bytes low nibbles, 64 bytes high 2-bit pairs, 16 int8 scales, f16 d. In half h,
/// element 128h + 32k + l (k = 0..3) takes the low (k < 2) or high (k >= 2) nibble of
/// ql[64h + 32(k & 1) + l] and bits 2k..2k+1 of qh[32h + l]; y = (d * scale) * (q - 32) with
/// scale index 8h + 2k + l / 16.
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q6_k(const unsigned char* b, float* y) {
  const unsigned char* ql = b;
  const unsigned char* qh = b + 128;
  const unsigned char* scales = b + 192;
  const float d = load_f16(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const int lo = (ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 0x0f;
        const int hi = (qh[32 * h + l] >> (2 * k)) & 3;
        const int q = (lo | (hi << 4)) - 32;
        const float dl = d * static_cast<float>(static_cast<int8_t>(scales[8 * h + 2 * k + l / 16]));
        y[128 * h + 32 * k + l] = dl * static_cast<float>(q);
      }
    }
  }
}

/// Q8_K: f32 d, 256 x int8, 16 x int16 block sums (unused here); y = d * q.
CLUSCOMP_HOST_DEVICE inline void dequantize_block_q8_k(const unsigned char* b, float* y) {
  const float d = load_f32(b);
  for (int j = 0; j < kQKK; ++j) y[j] = d * static_cast<float>(static_cast<int8_t>(b[4 + j]));
}

}  // namespace ggml
CLUSCOMP_NAMESPACE_END
