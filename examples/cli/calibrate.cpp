// cluscomp calibrate TEACHER STUDENT TEXT --out OUT: block-wise codebook finetuning of a compressed
// STUDENT against TEACHER on a calibration text (CLUSCOMP.md §2); resumable per block.
#include <fmt/core.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/calibrate.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace cli {

int run_calibrate(const Invocation& inv) {
  const std::string &teacher_path = inv.args[0], &student_path = inv.args[1], &text_path = inv.args[2];
  const Options& opt = inv.opt;
  const cc::Device device = device_for(opt, "calibrate");
  const std::string out = opt.values.count("out") ? opt.values.at("out") : std::string();
  if (out.empty()) throw cc::Error(cc::StatusCode::kInvalidArgument, "calibrate needs --out OUT");
  if (!fs::exists(student_path)) throw cc::Error(cc::StatusCode::kNotFound, student_path + ": no such file");
  cc::CalibrateOptions o;
  o.device = device;
  o.samples = opt.get_int("samples", o.samples);
  o.window = opt.get_int("window", o.window);
  o.epochs = epochs_option(opt, o.epochs);
  o.lr = static_cast<float>(opt.get_double("lr", o.lr));
  o.weight_decay = static_cast<float>(opt.get_double("weight-decay", o.weight_decay));
  o.aug_loss = opt.flag("aug-loss");
  o.seed = static_cast<uint64_t>(opt.get_int("seed", 1234));
  o.threads = static_cast<int>(opt.get_int("threads", 0));
  if (opt.values.count("work-dir")) o.work_dir = opt.values.at("work-dir");

  const std::vector<int32_t> ids = read_training_tokens(teacher_path, text_path);
  cc::LlamaModel teacher = load_model_timed(teacher_path, o.threads, device, cc::DenseWeights::kFp32);
  fmt::print(stderr, "calibrating {}: {} samples x {} tokens, {} epochs, lr {}, weight decay {}{}\n", student_path,
             o.samples, o.window, o.epochs, o.lr, o.weight_decay, o.aug_loss ? ", aug_loss" : "");
  const bool tty = isatty(2) != 0;
  auto last_draw = Clock::now();
  const cc::CalibrateReport rep = cc::calibrate_model(
      teacher, teacher_path, student_path, ids, out, o, [&](const cc::CalibrateProgress& p) {
        using S = cc::CalibrateProgress::Stage;
        const std::string eta = p.total_eta_s > 0 ? format_seconds(p.total_eta_s) : std::string("?");
        // Lines that stay (block and epoch results) first clear the progress bar on a terminal.
        const char* line_start = tty ? "\r\033[K" : "";
        if (p.stage == S::kBlockDone) {
          const std::string resumed =
              p.lr != o.lr ? fmt::format(" (resumed; trained at lr {})", p.lr) : std::string(" (resumed)");
          fmt::print(stderr, "{}block {:>3}/{}: loss {:.4g} -> {:.4g}{} | total {} eta {}\n", line_start, p.block + 1,
                     p.blocks, p.loss_before, p.loss_after,
                     (p.resumed ? resumed : fmt::format(" in {}", format_seconds(p.block_elapsed_s))) +
                         (p.reverted ? " (training did not lower it: untrained codebooks kept)" : ""),
                     format_seconds(p.total_elapsed_s), eta);
        } else if (p.stage == S::kEpochDone) {
          // On a terminal too, so the loss curve stays on screen after the bar moves on.
          fmt::print(stderr, "{}block {:>3}/{} epoch {}/{}: mean loss {:.4g}\n", line_start, p.block + 1, p.blocks,
                     p.epoch + 1, p.epochs, p.loss);
        } else if (tty && (p.stage != S::kStep || seconds_since(last_draw) >= 0.1)) {
          last_draw = Clock::now();
          progress_bar(p.block, p.blocks,
                       p.stage == S::kTargets
                           ? fmt::format("block {} targets              ", p.block + 1)
                           : fmt::format("block {} epoch {}/{} step {}/{} loss {:.4g} | eta {}   ", p.block + 1,
                                         p.epoch + 1, p.epochs, p.step + 1, p.steps, p.loss, eta));
        }
        return true;
      });
  double before = 0, after = 0, train_s = 0;
  int64_t other_lr = 0;  // resumed blocks trained at another lr by an earlier run
  for (const cc::CalibrateBlockReport& b : rep.blocks) {
    before += b.loss_before;
    after += b.loss_after;
    train_s += b.seconds;
    other_lr += b.lr != o.lr;
  }
  const double nb = static_cast<double>(rep.blocks.size());
  fmt::print("teacher:     {}\n", teacher_path);
  fmt::print("student:     {}\n", student_path);
  fmt::print("text:        {} ({} tokens; {} windows of {} at seeded offsets, seed {})\n", text_path, ids.size(),
             o.samples, o.window, o.seed);
  fmt::print("blocks:      {} ({} resumed from {}{})\n", rep.blocks.size(), rep.resumed,
             o.work_dir.empty() ? out + ".work" : o.work_dir,
             other_lr > 0 ? fmt::format("; {} of them trained at another lr, see calibrate.settings block_lr", other_lr)
                          : std::string());
  fmt::print("block loss:  mean {:.4g} before -> {:.4g} after (MSE against the teacher's block outputs)\n",
             before / nb, after / nb);
  fmt::print("trainable:   {} codebook values = {:.3f}% of {} parameters\n", rep.trainable,
             100.0 * static_cast<double>(rep.trainable) / static_cast<double>(rep.parameters), rep.parameters);
  fmt::print("memory:      {:.1f} MiB streams + {:.1f} MiB saved activations per step; peak RSS {:.1f} MiB\n",
             static_cast<double>(rep.stream_bytes) / (1 << 20), static_cast<double>(rep.saved_bytes) / (1 << 20),
             static_cast<double>(rep.peak_rss_bytes) / (1 << 20));
  const int64_t trained_blocks = static_cast<int64_t>(rep.blocks.size()) - rep.resumed;
  fmt::print("time:        {} ({:.2f} s per trained block, {} threads)\n", format_seconds(rep.seconds),
             trained_blocks > 0 ? train_s / static_cast<double>(trained_blocks) : 0.0, teacher.threads());
  fmt::print("output:      {} ({:.2f} MiB)\n", out, static_cast<double>(rep.output_bytes) / (1 << 20));
  return 0;
}

}  // namespace cli
