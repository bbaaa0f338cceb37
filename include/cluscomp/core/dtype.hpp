#pragma once
/// Storage types usable on the host without CUDA headers: `f16` (IEEE binary16) and `bf16`
/// (bfloat16), with round-to-nearest-even conversions that are bit-identical to the CUDA
/// intrinsics `__float2half_rn` / `__float2bfloat16_rn` (NaN becomes the canonical 0x7FFF, as
/// there), plus the runtime dtype enumeration used by files and codebooks.
///
/// Numerics: conversions are exact RNE; decoding fp8 (E4M3FN, E5M2) is exact.

#include <cstdint>
#include <cstring>
#include <string>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

/// float -> binary16 bits, round to nearest even; overflow -> inf; NaN -> 0x7FFF.
CLUSCOMP_HOST_DEVICE inline uint16_t float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t u = x & 0x7fffffffu;
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  if (u > 0x7f800000u) return 0x7fffu;                    // NaN
  if (u >= 0x477ff000u) return sign | 0x7c00u;            // >= 65520 rounds to inf
  const uint32_t e = u >> 23;
  if (e < 102) return sign;                               // below half of the smallest subnormal
  uint32_t mant = u & 0x7fffffu;
  uint32_t result, remainder, halfway;
  if (e > 112) {  // normal half
    result = ((e - 112) << 10) | (mant >> 13);
    remainder = mant & 0x1fffu;
    halfway = 0x1000u;
  } else {  // subnormal half: value in units of 2^-24 is (mant | 1<<23) >> (126 - e)
    mant |= 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    result = mant >> shift;
    remainder = mant & ((1u << shift) - 1u);
    halfway = 1u << (shift - 1);
  }
  if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

/// binary16 bits -> float (exact).
CLUSCOMP_HOST_DEVICE inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  // All three cases computed and one selected: no branch, so no warp divergence on a GPU (random
  // or outlier centroids mix the cases within a warp).
  const uint32_t normal = sign | ((e + 112) << 23) | (m << 13);
  const uint32_t special = sign | 0x7f800000u | (m << 13);  // inf, NaN with its payload
  // Zero or subnormal: m * 2^-24, exact in float (m < 2^10 converts exactly and the product by a
  // power of two is 0 or a normal float, so flush-to-zero modes cannot change it).
  const uint32_t tiny = sign | float_bits(static_cast<float>(m) * 0x1p-24f);
  return bits_float(e == 0 ? tiny : (e == 31 ? special : normal));
}

/// float -> bfloat16 bits, round to nearest even; NaN -> 0x7FFF.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float bf16_bits_to_float(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

/// fp8 E4M3FN (no infinities; 0x7F/0xFF are NaN) -> float, exact.
CLUSCOMP_HOST_DEVICE inline float fp8_e4m3fn_to_float(uint8_t v) {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80u) << 24;
  const uint32_t e = (v >> 3) & 0xfu;
  const uint32_t m = v & 0x7u;
  if (e == 15 && m == 7) return bits_float(0x7fc00000u | sign);
  if (e == 0) {  // subnormal: m * 2^-9
    const float mag = static_cast<float>(m) * (1.0f / 512.0f);
    return bits_float(float_bits(mag) | sign);
  }
  return bits_float(sign | ((e + 120) << 23) | (m << 20));
}

/// fp8 E5M2 -> float, exact (it is the top byte of a binary16).
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float fp8_e5m2_to_float(uint8_t v) {
  return half_bits_to_float(static_cast<uint16_t>(v) << 8);
}

/// IEEE binary16 storage. A plain 16-bit struct: trivially copyable, same layout as `__half`.
struct f16 {
  uint16_t bits;
  f16() = default;
  CLUSCOMP_HOST_DEVICE static f16 from_bits(uint16_t b) {
    f16 h;
    h.bits = b;
    return h;
  }
  CLUSCOMP_HOST_DEVICE explicit f16(float f) : bits(float_to_half_bits(f)) {}
  CLUSCOMP_HOST_DEVICE explicit operator float() const { return half_bits_to_float(bits); }
};

