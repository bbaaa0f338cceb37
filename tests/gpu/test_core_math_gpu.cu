// core/'s host-device math run on the device against the same functions on the host, bit for bit:
// the exact k-means distance and tie-break (an argmin over K centroids with near-ties), the
// per-cluster mean (plain and weighted), and the lookup GEMM's per-row step for every centroid
// type. This is the contract the GPU k-means and lookup kernels build on: the same per-element
// arithmetic on both sides, so the same answers. The GPU main skips (exit 77) without a device.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cluscomp/core/centroid_update.hpp"
#include "cluscomp/core/codebook_view.hpp"
#include "cluscomp/core/distance.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/lookup_row.hpp"
#include "support/gpu_test.cuh"

using namespace cluscomp;
using cluscomp_test::DeviceBuffer;

namespace {

constexpr int kD = 4;

// Host and device run this same function: nearest centroid (lowest index among minimal fp32
// distances) of point p, and that distance.
CLUSCOMP_HOST_DEVICE inline void nearest(const float* x, const float* c, int k, float* best_d, int32_t* best_i) {
  float bd = 0.0f;
  int32_t bi = -1;
  for (int32_t j = 0; j < k; ++j) {
    const float d = squared_distance<kD>(x, c + j * kD);
    if (bi < 0 || precedes(d, j, bd, bi)) {
      bd = d;
      bi = j;
    }
  }
  *best_d = bd;
  *best_i = bi;
}

__global__ void nearest_kernel(const float* x, int64_t n, const float* c, int k, float* d, int32_t* idx) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p < n) nearest(x + p * kD, c, k, d + p, idx + p);
}

__global__ void mean_kernel(const float* pts, const float* w, const int64_t* seg, int k, float* out, int* weighted_ok) {
  const int a = blockIdx.x * blockDim.x + threadIdx.x;
  if (a >= k || seg[a] == seg[a + 1]) return;
  weighted_ok[a] = segment_weighted_mean<kD>(pts, w, seg[a], seg[a + 1], out + a * kD) ? 1 : 0;
  if (!weighted_ok[a]) segment_mean<kD>(pts, seg[a], seg[a + 1], out + a * kD);
}

template <class T>
__global__ void lookup_row_kernel(CodebookView<T> w, const uint32_t* codes, int64_t nv, const float* x, float* acc) {
  if (blockIdx.x == 0 && threadIdx.x == 0)
    for (int64_t i = 0; i < w.in; ++i) lookup_row_step(w, i, codes + i * nv, nv, x[i], acc);
}

}  // namespace

TEST_CASE("device squared_distance + precedes give the host's argmin and distance bits", "[gpu][core]") {
  std::mt19937 rng(20261207);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int k = 257;
  const int64_t n = 4096;
  std::vector<float> c(static_cast<size_t>(k) * kD), x(static_cast<size_t>(n) * kD);
  for (float& v : c) v = g(rng);
  for (float& v : x) v = g(rng);
  // Exact ties: duplicated centroids (the lower index must win) and points on centroids.
  for (int e = 0; e < kD; ++e) c[static_cast<size_t>(200 * kD + e)] = c[static_cast<size_t>(7 * kD + e)];
  for (int64_t p = 0; p < 64; ++p)
    for (int e = 0; e < kD; ++e) x[static_cast<size_t>(p * kD + e)] = c[static_cast<size_t>((p % k) * kD + e)];
  std::vector<float> hd(static_cast<size_t>(n));
  std::vector<int32_t> hi(static_cast<size_t>(n));
  for (int64_t p = 0; p < n; ++p) nearest(&x[static_cast<size_t>(p * kD)], c.data(), k, &hd[static_cast<size_t>(p)], &hi[static_cast<size_t>(p)]);
  DeviceBuffer<float> dx(x.data(), x.size()), dc(c.data(), c.size()), dd(static_cast<size_t>(n));
  DeviceBuffer<int32_t> di(static_cast<size_t>(n));
  nearest_kernel<<<static_cast<unsigned>((n + 127) / 128), 128>>>(dx.get(), n, dc.get(), k, dd.get(), di.get());
  CLUSCOMP_CUDA_REQUIRE(cudaGetLastError());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  const std::vector<float> gd = dd.download();
  const std::vector<int32_t> gi = di.download();
  REQUIRE(std::memcmp(gd.data(), hd.data(), hd.size() * sizeof(float)) == 0);
  REQUIRE(gi == hi);
  REQUIRE(hi[7] == 7);  // point 7 sits on centroid 7 and its duplicate 200: the lower index wins
}

