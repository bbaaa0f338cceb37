// CPU runtime benchmark on the real model, 2 threads: prefill of 512 tokens (forward of the whole
// prompt + the last token's logits, as generation does) and decode (128 tokens one at a time from
// a 1-token prompt, logits each step, like llama.cpp's tg128). Every model file runs twice in the
// same process: with fp32 dense weights (the runtime before issue 23, DenseWeights::kFp32) and with
// dense weights in the file's stored type (kStored, what `cluscomp eval/generate` run); 5
// repetitions after a warm-up, the variants interleaved within each repetition, medians, the load
// average printed after each repetition, the machine named. Also the dense fp32 kernel alone against Eigen (1 thread, the prefill shape of
// the MLP up-projection), the in-run dense baseline, and attention's value sum alone on its
// portable and AVX2+FMA paths (1 thread, the prefill shape).
//
//   bench_runtime [MODEL] [NAME=CLUSCOMP_FILE ...]
//     MODEL: the base model (default: the real model from tests/support/test_data.hpp);
//     NAME=FILE: more models, e.g. cc4=OUT/cc4.safetensors (a `cluscomp compress --bpw 4` file).
//
// PyTorch peer, same run: bench/runtime_torch.py (the same LLaMA forward as a plain torch module
// on the same weights dequantised to fp32, same prompt ids, same protocol, same threads) runs first
// in $CLUSCOMP_DATA/venv-bench-torch (created here over the Debian python3-torch package, which
// `apt-get install python3-torch` provides; PyPI's Linux torch wheel needs the CUDA libraries).
// Its logits of a 16-token prompt must match ours (relative L2 < 1e-4) before any timing counts.
// CLUSCOMP_RUNTIME_NO_TORCH=1 skips it (ratios nan).
//
// llama.cpp peer, same run: bench/llamacpp_peer.cpp (ours, against libllama built by
// bench/llamacpp_build.sh from the llama.cpp that the llama-cpp-python sdist on PyPI vendors), run
// when scripts/bench.sh names it in CLUSCOMP_LLAMACPP_BENCH (else CLUSCOMP_LLAMACPP_MISSING says
// why it is absent, and the row is left out). Same GGUF, prompt ids, protocol and threads, but
// llama.cpp computes with the Q4_1/Q8_0 weights as stored (and an fp16 KV cache) where we run
// dequantised fp32 dense weights: its logits must only be close to ours (relative L2 < 0.1).
// CLUSCOMP_RUNTIME_NO_LLAMACPP=1 skips it.
//
// Last line: RESULT runtime prefill_tok_s=... decode_tok_s=... (the base model, stored dense
// weights) prefill_ratio_vs_torch=... decode_ratio_vs_torch=... llamacpp_prefill_tok_s=...
// llamacpp_decode_tok_s=... prefill_ratio_vs_llamacpp=... decode_ratio_vs_llamacpp=... (ratios =
// our tokens/s over the peer's, medians; nan where that peer did not run), then per model NAME
// (base, cc4, ...): decode_tok_s_NAME, decode_tok_s_NAME_fp32, prefill_tok_s_NAME(_fp32),
// decode_ratio_NAME_stored_vs_fp32, prefill_ratio_NAME_stored_vs_fp32, resident_mib_NAME (weights
// held, stored), and for the extra files decode_ratio_NAME_vs_llamacpp. The line before the table's end,
// `llamacpp available=0|1 ...`, repeats the llama.cpp keys.
#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/sampling.hpp"
#include "cluscomp/ops/attention.hpp"
#include "cluscomp/ops/matmul.hpp"
#include "cluscomp/ops/softmax.hpp"
#include "cluscomp/ops/stored_matmul.hpp"
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

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

/// The Python of the torch venv, or "" (with the reason on stderr) when torch cannot be had.
std::string ensure_torch_venv(const std::string& data) {
  const std::string venv = data + "/venv-bench-torch";
  const std::string python = venv + "/bin/python";
  if (std::ifstream(python).good()) return python;
  if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) {
    std::fprintf(stderr, "bench_runtime: no torch for /usr/bin/python3 (apt-get install python3-torch)\n");
    return "";
  }
  const std::string cmd = "/usr/bin/python3 -m venv --system-site-packages '" + venv + "' && '" + venv +
                          "/bin/pip' install -q gguf==0.19.0 >&2";
  if (std::system(cmd.c_str()) != 0) return "";
  return python;
}

