#pragma once
/// Overflow-checked size arithmetic for values read from files or given by callers.

#include <cstdint>
#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// a * b for non-negative sizes; throws Error(kInvalidArgument) naming `what` on overflow.
inline uint64_t checked_mul(uint64_t a, uint64_t b, const char* what) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw Error(StatusCode::kInvalidArgument, std::string(what) + ": size overflows 64 bits");
  return r;
}

/// a + b for non-negative sizes; throws on overflow.
inline uint64_t checked_add(uint64_t a, uint64_t b, const char* what) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r))
    throw Error(StatusCode::kInvalidArgument, std::string(what) + ": size overflows 64 bits");
  return r;
}

CLUSCOMP_NAMESPACE_END
