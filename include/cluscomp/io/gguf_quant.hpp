#pragma once
/// ggml block formats: dequantisation to fp32 of F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, and round-to-nearest quantisers for Q8_0, Q4_0,
/// Q4_1 (plus F32/F16/BF16 conversion) so tests can build quantised models.
///
/// Numerics: every dequantiser performs, in fp32, exactly the operations of ggml's reference
/// `dequantize_row_*` (and of gguf-py's numpy versions), in the same order: scales are products
/// like `d * sc` rounded to fp32 before they multiply the quant, and affine formats compute
/// `(d * q) - m` / `(d * q) + m` as two separately rounded fp32 operations. Results are therefore
/// bit-identical to ggml's on any IEEE machine. Every multiply whose result is then added is a
/// separate statement, so Clang's default -ffp-contract=on cannot fuse it into an FMA; GCC in
/// GNU mode (-ffp-contract=fast) on an FMA target (-march=native) could, so such builds should
/// add -ffp-contract=off to keep bit-exactness (the project builds ISO C++17, where GCC does not
/// contract). The quantisers follow
/// ggml's `quantize_row_*_ref`: per-block max/min in fp32, scale rounded to fp16 for storage but
/// the unrounded fp32 inverse used for the codes.
///
/// Determinism: pure functions of their inputs; no threads, no global state.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"

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
    const float lo = static_cast<float>(qs[j] & 0x0f) * d;
    const float hi = static_cast<float>(qs[j] >> 4) * d;
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

/// True when dequantize_row handles `t`.
inline bool can_dequantize(GgmlType t) {
  switch (t) {
    case GgmlType::kF32: case GgmlType::kF16: case GgmlType::kBF16: case GgmlType::kF64:
    case GgmlType::kQ4_0: case GgmlType::kQ4_1: case GgmlType::kQ5_0: case GgmlType::kQ5_1:
    case GgmlType::kQ8_0: case GgmlType::kQ2_K: case GgmlType::kQ3_K: case GgmlType::kQ4_K:
    case GgmlType::kQ5_K: case GgmlType::kQ6_K: case GgmlType::kQ8_K:
      return true;
    default:
      return false;
  }
}

namespace detail {
// The block function is a template argument so that it inlines into the loop. Each block is
// first copied to a local buffer: the stores to dst then provably cannot alias the quant bytes
// (unsigned char may alias anything), which lets the compiler vectorise the block loops (2x for
// Q4_1 with GCC 12). The arithmetic is unchanged.
template <int kBlockElems, int kBlockBytes, void (*BlockFn)(const unsigned char*, float*)>
inline void dequantize_blocks(const unsigned char* src, float* dst, int64_t n_blocks) {
  unsigned char blk[kBlockBytes];
  for (int64_t i = 0; i < n_blocks; ++i) {
    std::memcpy(blk, src + i * kBlockBytes, kBlockBytes);
    BlockFn(blk, dst + i * kBlockElems);
  }
}
}  // namespace detail

}  // namespace ggml