/// Loosest agreement accepted from llama.cpp's logits (it computes with Q4_1/Q8_0 weights, Q8
/// activations and an fp16 KV cache; we with fp32): relative L2 over 16 positions x vocabulary.
constexpr double kLlamaCppCheckRel = 0.1;

/// What a peer driver (torch, llama.cpp) leaves in `out`: result.json (timings, "check_tokens",
/// "vocab") and check.logits.f32, the logits of the first check_tokens ids; compared with ours.
struct PeerOutput {
  nlohmann::json result;
  int64_t tokens = 0;
  std::vector<float> theirs, ours;  // (tokens, vocab)
  double rel_l2 = 0;                // ||ours - theirs|| / ||theirs||
};

PeerOutput read_peer_output(LlamaModel& m, const std::vector<int32_t>& ids, const std::string& out,
                            const std::string& peer) {
  PeerOutput p;
  std::ifstream f(out + "/result.json");
  std::stringstream ss;
  ss << f.rdbuf();
  p.result = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (p.result.is_discarded()) throw Error(StatusCode::kFormatError, out + "/result.json: not JSON");
  const int64_t n = p.result["check_tokens"].get<int64_t>(), V = m.vocab_size();
  if (p.result["vocab"].get<int64_t>() != V) throw Error(StatusCode::kFormatError, peer + " driver: vocabulary differs");
  p.tokens = n;
  p.theirs.resize(static_cast<size_t>(n * V));
  std::ifstream lf(out + "/check.logits.f32", std::ios::binary);
  lf.read(reinterpret_cast<char*>(p.theirs.data()), static_cast<std::streamsize>(p.theirs.size() * sizeof(float)));
  if (lf.gcount() != static_cast<std::streamsize>(p.theirs.size() * sizeof(float)))
    throw Error(StatusCode::kIoError, out + "/check.logits.f32: short file");
  KvCache cache = m.make_cache(n);
  const std::vector<int32_t> head(ids.begin(), ids.begin() + n);
  p.ours = m.forward(head, cache, /*all=*/true);
  double num = 0, den = 0;
  for (size_t i = 0; i < p.theirs.size(); ++i) {
    const double d = static_cast<double>(p.ours[i]) - p.theirs[i];
    num += d * d;
    den += static_cast<double>(p.theirs[i]) * p.theirs[i];
  }
  p.rel_l2 = std::sqrt(num / den);
  return p;
}

struct TorchRun {
  bool ok = false;
  std::string version;
  double prefill_s = 0, decode_s = 0;  // medians
  double check_rel = 0;                // relative L2 error of our logits vs torch's
};

TorchRun run_torch(LlamaModel& m, const std::string& model_path, const std::vector<int32_t>& ids, int threads,
                   int prefill, int decode, int reps) {
  TorchRun r;
  if (env_or("CLUSCOMP_RUNTIME_NO_TORCH", "0") == "1") return r;
  const std::string data = env_or("CLUSCOMP_DATA", env_or("HOME", ".") + "/.cache/cluscomp");
  const std::string python = ensure_torch_venv(data);
  if (python.empty()) return r;
  const std::string src = __FILE__;
  const std::string script = src.substr(0, src.find_last_of('/')) + "/runtime_torch.py";
  const std::string out = data + "/bench-runtime";
  std::remove((out + "/result.json").c_str());
  const std::string cmd = "'" + python + "' '" + script + "' '" + model_path + "' '" + out + "' " +
                          std::to_string(threads) + " " + std::to_string(prefill) + " " + std::to_string(decode) +
                          " " + std::to_string(reps) + " >&2";
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "bench_runtime: the torch driver failed\n");
    return r;
  }
  const PeerOutput po = read_peer_output(m, ids, out, "torch");
  const nlohmann::json& j = po.result;
  r.check_rel = po.rel_l2;
  r.version = j["torch_version"].get<std::string>();
  r.prefill_s = median(j["prefill_s"].get<std::vector<double>>());
  r.decode_s = median(j["decode_s"].get<std::vector<double>>());
  r.ok = r.check_rel < 1e-4;
  if (!r.ok)
    std::fprintf(stderr, "bench_runtime: torch logits differ from ours (relative L2 %.3g): timing discarded\n",
                 r.check_rel);
  return r;
}

