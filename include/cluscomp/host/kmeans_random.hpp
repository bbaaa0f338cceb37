#pragma once
/// The portable random numbers of k-means (initialisation and the empty-cluster split): the same
/// draws on every platform and standard library, so a seed means the same clustering everywhere.

#include <cstdint>
#include <random>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

/// Uniform integer in [0, m) from a 64-bit engine, by rejection (portable, unlike
/// std::uniform_int_distribution whose algorithm is implementation-defined).
inline uint64_t uniform_below(std::mt19937_64& rng, uint64_t m) {
  const uint64_t threshold = (0 - m) % m;
  for (;;) {
    const uint64_t x = rng();
    if (x >= threshold) return x % m;
  }
}

/// Uniform double in [0, 1) with 53 random bits.
inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

/// A counter-based uniform in [0, 1) (splitmix64 of seed, stream and i): thread-independent.
inline double hashed_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (stream * 0x100000001b3ull + i + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
