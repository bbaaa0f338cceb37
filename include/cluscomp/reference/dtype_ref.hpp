#pragma once
/// Reference twins of the 16-bit conversions in core/dtype.hpp, written independently: they round
/// in double arithmetic with std::nearbyint (ties to even in the default rounding mode) instead of
/// manipulating bits. Slow; tests only.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace reference {

inline double half_bits_to_double_ref(uint16_t h) {
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  if (e == 0) return sign * std::ldexp(static_cast<double>(m), -24);
  if (e == 31) return m ? std::nan("") : sign * INFINITY;
  return sign * std::ldexp(static_cast<double>(1024 + m), e - 25);
}

inline uint16_t float_to_half_bits_ref(float f) {
  if (std::isnan(f)) return 0x7fffu;
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7c00u;
  if (a < std::ldexp(1.0, -14)) {  // subnormal (or rounds up to the smallest normal)
    const double r = std::nearbyint(a / std::ldexp(1.0, -24));
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int E = e - 1;      // a = (1.x) * 2^E
  double r = std::nearbyint(a / std::ldexp(1.0, E - 10));  // in [1024, 2048]
  if (r == 2048.0) {
    r = 1024.0;
    ++E;
  }
  return static_cast<uint16_t>(sign | ((E + 15) << 10) | (static_cast<int>(r) - 1024));
}

inline uint16_t float_to_bf16_bits_ref(float f) {
  if (std::isnan(f)) return 0x7fffu;
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  if (std::isinf(a)) return sign | 0x7f80u;
  if (a < std::ldexp(1.0, -126)) {
    const double r = std::nearbyint(a / std::ldexp(1.0, -133));
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(r));
  }
  int e;
  std::frexp(a, &e);
  int E = e - 1;
  double r = std::nearbyint(a / std::ldexp(1.0, E - 7));  // in [128, 256]
  if (r == 256.0) {
    r = 128.0;
    ++E;
  }
  if (E > 127) return sign | 0x7f80u;
  return static_cast<uint16_t>(sign | ((E + 127) << 7) | (static_cast<int>(r) - 128));
}

}  // namespace reference
CLUSCOMP_NAMESPACE_END
