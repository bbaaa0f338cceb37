// cluscomp: the command line. `cluscomp --help` lists the verbs, `cluscomp VERB --help` a verb's
// options; both texts come from the verb table (verbs.cpp), one file per verb does the work.
// Exit status: 0 done, 1 an error ("cluscomp: error: ..."), 2 a usage error (the usage follows).
#include <fmt/core.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace {

int usage(int rc) {
  fmt::print(rc ? stderr : stdout, "{}", cli::usage_text());
  return rc;
}

int verb_usage(const cli::VerbSpec& v, int rc) {
  fmt::print(rc ? stderr : stdout, "{}", cli::verb_help_text(v));
  return rc;
}

int positional_count(const cli::VerbSpec& v) {
  int n = 0;
  bool in_word = false;
  for (const char* c = v.args; *c; ++c) {
    if (*c != ' ' && !in_word) ++n;
    in_word = *c != ' ';
  }
  return n;
}

bool is_help(const std::string& a) { return a == "-h" || a == "--help"; }

int run(int argc, char** argv) {
  if (argc < 2) return usage(2);
  std::string cmd = argv[1];
  if (is_help(cmd) || cmd == "help") {
    const cli::VerbSpec* v = argc >= 3 ? cli::find_verb(argv[2]) : nullptr;
    return v ? verb_usage(*v, 0) : usage(0);
  }
  if (cmd == "--version") cmd = "version";
  const cli::VerbSpec* verb = cli::find_verb(cmd);
  if (verb == nullptr) {
    fmt::print(stderr, "cluscomp: unknown command '{}'\n", cmd);
    return usage(2);
  }
  if (argc >= 3 && is_help(argv[2])) return verb_usage(*verb, 0);
  const int n = positional_count(*verb);
  cli::Invocation inv;
  inv.verb = verb;
  if (n > 0) {
    if (argc < 3) return verb_usage(*verb, 2);
    // The first argument is always a file the verb reads: name it before anything else.
    if (!fs::exists(argv[2])) {
      fmt::print(stderr, "cluscomp: {}: no such file\n", argv[2]);
      return 1;
    }
    if (argc < 2 + n) return verb_usage(*verb, 2);
  }
  for (int i = 0; i < n; ++i) inv.args.push_back(argv[2 + i]);
  if (!cli::parse_options(argc, argv, 2 + n, *verb, &inv.opt)) return verb_usage(*verb, 0);
  return verb->run(inv);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const cc::Error& e) {
    fmt::print(stderr, "cluscomp: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "cluscomp: error: {}\n", e.what());
    return 1;
  }
}
