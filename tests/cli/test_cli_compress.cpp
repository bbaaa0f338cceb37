// `cluscomp compress` as a user runs it: the built binary (CLUSCOMP_CLI_PATH, set by
// examples/cli/CMakeLists.txt) on the tiny GGUF model of tests/support/tiny_llama.hpp, with stdout
// and stderr going to files (not a terminal: the one-line-per-matrix progress format). Checks the
// exit status, the final table against the written file (bpw from the settings, relative error of
// the decoded matrices against the source weights), the overall bpw and file size lines, the ETA
// fields of the progress lines, --per-kind / non-finite number parsing, the skipped-tensor
// warning and orphan removal lines, and that the output generates with its source deleted (the
// embedded tokenizer; embed-tokenizer for older files). Under a second.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "cli/cli_run.hpp"
#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "support/test_data.hpp"
#include "support/tiny_llama.hpp"

namespace fs = std::filesystem;
using namespace cluscomp;
using cluscomp_test::CliRun;
using cluscomp_test::run_cli;
using cluscomp_test::split_lines;
using cluscomp_test::words;

namespace {

// "model.layers.1.mlp.gate_proj.weight" -> "gate", "...self_attn.q_proj.weight" -> "q".
std::string kind_of(const std::string& name) {
  const size_t end = name.rfind("_proj.weight");
  REQUIRE(end != std::string::npos);
  const size_t begin = name.rfind('.', end) + 1;
  return name.substr(begin, end - begin);
}

// The CLI's durations: "12.3s", "4m05s", "1h02m".
const std::regex kDuration(R"(\d+\.\ds|\d+m\d\ds|\d+h\d\dm)");

struct Fixture {
  cluscomp_test::TempDir dir;
  cluscomp_test::TinyLlama tiny;
  std::string gguf = (dir / "tiny.gguf").string();
  Fixture() {
    cluscomp_test::TinyLlamaOptions o;
    o.seed = 31337;
    o.vocab = 40;
    o.context = 32;
    tiny = cluscomp_test::make_tiny_llama(o);
    cluscomp_test::write_bytes(gguf, cluscomp_test::write_tiny_gguf(tiny));
  }
};

}  // namespace

