// One trainable LLaMA block (autograd::TrainBlock) at the real model's shape (SmolLM2-135M: hidden
// 576, 9 heads / 3 kv heads of 64, intermediate 1536, rope theta 1e5), every projection an fp16
// codebook with d = 4, K = 4096, S = 1 (random centroids and codes: the timing does not depend on
// the values). Times forward + backward as block-wise calibration runs it (pipeline/calibrate.hpp:
// forward with a Saved, backward with dx = null, centroid gradients only) for n = 256 and 512
// tokens on a ThreadPool of 2, WARMUP untimed steps then REPS timed ones, medians.
//
//   bench_train_block [REPS]     (default 7; warm-up 2)
//
// PyTorch peer, same run: the block's weights, codes, x and dy go to a temporary directory and
// bench/train_block_torch.py runs with /usr/bin/python3 (Debian's python3-torch), 2 threads, doing
// what the reference ClusComp does every step: gather W = C[codes] (differentiable in C), the HF
// LLaMA block forward in float32, sum(y * dy).backward(). Same protocol, medians. It runs twice,
// with libgomp's default wait policy and with OMP_WAIT_POLICY=PASSIVE (spinning OpenMP threads lose
// badly on shared, loaded cores), and the faster median at each n is the baseline. Before the timing
// counts, both block outputs must agree (relative L2 < 1e-4; fp32 vs fp32 in a different order)
// and so must the q_proj centroid gradients (< 1e-3: a sum over up to n * 576 terms per centroid),
// so both sides did the same work. CLUSCOMP_TRAIN_BLOCK_NO_TORCH=1 skips the peer (ratio nan).
//
// Last line: RESULT train-block fwd_bwd_ms_256=... torch_ms_256=... fwd_bwd_ms_512=...
// torch_ms_512=... ratio_vs_torch=... (ratio = our median ms / PyTorch's at n = 256; below 1 is
// faster). scripts/bench.sh calibrate reads ratio_vs_torch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/model/train_block.hpp"
#include "cluscomp/model/llama.hpp"
#include "support/llama_configs.hpp"
#include "support/test_data.hpp"

using namespace cluscomp;

namespace {

constexpr int kThreads = 2;
constexpr int kWarmup = 2;
constexpr int64_t kD = 4, kK = 4096;
const int64_t kNs[] = {256, 512};
const char* const kNames[7] = {"q", "k", "v", "o", "gate", "up", "down"};
// PyTorch runs twice: libgomp's default wait policy (threads spin between parallel regions) and
// passive waiting. On shared, loaded cores spinning can make torch several times slower, which
// would flatter us; the faster of the two is the baseline.
const char* const kTorchModes[2] = {"env -u OMP_WAIT_POLICY", "OMP_WAIT_POLICY=PASSIVE"};

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  double e = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    e += d * d;
    n += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(e / n);
}

template <class T>
void write_raw(const std::filesystem::path& p, const std::vector<T>& v) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  if (!f) throw std::runtime_error("cannot write " + p.string());
}

