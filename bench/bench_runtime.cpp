// CPU runtime benchmark on the real model, 2 threads: prefill of 512 tokens (forward of the whole
// prompt + the last token's logits, as generation does) and decode (128 tokens one at a time from
// a 1-token prompt, logits each step, like llama.cpp's tg128). 3 repetitions after a warm-up,
// medians reported. Also the dense fp32 kernel alone against Eigen (1 thread, the prefill shape of
// the MLP up-projection), the in-run dense baseline.
//
//   bench_runtime [MODEL]     (default: the real model from tests/support/test_data.hpp)
//
// Last line: RESULT runtime prefill_tok_s=... decode_tok_s=... prefill_ratio_vs_torch=...
// decode_ratio_vs_torch=...; the torch ratios are nan until PyTorch is installed for the
// comparison (not part of this build: see docs).
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/sampling.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "support/test_data.hpp"

using namespace cluscomp;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : cluscomp_test::real_model_path().string();
  constexpr int kReps = 3, kPrefill = 512, kDecode = 128, kThreads = 2;
  try {
    LlamaRuntimeOptions opt;
    opt.threads = kThreads;
    double t0 = now_s();
    LlamaModel m = load_llama_model(path, opt);
    std::printf("model: %s, loaded in %.2f s, %d threads, matmul path %s\n", path.c_str(), now_s() - t0,
                m.threads(), matmul_uses_avx2() ? "AVX2+FMA" : "portable");
    std::vector<int32_t> ids(kPrefill);
    for (int i = 0; i < kPrefill; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % m.vocab_size());
    KvCache cache = m.make_cache(kPrefill + kDecode);

    std::vector<double> prefill, decode;
    for (int rep = 0; rep <= kReps; ++rep) {  // rep 0: warm-up
      cache.clear();
      t0 = now_s();
      std::vector<float> logits = m.forward(ids, cache);
      const double p = now_s() - t0;
      cache.clear();
      int32_t next = ids[0];
      t0 = now_s();
      for (int i = 0; i < kDecode; ++i) {
        logits = m.forward(&next, 1, cache);
        next = Sampler::argmax(logits.data(), m.vocab_size());
      }
      const double d = now_s() - t0;
      if (rep > 0) {
        prefill.push_back(p);
        decode.push_back(d);
      }
    }
    const double prefill_tok_s = kPrefill / median(prefill);
    const double decode_tok_s = kDecode / median(decode);
    const MemoryReport mem = m.memory_report(&cache, kPrefill);
    std::printf("prefill %d tokens: median %.3f s = %.1f tokens/s\n", kPrefill, median(prefill), prefill_tok_s);
    std::printf("decode %d tokens: median %.3f s = %.1f tokens/s\n", kDecode, median(decode), decode_tok_s);
    std::printf("memory: %.1f MiB weights, %.1f MiB kv cache (%d positions), %.1f MiB activations\n",
                mem.weights / 1048576.0, mem.kv_cache / 1048576.0, kPrefill + kDecode, mem.activations / 1048576.0);

    // The dense kernel against Eigen, 1 thread: y (512, 1536) = x (512, 576) W^T.
    const int64_t M = 512, N = 1536, K = 576;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> x(static_cast<size_t>(M * K)), w(static_cast<size_t>(N * K)), y(static_cast<size_t>(M * N));
    for (auto& v : x) v = nd(rng);
    for (auto& v : w) v = nd(rng);
    MatmulArgs a{x.data(), K, w.data(), K, nullptr, y.data(), N, M, N, K};
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMat> ex(x.data(), M, K), ew(w.data(), N, K);
    RowMat ey(M, N);
    std::vector<double> ours, eigen;
    for (int rep = 0; rep <= 5; ++rep) {
      t0 = now_s();
      if (!matmul_nt(a).ok()) return 1;
      const double o = now_s() - t0;
      t0 = now_s();
      ey.noalias() = ex * ew.transpose();
      const double e = now_s() - t0;
      if (rep > 0) {
        ours.push_back(o);
        eigen.push_back(e);
      }
    }
    const double flop = 2.0 * M * N * K;
    std::printf("dense fp32 %lldx%lldx%lld, 1 thread: matmul_nt %.1f GFLOP/s, Eigen %.1f GFLOP/s (ratio %.2f)\n",
                static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K),
                flop / median(ours) / 1e9, flop / median(eigen) / 1e9, median(eigen) / median(ours));
    std::printf("PyTorch comparison: not run (torch is not installed in this build's environments)\n");
    std::printf("RESULT runtime prefill_tok_s=%.9g decode_tok_s=%.9g prefill_ratio_vs_torch=nan decode_ratio_vs_torch=nan\n",
                prefill_tok_s, decode_tok_s);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_runtime: %s\n", e.what());
    return 1;
  }
  return 0;
}