TEST_CASE("cli compress: exit 0, per-kind table, overall bpw and size lines, progress with ETA", "[cli][compress]") {
  Fixture fx;
  const std::string out = (fx.dir / "out.safetensors").string();
  const CliRun r = run_cli({"compress", fx.gguf, "--out", out, "--d", "4", "--k", "16", "--per-kind", "mlp:d=8,k=32",
                            "--iterations", "2", "--threads", "2", "--jobs", "1", "--seed", "5"},
                           fx.dir.path());
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.status == 0);
  const CluscompModel cm = read_cluscomp_model(out);
  REQUIRE(cm.clustered.size() == 14);

  // Expected per kind from the settings and the file: bpw = log2(K) / d + K * d * 16 / (out * in)
  // (fp16 centroids; every out is a multiple of d here), error of the decoded weights.
  struct Expect {
    int n = 0;
    double bits = 0, weights = 0, err = 0, norm = 0;
  };
  std::map<std::string, Expect> kinds;
  Expect all;
  for (const auto& [name, t] : cm.clustered) {
    const std::string kind = kind_of(name);
    const bool mlp = kind == "gate" || kind == "up" || kind == "down";
    const double d = mlp ? 8 : 4, k = mlp ? 32 : 16;
    CHECK(t.shape().d == static_cast<int>(d));
    CHECK(t.shape().k == static_cast<int64_t>(k));
    const std::vector<float>& w = fx.tiny.w.at(name);
    const std::vector<float> dec = decode_dense(t, DecodeLayout::kW);
    const double n = static_cast<double>(w.size());
    for (Expect* e : {&kinds[kind], &all}) {
      e->n += 1;
      e->bits += (std::log2(k) / d + k * d * 16 / n) * n;
      e->weights += n;
      for (size_t i = 0; i < w.size(); ++i) {
        e->err += (static_cast<double>(w[i]) - dec[i]) * (static_cast<double>(w[i]) - dec[i]);
        e->norm += static_cast<double>(w[i]) * w[i];
      }
    }
  }

  // The table: header, one row per kind (canonical order), then "all".
  const std::vector<std::string> lines = split_lines(r.out);
  size_t head = 0;
  while (head < lines.size() && lines[head].rfind("kind", 0) != 0) ++head;
  REQUIRE(head + 8 < lines.size());
  CHECK(words(lines[head]) == std::vector<std::string>{"kind", "count", "bpw", "rel.err", "time", "settings", "(xcount)"});
  const std::vector<std::string> order = {"q", "k", "v", "o", "gate", "up", "down", "all"};
  for (size_t i = 0; i < order.size(); ++i) {
    const std::vector<std::string> row = words(lines[head + 1 + i]);
    INFO("row: " << lines[head + 1 + i]);
    REQUIRE(row.size() >= 5);
    const Expect& e = order[i] == "all" ? all : kinds.at(order[i]);
    CHECK(row[0] == order[i]);
    CHECK(std::stoi(row[1]) == e.n);
    CHECK(std::fabs(std::stod(row[2]) - e.bits / e.weights) <= 0.51e-4);       // printed with 4 decimals
    CHECK(std::fabs(std::stod(row[3]) - std::sqrt(e.err / e.norm)) <= 0.51e-5);  // 5 decimals
    CHECK(std::regex_match(row[4], kDuration));
    if (order[i] != "all") {
      REQUIRE(row.size() == 6);
      const bool mlp = order[i] == "gate" || order[i] == "up" || order[i] == "down";
      CHECK(row[5] == (mlp ? "d8/K32/S1x2" : "d4/K16/S1x2"));
    }
  }
  // Overall bpw and the file size.
  std::smatch m;
  CHECK(std::regex_search(r.out, m, std::regex(R"(\noverall bpw: (\d+\.\d{4}) )")));
  CHECK(std::fabs(std::stod(m[1]) - all.bits / all.weights) <= 0.51e-4);
  CHECK(std::fabs(std::stod(m[1]) - std::stod(cm.metadata.at("compress.bpw"))) <= 0.51e-4);
  REQUIRE(std::regex_search(r.out, m, std::regex(R"(\noutput: +(\S+) \((\d+\.\d\d) MiB\))")));
  CHECK(m[1] == out);
  char size[32];
  std::snprintf(size, sizeof size, "%.2f", static_cast<double>(fs::file_size(out)) / (1 << 20));
  CHECK(m[2] == size);

  // Progress (stderr is a file): one line per finished matrix, each with the elapsed time and the
  // ETA of the whole run, a duration every time in a fresh run (0.0s after the last matrix).
  const std::regex progress(R"(\[[#.]{30}\] (\d+)/14 (\S+) \[done (\S+)\] \| total (\S+) eta (\S+)\s*)");
  int seen = 0;
  for (const std::string& raw : split_lines(r.err)) {
    const std::string line = raw.substr(raw.find_last_of('\r') == std::string::npos ? 0 : raw.find_last_of('\r') + 1);
    if (line.find("| total") == std::string::npos) continue;
    INFO("progress: " << line);
    REQUIRE(std::regex_match(line, m, progress));
    ++seen;
    CHECK(std::stoi(m[1]) == seen);
    CHECK(cm.clustered.count(m[2]) == 1);
    CHECK(std::regex_match(std::string(m[3]), kDuration));
    CHECK(std::regex_match(std::string(m[4]), kDuration));
    CHECK(std::regex_match(std::string(m[5]), kDuration));
    if (seen == 14) CHECK(m[5] == "0.0s");
  }
  CHECK(seen == 14);
  CHECK(r.err.find("writing " + out) != std::string::npos);
}

TEST_CASE("cli compress: a bad --per-kind spec or a non-finite number is a clear error and no output",
          "[cli][compress][errors]") {
  Fixture fx;
  const std::string out = (fx.dir / "bad.safetensors").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--per-kind", "mlp,foo:d=8"}, "unknown matrix pattern 'foo'"},
      {{"--per-kind", "mlp:d=x"}, "--per-kind: 'd=x' needs an integer"},
      {{"--per-kind", "mlp"}, "--per-kind: 'mlp' lacks ':'"},
      {{"--per-kind", "q:z=3"}, "--per-kind: unknown key 'z'"},
      {{"--bpw", "nan"}, "--bpw expects a finite number, got 'nan'"},
      {{"--bpw", "inf"}, "--bpw expects a finite number, got 'inf'"},
      {{"--bpw", "-2"}, "--bpw must be positive"},
  };
  for (const auto& [extra, needle] : cases) {
    std::vector<std::string> args = {"compress", fx.gguf, "--out", out, "--iterations", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliRun r = run_cli(args, fx.dir.path());
    INFO("args: " << extra[0] << " " << extra[1] << "\nstderr:\n" << r.err);
    CHECK(r.status == 1);
    CHECK(r.err.find("cluscomp: error: ") != std::string::npos);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(r.out.empty());
    CHECK_FALSE(fs::exists(out));
    CHECK_FALSE(fs::exists(out + ".work"));
  }
}