std::vector<float> read_f32(const std::filesystem::path& p, size_t n) {
  std::vector<float> v(n);
  std::ifstream f(p, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
  if (!f) throw std::runtime_error("cannot read " + p.string());
  return v;
}

struct Layer {
  int64_t out, in;
  std::vector<float> centroids;  // (1, K, d), fp16 values held exactly in fp32
  std::vector<int32_t> codes;    // (in * out_pad / d)
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  const LlamaConfig c = cluscomp_test::llama_config(cluscomp_test::kSmolLM2BlockShape);
  const int64_t H = c.hidden_size, F = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  const int64_t outs[7] = {Q, KV, KV, H, F, F, H};
  const int64_t ins[7] = {H, H, H, Q, H, H, F};

  std::mt19937 rng(20261125);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  LlamaBlock b;
  b.attn_norm.resize(static_cast<size_t>(H));
  b.ffn_norm.resize(static_cast<size_t>(H));
  for (auto& v : b.attn_norm) v = 1.0f + 0.1f * nd(rng);
  for (auto& v : b.ffn_norm) v = 1.0f + 0.1f * nd(rng);
  Linear* dst[7] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
  std::vector<Layer> layers;
  for (int l = 0; l < 7; ++l) {
    CodebookShape sh;
    sh.out = outs[l];
    sh.in = ins[l];
    sh.d = static_cast<int>(kD);
    sh.k = kK;
    sh.num_codebooks = 1;
    sh.centroid_dtype = DType::kF16;
    CodebookTensor t(sh);
    const float scale = 1.0f / std::sqrt(static_cast<float>(ins[l]));  // unit-variance outputs
    Layer L{outs[l], ins[l], std::vector<float>(static_cast<size_t>(kK * kD)), {}};
    for (int64_t k = 0; k < kK; ++k)
      for (int e = 0; e < kD; ++e) {
        t.set_centroid(0, k, e, scale * nd(rng));
        L.centroids[static_cast<size_t>(k * kD + e)] = t.centroid(0, k, e);
      }
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(kK - 1));
    L.codes.resize(static_cast<size_t>(sh.num_vectors()));
    std::vector<uint32_t> codes(L.codes.size());
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint32_t>(L.codes[i] = pick(rng));
    throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
    *dst[l] = Linear::from_codebook(std::string(kNames[l]) + "_proj", std::move(t));
    layers.push_back(std::move(L));
  }

  autograd::TrainBlock tb(c, b);
  ThreadPool pool(kThreads);
  std::map<int64_t, std::vector<float>> xs, dys, ys, dqs;
  std::map<int64_t, std::vector<double>> ours_f, ours_b, ours_t;
  for (const int64_t n : kNs) {
    std::vector<float> x(static_cast<size_t>(n * H)), dy(x.size()), y(x.size());
    for (auto& v : x) v = nd(rng);
    for (auto& v : dy) v = 1e-2f * nd(rng);
    autograd::TrainBlock::Saved saved;
    for (int it = 0; it < kWarmup + reps; ++it) {
      tb.zero_grad();
      const auto t0 = std::chrono::steady_clock::now();
      tb.forward(x.data(), n, y.data(), &saved, &pool);
      const auto t1 = std::chrono::steady_clock::now();
      tb.backward(saved, dy.data(), nullptr, &pool);
      const auto t2 = std::chrono::steady_clock::now();
      if (it < kWarmup) continue;
      ours_f[n].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      ours_b[n].push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
      ours_t[n].push_back(ours_f[n].back() + ours_b[n].back());
    }
    const auto p = tb.parameters();
    dqs[n].assign(p[0].grad, p[0].grad + p[0].size);
    xs[n] = std::move(x);
    dys[n] = std::move(dy);
    ys[n] = std::move(y);
  }

  // The PyTorch peer on the same block and inputs.
  struct TorchRun {
    std::string mode;
    std::vector<double> f, b, t;
  };
  std::map<int64_t, std::vector<TorchRun>> torch_runs;
  std::map<int64_t, double> err_y, err_dq;
  std::string torch_version = "-", torch_note;
  const char* skip = std::getenv("CLUSCOMP_TRAIN_BLOCK_NO_TORCH");
  if (skip && std::string(skip) == "1") {
    torch_note = "skipped (CLUSCOMP_TRAIN_BLOCK_NO_TORCH=1)";
  } else if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    torch_note = "no torch for /usr/bin/python3 (apt-get install python3-torch)";
  } else {
    cluscomp_test::TempDir dir;
    nlohmann::json cfg;
    cfg["hidden"] = H;
    cfg["heads"] = c.num_attention_heads;
    cfg["kv_heads"] = c.num_key_value_heads;
    cfg["head_dim"] = c.head_dim;
    cfg["intermediate"] = F;
    cfg["rms_norm_eps"] = c.rms_norm_eps;
    cfg["rope_theta"] = c.rope_theta;
    cfg["ns"] = std::vector<int64_t>(std::begin(kNs), std::end(kNs));
    for (int l = 0; l < 7; ++l) {
      cfg["matrices"][kNames[l]] = {{"out", outs[l]}, {"in", ins[l]}, {"d", kD}, {"k", kK}, {"s", 1}};
      write_raw(dir / (std::string(kNames[l]) + ".centroids.f32"), layers[static_cast<size_t>(l)].centroids);
      write_raw(dir / (std::string(kNames[l]) + ".codes.i32"), layers[static_cast<size_t>(l)].codes);
    }
    write_raw(dir / "attn_norm.f32", b.attn_norm);
    write_raw(dir / "ffn_norm.f32", b.ffn_norm);
    for (const int64_t n : kNs) {
      write_raw(dir / ("x_" + std::to_string(n) + ".f32"), xs[n]);
      write_raw(dir / ("dy_" + std::to_string(n) + ".f32"), dys[n]);
    }
    std::ofstream(dir / "config.json") << cfg.dump(1);
    const std::string src = __FILE__;
    const std::string script = src.substr(0, src.find_last_of('/')) + "/train_block_torch.py";
    for (const char* mode : kTorchModes) {
      std::filesystem::remove(dir / "torch_result.json");
      const std::string cmd = std::string(mode) + " /usr/bin/python3 '" + script + "' '" + dir.path().string() + "' " +
                              std::to_string(kThreads) + " " + std::to_string(kWarmup) + " " + std::to_string(reps);
      if (std::system(cmd.c_str()) != 0 || !std::filesystem::exists(dir / "torch_result.json")) {
        torch_note = std::string("train_block_torch.py failed (") + mode + ")";
        break;
      }
      nlohmann::json r;
      std::ifstream(dir / "torch_result.json") >> r;
      torch_version = r["torch_version"].get<std::string>();
      for (const int64_t n : kNs) {
        const auto& rn = r[std::to_string(n)];
        TorchRun run{mode, rn["fwd_ms"].get<std::vector<double>>(), rn["bwd_ms"].get<std::vector<double>>(),
                     rn["total_ms"].get<std::vector<double>>()};
        err_y[n] = rel_err(ys[n], read_f32(dir / ("torch_y_" + std::to_string(n) + ".f32"), ys[n].size()));
        err_dq[n] = rel_err(dqs[n], read_f32(dir / ("torch_dq_" + std::to_string(n) + ".f32"), dqs[n].size()));
        if (!(err_y[n] < 1e-4) || !(err_dq[n] < 1e-3)) {
          std::fprintf(stderr,
                       "bench_train_block: PyTorch disagrees at n %lld (y rel err %.3g, q_proj dC rel err %.3g): "
                       "its timing is not of the same computation\n",
                       static_cast<long long>(n), err_y[n], err_dq[n]);
          return 1;
        }
        torch_runs[n].push_back(std::move(run));
      }
    }
  }

  std::printf("train-block: SmolLM2-135M block shape (hidden %lld, %lld/%lld heads of %lld, intermediate %lld), "
              "7 codebook projections d %lld K %lld fp16, %d threads, %d warm-up + %d reps, medians (ms)\n",
              static_cast<long long>(H), static_cast<long long>(c.num_attention_heads),
              static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.head_dim),
              static_cast<long long>(F), static_cast<long long>(kD), static_cast<long long>(kK), kThreads, kWarmup,
              reps);
  std::printf("matmul path: %s; torch %s%s%s\n", matmul_uses_avx2() ? "avx2+fma" : "portable", torch_version.c_str(),
              torch_note.empty() ? "" : ": ", torch_note.c_str());
  std::printf("%6s | %9s %9s %9s | %9s %9s %9s %-8s | %7s | %9s %9s\n", "n", "fwd", "bwd", "fwd+bwd", "torch fwd",
              "torch bwd", "torch f+b", "omp wait", "ratio", "y relerr", "dCq relerr");
  std::map<int64_t, double> ours_ms, torch_ms;
  for (const int64_t n : kNs) {
    ours_ms[n] = median(ours_t[n]);
    torch_ms[n] = std::nan("");
    if (torch_runs[n].empty()) torch_runs[n].push_back(TorchRun{"-", {}, {}, {}});
    for (const TorchRun& r : torch_runs[n]) {
      const double t = median(r.t);
      if (!(torch_ms[n] <= t)) torch_ms[n] = t;  // nan-aware min
    }
    for (const TorchRun& r : torch_runs[n]) {
      const char* wait = r.mode.find("PASSIVE") != std::string::npos ? "passive" : (r.mode == "-" ? "-" : "default");
      std::printf("%6lld | %9.1f %9.1f %9.1f | %9.1f %9.1f %9.1f %-8s | %7.3f | %9.2e %9.2e\n", static_cast<long long>(n),
                  median(ours_f[n]), median(ours_b[n]), ours_ms[n], median(r.f), median(r.b), median(r.t), wait,
                  ours_ms[n] / median(r.t), err_y.count(n) ? err_y[n] : std::nan(""),
                  err_dq.count(n) ? err_dq[n] : std::nan(""));
    }
  }
  std::printf("ratio_vs_torch uses the faster PyTorch wait policy at each n\n");
  std::printf("RESULT train-block fwd_bwd_ms_256=%.2f torch_ms_256=%.2f fwd_bwd_ms_512=%.2f torch_ms_512=%.2f "
              "ratio_vs_torch=%.3f\n",
              ours_ms[256], torch_ms[256], ours_ms[512], torch_ms[512], ours_ms[256] / torch_ms[256]);
  return 0;
}
