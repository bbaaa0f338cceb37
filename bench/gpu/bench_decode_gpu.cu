// GPU decode benchmark (no Google Benchmark: it runs on the lent GPU machine, which has none).
//
// For each case, decode_dense_gpu of a random clustered matrix to dense fp32 (W and Wt layouts),
// timed with CUDA events, against two baselines measured in the same process on the same device:
//   - copy: cudaMemcpyAsync device-to-device of the dense fp32 matrix (what reading a dense fp32
//     W costs and writing it again: the "just store fp32" alternative);
//   - fill: cudaMemsetAsync of the same bytes (the device's write bandwidth, the ceiling of a
//     decode whose input is small);
//   - generic: the same decode through the generic grid-stride kernels (the centroid table moved
//     by 2 bytes, so the specialised kernels' vector loads do not apply): the kernels before the
//     specialised ones existed.
// Each timing is the median of --reps launches after two warm-ups. Before timing, each case's GPU
// output is compared bit for bit with the CPU decoder (codebook/decode.hpp); a mismatch fails.
// Output: a table, then `RESULT gpu-decode ...` (geometric means over the cases).
//
//   bench_decode_gpu [--reps N] [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/cuda/decode.cuh"
#include "support/codebook_data.hpp"

using namespace cluscomp;

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_decode_gpu: %s: %s: %s\n", what, cudaGetErrorName(e), cudaGetErrorString(e));
    std::exit(1);
  }
}

void check_status(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench_decode_gpu: %s: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}

