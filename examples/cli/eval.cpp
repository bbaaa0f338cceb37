// cluscomp eval MODEL TEXT: perplexity of MODEL on a UTF-8 text file (CLUSCOMP.md §4:
// non-overlapping windows of min(context, 2048) tokens unless --window/--stride say otherwise;
// --max-windows N stops early).
#include <fmt/core.h>

#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/perplexity.hpp"

namespace cc = cluscomp;

namespace cli {

int run_eval(const Invocation& inv) {
  const std::string &model_path = inv.args[0], &text_path = inv.args[1];
  const Options& opt = inv.opt;
  const cc::Device device = device_for(opt, "eval");
  const std::string text = read_utf8_text(text_path);
  cc::LlamaModel m = load_model_timed(model_path, static_cast<int>(opt.get_int("threads", 0)), device,
                                       dense_weights_for(opt));
  const cc::Tokenizer tok = cc::load_model_tokenizer(model_path);
  auto t0 = Clock::now();
  const std::vector<int32_t> ids = tok.encode(text, tok.add_bos_default());
  fmt::print(stderr, "tokenised {} bytes into {} tokens in {:.2f} s\n", text.size(), ids.size(), seconds_since(t0));
  cc::PerplexityOptions po;
  po.window = opt.get_int("window", 0);
  po.stride = opt.get_int("stride", 0);
  po.max_windows = opt.get_int("max-windows", 0);
  if (po.window < 0 || po.stride < 0 || po.max_windows < 0)
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--window, --stride and --max-windows must not be negative");
  const cc::PerplexityResult r = cc::evaluate_perplexity(m, ids, po, [](const cc::PerplexityResult& p) {
    const int64_t total = p.total_windows;
    progress_bar(p.windows, total, fmt::format("windows  ppl {:.4f}  {:.1f} tok/s   ", p.perplexity(),
                                               p.tokens_per_second()));
  });
  fmt::print(stderr, "\n");
  const cc::KvCache probe = m.make_cache(r.window);
  const cc::MemoryReport mem = m.memory_report(&probe, r.window);
  fmt::print("model:       {}\n", model_path);
  fmt::print("text:        {} ({} bytes)\n", text_path, text.size());
  fmt::print("tokens:      {}\n", r.tokens);
  fmt::print("window:      {} (stride {})\n", r.window, po.stride > 0 ? po.stride : r.window);
  fmt::print("windows:     {} of {}{}\n", r.windows, r.total_windows, r.windows < r.total_windows ? " (--max-windows)" : "");
  fmt::print("predictions: {}\n", r.predictions);
  fmt::print("mean NLL:    {:.6f} nats\n", r.mean_nll());
  fmt::print("perplexity:  {:.4f}\n", r.perplexity());
  fmt::print("speed:       {:.1f} tokens/s ({} tokens in {:.2f} s, {} threads)\n", r.tokens_per_second(), r.processed,
             r.seconds, m.threads());
  fmt::print("memory:      {:.1f} MiB weights + {:.1f} MiB kv cache + {:.1f} MiB activations\n",
             static_cast<double>(mem.weights) / (1 << 20), static_cast<double>(mem.kv_cache) / (1 << 20),
             static_cast<double>(mem.activations) / (1 << 20));
  return 0;
}

}  // namespace cli
