#pragma once
/// ggml block formats: dequantisation to fp32 of F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1,
/// Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, and round-to-nearest quantisers for Q8_0, Q4_0,
/// Q4_1 (plus F32/F16/BF16 conversion) so tests can build quantised models.
///
/// Numerics: the per-block dequantisers (core/ggml_blocks.hpp, shared with the runtime's
/// stored-type products) are bit-identical to ggml's reference `dequantize_row_*`; see that file
/// for the rounding order and the -ffp-contract caveat. The quantisers follow
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
#include "cluscomp/core/ggml_blocks.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace ggml {

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
