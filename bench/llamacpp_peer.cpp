// llama.cpp peer of bench_runtime: the same model file, prompt ids and protocol through libllama's C
// API (built by bench/llamacpp_build.sh from the vendored llama.cpp of the llama-cpp-python sdist;
// this file is ours and is compiled against that build, never against the cluscomp library).
//
//   llamacpp_peer MODEL.gguf OUTDIR THREADS PREFILL DECODE REPS
//
// Protocol (bench/bench_runtime.cpp's): prompt ids[i] = (i * 7919 + 13) % vocab; prefill = one
// llama_decode of PREFILL tokens from an empty KV cache, the last position's logits read back;
// decode = DECODE single-token llama_decode calls from a 1-token prompt, logits each step, argmax
// feeding the next; a warm-up, then REPS repetitions (the caller takes medians). llama.cpp's
// defaults otherwise (what a user gets): the GGUF's weights stay quantised (Q4_1 / Q8_0 dot
// products with activations quantised on the fly), fp16 KV cache, flash attention "auto",
// n_threads = n_threads_batch = THREADS, n_ubatch = PREFILL so the prompt is one graph.
// Writes (result.json LAST):
//   OUTDIR/check.logits.f32  every position's logits of the first 16 prompt ids, (16, vocab) f32
//   OUTDIR/result.json       {"system_info", "threads", "check_tokens", "vocab", "prefill_s": [..],
//                             "decode_s": [..]}
#include <llama.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

constexpr int kCheckTokens = 16;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "llamacpp_peer: %s\n", m.c_str());
  std::exit(1);
}

void quiet_log(ggml_log_level level, const char* text, void*) {
  if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

/// Decodes ids[0..n) at positions pos0.. into the context; `all` asks for every position's logits.
void decode(llama_context* ctx, llama_batch& b, const int32_t* ids, int n, int pos0, bool all) {
  b.n_tokens = n;
  for (int i = 0; i < n; ++i) {
    b.token[i] = ids[i];
    b.pos[i] = pos0 + i;
    b.n_seq_id[i] = 1;
    b.seq_id[i][0] = 0;
    b.logits[i] = all || i == n - 1;
  }
  const int32_t rc = llama_decode(ctx, b);
  if (rc != 0) die("llama_decode returned " + std::to_string(rc));
}

int argmax(const float* v, int n) { return static_cast<int>(std::max_element(v, v + n) - v); }

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) die("usage: llamacpp_peer MODEL.gguf OUTDIR THREADS PREFILL DECODE REPS");
  const std::string path = argv[1], out = argv[2];
  const int threads = std::atoi(argv[3]), n_prefill = std::atoi(argv[4]), n_decode = std::atoi(argv[5]),
            reps = std::atoi(argv[6]);
  if (threads <= 0 || n_prefill < kCheckTokens || n_decode <= 0 || reps <= 0) die("bad numeric argument");
  llama_log_set(quiet_log, nullptr);
  llama_backend_init();

  double t0 = now_s();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(path.c_str(), mp);
  if (!model) die("cannot load " + path);
  const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n_prefill + n_decode);
  cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(n_prefill);
  cp.n_threads = cp.n_threads_batch = threads;
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) die("cannot create a context");
  std::fprintf(stderr, "llama.cpp: loaded in %.2f s, %d threads, vocab %d, n_ctx %u; %s\n", now_s() - t0,
               llama_n_threads(ctx), vocab, llama_n_ctx(ctx), llama_print_system_info());

  std::vector<int32_t> ids(static_cast<size_t>(n_prefill));
  for (int i = 0; i < n_prefill; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  llama_batch batch = llama_batch_init(n_prefill, 0, 1);
  llama_memory_t mem = llama_get_memory(ctx);

  // Sanity data for the caller: every position's logits of the first kCheckTokens ids.
  {
    llama_memory_clear(mem, true);
    decode(ctx, batch, ids.data(), kCheckTokens, 0, /*all=*/true);
    std::vector<float> logits(static_cast<size_t>(kCheckTokens) * static_cast<size_t>(vocab));
    for (int i = 0; i < kCheckTokens; ++i) {
      const float* l = llama_get_logits_ith(ctx, i);
      if (!l) die("no logits for position " + std::to_string(i));
      std::copy(l, l + vocab, logits.begin() + static_cast<std::ptrdiff_t>(i) * vocab);
    }
    FILE* f = std::fopen((out + "/check.logits.f32").c_str(), "wb");
    if (!f || std::fwrite(logits.data(), sizeof(float), logits.size(), f) != logits.size() || std::fclose(f) != 0)
      die("cannot write " + out + "/check.logits.f32");
  }

  std::vector<double> prefill, decode_s;
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0: warm-up
    llama_memory_clear(mem, true);
    t0 = now_s();
    decode(ctx, batch, ids.data(), n_prefill, 0, /*all=*/false);
    const float* l = llama_get_logits_ith(ctx, -1);  // synchronises
    const double p = now_s() - t0;
    if (!l) die("no prefill logits");
    llama_memory_clear(mem, true);
    int32_t next = ids[0];
    t0 = now_s();
    for (int i = 0; i < n_decode; ++i) {
      decode(ctx, batch, &next, 1, i, /*all=*/false);
      l = llama_get_logits_ith(ctx, -1);
      if (!l) die("no decode logits");
      next = argmax(l, vocab);
    }
    const double d = now_s() - t0;
    if (rep > 0) {
      prefill.push_back(p);
      decode_s.push_back(d);
    }
  }
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();

  const std::string tmp = out + "/result.json.tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) die("cannot write " + tmp);
  std::fprintf(f,
               "{\"system_info\": \"%s\", \"threads\": %d, \"check_tokens\": %d, \"vocab\": %d, \"prefill_s\": %s, "
               "\"decode_s\": %s}\n",
               json_escape(llama_print_system_info()).c_str(), threads, kCheckTokens, vocab,
               json_list(prefill).c_str(), json_list(decode_s).c_str());
  if (std::fclose(f) != 0 || std::rename(tmp.c_str(), (out + "/result.json").c_str()) != 0)
    die("cannot write " + out + "/result.json");
  return 0;
}
