// CUDA lookup GEMV/GEMM benchmark (plain CUDA events: it runs on the lent GPU machine, which has
// no Google Benchmark). Run by scripts/gpu-check.sh and `scripts/bench.sh lookup-gpu`.
//
// For each LLaMA shape W (out x in) = 4096x4096, 11008x4096, 4096x11008, 8192x28672, each setting
// (fp16 centroids; the bpw search's picks for such shapes, docs/benchmarks.md lookup-gemm, and
// K = 65536) and M = 1, 4, 16, 256, with x fp16 and y fp32:
//   - ours: lookup_gemm_gpu, path kAuto (lookup kernel for M <= 16, decode + cuBLAS above), table
//     placement kAuto (shared memory when it fits 64 KiB) and, where the table fits, also kL2;
//   - cuBLAS fp16: cublasGemmEx on a dense fp16 W (fp32 accumulation and output): the baseline;
//   - decode + cuBLAS: our kDecodeCublas path at every M (what a lookup kernel must beat).
// Weights (codes + centroids, and the dense fp16 copies) rotate over enough copies to pass 2x L2,
// so every call reads them from HBM. Each timing: median over --rounds rounds of the mean of
// --reps calls. Before timing, each (shape, setting) checks ours at M = 1 and 16 against the
// decode + cuBLAS result bit for bit (small-integer data, where both are exact); a mismatch fails.
// Reports time, GB/s of compressed bytes (codes + table + x + y), that as a fraction of the
// measured copy bandwidth (cudaMemcpy device to device, read bytes / time), and the ratio to cuBLAS.
// Last line:
//   RESULT lookup-gpu gemv_speedup_smem=... gemv_speedup_65536=... gemm256_ratio=... bw_fraction=... gpu=NAME
// gemv_speedup_smem: geometric mean over shapes of cuBLAS fp16 time / ours at M = 1, setting
// 3bpw-d4-K4096 (table 32 KiB, in shared memory); gemv_speedup_65536: the same for d4-K65536
// (512 KiB table, through L2); gemm256_ratio: ours / cuBLAS fp16 at M = 256 (geometric mean);
// bw_fraction: compressed GB/s / copy GB/s at M = 1, 2bpw-d8-K32768 (geometric mean over shapes).
//
//   bench_lookup_gpu [--quick] [--reps N] [--rounds N]
#include <cublas_v2.h>
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
#include "cluscomp/cuda/lookup_gemm.cuh"
#include "support/lookup_data.hpp"

using namespace cluscomp;

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_lookup_gpu: %s: %s: %s\n", what, cudaGetErrorName(e), cudaGetErrorString(e));
    std::exit(1);
  }
}

void check_status(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench_lookup_gpu: %s: %s\n", what, s.message().c_str());
    std::exit(1);
  }
}

void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "bench_lookup_gpu: %s: cuBLAS status %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

struct Options {
  bool quick = false;
  int reps = 20;
  int rounds = 5;
};