template <class F>
double median_ms(int reps, cudaStream_t stream, F&& launch) {
  cudaEvent_t a, b;
  check_cuda(cudaEventCreate(&a), "cudaEventCreate");
  check_cuda(cudaEventCreate(&b), "cudaEventCreate");
  for (int w = 0; w < 2; ++w) launch();
  check_cuda(cudaStreamSynchronize(stream), "warm-up");
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    check_cuda(cudaEventRecord(a, stream), "cudaEventRecord");
    launch();
    check_cuda(cudaEventRecord(b, stream), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms);
  }
  check_cuda(cudaEventDestroy(a), "cudaEventDestroy");
  check_cuda(cudaEventDestroy(b), "cudaEventDestroy");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Case {
  const char* name;
  int64_t out, in;
  int d;
  int64_t k;
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 21;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      reps = std::max(3, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: bench_decode_gpu [--reps N] [--quick]\n");
      return 2;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("bench_decode_gpu: no CUDA device, nothing measured\n");
    return 77;
  }
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s (sm_%d%d, %d SMs, L2 %d MiB)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.l2CacheSize >> 20);

  // 4096x4096 and 11008x4096 (a 7B model's attention and MLP shapes); fp16 centroids; the
  // settings of CLUSCOMP.md §1 (d = 4 / 8 with K = 65536, ~4 / ~2 bpw) and a small-K 2-bpw one.
  std::vector<Case> cases = {
      {"4096x4096 d4 K65536", 4096, 4096, 4, 65536},   {"4096x4096 d8 K65536", 4096, 4096, 8, 65536},
      {"11008x4096 d4 K65536", 11008, 4096, 4, 65536}, {"11008x4096 d8 K65536", 11008, 4096, 8, 65536},
      {"11008x4096 d4 K256", 11008, 4096, 4, 256},
  };
  if (quick) cases.resize(1);

  cudaStream_t stream;
  check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  std::mt19937_64 rng(2026);
  std::printf("%-22s %-3s %6s %9s %10s %9s %9s %10s %9s %9s\n", "case", "lay", "bpw", "decode_ms", "generic_ms",
              "copy_ms", "fill_ms", "out_GB/s", "vs_copy", "of_fill");
  double log_vs_copy = 0, log_of_fill = 0, log_gbs = 0, log_vs_generic = 0;
  int n = 0;
  double fill_gbs_sum = 0, copy_gbs_sum = 0;
  for (const Case& c : cases) {
    const CodebookTensor t =
        cluscomp_test::random_tensor(cluscomp_test::make_shape(c.out, c.in, c.d, c.k, 1, 0, DType::kF16), rng);
    const size_t elems = static_cast<size_t>(c.out * c.in);
    const size_t bytes = elems * sizeof(float);
    unsigned char* d_cent = nullptr;
    uint32_t* d_codes = nullptr;
    float *d_out = nullptr, *d_src = nullptr;
    unsigned char* d_cent_shifted = nullptr;  // the table 2 bytes into its buffer
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&d_cent), t.centroid_bytes().size()), "cudaMalloc");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&d_cent_shifted), t.centroid_bytes().size() + 2), "cudaMalloc");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&d_codes), t.code_words().size() * 4), "cudaMalloc");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&d_out), bytes), "cudaMalloc");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&d_src), bytes), "cudaMalloc");
    check_cuda(cudaMemcpy(d_cent, t.centroid_bytes().data(), t.centroid_bytes().size(), cudaMemcpyHostToDevice),
               "upload centroids");
    check_cuda(cudaMemcpy(d_cent_shifted + 2, t.centroid_bytes().data(), t.centroid_bytes().size(), cudaMemcpyHostToDevice),
               "upload centroids");  // the shifted copy, for the generic kernels
    check_cuda(cudaMemcpy(d_codes, t.code_words().data(), t.code_words().size() * 4, cudaMemcpyHostToDevice),
               "upload codes");
    check_cuda(cudaMemset(d_src, 0x3c, bytes), "cudaMemset");

    const double copy_ms = median_ms(reps, stream, [&] {
      check_cuda(cudaMemcpyAsync(d_out, d_src, bytes, cudaMemcpyDeviceToDevice, stream), "copy");
    });
    const double fill_ms = median_ms(reps, stream, [&] {
      check_cuda(cudaMemsetAsync(d_out, 0, bytes, stream), "fill");
    });
    fill_gbs_sum += bytes / (fill_ms * 1e6);
    copy_gbs_sum += 2.0 * bytes / (copy_ms * 1e6);

    for (DecodeLayout layout : {DecodeLayout::kW, DecodeLayout::kWt}) {
      const bool w = layout == DecodeLayout::kW;
      DecodeGpuArgs args;
      args.codebook = make_any_codebook_view(t.shape(), d_cent, d_codes);
      args.layout = layout;
      args.output = w ? make_matrix_view(d_out, c.out, c.in) : make_matrix_view(d_out, c.in, c.out);
      // Exactness first: the GPU's output against the CPU decoder, bit for bit.
      check_status(decode_dense_gpu(args, stream), "decode_dense_gpu");
      check_cuda(cudaStreamSynchronize(stream), "decode");
      std::vector<float> gpu(elems), cpu(elems);
      check_cuda(cudaMemcpy(gpu.data(), d_out, bytes, cudaMemcpyDeviceToHost), "download");
      const MatrixView<float> cv =
          w ? make_matrix_view(cpu.data(), c.out, c.in) : make_matrix_view(cpu.data(), c.in, c.out);
      check_status(decode_dense(t.any_view(), layout, cv), "decode_dense (CPU)");
      if (std::memcmp(gpu.data(), cpu.data(), bytes) != 0) {
        std::fprintf(stderr, "bench_decode_gpu: %s %s: GPU decode differs from the CPU decoder\n", c.name,
                     decode_layout_name(layout));
        return 1;
      }
      const double ms = median_ms(reps, stream, [&] { check_status(decode_dense_gpu(args, stream), "decode"); });
      DecodeGpuArgs generic = args;
      generic.codebook = make_any_codebook_view(t.shape(), d_cent_shifted + 2, d_codes);
      const double generic_ms =
          median_ms(reps, stream, [&] { check_status(decode_dense_gpu(generic, stream), "generic decode"); });
      const double gbs = bytes / (ms * 1e6);
      const double vs_copy = copy_ms / ms, of_fill = fill_ms / ms;
      std::printf("%-22s %-3s %6.3f %9.4f %10.4f %9.4f %9.4f %10.1f %9.3f %9.3f\n", c.name,
                  decode_layout_name(layout), t.shape().bpw_packed(), ms, generic_ms, copy_ms, fill_ms, gbs, vs_copy,
                  of_fill);
      log_vs_generic += std::log(generic_ms / ms);
      log_vs_copy += std::log(vs_copy);
      log_of_fill += std::log(of_fill);
      log_gbs += std::log(gbs);
      ++n;
    }
    check_cuda(cudaFree(d_cent), "cudaFree");
    check_cuda(cudaFree(d_cent_shifted), "cudaFree");
    check_cuda(cudaFree(d_codes), "cudaFree");
    check_cuda(cudaFree(d_out), "cudaFree");
    check_cuda(cudaFree(d_src), "cudaFree");
  }
  check_cuda(cudaStreamDestroy(stream), "cudaStreamDestroy");
  const double nc = static_cast<double>(cases.size());
  std::printf("decode_ms: median of %d; copy: device-to-device fp32 copy of the same matrix (GB/s counts read + "
              "write); fill: cudaMemset of it; generic: the grid-stride kernels; vs_copy = copy_ms / decode_ms; of_fill = "
              "fill_ms / decode_ms; vs_generic = generic_ms / decode_ms\n",
              reps);
  std::printf("RESULT gpu-decode gpu=\"%s\" out_gbs=%.1f vs_copy=%.3f of_fill=%.3f vs_generic=%.3f "
              "fill_gbs=%.1f copy_gbs=%.1f\n",
              prop.name, std::exp(log_gbs / n), std::exp(log_vs_copy / n), std::exp(log_of_fill / n),
              std::exp(log_vs_generic / n), fill_gbs_sum / nc, copy_gbs_sum / nc);
  return 0;
}