TEST_CASE("device segment means equal the host's bits", "[gpu][core]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::uniform_real_distribution<float> u(0.0f, 2.0f);
  const int k = 64;
  std::vector<int64_t> seg(static_cast<size_t>(k + 1), 0);
  for (int a = 0; a < k; ++a) seg[static_cast<size_t>(a + 1)] = seg[static_cast<size_t>(a)] + (a % 5 == 0 ? 0 : 1 + a * 7 % 23);
  const int64_t n = seg.back();
  std::vector<float> pts(static_cast<size_t>(n) * kD), w(static_cast<size_t>(n));
  for (float& v : pts) v = g(rng);
  for (float& v : w) v = u(rng);
  for (int64_t i = seg[3]; i < seg[4]; ++i) w[static_cast<size_t>(i)] = 0.0f;  // a zero-weight cluster: plain mean
  std::vector<float> host(static_cast<size_t>(k) * kD, 0.0f);
  std::vector<int> host_ok(static_cast<size_t>(k), -1);
  for (int a = 0; a < k; ++a) {
    if (seg[static_cast<size_t>(a)] == seg[static_cast<size_t>(a + 1)]) continue;
    float* o = &host[static_cast<size_t>(a) * kD];
    host_ok[static_cast<size_t>(a)] = segment_weighted_mean<kD>(pts.data(), w.data(), seg[static_cast<size_t>(a)], seg[static_cast<size_t>(a + 1)], o) ? 1 : 0;
    if (!host_ok[static_cast<size_t>(a)]) segment_mean<kD>(pts.data(), seg[static_cast<size_t>(a)], seg[static_cast<size_t>(a + 1)], o);
  }
  REQUIRE(host_ok[3] == 0);
  DeviceBuffer<float> dp(pts.data(), pts.size()), dw(w.data(), w.size()), dout(host.size());
  DeviceBuffer<int64_t> dseg(seg.data(), seg.size());
  DeviceBuffer<int> dok(static_cast<size_t>(k));
  dout.fill_bytes(0);
  dok.fill_bytes(0xff);
  mean_kernel<<<1, k>>>(dp.get(), dw.get(), dseg.get(), k, dout.get(), dok.get());
  CLUSCOMP_CUDA_REQUIRE(cudaGetLastError());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  const std::vector<float> dev = dout.download();
  REQUIRE(std::memcmp(dev.data(), host.data(), host.size() * sizeof(float)) == 0);
  REQUIRE(dok.download() == host_ok);
}

TEMPLATE_TEST_CASE("device lookup_row_step equals the host's bits", "[gpu][core]", float, f16, bf16) {
  using T = TestType;
  std::mt19937 rng(11);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int64_t in = 37, out = 30, k = 16;
  const int d = 4, s = 3;
  const int64_t out_pad = (out + d - 1) / d * d, nv = out_pad / d;
  std::vector<T> cb(static_cast<size_t>(s * k * d));
  for (T& v : cb) v = from_float<T>(g(rng));
  std::vector<uint32_t> codes(static_cast<size_t>(in * nv));
  for (uint32_t& c : codes) c = static_cast<uint32_t>(rng() % k);
  std::vector<float> x(static_cast<size_t>(in));
  for (float& v : x) v = g(rng);
  CodebookView<T> w{cb.data(), nullptr, out, in, out_pad, k, d, s, 16};
  std::vector<float> host(static_cast<size_t>(nv * d), 0.0f);
  for (int64_t i = 0; i < in; ++i) lookup_row_step(w, i, &codes[static_cast<size_t>(i * nv)], nv, x[static_cast<size_t>(i)], host.data());
  DeviceBuffer<T> dcb(cb.data(), cb.size());
  DeviceBuffer<uint32_t> dcodes(codes.data(), codes.size());
  DeviceBuffer<float> dx(x.data(), x.size()), dacc(host.size());
  dacc.fill_bytes(0);
  CodebookView<T> dw = w;
  dw.centroids = dcb.get();
  lookup_row_kernel<<<1, 1>>>(dw, dcodes.get(), nv, dx.get(), dacc.get());
  CLUSCOMP_CUDA_REQUIRE(cudaGetLastError());
  CLUSCOMP_CUDA_REQUIRE(cudaDeviceSynchronize());
  const std::vector<float> dev = dacc.download();
  REQUIRE(std::memcmp(dev.data(), host.data(), host.size() * sizeof(float)) == 0);
}
