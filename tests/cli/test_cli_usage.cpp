// The generated usage texts of the built cluscomp binary: `cluscomp --help` lists every verb,
// `cluscomp VERB --help` lists exactly the options the verb accepted before the verb table (plus
// --device on the verbs that compute), and the parser accepts every option the help lists and
// refuses one it does not: help and parser come from one table. Also --device's refusal of a bad
// value. Runs the binary a few hundred times on a tiny file; no verb gets to do work.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli/cli_run.hpp"
#include "support/test_data.hpp"

using cluscomp_test::CliRun;
using cluscomp_test::run_cli;
using cluscomp_test::split_lines;
using cluscomp_test::words;

namespace {

// What each verb accepts: the option lists of the command line before the table, and --device on
// the verbs that compute.
const std::map<std::string, std::set<std::string>>& expected_options() {
  static const std::map<std::string, std::set<std::string>> m = {
      {"inspect", {}},
      {"roundtrip", {"out"}},
      {"eval", {"window", "stride", "max-windows", "threads", "device", "dense-fp32"}},
      {"generate", {"max-tokens", "temperature", "top-k", "top-p", "seed", "raw", "threads", "device", "dense-fp32"}},
      {"compress", {"out", "bpw", "d", "k", "s", "per-kind", "method", "bits", "group-size", "matrices", "iterations",
                    "seed", "code-bits", "search-d", "centroid-dtype", "dense-dtype", "work-dir", "threads", "jobs",
                    "activations", "act-samples", "act-window", "importance-damp", "reference-layout", "device"}},
      {"calibrate", {"out", "samples", "window", "epochs", "lr", "weight-decay", "seed", "work-dir", "threads",
                     "aug-loss", "device"}},
      {"recover", {"out", "loss", "train", "samples", "window", "epochs", "steps", "grad-accum", "lr", "weight-decay",
                   "seed", "threads", "loss-csv", "recompute", "no-eval", "device"}},
      {"finetune", {"out", "samples", "window", "epochs", "steps", "grad-accum", "lr", "weight-decay", "seed",
                    "threads", "loss-csv", "recompute", "no-eval", "device"}},
      {"embed-tokenizer", {"out"}},
      {"version", {}},
  };
  return m;
}

struct HelpOption {
  std::string name;
  bool takes_value = false;
};

// The "options:" section of a verb's help: "  --name VALUE   help" (one space before a value, at
// least two before the help).
std::vector<HelpOption> help_options(const std::string& help) {
  std::vector<HelpOption> out;
  bool in_options = false;
  for (const std::string& line : split_lines(help)) {
    if (line == "options:") {
      in_options = true;
      continue;
    }
    if (!in_options || line.rfind("  --", 0) != 0) continue;
    const size_t end = line.find(' ', 4);
    REQUIRE(end != std::string::npos);
    HelpOption o;
    o.name = line.substr(4, end - 4);
    o.takes_value = end + 1 < line.size() && line[end + 1] != ' ';
    out.push_back(o);
  }
  return out;
}

}  // namespace

TEST_CASE("cli usage: --help lists every verb, each verb's help names it and its arguments", "[cli][usage]") {
  cluscomp_test::TempDir dir;
  const CliRun top = run_cli({"--help"}, dir.path());
  REQUIRE(top.status == 0);
  CHECK(top.err.empty());
  std::set<std::string> listed;
  for (const std::string& line : split_lines(top.out))
    if (line.rfind("  cluscomp ", 0) == 0) listed.insert(words(line)[1]);
  std::set<std::string> expected;
  for (const auto& kv : expected_options()) expected.insert(kv.first);
  CHECK(listed == expected);
  for (const std::string& verb : listed) {
    INFO("verb: " << verb);
    for (const char* help : {"--help", "-h"}) {
      const CliRun r = run_cli({verb, help}, dir.path());
      CHECK(r.status == 0);
      CHECK(r.out.rfind("usage: cluscomp " + verb, 0) == 0);
    }
    CHECK(run_cli({"help", verb}, dir.path()).out == run_cli({verb, "--help"}, dir.path()).out);
  }
  // Without arguments or with an unknown verb: the usage on stderr, exit status 2.
  const CliRun none = run_cli({}, dir.path());
  CHECK(none.status == 2);
  CHECK(none.err == top.out);
  const CliRun unknown = run_cli({"squash", "x"}, dir.path());
  CHECK(unknown.status == 2);
  CHECK(unknown.err.rfind("cluscomp: unknown command 'squash'\n", 0) == 0);
}

TEST_CASE("cli usage: each verb's help lists exactly the options it accepts", "[cli][usage]") {
  cluscomp_test::TempDir dir;
  const std::string file = (dir / "any.bin").string();
  cluscomp_test::write_bytes(file, {1, 2, 3});
  for (const auto& [verb, expected] : expected_options()) {
    INFO("verb: " << verb);
    const CliRun help = run_cli({verb, "--help"}, dir.path());
    REQUIRE(help.status == 0);
    const std::vector<HelpOption> listed = help_options(help.out);
    std::set<std::string> names;
    for (const HelpOption& o : listed) names.insert(o.name);
    CHECK(names == expected);
    // The positional arguments from the usage line, before the first option or "[options]".
    std::vector<std::string> args = {verb};
    const std::vector<std::string> usage = words(split_lines(help.out).at(0));
    for (size_t i = 3; i < usage.size() && usage[i][0] != '-' && usage[i][0] != '['; ++i) args.push_back(file);
    // The parser takes every listed option: a value option without its value is named as such,
    // a flag is passed over to the unknown option after it.
    for (const HelpOption& o : listed) {
      INFO("option: --" << o.name);
      std::vector<std::string> a = args;
      a.push_back("--" + o.name);
      if (!o.takes_value) a.push_back("--no-such-option");
      const CliRun r = run_cli(a, dir.path());
      CHECK(r.status == 1);
      CHECK(r.err == (o.takes_value ? "cluscomp: error: --" + o.name + " needs a value\n"
                                    : "cluscomp: error: unknown option '--no-such-option'\n"));
    }
    std::vector<std::string> a = args;
    a.push_back("--no-such-option");
    const CliRun r = run_cli(a, dir.path());
    CHECK(r.status == 1);
    CHECK(r.err == "cluscomp: error: unknown option '--no-such-option'\n");
  }
}

TEST_CASE("cli usage: --device takes cpu or cuda, and a bad value is refused naming both", "[cli][usage][device]") {
  cluscomp_test::TempDir dir;
  const std::string file = (dir / "any.bin").string();
  cluscomp_test::write_bytes(file, {1, 2, 3});
  const std::map<std::string, int> computing = {{"eval", 2},      {"generate", 2}, {"compress", 1},
                                                {"calibrate", 3}, {"recover", 3},  {"finetune", 2}};
  for (const auto& [verb, n] : computing) {
    INFO("verb: " << verb);
    std::vector<std::string> a = {verb};
    for (int i = 0; i < n; ++i) a.push_back(file);
    a.insert(a.end(), {"--device", "gpu"});
    const CliRun r = run_cli(a, dir.path());
    CHECK(r.status == 1);
    CHECK(r.err == "cluscomp: error: --device must be cpu or cuda, got 'gpu'\n");
    CHECK(r.out.empty());
  }
}
