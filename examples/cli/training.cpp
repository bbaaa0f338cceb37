// What recover and finetune share: their options and the training run's display and report.
#include <fmt/core.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "cli.hpp"
#include "training.hpp"
#include "cluscomp/core/error.hpp"

namespace cc = cluscomp;

namespace cli {

cc::RecoverOptions recover_options(const Options& opt, cc::Device device) {
  cc::RecoverOptions o;
  o.device = device;
  o.samples = opt.get_int("samples", o.samples);
  o.window = opt.get_int("window", o.window);
  o.epochs = epochs_option(opt, o.epochs);
  o.max_steps = opt.get_int("steps", 0);
  if (o.max_steps < 0) throw cc::Error(cc::StatusCode::kInvalidArgument, "--steps must not be negative");
  o.accumulation = opt.get_int("grad-accum", 1);
  o.lr = static_cast<float>(opt.get_double("lr", o.lr));
  o.weight_decay = static_cast<float>(opt.get_double("weight-decay", o.weight_decay));
  o.seed = static_cast<uint64_t>(opt.get_int("seed", 1234));
  o.threads = static_cast<int>(opt.get_int("threads", 0));
  o.recompute = opt.flag("recompute");
  o.evaluate = !opt.flag("no-eval");
  return o;
}

int run_training(const std::string& out, const Options& opt, const cc::RecoverOptions& o, const TrainFn& train) {
  const bool tty = isatty(2) != 0;
  auto last_draw = Clock::now();
  const cc::RecoverReport rep = train([&](const cc::RecoverProgress& p) {
    using S = cc::RecoverProgress::Stage;
    if (p.stage == S::kEvalBefore || p.stage == S::kEvalAfter) {
      if (tty) progress_bar(p.window, p.windows, p.stage == S::kEvalBefore ? "evaluating before   " : "evaluating after   ");
      if (tty && p.window == p.windows) fmt::print(stderr, "\n");
    } else if (p.stage == S::kStep) {
      if (!tty) {
        fmt::print(stderr, "step {:>5}/{} epoch {}/{}: loss {:.5f}\n", p.step + 1, p.steps, p.epoch + 1, p.epochs, p.loss);
      } else if (p.step + 1 == p.steps || seconds_since(last_draw) >= 0.1) {
        last_draw = Clock::now();
        progress_bar(p.step + 1, p.steps,
                     fmt::format("steps  epoch {}/{} loss {:.5f} | eta {}   ", p.epoch + 1, p.epochs, p.loss,
                                 format_seconds(p.eta_s)));
      }
    } else if (p.stage == S::kEpochDone) {
      fmt::print(stderr, "{}epoch {}/{}: mean loss {:.5f}\n", tty ? "\n" : "", p.epoch + 1, p.epochs, p.loss);
    }
    return true;
  });
  const char* lname = rep.loss == cc::RecoverLoss::kKd ? "KL(teacher || student) per token" : "cross-entropy per token";
  fmt::print("loss:        {}\n", lname);
  fmt::print("trainable:   {} values ({}) = {:.4f}% of {} parameters{}\n", rep.trainable,
             rep.train == cc::RecoverTrain::kAll ? "codebooks, norms, embedding, lm_head if untied" : "codebooks",
             100.0 * rep.trainable_share(), rep.parameters,
             rep.train == cc::RecoverTrain::kAll ? "; dense projection matrices and projection biases stay frozen" : "");
  fmt::print("steps:       {} optimiser steps, {} windows of {} tokens ({} per step), lr {}, weight decay {}\n",
             rep.steps, rep.windows_seen, o.window, o.accumulation, o.lr, o.weight_decay);
  std::string curve;
  for (size_t i = 0; i < rep.epoch_loss.size(); ++i) curve += fmt::format("{}{:.5f}", i ? " " : "", rep.epoch_loss[i]);
  fmt::print("epoch loss:  {}\n", curve);
  if (!rep.step_loss.empty())
    fmt::print("step loss:   first {:.5f}, last {:.5f}\n", rep.step_loss.front(), rep.step_loss.back());
  if (o.evaluate) {
    if (std::isfinite(rep.kl_before))
      fmt::print("KL train:    {:.5f} -> {:.5f} nats/token (training windows, stored values)\n", rep.kl_before,
                 rep.kl_after);
    fmt::print("CE train:    {:.5f} -> {:.5f} nats/token (ppl {:.3f} -> {:.3f}; training windows)\n", rep.ce_before,
               rep.ce_after, std::exp(rep.ce_before), std::exp(rep.ce_after));
  }
  fmt::print("memory:      {:.1f} MiB saved activations + {:.1f} MiB logits per window{}, {:.1f} MiB AdamW state; "
             "peak RSS {:.1f} MiB\n",
             static_cast<double>(rep.saved_bytes) / (1 << 20), static_cast<double>(rep.logits_bytes) / (1 << 20),
             o.recompute ? " (recompute)" : "", static_cast<double>(rep.optimizer_bytes) / (1 << 20),
             static_cast<double>(rep.peak_rss_bytes) / (1 << 20));
  fmt::print("time:        {} ({:.2f} s per window, training {})\n", format_seconds(rep.seconds), rep.seconds_per_window,
             format_seconds(rep.train_seconds));
  fmt::print("output:      {} ({:.2f} MiB)\n", out, static_cast<double>(rep.output_bytes) / (1 << 20));
  if (opt.values.count("loss-csv")) {
    const std::string path = opt.values.at("loss-csv");
    std::string csv = "step,epoch,loss\n";
    for (size_t i = 0; i < rep.step_loss.size(); ++i)
      csv += fmt::format("{},{},{:.8g}\n", i + 1, rep.step_epoch[i] + 1, rep.step_loss[i]);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(csv.data(), 1, csv.size(), f) != csv.size() || std::fclose(f) != 0)
      throw cc::Error(cc::StatusCode::kIoError, path + ": cannot write the loss curve");
    fmt::print("loss curve:  {} ({} steps)\n", path, rep.step_loss.size());
  }
  return 0;
}

}  // namespace cli
