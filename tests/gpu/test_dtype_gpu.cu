// core/dtype.hpp's fp16/bf16 conversions against the CUDA intrinsics, compared under nvcc:
// __float2half_rn / __float2bfloat16_rn on the device versus float_to_half_bits /
// float_to_bf16_bits, bit for bit, (a) on the device over all 2^32 floats and (b) on the host over
// millions of values; and the layout compatibility of f16/bf16 with __half/__nv_bfloat16.
// The GPU main skips (exit 77) without a CUDA device.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "cluscomp/core/dtype.hpp"
#include "support/gpu_test.cuh"

using namespace cluscomp;
using cluscomp_test::DeviceBuffer;

static_assert(sizeof(f16) == sizeof(__half) && alignof(f16) == alignof(__half), "f16 must be layout-compatible with __half");
static_assert(sizeof(bf16) == sizeof(__nv_bfloat16) && alignof(bf16) == alignof(__nv_bfloat16),
              "bf16 must be layout-compatible with __nv_bfloat16");
static_assert(std::is_trivially_copyable<f16>::value && std::is_trivially_copyable<bf16>::value, "");

namespace {

struct MismatchLog {
  unsigned long long count;
  unsigned int first;  // smallest mismatching input bits
  unsigned int got;    // intrinsic's and core's bits for a mismatching input: for the failure
  unsigned int want;   // message only (racy between threads; the count and `first` are exact)
};

// Grid-stride over every 32-bit pattern: intrinsic vs core (device-compiled), for half (which=0)
// or bf16 (which=1).
__global__ void exhaustive_kernel(int which, MismatchLog* log) {
  const uint64_t n = uint64_t{1} << 32;
  const uint64_t step = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t x = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n; x += step) {
    const unsigned int u = static_cast<unsigned int>(x);
    const float f = __uint_as_float(u);
    unsigned int got, want;
    if (which == 0) {
      got = __half_as_ushort(__float2half_rn(f));
      want = float_to_half_bits(f);
    } else {
      got = __bfloat16_as_ushort(__float2bfloat16_rn(f));
      want = float_to_bf16_bits(f);
    }
    if (got != want) {
      atomicAdd(&log->count, 1ull);
      if (atomicMin(&log->first, u) > u) {
        log->got = got;
        log->want = want;
      }
    }
  }
}

__global__ void convert_kernel(const float* in, int64_t n, uint16_t* half_out, uint16_t* bf16_out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) {
    half_out[i] = __half_as_ushort(__float2half_rn(in[i]));
    bf16_out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
  }
}

__global__ void widen_kernel(float* half_to_f, float* bf16_to_f) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 65536) {
    half_to_f[i] = __half2float(__ushort_as_half(static_cast<unsigned short>(i)));
    bf16_to_f[i] = __bfloat162float(__ushort_as_bfloat16(static_cast<unsigned short>(i)));
  }
}

}  // namespace

TEST_CASE("device: core conversions equal the intrinsics on all 2^32 floats", "[gpu][dtype]") {
  for (int which : {0, 1}) {
    INFO((which == 0 ? "__float2half_rn vs float_to_half_bits" : "__float2bfloat16_rn vs float_to_bf16_bits"));
    MismatchLog init{0, 0xffffffffu, 0, 0};
    DeviceBuffer<MismatchLog> log(&init, 1);
    exhaustive_kernel<<<4096, 256>>>(which, log.get());
    CLUSCOMP_CUDA_REQUIRE(cudaGetLastError());
    CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
    const MismatchLog r = log.download()[0];
    INFO("mismatches " << r.count << ", first input bits 0x" << std::hex << r.first << " intrinsic 0x" << r.got
                       << " core 0x" << r.want);
    REQUIRE(r.count == 0);
  }
}

TEST_CASE("host: core conversions equal the device intrinsics on millions of values", "[gpu][dtype]") {
  std::vector<float> values;
  // Specials and boundaries: zeros, infinities, NaNs, FLT_MAX, half/bf16 overflow and subnormal
  // edges, and exact ties.
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                               0x7f800001u, 0x7f7fffffu, 0x477fe000u, 0x477ff000u, 0x477fefffu, 0x33000000u,
                               0x33000001u, 0x32ffffffu, 0x387fc000u, 0x38800000u, 0x3f808000u, 0x3f818000u,
                               0x00000001u, 0x807fffffu};
  for (uint32_t u : specials) values.push_back(bits_float(u));
  // Every float of exponents around the half subnormal/normal/overflow boundaries, sparsely.
  for (uint32_t e : {101u, 102u, 103u, 112u, 113u, 142u, 143u})
    for (uint32_t m = 0; m < (1u << 23); m += 7)
      values.push_back(bits_float((e << 23) | m));
  std::mt19937 rng(31337);
  for (int i = 0; i < (1 << 23); ++i) values.push_back(bits_float(rng()));
  const int64_t n = static_cast<int64_t>(values.size());

  DeviceBuffer<float> in(values.data(), values.size());
  DeviceBuffer<uint16_t> h(values.size()), b(values.size());
  convert_kernel<<<static_cast<unsigned>((n + 255) / 256), 256>>>(in.get(), n, h.get(), b.get());
  CLUSCOMP_CUDA_REQUIRE(cudaGetLastError());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  const std::vector<uint16_t> hd = h.download(), bd = b.download();
  int64_t bad_h = 0, bad_b = 0, first_h = -1, first_b = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (hd[i] != float_to_half_bits(values[i]) && bad_h++ == 0) first_h = i;
    if (bd[i] != float_to_bf16_bits(values[i]) && bad_b++ == 0) first_b = i;
  }
  INFO("half mismatches " << bad_h << " (first input bits 0x" << std::hex
                          << (first_h >= 0 ? float_bits(values[first_h]) : 0u) << ")");
  INFO("bf16 mismatches " << std::dec << bad_b << " (first input bits 0x" << std::hex
                          << (first_b >= 0 ? float_bits(values[first_b]) : 0u) << ")");
  REQUIRE(bad_h == 0);
  REQUIRE(bad_b == 0);

  // Widening: every half and bf16 bit pattern decodes to the same float (NaNs: both NaN).
  DeviceBuffer<float> hf(65536), bf(65536);
  widen_kernel<<<256, 256>>>(hf.get(), bf.get());
  CLUSCOMP_CUDA_REQUIRE(cudaGetLastError());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  const std::vector<float> hfd = hf.download(), bfd = bf.download();
  for (uint32_t x = 0; x < 65536; ++x) {
    const float a = half_bits_to_float(static_cast<uint16_t>(x)), c = bf16_bits_to_float(static_cast<uint16_t>(x));
    INFO("bits 0x" << std::hex << x);
    if (std::isnan(a)) {
      REQUIRE(std::isnan(hfd[x]));
    } else {
      REQUIRE(float_bits(hfd[x]) == float_bits(a));
    }
    if (std::isnan(c)) {
      REQUIRE(std::isnan(bfd[x]));
    } else {
      REQUIRE(float_bits(bfd[x]) == float_bits(c));
    }
  }
}
