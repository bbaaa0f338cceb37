#pragma once
// Runs the built cluscomp binary (CLUSCOMP_CLI_PATH, set by examples/cli/CMakeLists.txt) as a user
// does, with stdin from /dev/null and stdout/stderr captured in files (not a terminal).

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_data.hpp"

#ifndef CLUSCOMP_CLI_PATH
#error "CLUSCOMP_CLI_PATH: the path of the built cluscomp binary (examples/cli/CMakeLists.txt)"
#endif

namespace cluscomp_test {

struct CliRun {
  int status = -1;  // exit status; -1 when it did not exit normally
  std::string out, err;
};

inline std::string read_all(const std::filesystem::path& p) {
  const std::vector<unsigned char> b = file_bytes(p);
  return std::string(b.begin(), b.end());
}

// Runs the binary with `args`, stdin from /dev/null, stdout and stderr into files under `dir`.
inline CliRun run_cli(const std::vector<std::string>& args, const std::filesystem::path& dir) {
  const std::filesystem::path out = dir / "stdout.txt", err = dir / "stderr.txt";
  std::vector<std::string> argv_s = {CLUSCOMP_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || o < 0 || e < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CliRun r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_all(out);
  r.err = read_all(err);
  return r;
}

inline std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

inline std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

}  // namespace cluscomp_test