TEST_CASE("cli compress: a tensor without an HF name is a warning, an orphaned temporary is removed; both reported",
          "[cli][compress]") {
  Fixture fx;
  cluscomp_test::TinyGgufOptions go;
  go.extra = {{"rope_freqs.weight", std::vector<float>(8, 1.0f)}};
  const std::string gguf = (fx.dir / "extra.gguf").string();
  cluscomp_test::write_bytes(gguf, cluscomp_test::write_tiny_gguf(fx.tiny, go));
  const std::string out = (fx.dir / "out.safetensors").string();
  const fs::path orphan = out + ".tmp.k1LLed";  // as a run killed during its final write leaves it
  cluscomp_test::write_bytes(orphan, {1, 2, 3});
  fs::last_write_time(orphan, fs::file_time_type::clock::now() - std::chrono::minutes(5));
  const CliRun r = run_cli({"compress", gguf, "--out", out, "--method", "rtn", "--bits", "3"}, fx.dir.path());
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("warning: 1 source tensor without an HF name left out of the output: rope_freqs.weight\n") !=
        std::string::npos);
  CHECK(r.out.find("\nskipped:     1 source tensor without an HF name, not in the output: rope_freqs.weight\n") !=
        std::string::npos);
  CHECK(r.out.find("\nremoved:     " + orphan.string() + " (left by a killed run)\n") != std::string::npos);
  CHECK_FALSE(fs::exists(orphan));
  CHECK(fs::exists(out));
}

TEST_CASE("cli compress: the output generates with its source deleted; an old file names the fix",
          "[cli][compress][tokenizer]") {
  Fixture fx;
  const std::string src = (fx.dir / "tok.gguf").string();
  cluscomp_test::TinyGgufOptions go;
  go.tokenizer = true;
  cluscomp_test::write_bytes(src, cluscomp_test::write_tiny_gguf(fx.tiny, go));
  const std::string prompt = "the cat and the hat";
  const size_t n_prompt = load_model_tokenizer(src).encode(prompt, false).size();
  const std::string out = (fx.dir / "c.safetensors").string();
  REQUIRE(run_cli({"compress", src, "--out", out, "--d", "4", "--k", "16", "--iterations", "1"}, fx.dir.path()).status == 0);
  const std::vector<std::string> gen = {"generate", out, prompt, "--raw", "--max-tokens", "4"};
  const CliRun before = run_cli(gen, fx.dir.path());
  REQUIRE(before.status == 0);
  fs::remove(src);
  const CliRun after = run_cli(gen, fx.dir.path());
  INFO("stderr: " << after.err);
  CHECK(after.status == 0);
  CHECK(after.out == before.out);
  CHECK(after.err.find("prompt: " + std::to_string(n_prompt) + " tokens;") != std::string::npos);

  // A file from before the tokenizer was embedded, whose source is gone: exit 1, the message names
  // the source and the fix; embed-tokenizer (from a copy of the source) repairs it.
  const std::string old = (fx.dir / "old.safetensors").string();
  {
    const CluscompModel cm = read_cluscomp_model(out);
    std::map<std::string, std::string> meta = cm.caller_metadata();
    meta.erase(kCluscompTokenizerKey);
    write_cluscomp_model(old, cm.dense, cm.clustered, meta);
  }
  const CliRun broken = run_cli({"generate", old, prompt, "--raw", "--max-tokens", "4"}, fx.dir.path());
  CHECK(broken.status == 1);
  CHECK(broken.err.find("'" + src + "' (compress.source) is missing") != std::string::npos);
  CHECK(broken.err.find("cluscomp embed-tokenizer " + old) != std::string::npos);
  const std::string copy = (fx.dir / "moved.gguf").string();
  cluscomp_test::write_bytes(copy, cluscomp_test::write_tiny_gguf(fx.tiny, go));
  REQUIRE(run_cli({"embed-tokenizer", old, copy}, fx.dir.path()).status == 0);
  const CliRun repaired = run_cli({"generate", old, prompt, "--raw", "--max-tokens", "4"}, fx.dir.path());
  CHECK(repaired.status == 0);
  CHECK(repaired.out == before.out);
}