struct LlamaCppRun {
  bool ok = false;
  std::string why;          // why there is no llama.cpp row (when !ok)
  std::string system_info;  // llama_print_system_info(): the CPU features its build uses
  double prefill_s = 0, decode_s = 0;  // medians
  double check_rel = 0;                // relative L2 of its logits vs ours (quantised vs fp32)
  double check_top1 = 0;               // fraction of the check positions whose argmax agrees
};

/// Runs the llama.cpp driver that scripts/bench.sh built (bench/llamacpp_build.sh) and named in
/// CLUSCOMP_LLAMACPP_BENCH; CLUSCOMP_LLAMACPP_MISSING carries the build's reason when it failed.
LlamaCppRun run_llamacpp(LlamaModel& m, const std::string& model_path, const std::vector<int32_t>& ids,
                         int threads, int prefill, int decode, int reps) {
  LlamaCppRun r;
  if (env_or("CLUSCOMP_RUNTIME_NO_LLAMACPP", "0") == "1") {
    r.why = "skipped (CLUSCOMP_RUNTIME_NO_LLAMACPP=1)";
    return r;
  }
  const std::string bin = env_or("CLUSCOMP_LLAMACPP_BENCH", "");
  if (bin.empty()) {
    r.why = env_or("CLUSCOMP_LLAMACPP_MISSING",
                   "not built (run through scripts/bench.sh runtime, which builds it with bench/llamacpp_build.sh)");
    return r;
  }
  const std::string data = env_or("CLUSCOMP_DATA", env_or("HOME", ".") + "/.cache/cluscomp");
  const std::string out = data + "/bench-runtime/llamacpp";
  if (std::system(("mkdir -p '" + out + "'").c_str()) != 0) {
    r.why = "cannot create " + out;
    return r;
  }
  std::remove((out + "/result.json").c_str());
  const std::string cmd = "'" + bin + "' '" + model_path + "' '" + out + "' " + std::to_string(threads) + " " +
                          std::to_string(prefill) + " " + std::to_string(decode) + " " + std::to_string(reps) +
                          " >&2";
  if (std::system(cmd.c_str()) != 0) {
    r.why = "the llama.cpp driver " + bin + " failed (its message is above)";
    return r;
  }
  const PeerOutput po = read_peer_output(m, ids, out, "llama.cpp");
  const nlohmann::json& j = po.result;
  const int64_t n = po.tokens, V = m.vocab_size();
  int agree = 0;
  for (int64_t t = 0; t < n; ++t)
    agree += Sampler::argmax(po.ours.data() + t * V, V) == Sampler::argmax(po.theirs.data() + t * V, V);
  r.check_rel = po.rel_l2;
  r.check_top1 = static_cast<double>(agree) / static_cast<double>(n);
  r.system_info = j["system_info"].get<std::string>();
  r.prefill_s = median(j["prefill_s"].get<std::vector<double>>());
  r.decode_s = median(j["decode_s"].get<std::vector<double>>());
  // It runs the quantised weights (and an fp16 KV cache), so its logits are close to ours, not
  // equal: a gross mismatch means a different model or prompt, and then its timing is discarded.
  r.ok = r.check_rel < kLlamaCppCheckRel;
  if (!r.ok)
    r.why = "its logits differ from ours by relative L2 " + std::to_string(r.check_rel) + " (limit " +
            std::to_string(kLlamaCppCheckRel) + "): timing discarded";
  return r;
}

