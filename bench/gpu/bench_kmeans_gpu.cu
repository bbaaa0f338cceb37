// GPU k-means benchmark (issue 21; no Google Benchmark: it runs on the lent GPU machine).
//
// 1. Exactness first: kmeans() with Device::kCuda against kmeans() with kCpu on 1M weight-like
//    points, d = 4, K = 4096, 4 iterations: centroids, codes and objectives must be equal bit
//    for bit, else exit 1.
// 2. Per-iteration time of the GPU Lloyd run (cuda/kmeans_gpu.cuh, brute-force assignment) at the
//    reference's size, N = 58720256 synthetic weight-like points (Student-t, 4 dof, x 0.02, bf16,
//    as bench/bench_kmeans.cpp), K = 65536, for d = 4, 8 and 16: CUDA events around two runs of
//    the host API with I1 and I2 iterations; per iteration = (t(I2) - t(I1)) / (I2 - I1), so the
//    start (first sort) and the final reassignment cancel out.
// 3. Baseline in the same run: a PyTorch brute-force Lloyd (bench/gpu/kmeans_torch.py: GEMM-form
//    distances, argmin, index_add_ means) on the same GPU from the same points and initial
//    centroids (d = 4), when python3 with a CUDA torch is there; else speedup_vs_torch=nan.
//    --cpu adds this project's CPU path at d = 4 for the per-iteration ratio (minutes).
// Last line: RESULT kmeans-gpu iter_ms_d4=... iter_ms_d8=... iter_ms_d16=... speedup_vs_torch=...
// model70b_min=... gpu=NAME, model70b_min being the clustering time of a 70B LLaMA's linear
// weights (LLaMA-2-70B shapes: 80 layers of 8192^2 x 2 + 8192 x 1024 x 2 + 8192 x 28672 x 3, d = 4,
// K = 65536 per matrix, 20 iterations + the final assignment), extrapolated from iter_ms_d4 by N
// (the brute force is linear in N at fixed K).
//
//   bench_kmeans_gpu [--n N] [--quick] [--cpu] [--torch PATH_TO_kmeans_torch.py]
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cluscomp/cluster/kmeans.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/cuda/kmeans_gpu.cuh"
#include "cluscomp/host/cpu_features.hpp"

using namespace cluscomp;

namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_kmeans_gpu: %s: %s: %s\n", what, cudaGetErrorName(e), cudaGetErrorString(e));
    std::exit(1);
  }
}

void check_status(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench_kmeans_gpu: %s: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}

// Weight-like points, generated in parallel chunks (each chunk its own seed).
std::vector<float> weight_like(int64_t n, int d, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n) * static_cast<size_t>(d));
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t total = n * d, per = (total + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(t));
      std::student_t_distribution<float> st(4.0f);
      for (int64_t i = t * per; i < std::min(total, (t + 1) * per); ++i)
        x[static_cast<size_t>(i)] = static_cast<float>(bf16(0.02f * st(rng)));
    });
  for (auto& th : pool) th.join();
  return x;
}

bool exactness_check() {
  const int64_t n = 1 << 20, k = 4096;
  const int d = 4;
  const std::vector<float> x = weight_like(n, d, 5);
  KMeansOptions o;
  o.k = k;
  o.iterations = 4;
  o.seed = 17;
  std::vector<std::vector<float>> cen[2];
  std::vector<double> obj[2];
  KMeansResult r[2];
  for (int b = 0; b < 2; ++b) {
    o.device = b == 0 ? Device::kCpu : Device::kCuda;
    o.progress = [&, b](const KMeansProgress& p) {
      obj[b].push_back(p.objective);
      cen[b].emplace_back(p.centroids.data, p.centroids.data + k * d);
      return true;
    };
    check_status(kmeans(make_matrix_view<const float>(x.data(), n, d), o, &r[b]), b == 0 ? "kmeans cpu" : "kmeans cuda");
  }
  bool same = obj[0] == obj[1] && cen[0] == cen[1] && r[0].codes == r[1].codes && r[0].centroids == r[1].centroids &&
              r[0].final_objective == r[1].final_objective;
  std::printf("exactness (N = %lld, d = 4, K = 4096, 4 iterations, GPU vs CPU): %s\n", static_cast<long long>(n),
              same ? "bit-identical" : "MISMATCH");
  return same;
}

struct Timed {
  double iter_ms = 0;
  double start_ms = 0;  // t(I1) - I1 * iter_ms: the first sort, the final assignment, transfers
};

