// cluscomp recover TEACHER STUDENT TEXT --out OUT: end-to-end training of a compressed STUDENT: KD
// from TEACHER (default) or --loss ce; codebooks only or --train all (CLUSCOMP.md §3); not resumable.
#include <fmt/core.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "training.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/model/llama.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace cli {

int run_recover(const Invocation& inv) {
  const std::string &teacher_path = inv.args[0], &student_path = inv.args[1], &text_path = inv.args[2];
  const Options& opt = inv.opt;
  const cc::Device device = device_for(opt, "recover");
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "recover needs --out OUT");
  if (!fs::exists(student_path)) throw cc::Error(cc::StatusCode::kNotFound, student_path + ": no such file");
  cc::RecoverOptions o = recover_options(opt, device);
  o.loss = cc::parse_recover_loss(opt.get("loss", "kd"));
  o.train = cc::parse_recover_train(opt.get("train", "codebooks"));
  const std::vector<int32_t> ids = read_training_tokens(teacher_path, text_path);
  cc::LlamaModel teacher = load_model_timed(teacher_path, o.threads, device, cc::DenseWeights::kFp32);
  fmt::print(stderr, "recovering {}: loss {}, train {}, {} windows x {} tokens, {} epochs{}, lr {}\n", student_path,
             cc::recover_loss_name(o.loss), cc::recover_train_name(o.train), o.samples, o.window, o.epochs,
             o.max_steps > 0 ? fmt::format(" (at most {} steps)", o.max_steps) : std::string(), o.lr);
  fmt::print("teacher:     {}\n", teacher_path);
  fmt::print("student:     {}\n", student_path);
  fmt::print("text:        {} ({} tokens; {} windows of {} at seeded offsets, seed {})\n", text_path, ids.size(),
             o.samples, o.window, o.seed);
  return run_training(out, opt, o, [&](const cc::RecoverCallback& cb) {
    return cc::recover_model(&teacher, teacher_path, student_path, ids, out, o, cb);
  });
}

}  // namespace cli