/// Dequantises `n` elements of type `type` (n a multiple of the block size) from `src` (any
/// alignment) into `dst`. Numerics: bit-identical to ggml's reference dequantisers (see the
/// file comment); F64 rounds to nearest float. Throws Error(kUnsupported) for a type it does not
/// handle and Error(kInvalidArgument) when n is negative or not a multiple of the block size.
inline void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  const GgmlTypeTraits tr = ggml_type_traits(type);
  if (!tr.name || !ggml::can_dequantize(type))
    throw Error(StatusCode::kUnsupported, "dequantize: ggml type " + ggml_type_name(type) +
                                              " is not supported");
  if (n < 0 || n % tr.block_size != 0)
    throw Error(StatusCode::kInvalidArgument,
                "dequantize " + std::string(tr.name) + ": " + std::to_string(n) +
                    " elements is not a multiple of the block size " +
                    std::to_string(tr.block_size));
  const auto* s = static_cast<const unsigned char*>(src);
  const int64_t nb = n / tr.block_size;
  switch (type) {
    case GgmlType::kF32: std::memcpy(dst, s, static_cast<size_t>(n) * 4); return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = ggml::load_f16(s + 2 * i);
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = bf16_bits_to_float(h);
      }
      return;
    case GgmlType::kF64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, s + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    case GgmlType::kQ4_0: ggml::detail::dequantize_blocks<32, 18, ggml::dequantize_block_q4_0>(s, dst, nb); return;
    case GgmlType::kQ4_1: ggml::detail::dequantize_blocks<32, 20, ggml::dequantize_block_q4_1>(s, dst, nb); return;
    case GgmlType::kQ5_0: ggml::detail::dequantize_blocks<32, 22, ggml::dequantize_block_q5_0>(s, dst, nb); return;
    case GgmlType::kQ5_1: ggml::detail::dequantize_blocks<32, 24, ggml::dequantize_block_q5_1>(s, dst, nb); return;
    case GgmlType::kQ8_0: ggml::detail::dequantize_blocks<32, 34, ggml::dequantize_block_q8_0>(s, dst, nb); return;
    case GgmlType::kQ2_K: ggml::detail::dequantize_blocks<256, 84, ggml::dequantize_block_q2_k>(s, dst, nb); return;
    case GgmlType::kQ3_K: ggml::detail::dequantize_blocks<256, 110, ggml::dequantize_block_q3_k>(s, dst, nb); return;
    case GgmlType::kQ4_K: ggml::detail::dequantize_blocks<256, 144, ggml::dequantize_block_q4_k>(s, dst, nb); return;
    case GgmlType::kQ5_K: ggml::detail::dequantize_blocks<256, 176, ggml::dequantize_block_q5_k>(s, dst, nb); return;
    case GgmlType::kQ6_K: ggml::detail::dequantize_blocks<256, 210, ggml::dequantize_block_q6_k>(s, dst, nb); return;
    case GgmlType::kQ8_K: ggml::detail::dequantize_blocks<256, 292, ggml::dequantize_block_q8_k>(s, dst, nb); return;
    default: break;
  }
  throw Error(StatusCode::kUnsupported, "dequantize: ggml type " + ggml_type_name(type) +
                                            " is not supported");
}

/// Dequantises a whole tensor of `reader` into `out` (t.n_elements floats), in ggml memory
/// order (ne[0] fastest). Same numerics and errors as dequantize_row; deterministic.
inline void dequantize_tensor_into(const GgufReader& reader, const GgufTensorInfo& t, float* out) {
  try {
    dequantize_row(t.type, reader.tensor_data(t), out, static_cast<int64_t>(t.n_elements));
  } catch (const Error& e) {
    throw Error(e.code(), reader.name() + ": tensor '" + t.name + "': " + e.what());
  }
}

/// Dequantises a whole tensor into a new vector (t.n_elements floats, ne[0] fastest).
inline std::vector<float> dequantize_tensor(const GgufReader& reader, const GgufTensorInfo& t) {
  if (!ggml::can_dequantize(t.type))
    throw Error(StatusCode::kUnsupported, reader.name() + ": tensor '" + t.name +
                                              "': ggml type " + ggml_type_name(t.type) +
                                              " is not supported by dequantize");
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  dequantize_tensor_into(reader, t, out.data());
  return out;
}

// ---- quantisers ----------------------------------------------------------------------------------
namespace ggml {

/// Integer part of v clamped to [0, hi]; NaN gives 0. For finite v in [0, hi] this is ggml's
/// `MIN(hi, (int8_t)v)`, without its undefined behaviour for out-of-range or NaN inputs.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE int trunc_clamp(float v, int hi) {
  if (!(v > 0.0f)) return 0;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

/// Q8_0 block: d = amax / 127 (fp32, stored as fp16), q = roundf(x * (1/d)) (ties away).
CLUSCOMP_HOST_DEVICE inline void quantize_block_q8_0(const float* x, unsigned char* b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  for (int j = 0; j < kQK; ++j) {
    float q = std::round(x[j] * id);
    q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : (q == q ? q : 0.0f));
    b[2 + j] = static_cast<unsigned char>(static_cast<int8_t>(q));
  }
}