// The GPU Lloyd run on x (n, d) with the first K distinct points of a seeded permutation as the
// initial centroids (the CPU path's init), timed at i1 and i2 iterations.
Timed time_gpu(const std::vector<float>& x, int64_t n, int d, int64_t k, int i1, int i2, std::vector<float>* init_out) {
  KMeansOptions o;
  o.k = k;
  o.seed = 3;
  const auto view = make_matrix_view<const float>(x.data(), n, d);
  std::vector<float> init = kmeans_initial_centroids(view, o);
  std::vector<uint32_t> first(static_cast<size_t>(n));
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  switch (d) {
    case 4: cluster_detail::kmeans_first_labels<4>(cpu_has_avx2(), init.data(), k, x.data(), n, threads, first.data()); break;
    case 8: cluster_detail::kmeans_first_labels<8>(cpu_has_avx2(), init.data(), k, x.data(), n, threads, first.data()); break;
    case 16: cluster_detail::kmeans_first_labels<16>(cpu_has_avx2(), init.data(), k, x.data(), n, threads, first.data()); break;
    default: std::fprintf(stderr, "bench_kmeans_gpu: d = %d\n", d); std::exit(2);
  }
  size_t ws = 0;
  check_status(kmeans_gpu_lloyd_workspace_size(n, k, d, false, &ws), "workspace size");
  float *d_x = nullptr, *d_init = nullptr, *d_cen = nullptr;
  uint32_t *d_first = nullptr, *d_codes = nullptr;
  void* d_ws = nullptr;
  const size_t xb = x.size() * sizeof(float), cb = init.size() * sizeof(float);
  check_cuda(cudaMalloc(&d_x, xb), "cudaMalloc points");
  check_cuda(cudaMalloc(&d_init, cb), "cudaMalloc init");
  check_cuda(cudaMalloc(&d_cen, cb), "cudaMalloc centroids");
  check_cuda(cudaMalloc(&d_first, static_cast<size_t>(n) * 4), "cudaMalloc first labels");
  check_cuda(cudaMalloc(&d_codes, static_cast<size_t>(n) * 4), "cudaMalloc codes");
  check_cuda(cudaMalloc(&d_ws, ws), "cudaMalloc workspace");
  check_cuda(cudaMemcpy(d_x, x.data(), xb, cudaMemcpyHostToDevice), "upload points");
  check_cuda(cudaMemcpy(d_init, init.data(), cb, cudaMemcpyHostToDevice), "upload init");
  check_cuda(cudaMemcpy(d_first, first.data(), static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice), "upload labels");
  cudaStream_t stream;
  check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaEvent_t a, b;
  check_cuda(cudaEventCreate(&a), "cudaEventCreate");
  check_cuda(cudaEventCreate(&b), "cudaEventCreate");
  auto run = [&](int iterations) {
    KMeansGpuLloydArgs args;
    args.points = d_x;
    args.first_labels = d_first;
    args.initial_centroids = d_init;
    args.n = n;
    args.k = k;
    args.d = d;
    args.iterations = iterations;
    args.seed = o.seed;
    args.centroids = d_cen;
    args.codes = d_codes;
    args.workspace = d_ws;
    args.workspace_bytes = ws;
    cluster_detail::LloydLoopResult r;
    check_cuda(cudaEventRecord(a, stream), "cudaEventRecord");
    check_status(kmeans_gpu_lloyd(args, &r, stream), "kmeans_gpu_lloyd");
    check_cuda(cudaEventRecord(b, stream), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    if (r.fixed_point_iteration >= 0)
      std::printf("  (note: fixed point at iteration %d: later iterations cost nothing)\n", r.fixed_point_iteration);
    return static_cast<double>(ms);
  };
  run(0);  // warm-up: module load, first touch
  const double t1 = run(i1), t2 = run(i2);
  Timed t;
  t.iter_ms = (t2 - t1) / (i2 - i1);
  t.start_ms = t1 - i1 * t.iter_ms;
  std::printf("d = %2d  N = %lld  K = %lld  workspace %.2f GiB  t(%d) = %.1f ms  t(%d) = %.1f ms  per iteration %.2f ms\n", d,
              static_cast<long long>(n), static_cast<long long>(k), static_cast<double>(ws) / (1 << 30), i1, t1, i2, t2,
              t.iter_ms);
  std::fflush(stdout);
  (void)cudaEventDestroy(a);
  (void)cudaEventDestroy(b);
  (void)cudaStreamDestroy(stream);
  for (void* p : {static_cast<void*>(d_x), static_cast<void*>(d_init), static_cast<void*>(d_cen),
                  static_cast<void*>(d_first), static_cast<void*>(d_codes), d_ws})
    (void)cudaFree(p);
  if (init_out) *init_out = std::move(init);
  return t;
}

// The PyTorch brute force on the same points and initial centroids: its per-iteration ms, or NaN.
double torch_iter_ms(const std::string& script, const std::vector<float>& x, const std::vector<float>& init, int d,
                     int64_t k) {
  if (script.empty()) return std::nan("");
  std::ifstream probe(script);
  if (!probe) {
    std::printf("torch baseline: %s not found\n", script.c_str());
    return std::nan("");
  }
  const std::string dir = "/tmp/bench_kmeans_gpu_" + std::to_string(static_cast<long long>(::getpid()));
  if (std::system(("mkdir -p " + dir).c_str()) != 0) return std::nan("");
  {
    std::ofstream px(dir + "/points.f32", std::ios::binary), pc(dir + "/init.f32", std::ios::binary);
    px.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(float)));
    pc.write(reinterpret_cast<const char*>(init.data()), static_cast<std::streamsize>(init.size() * sizeof(float)));
  }
  const std::string cmd = "python3 " + script + " " + dir + "/points.f32 " + dir + "/init.f32 " + std::to_string(d) +
                          " " + std::to_string(k) + " > " + dir + "/torch.out 2>&1";
  const int rc = std::system(cmd.c_str());
  double ms = std::nan("");
  std::ifstream out(dir + "/torch.out");
  for (std::string line; std::getline(out, line);) {
    std::printf("  torch: %s\n", line.c_str());
    if (line.rfind("TORCH iter_ms=", 0) == 0) ms = std::atof(line.c_str() + 14);
  }
  if (rc != 0) std::printf("torch baseline failed (exit %d)\n", rc);
  if (std::system(("rm -rf " + dir).c_str()) != 0) std::printf("could not remove %s\n", dir.c_str());
  return ms;
}