/// bfloat16 storage; same layout as `__nv_bfloat16`.
struct bf16 {
  uint16_t bits;
  bf16() = default;
  CLUSCOMP_HOST_DEVICE static bf16 from_bits(uint16_t b) {
    bf16 h;
    h.bits = b;
    return h;
  }
  CLUSCOMP_HOST_DEVICE explicit bf16(float f) : bits(float_to_bf16_bits(f)) {}
  CLUSCOMP_HOST_DEVICE explicit operator float() const { return bf16_bits_to_float(bits); }
};

static_assert(sizeof(f16) == 2 && sizeof(bf16) == 2, "16-bit storage types must be 2 bytes");

/// Loads one stored value as float: the single place the element types meet arithmetic.
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float to_float(float v) { return v; }
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float to_float(f16 v) { return half_bits_to_float(v.bits); }
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float to_float(bf16 v) { return bf16_bits_to_float(v.bits); }

/// Stores a float as T with round-to-nearest-even.
template <class T>
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE T from_float(float v) {
  return T(v);
}
template <>
CLUSCOMP_HOST_DEVICE CLUSCOMP_FORCEINLINE float from_float<float>(float v) {
  return v;
}

/// Runtime element types of tensors in files and in memory (safetensors' full list).
enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kF64 = 3,
  kI8 = 4,
  kI16 = 5,
  kI32 = 6,
  kI64 = 7,
  kU8 = 8,
  kU16 = 9,
  kU32 = 10,
  kU64 = 11,
  kBool = 12,
  kF8E4M3 = 13,
  kF8E5M2 = 14,
};

inline constexpr int kNumDTypes = 15;

/// Size of one element in bytes.
CLUSCOMP_HOST_DEVICE constexpr int dtype_size(DType t) {
  switch (t) {
    case DType::kF64: case DType::kI64: case DType::kU64: return 8;
    case DType::kF32: case DType::kI32: case DType::kU32: return 4;
    case DType::kF16: case DType::kBF16: case DType::kI16: case DType::kU16: return 2;
    default: return 1;
  }
}

/// The safetensors spelling ("F32", "BF16", "F8_E4M3", ...).
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF64: return "F64";
    case DType::kI8: return "I8";
    case DType::kI16: return "I16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kU8: return "U8";
    case DType::kU16: return "U16";
    case DType::kU32: return "U32";
    case DType::kU64: return "U64";
    case DType::kBool: return "BOOL";
    case DType::kF8E4M3: return "F8_E4M3";
    case DType::kF8E5M2: return "F8_E5M2";
  }
  return "?";
}

/// Parses a safetensors dtype name; returns false for an unknown name.
inline bool parse_dtype(const std::string& s, DType* out) {
  for (int i = 0; i < kNumDTypes; ++i) {
    const DType t = static_cast<DType>(i);
    if (s == dtype_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

inline bool is_float_dtype(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kF64 ||
         t == DType::kF8E4M3 || t == DType::kF8E5M2;
}

/// Reads element `i` of a buffer of dtype `t` as double (any dtype; bool as 0/1).
inline double load_as_double(const void* data, DType t, int64_t i) {
  const auto* p = static_cast<const unsigned char*>(data) + i * dtype_size(t);
  auto rd = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  switch (t) {
    case DType::kF32: return rd(float{});
    case DType::kF16: return half_bits_to_float(rd(uint16_t{}));
    case DType::kBF16: return bf16_bits_to_float(rd(uint16_t{}));
    case DType::kF64: return rd(double{});
    case DType::kI8: return rd(int8_t{});
    case DType::kI16: return rd(int16_t{});
    case DType::kI32: return rd(int32_t{});
    case DType::kI64: return static_cast<double>(rd(int64_t{}));
    case DType::kU8: return rd(uint8_t{});
    case DType::kU16: return rd(uint16_t{});
    case DType::kU32: return rd(uint32_t{});
    case DType::kU64: return static_cast<double>(rd(uint64_t{}));
    case DType::kBool: return rd(uint8_t{}) != 0 ? 1.0 : 0.0;
    case DType::kF8E4M3: return fp8_e4m3fn_to_float(rd(uint8_t{}));
    case DType::kF8E5M2: return fp8_e5m2_to_float(rd(uint8_t{}));
  }
  return 0.0;
}

CLUSCOMP_NAMESPACE_END
