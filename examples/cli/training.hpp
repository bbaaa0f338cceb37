#pragma once
// What recover and finetune share (training.cpp).

#include <functional>
#include <string>

#include "cli.hpp"
#include "cluscomp/pipeline/recover.hpp"

namespace cli {

// The options both verbs take (--samples, --window, --epochs, ...), range-checked.
cluscomp::RecoverOptions recover_options(const Options& opt, cluscomp::Device device);

// Runs `train` with a progress display, prints the report and writes the loss curve CSV
// (--loss-csv).
using TrainFn = std::function<cluscomp::RecoverReport(const cluscomp::RecoverCallback&)>;
int run_training(const std::string& out, const Options& opt, const cluscomp::RecoverOptions& o, const TrainFn& train);

}  // namespace cli