std::string gpu_name() {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "unknown";
  std::string s = p.name;
  for (char& c : s)
    if (c == ' ') c = '_';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t n = 58720256;
  bool quick = false, cpu = false;
  std::string torch = "bench/gpu/kmeans_torch.py";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
      n = std::atoll(argv[++i]);
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--cpu") == 0) {
      cpu = true;
    } else if (std::strcmp(argv[i], "--torch") == 0 && i + 1 < argc) {
      torch = argv[++i];
    } else {
      std::fprintf(stderr, "usage: bench_kmeans_gpu [--n N] [--quick] [--cpu] [--torch PATH]\n");
      return 2;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("bench_kmeans_gpu: no CUDA device\n");
    return 1;
  }
  if (quick) n = std::min<int64_t>(n, 1 << 22);
  const int64_t k = 65536;
  std::printf("GPU: %s\n", gpu_name().c_str());
  if (!exactness_check()) return 1;

  double iter_ms[3] = {};
  std::vector<float> x4, init4;
  const int dims[3] = {4, 8, 16};
  for (int j = 0; j < 3; ++j) {
    std::vector<float> x = weight_like(n, dims[j], 3 + static_cast<uint64_t>(dims[j]));
    iter_ms[j] = time_gpu(x, n, dims[j], k, 1, quick ? 2 : 3, j == 0 ? &init4 : nullptr).iter_ms;
    if (j == 0) x4 = std::move(x);
  }
  const double t_ms = torch_iter_ms(torch, x4, init4, 4, k);
  const double speedup = t_ms / iter_ms[0];
  if (cpu) {
    KMeansOptions o;
    o.k = k;
    o.seed = 3;
    o.iterations = 2;
    std::vector<double> at;
    auto t0 = std::chrono::steady_clock::now();
    o.progress = [&](const KMeansProgress&) {
      at.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      return true;
    };
    KMeansResult r;
    check_status(kmeans(make_matrix_view<const float>(x4.data(), n, 4), o, &r), "kmeans cpu");
    if (at.size() >= 2)
      std::printf("CPU path, d = 4: iteration 1 took %.1f ms (GPU %.2f ms: %.1fx)\n", at[1] - at[0], iter_ms[0],
                  (at[1] - at[0]) / iter_ms[0]);
  }
  // LLaMA-2-70B linear weights, in d = 4 vectors, over the benchmark's N.
  const double per_layer = 2.0 * 8192 * 8192 + 2.0 * 8192 * 1024 + 3.0 * 8192 * 28672;
  const double vectors = 80 * per_layer / 4;
  const double model70b_min = vectors / static_cast<double>(n) * 21 * iter_ms[0] / 60000.0;
  std::printf("RESULT kmeans-gpu iter_ms_d4=%.3f iter_ms_d8=%.3f iter_ms_d16=%.3f speedup_vs_torch=%.3f "
              "model70b_min=%.2f gpu=%s\n",
              iter_ms[0], iter_ms[1], iter_ms[2], speedup, model70b_min, gpu_name().c_str());
  return 0;
}
