// cluscomp generate MODEL PROMPT: streams a continuation: greedy, or --temperature/--top-k/--top-p
// with --seed; the chat template when the model declares one (--raw: plain continuation of PROMPT).
#include <fmt/core.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/sampling.hpp"

namespace cc = cluscomp;

namespace cli {

int run_generate(const Invocation& inv) {
  const std::string &model_path = inv.args[0], &prompt = inv.args[1];
  const Options& opt = inv.opt;
  const cc::Device device = device_for(opt, "generate");
  cc::LlamaModel m = load_model_timed(model_path, static_cast<int>(opt.get_int("threads", 0)), device,
                                       dense_weights_for(opt));
  const cc::Tokenizer tok = cc::load_model_tokenizer(model_path);
  const int64_t max_tokens = opt.get_int("max-tokens", 64);
  if (max_tokens < 1) throw cc::Error(cc::StatusCode::kInvalidArgument, "--max-tokens must be at least 1");
  cc::SamplingOptions so;
  so.temperature = static_cast<float>(opt.get_double("temperature", 0.0));
  so.top_k = opt.get_int("top-k", 0);
  so.top_p = static_cast<float>(opt.get_double("top-p", 1.0));
  so.seed = static_cast<uint64_t>(opt.get_int("seed", 0));
  cc::Sampler sampler(so);

  const bool chat = !opt.flag("raw") && !tok.chat_template().empty();
  std::vector<int32_t> ids;
  if (chat) {
    const std::string text = tok.apply_chat_template({{"user", prompt}}, /*add_generation_prompt=*/true);
    ids = tok.encode(text, tok.add_bos_default(), /*parse_special=*/true);
  } else {
    ids = tok.encode(prompt, tok.add_bos_default());
  }
  if (ids.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "the prompt encodes to no tokens");
  const int64_t n_prompt = static_cast<int64_t>(ids.size());
  if (n_prompt > m.context_length())
    throw cc::Error(cc::StatusCode::kInvalidArgument, "the prompt has " + std::to_string(n_prompt) +
                                                          " tokens, longer than the model's context of " +
                                                          std::to_string(m.context_length()));
  const int64_t capacity = std::min(m.context_length(), n_prompt + max_tokens);
  cc::KvCache cache = m.make_cache(capacity);
  fmt::print(stderr, "prompt: {} tokens{}; sampling: {}\n", n_prompt, chat ? " (chat template)" : "",
             so.temperature == 0.0f ? std::string("greedy")
                                    : fmt::format("temperature {} top-k {} top-p {} seed {}", so.temperature,
                                                  so.top_k, so.top_p, so.seed));
  if (!chat) fmt::print("{}", prompt);
  std::fflush(stdout);
  auto t0 = Clock::now();
  std::vector<float> logits = m.forward(ids, cache);
  const double prefill_s = seconds_since(t0);
  t0 = Clock::now();
  int64_t generated = 0;
  std::string stop_reason = "--max-tokens";
  // A byte-level BPE (or byte-fallback) token can end inside a multi-byte character: print only
  // complete characters, hold the rest back until the next token completes it (U+FFFD if never).
  cc::unicode::Utf8StreamDecoder utf8;
  for (;;) {
    const int32_t next = sampler.sample(logits.data(), m.vocab_size());
    if (next == tok.eos_id()) {
      stop_reason = "end of sequence";
      break;
    }
    fmt::print("{}", utf8.feed(tok.token_to_piece(next)));
    std::fflush(stdout);
    ++generated;
    if (generated >= max_tokens) break;
    if (cache.length() >= cache.capacity()) {
      stop_reason = "context full";
      break;
    }
    logits = m.forward(&next, 1, cache);
  }
  const double decode_s = seconds_since(t0);
  fmt::print("{}\n", utf8.flush());
  const cc::MemoryReport mem = m.memory_report(&cache, n_prompt);
  fmt::print(stderr,
             "[{} prompt tokens: {:.1f} tok/s prefill | {} generated: {:.1f} tok/s decode | stop: {} | memory "
             "{:.1f} MiB weights + {:.1f} MiB kv cache]\n",
             n_prompt, static_cast<double>(n_prompt) / prefill_s, generated,
             decode_s > 0 ? static_cast<double>(std::max<int64_t>(generated - 1, 0)) / decode_s : 0.0, stop_reason,
             static_cast<double>(mem.weights) / (1 << 20), static_cast<double>(mem.kv_cache) / (1 << 20));
  return 0;
}

}  // namespace cli