/// One engine configuration of the same run: a model file held one way (dense weights fp32, the
/// runtime before issue 23, or in the file's stored type), with its timings.
struct Variant {
  std::string label;  // "base", "cc4", ...
  std::string path;
  DenseWeights dense = DenseWeights::kStored;
  std::unique_ptr<LlamaModel> model;
  std::vector<double> prefill_s, decode_s;
  MemoryReport mem;
  double file_mib = 0;
  double prefill_tok_s() const { return prefill_s.empty() ? std::nan("") : kPrefillTokens / median(prefill_s); }
  double decode_tok_s() const { return decode_s.empty() ? std::nan("") : kDecodeTokens / median(decode_s); }
  std::string name() const { return label + (dense == DenseWeights::kFp32 ? " fp32-dense" : " stored"); }
  static constexpr int kPrefillTokens = 512, kDecodeTokens = 128;
};

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  // bench_runtime [BASE_MODEL] [NAME=CLUSCOMP_FILE ...]: every model runs twice, fp32 dense and
  // stored dense weights, interleaved.
  std::string path = cluscomp_test::real_model_path().string();
  std::vector<std::pair<std::string, std::string>> extra;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    if (eq == std::string::npos) path = a;
    else extra.emplace_back(a.substr(0, eq), a.substr(eq + 1));
  }
  constexpr int kReps = 5, kPrefill = Variant::kPrefillTokens, kDecode = Variant::kDecodeTokens, kThreads = 2;
  try {
    std::printf("machine: %u cores, %s; load average at start %s\n", std::thread::hardware_concurrency(),
                cpu_name().c_str(), load_average().c_str());
    std::vector<Variant> vs;
    vs.reserve(2 * (extra.size() + 1));
    auto add = [&](const std::string& label, const std::string& p) {
      for (DenseWeights d : {DenseWeights::kFp32, DenseWeights::kStored}) {
        Variant v;
        v.label = label;
        v.path = p;
        v.dense = d;
        LlamaRuntimeOptions opt;
        opt.threads = kThreads;
        opt.dense = d;
        const double t0 = now_s();
        v.model = std::make_unique<LlamaModel>(load_llama_model(p, opt));
        v.file_mib = static_cast<double>(std::filesystem::file_size(p)) / 1048576.0;
        std::printf("loaded %s (%s) in %.2f s\n", v.name().c_str(), p.c_str(), now_s() - t0);
        vs.push_back(std::move(v));
      }
    };
    add("base", path);
    for (const auto& e : extra) add(e.first, e.second);
    LlamaModel& m = *vs[0].model;  // base, fp32 dense: the peers' logits check
    std::printf("model: %s, %d threads, matmul path %s, stored-type path %s\n", path.c_str(), m.threads(),
                matmul_uses_avx2() ? "AVX2+FMA" : "portable", stored_matmul_uses_avx2() ? "AVX2+FMA+F16C" : "portable");
    std::vector<int32_t> ids(kPrefill);
    for (int i = 0; i < kPrefill; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % m.vocab_size());
    const TorchRun torch = run_torch(m, path, ids, kThreads, kPrefill, kDecode, 3);
    const LlamaCppRun lcp = run_llamacpp(m, path, ids, kThreads, kPrefill, kDecode, kReps);
    double t0 = 0;

    // Interleaved: each repetition runs every variant's prefill and decode in turn, so that a
    // change in the machine's load hits all of them alike; rep 0 is the warm-up.
    for (int rep = 0; rep <= kReps; ++rep) {
      for (Variant& v : vs) {
        LlamaModel& vm = *v.model;
        KvCache cache = vm.make_cache(kPrefill + kDecode);
        t0 = now_s();
        std::vector<float> logits = vm.forward(ids, cache);
        const double p = now_s() - t0;
        cache.clear();
        int32_t next = ids[0];
        t0 = now_s();
        for (int i = 0; i < kDecode; ++i) {
          logits = vm.forward(&next, 1, cache);
          next = Sampler::argmax(logits.data(), vm.vocab_size());
        }
        const double d = now_s() - t0;
        if (rep > 0) {
          v.prefill_s.push_back(p);
          v.decode_s.push_back(d);
        }
        v.mem = vm.memory_report(&cache, kPrefill);
      }
      std::printf("rep %d done, load average %s\n", rep, load_average().c_str());
    }
    std::printf("\n%-20s %10s %10s %9s %9s %10s %10s %10s\n", "variant", "prefill", "decode", "prefill", "decode",
                "weights", "kv cache", "workspace");
    std::printf("%-20s %10s %10s %9s %9s %10s %10s %10s\n", "", "tok/s", "tok/s", "x fp32", "x fp32", "MiB", "MiB", "MiB");
    for (size_t i = 0; i < vs.size(); ++i) {
      const Variant& v = vs[i];
      const Variant& f = vs[i & ~size_t{1}];  // the same file's fp32-dense variant
      std::printf("%-20s %10.1f %10.1f %9.2f %9.2f %10.1f %10.1f %10.1f   (file %.1f MiB)\n", v.name().c_str(),
                  v.prefill_tok_s(), v.decode_tok_s(), v.prefill_tok_s() / f.prefill_tok_s(),
                  v.decode_tok_s() / f.decode_tok_s(), v.mem.weights / 1048576.0, v.mem.kv_cache / 1048576.0,
                  v.mem.activations / 1048576.0, v.file_mib);
    }
    std::printf("(medians of %d interleaved repetitions; prefill %d tokens, decode %d tokens; x fp32: ratio to the same "
                "file with fp32 dense weights, same run)\n",
                kReps, kPrefill, kDecode);
    const double prefill_tok_s = vs[1].prefill_tok_s();  // base, stored: what the CLI runs
    const double decode_tok_s = vs[1].decode_tok_s();
    const MemoryReport mem = vs[1].mem;
    std::printf("memory (base, stored): %.1f MiB weights, %.1f MiB kv cache (%d positions), %.1f MiB workspace\n",
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
    // The stored-type product alone against matmul_nt on the same matrix dequantised to fp32, 2
    // threads, interleaved, medians of 7: the real model's decode shapes (lm_head 49152 x 576 in
    // Q8_0, an MLP projection 1536 x 576 in Q4_1, M = 1) and its prefill shape (M = 512). The
    // decode shapes rotate over 4 copies of the weights so that a repetition does not find the
    // previous one's in cache (a decoded token reads 29 other matrices between two uses of one).
    {
      ThreadPool kpool(kThreads);
      struct KShape {
        const char* what;
        GgmlType type;
        int64_t m, n, k;
      };
      const KShape shapes[] = {{"lm_head Q8_0, M=1", GgmlType::kQ8_0, 1, 49152, 576},
                               {"mlp Q4_1, M=1", GgmlType::kQ4_1, 1, 1536, 576},
                               {"mlp Q4_1, M=512", GgmlType::kQ4_1, 512, 1536, 576}};
      for (const KShape& ks : shapes) {
        const int copies = ks.m == 1 ? 4 : 1;
        std::vector<std::vector<float>> wf(static_cast<size_t>(copies));
        std::vector<std::vector<unsigned char>> wq(static_cast<size_t>(copies));
        for (int c = 0; c < copies; ++c) {
          std::vector<float> w0(static_cast<size_t>(ks.n * ks.k));
          for (auto& v : w0) v = 0.02f * nd(rng);
          wq[static_cast<size_t>(c)] = quantize(ks.type, w0.data(), ks.n * ks.k);
          wf[static_cast<size_t>(c)].resize(w0.size());
          dequantize_row(ks.type, wq[static_cast<size_t>(c)].data(), wf[static_cast<size_t>(c)].data(), ks.n * ks.k);
        }
        std::vector<float> xs(static_cast<size_t>(ks.m * ks.k)), ys(static_cast<size_t>(ks.m * ks.n));
        for (auto& v : xs) v = nd(rng);
        std::vector<double> t_f32, t_st;
        for (int rep = 0; rep <= 7; ++rep) {
          const int c = rep % copies;
          MatmulArgs fa{xs.data(), ks.k, wf[static_cast<size_t>(c)].data(), ks.k, nullptr, ys.data(), ks.n, ks.m, ks.n, ks.k};
          t0 = now_s();
          if (!matmul_nt(fa, &kpool).ok()) return 1;
          const double tf = now_s() - t0;
          StoredMatmulArgs sa;
          sa.x = xs.data();
          sa.ldx = ks.k;
          sa.w = StoredMatrixView{static_cast<StoredType>(static_cast<uint32_t>(ks.type)), wq[static_cast<size_t>(c)].data(),
                                  ks.n, ks.k};
          sa.y = ys.data();
          sa.ldy = ks.n;
          sa.m = ks.m;
          t0 = now_s();
          if (!stored_matmul_nt(sa, &kpool).ok()) return 1;
          const double tq = now_s() - t0;
          if (rep > 0) {
            t_f32.push_back(tf);
            t_st.push_back(tq);
          }
        }
        const double bytes_f32 = 4.0 * ks.n * ks.k, bytes_st = static_cast<double>(wq[0].size());
        std::printf("stored-type product, %s (%lldx%lld), %d threads: fp32 matmul_nt %.3f ms (%.1f GB/s of weights), "
                    "stored %.3f ms (%.1f GB/s), stored / fp32 speed %.2fx\n",
                    ks.what, static_cast<long long>(ks.n), static_cast<long long>(ks.k), kThreads, 1e3 * median(t_f32),
                    bytes_f32 / median(t_f32) / 1e9, 1e3 * median(t_st), bytes_st / median(t_st) / 1e9,
                    median(t_f32) / median(t_st));
      }
    }
    // Attention's value sum alone, both paths in this process (the portable one is the scalar
    // loop the runtime used before the AVX2 path existed), 1 thread: the real model's prefill
    // shape (9 query heads x 512 causal queries, head_dim 64), probabilities from a softmax.
    {
      const int64_t heads = 9, nq = 512, hd = 64, ldv = 3 * hd;  // 3 kv heads per cached row
      std::vector<float> pv(static_cast<size_t>(nq)), vv(static_cast<size_t>(nq * ldv)), ov(static_cast<size_t>(hd));
      for (auto& v : vv) v = nd(rng);
      for (auto& v : pv) v = nd(rng);
      softmax_inplace(pv.data(), nq);
      const bool have_avx2 = matmul_uses_avx2();
      std::vector<double> t_port, t_avx2;
      for (int rep = 0; rep <= 5; ++rep) {
        for (int vpath = 0; vpath < (have_avx2 ? 2 : 1); ++vpath) {
          t0 = now_s();
          for (int64_t h = 0; h < heads; ++h)
            for (int64_t r = 0; r < nq; ++r)
              ops_detail::attention_value_sum(pv.data(), r + 1, vv.data() + (h / 3) * hd, ldv, hd, ov.data(),
                                              vpath == 1);
          const double t = now_s() - t0;
          if (rep > 0) (vpath ? t_avx2 : t_port).push_back(t);
        }
      }
      const double vflop = 2.0 * heads * hd * (nq * (nq + 1) / 2);
      if (have_avx2)
        std::printf("attention value sum, prefill shape (9 heads x 512 causal queries x 64), 1 thread: portable "
                    "%.2f GFLOP/s, AVX2+FMA %.2f GFLOP/s (%.2fx)\n",
                    vflop / median(t_port) / 1e9, vflop / median(t_avx2) / 1e9, median(t_port) / median(t_avx2));
      else
        std::printf("attention value sum, prefill shape, 1 thread: portable %.2f GFLOP/s (no AVX2+FMA)\n",
                    vflop / median(t_port) / 1e9);
    }
    double pr = std::nan(""), dr = std::nan(""), lpr = std::nan(""), ldr = std::nan("");
    const double lcp_prefill = lcp.ok ? kPrefill / lcp.prefill_s : std::nan("");
    const double lcp_decode = lcp.ok ? kDecode / lcp.decode_s : std::nan("");
    if (torch.ok) {
      pr = prefill_tok_s / (kPrefill / torch.prefill_s);
      dr = decode_tok_s / (kDecode / torch.decode_s);
      std::printf("PyTorch %s (CPU, fp32, %d threads, same weights and protocol; logits vs ours: relative L2 %.2g)\n",
                  torch.version.c_str(), kThreads, torch.check_rel);
    } else {
      std::printf("PyTorch comparison: not run (see stderr)\n");
    }
    if (lcp.ok) {
      lpr = prefill_tok_s / lcp_prefill;
      ldr = decode_tok_s / lcp_decode;
      std::printf("llama.cpp (vendored in the %s; CPU, %d threads, same GGUF, ids and protocol; "
                  "weights stay Q4_1/Q8_0 quantised (ours too, in the stored rows, but with fp32 activations), fp16 KV "
                  "cache; "
                  "logits vs ours: relative L2 %.2g, argmax agrees at %.0f%% of 16 positions)\n",
                  env_or("CLUSCOMP_LLAMACPP_VERSION", "?").c_str(), kThreads, lcp.check_rel, 100.0 * lcp.check_top1);
      std::printf("llama.cpp build: %s\n", lcp.system_info.c_str());
    } else {
      std::printf("llama.cpp comparison: not run: %s\n", lcp.why.c_str());
    }
    std::printf("%-22s %14s %14s\n", "", "prefill tok/s", "decode tok/s");
    for (const Variant& v : vs)
      std::printf("%-22s %14.1f %14.1f\n", ("cluscomp " + v.name()).c_str(), v.prefill_tok_s(), v.decode_tok_s());
    if (torch.ok)
      std::printf("%-22s %14.1f %14.1f\n", "torch (fp32)", kPrefill / torch.prefill_s, kDecode / torch.decode_s);
    if (lcp.ok) std::printf("%-22s %14.1f %14.1f\n", "llama.cpp (Q4_1)", lcp_prefill, lcp_decode);
    if (torch.ok) std::printf("%-22s %14.2f %14.2f\n", "ratio vs torch", pr, dr);
    if (lcp.ok) std::printf("%-22s %14.2f %14.2f\n", "ratio vs llama.cpp", lpr, ldr);
    std::printf("llamacpp available=%d prefill_tok_s=%.9g decode_tok_s=%.9g prefill_ratio_vs_llamacpp=%.9g "
                "decode_ratio_vs_llamacpp=%.9g\n",
                lcp.ok ? 1 : 0, lcp_prefill, lcp_decode, lpr, ldr);
    // Per-variant keys: <measure>_<label> for the stored variant (the runtime's), <measure>_<label>_fp32
    // for the fp32-dense one, and the stored / fp32 ratios of the same run.
    std::string keys;
    char buf[256];
    for (size_t i = 0; i + 1 < vs.size(); i += 2) {
      const Variant &f = vs[i], &st = vs[i + 1];
      std::snprintf(buf, sizeof buf,
                    " decode_tok_s_%s=%.9g decode_tok_s_%s_fp32=%.9g prefill_tok_s_%s=%.9g prefill_tok_s_%s_fp32=%.9g"
                    " decode_ratio_%s_stored_vs_fp32=%.9g prefill_ratio_%s_stored_vs_fp32=%.9g resident_mib_%s=%.9g",
                    st.label.c_str(), st.decode_tok_s(), f.label.c_str(), f.decode_tok_s(), st.label.c_str(),
                    st.prefill_tok_s(), f.label.c_str(), f.prefill_tok_s(), st.label.c_str(),
                    st.decode_tok_s() / f.decode_tok_s(), st.label.c_str(), st.prefill_tok_s() / f.prefill_tok_s(),
                    st.label.c_str(), st.mem.weights / 1048576.0);
      keys += buf;
      if (i > 0) {
        std::snprintf(buf, sizeof buf, " decode_ratio_%s_vs_llamacpp=%.9g", st.label.c_str(), st.decode_tok_s() / lcp_decode);
        keys += buf;
      }
    }
    std::printf("RESULT runtime prefill_tok_s=%.9g decode_tok_s=%.9g prefill_ratio_vs_torch=%.9g decode_ratio_vs_torch=%.9g "
                "llamacpp_prefill_tok_s=%.9g llamacpp_decode_tok_s=%.9g prefill_ratio_vs_llamacpp=%.9g "
                "decode_ratio_vs_llamacpp=%.9g%s\n",
                prefill_tok_s, decode_tok_s, pr, dr, lcp_prefill, lcp_decode, lpr, ldr, keys.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_runtime: %s\n", e.what());
    return 1;
  }
  return 0;
}