// Median over rounds of the mean time (ms) of `reps` calls of f(call index).
template <class F>
double time_ms(const Options& o, cudaStream_t stream, F&& f) {
  cudaEvent_t a, b;
  check_cuda(cudaEventCreate(&a), "cudaEventCreate");
  check_cuda(cudaEventCreate(&b), "cudaEventCreate");
  for (int w = 0; w < 2; ++w) f(w);
  std::vector<double> t;
  int call = 0;
  for (int r = 0; r < o.rounds; ++r) {
    check_cuda(cudaEventRecord(a, stream), "cudaEventRecord");
    for (int i = 0; i < o.reps; ++i) f(call++);
    check_cuda(cudaEventRecord(b, stream), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms / o.reps);
  }
  check_cuda(cudaEventDestroy(a), "cudaEventDestroy");
  check_cuda(cudaEventDestroy(b), "cudaEventDestroy");
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Setting {
  const char* name;
  int d;
  int64_t k;
};

struct Shape {
  int64_t out, in;
};

// n device buffers of `bytes` each, one allocation each (so their addresses differ by whole pages).
struct Copies {
  std::vector<void*> p;
  Copies(int n, size_t bytes) {
    p.resize(static_cast<size_t>(n));
    for (auto& q : p) check_cuda(cudaMalloc(&q, bytes), "cudaMalloc (weight copies)");
  }
  ~Copies() {
    for (void* q : p) (void)cudaFree(q);
  }
  Copies(const Copies&) = delete;
  Copies& operator=(const Copies&) = delete;
};

int copies_for(size_t bytes, size_t l2) {
  const size_t n = (2 * l2 + bytes - 1) / bytes + 1;
  return static_cast<int>(std::min<size_t>(n, 64));
}

double geomean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += std::log(x);
  return std::exp(s / static_cast<double>(v.size()));
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") opt.quick = true;
    else if (a == "--reps" && i + 1 < argc) opt.reps = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc) opt.rounds = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_lookup_gpu [--quick] [--reps N] [--rounds N]\n");
      return 2;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "bench_lookup_gpu: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const size_t l2 = static_cast<size_t>(prop.l2CacheSize);
  std::printf("device: %s (sm_%d%d, %d SMs, L2 %zu MiB)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, l2 >> 20);
  cudaStream_t stream;
  check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  cublasHandle_t cublas;
  check_cublas(cublasCreate(&cublas), "cublasCreate");
  check_cublas(cublasSetStream(cublas, stream), "cublasSetStream");

  // Copy bandwidth: read bytes / time of a 1 GiB device-to-device copy.
  double copy_gbs = 0;
  {
    const size_t bytes = size_t{1} << 30;
    Copies buf(2, bytes);
    const double ms = time_ms(opt, stream, [&](int) {
      check_cuda(cudaMemcpyAsync(buf.p[1], buf.p[0], bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    });
    copy_gbs = static_cast<double>(bytes) / (ms * 1e6);
    std::printf("copy bandwidth: %.0f GB/s (read bytes of a 1 GiB device-to-device copy)\n", copy_gbs);
  }

  std::vector<Shape> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {8192, 28672}};
  if (opt.quick) shapes = {{4096, 4096}, {11008, 4096}};
  const std::vector<Setting> settings = {
      {"4bpw-d4-K32768", 4, 32768}, {"3bpw-d4-K4096", 4, 4096}, {"2bpw-d4-K512", 4, 512},
      {"2bpw-d8-K32768", 8, 32768}, {"d4-K65536", 4, 65536}};
  const std::vector<int64_t> ms_list = {1, 4, 16, 256};
  std::vector<double> speedup_smem, speedup_65536, ratio256, bw_fraction;
  bool exact_ok = true;

  std::printf("\n| shape | setting | bpw | M | placement | ours us | cuBLAS fp16 us | decode+cuBLAS us | "
              "cuBLAS / ours | ours GB/s | of copy BW |\n");
  std::printf("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Shape& sh_ : shapes) {
    // Dense fp16 W copies for the baseline (values do not change cuBLAS's time: zeros).
    const size_t dense_bytes = static_cast<size_t>(sh_.out * sh_.in) * 2;
    const int dense_n = copies_for(dense_bytes, l2);
    Copies dense(dense_n, dense_bytes);
    for (void* q : dense.p) check_cuda(cudaMemset(q, 0, dense_bytes), "cudaMemset");
    const int64_t mmax = ms_list.back();
    // x (mmax, in) fp16 small integers; y fp32.
    std::mt19937 rng(42);
    std::vector<float> xf = cluscomp_test::lookup_x(mmax * sh_.in, true, rng);
    std::vector<uint16_t> xh(xf.size());
    for (size_t e = 0; e < xf.size(); ++e) xh[e] = f16(xf[e]).bits;
    void* x = nullptr;
    float* y = nullptr;
    float* y_ref = nullptr;
    check_cuda(cudaMalloc(&x, xh.size() * 2), "cudaMalloc x");
    check_cuda(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice), "upload x");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&y), static_cast<size_t>(mmax * sh_.out) * 4), "cudaMalloc y");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&y_ref), static_cast<size_t>(mmax * sh_.out) * 4), "cudaMalloc y");

    for (const Setting& st : settings) {
      CodebookShape cs;
      cs.out = sh_.out;
      cs.in = sh_.in;
      cs.d = st.d;
      cs.k = st.k;
      cs.centroid_dtype = DType::kF16;
      const CodebookTensor t = cluscomp_test::lookup_tensor(cs, true, rng);
      const size_t code_bytes = t.code_words().size() * 4;
      const size_t table_bytes = t.centroid_bytes().size();
      const size_t copy_bytes = (code_bytes + 255) / 256 * 256 + table_bytes;
      const int n = copies_for(copy_bytes, l2);
      Copies w(n, copy_bytes);
      for (void* q : w.p) {
        check_cuda(cudaMemcpy(q, t.code_words().data(), code_bytes, cudaMemcpyHostToDevice), "upload codes");
        check_cuda(cudaMemcpy(static_cast<unsigned char*>(q) + (code_bytes + 255) / 256 * 256,
                              t.centroid_bytes().data(), table_bytes, cudaMemcpyHostToDevice),
                   "upload centroids");
      }
      auto args_for = [&](int copy, int64_t m, LookupGpuPath path, LookupTablePlacement pl, float* out) {
        unsigned char* base = static_cast<unsigned char*>(w.p[static_cast<size_t>(copy % n)]);
        LookupGemmGpuArgs a;
        a.w = make_any_codebook_view(cs, base + (code_bytes + 255) / 256 * 256, reinterpret_cast<uint32_t*>(base));
        a.x = x;
        a.x_dtype = DType::kF16;
        a.ldx = cs.in;
        a.y = out;
        a.y_dtype = DType::kF32;
        a.ldy = cs.out;
        a.m = m;
        a.path = path;
        a.placement = pl;
        a.cublas = cublas;
        return a;
      };
      // One workspace, the largest any call below needs (the lookup path is forced only at m <= 16).
      size_t ws_bytes = 0;
      for (int64_t m : ms_list)
        for (LookupGpuPath p : {LookupGpuPath::kAuto, LookupGpuPath::kDecodeCublas, LookupGpuPath::kLookup})
          if (p != LookupGpuPath::kLookup || m <= lookup_gemv_map::kMaxRows)
            ws_bytes = std::max(ws_bytes, lookup_gemm_gpu_workspace_size(args_for(0, m, p, LookupTablePlacement::kAuto, y)));
      void* ws = nullptr;
      check_cuda(cudaMalloc(&ws, ws_bytes), "cudaMalloc workspace");
      auto run = [&](int copy, int64_t m, LookupGpuPath p, LookupTablePlacement pl, float* out) {
        LookupGemmGpuArgs a = args_for(copy, m, p, pl, out);
        a.workspace = ws;
        a.workspace_bytes = ws_bytes;
        check_status(lookup_gemm_gpu(a, stream), "lookup_gemm_gpu");
      };
      const bool fits = static_cast<int64_t>(table_bytes) <= kLookupSharedTableBytes;
      // Exactness: the lookup path against decode + cuBLAS, bit for bit (integer data).
      for (int64_t m : {int64_t{1}, int64_t{16}})
        for (LookupTablePlacement pl : {LookupTablePlacement::kAuto, LookupTablePlacement::kL2}) {
          run(0, m, LookupGpuPath::kLookup, pl, y);
          run(0, m, LookupGpuPath::kDecodeCublas, LookupTablePlacement::kAuto, y_ref);
          check_cuda(cudaStreamSynchronize(stream), "exactness check");
          std::vector<float> a(static_cast<size_t>(m * cs.out)), b(a.size());
          check_cuda(cudaMemcpy(a.data(), y, a.size() * 4, cudaMemcpyDeviceToHost), "download");
          check_cuda(cudaMemcpy(b.data(), y_ref, b.size() * 4, cudaMemcpyDeviceToHost), "download");
          if (std::memcmp(a.data(), b.data(), a.size() * 4) != 0) {
            std::fprintf(stderr, "bench_lookup_gpu: MISMATCH lookup vs decode+cuBLAS: %lldx%lld %s M=%lld\n",
                         static_cast<long long>(cs.out), static_cast<long long>(cs.in), st.name,
                         static_cast<long long>(m));
            exact_ok = false;
          }
        }
      const double bpw = static_cast<double>((code_bytes + table_bytes) * 8) / static_cast<double>(cs.out * cs.in);
      for (int64_t m : ms_list) {
        const double t_cublas = time_ms(opt, stream, [&](int c) {
          const float alpha = 1, beta = 0;
          check_cublas(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(cs.out), static_cast<int>(m),
                                    static_cast<int>(cs.in), &alpha, dense.p[static_cast<size_t>(c % dense_n)],
                                    CUDA_R_16F, static_cast<int>(cs.in), x, CUDA_R_16F, static_cast<int>(cs.in), &beta,
                                    y_ref, CUDA_R_32F, static_cast<int>(cs.out), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT),
                       "cublasGemmEx");
        });
        const double t_dec = time_ms(opt, stream, [&](int c) {
          run(c, m, LookupGpuPath::kDecodeCublas, LookupTablePlacement::kAuto, y_ref);
        });
        std::vector<LookupTablePlacement> pls = {LookupTablePlacement::kAuto};
        if (fits && m <= 16) pls.push_back(LookupTablePlacement::kL2);
        for (LookupTablePlacement pl : pls) {
          const double t_ours = time_ms(opt, stream, [&](int c) { run(c, m, LookupGpuPath::kAuto, pl, y); });
          const double bytes = static_cast<double>(code_bytes + table_bytes) + static_cast<double>(m * cs.in * 2) +
                               static_cast<double>(m * cs.out * 4);
          const double gbs = bytes / (t_ours * 1e6);
          const char* where = m > 16 ? "decode+cuBLAS" : pl == LookupTablePlacement::kL2 ? "L2" : fits ? "shared" : "L2";
          std::printf("| %lldx%lld | %s | %.3f | %lld | %s | %.1f | %.1f | %.1f | %.3f | %.0f | %.3f |\n",
                      static_cast<long long>(cs.out), static_cast<long long>(cs.in), st.name, bpw,
                      static_cast<long long>(m), where, t_ours * 1e3, t_cublas * 1e3, t_dec * 1e3, t_cublas / t_ours,
                      gbs, gbs / copy_gbs);
          std::fflush(stdout);
          if (pl != LookupTablePlacement::kAuto) continue;
          if (m == 1 && std::strcmp(st.name, "3bpw-d4-K4096") == 0) speedup_smem.push_back(t_cublas / t_ours);
          if (m == 1 && std::strcmp(st.name, "d4-K65536") == 0) speedup_65536.push_back(t_cublas / t_ours);
          if (m == 1 && std::strcmp(st.name, "2bpw-d8-K32768") == 0) bw_fraction.push_back(gbs / copy_gbs);
          if (m == 256) ratio256.push_back(t_ours / t_cublas);
        }
      }
      check_cuda(cudaFree(ws), "cudaFree");
    }
    check_cuda(cudaFree(x), "cudaFree");
    check_cuda(cudaFree(y), "cudaFree");
    check_cuda(cudaFree(y_ref), "cudaFree");
  }
  check_cublas(cublasDestroy(cublas), "cublasDestroy");
  check_cuda(cudaStreamDestroy(stream), "cudaStreamDestroy");
  std::printf("\nexactness (lookup path vs decode + cuBLAS, integer data, M = 1 and 16): %s\n",
              exact_ok ? "bit-identical" : "MISMATCH");
  std::string gpu = prop.name;
  for (char& ch : gpu)
    if (ch == ' ') ch = '_';
  std::printf("RESULT lookup-gpu gemv_speedup_smem=%.9g gemv_speedup_65536=%.9g gemm256_ratio=%.9g bw_fraction=%.9g "
              "gpu=%s\n",
              geomean(speedup_smem), geomean(speedup_65536), geomean(ratio256), geomean(bw_fraction), gpu.c_str());
  return exact_ok ? 0 : 1;
}