/// Q4_0 block: m = the value of largest magnitude (first one on ties), d = m / -8,
/// q = min(15, trunc(x / d + 8.5)).
CLUSCOMP_HOST_DEVICE inline void quantize_block_q4_0(const float* x, unsigned char* b) {
  float amax = 0.0f, vmax = 0.0f;
  for (int j = 0; j < kQK; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      vmax = x[j];
    }
  const float d = vmax / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = trunc_clamp(x[j] * id + 8.5f, 15);
    const int q1 = trunc_clamp(x[j + kQK / 2] * id + 8.5f, 15);
    b[2 + j] = static_cast<unsigned char>(q0 | (q1 << 4));
  }
}

/// Q4_1 block: d = (max - min) / 15, m = min (both stored as fp16),
/// q = min(15, trunc((x - min) / d + 0.5)).
CLUSCOMP_HOST_DEVICE inline void quantize_block_q4_1(const float* x, unsigned char* b) {
  float vmin = 3.402823466e+38f, vmax = -3.402823466e+38f;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < vmin) vmin = x[j];
    if (x[j] > vmax) vmax = x[j];
  }
  const float d = (vmax - vmin) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  store_f16(b + 2, vmin);
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = trunc_clamp((x[j] - vmin) * id + 0.5f, 15);
    const int q1 = trunc_clamp((x[j + kQK / 2] - vmin) * id + 0.5f, 15);
    b[4 + j] = static_cast<unsigned char>(q0 | (q1 << 4));
  }
}

inline bool can_quantize(GgmlType t) {
  return t == GgmlType::kF32 || t == GgmlType::kF16 || t == GgmlType::kBF16 ||
         t == GgmlType::kQ8_0 || t == GgmlType::kQ4_0 || t == GgmlType::kQ4_1;
}

}  // namespace ggml

/// Quantises `n` floats (a multiple of the block size) into `dst` (ggml_row_size(type, n) bytes,
/// any alignment). F16/BF16 round to nearest even; Q8_0/Q4_0/Q4_1 match ggml's reference
/// quantisers bit for bit for finite inputs (NaN/inf inputs give unspecified but in-range codes,
/// never undefined behaviour). Throws kUnsupported for other types, kInvalidArgument for bad n.
inline void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  if (!ggml::can_quantize(type))
    throw Error(StatusCode::kUnsupported,
                "quantize: ggml type " + ggml_type_name(type) + " is not supported");
  const uint64_t bytes = ggml_row_size(type, n);  // validates n
  auto* d = static_cast<unsigned char*>(dst);
  const GgmlTypeTraits tr = ggml_type_traits(type);
  const int64_t nb = n / tr.block_size;
  switch (type) {
    case GgmlType::kF32: std::memcpy(d, src, static_cast<size_t>(bytes)); return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) ggml::store_f16(d + 2 * i, src[i]);
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = float_to_bf16_bits(src[i]);
        std::memcpy(d + 2 * i, &h, 2);
      }
      return;
    case GgmlType::kQ8_0:
      for (int64_t i = 0; i < nb; ++i) ggml::quantize_block_q8_0(src + i * 32, d + i * tr.type_size);
      return;
    case GgmlType::kQ4_0:
      for (int64_t i = 0; i < nb; ++i) ggml::quantize_block_q4_0(src + i * 32, d + i * tr.type_size);
      return;
    case GgmlType::kQ4_1:
      for (int64_t i = 0; i < nb; ++i) ggml::quantize_block_q4_1(src + i * 32, d + i * tr.type_size);
      return;
    default: break;
  }
}

/// Quantises `n` floats into a new byte vector of ggml_row_size(type, n) bytes.
inline std::vector<unsigned char> quantize(GgmlType type, const float* src, int64_t n) {
  std::vector<unsigned char> out(static_cast<size_t>(ggml_row_size(type, n)));
  quantize_row(type, src, out.data(), n);
  return out;
}

CLUSCOMP_NAMESPACE_END
