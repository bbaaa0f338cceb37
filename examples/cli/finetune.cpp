// cluscomp finetune STUDENT TEXT --out OUT: codebook-only finetuning on a text (causal LM loss).
#include <fmt/core.h>

#include <string>
#include <vector>

#include "cli.hpp"
#include "training.hpp"
#include "cluscomp/core/error.hpp"

namespace cc = cluscomp;

namespace cli {

int run_finetune(const Invocation& inv) {
  const std::string &student_path = inv.args[0], &text_path = inv.args[1];
  const Options& opt = inv.opt;
  const cc::Device device = device_for(opt, "finetune");
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "finetune needs --out OUT");
  const cc::RecoverOptions o = recover_options(opt, device);
  const std::vector<int32_t> ids = read_training_tokens(student_path, text_path);
  fmt::print(stderr, "finetuning the codebooks of {}: {} windows x {} tokens, {} epochs{}, lr {}\n", student_path,
             o.samples, o.window, o.epochs,
             o.max_steps > 0 ? fmt::format(" (at most {} steps)", o.max_steps) : std::string(), o.lr);
  fmt::print("student:     {}\n", student_path);
  fmt::print("text:        {} ({} tokens; {} windows of {} at seeded offsets, seed {})\n", text_path, ids.size(),
             o.samples, o.window, o.seed);
  return run_training(out, opt, o, [&](const cc::RecoverCallback& cb) {
    return cc::finetune_model(student_path, ids, out, o, cb);
  });
}

}  // namespace cli
