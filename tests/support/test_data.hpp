#pragma once
// Where tests find the real model and text (scripts/setup.sh puts them there), and scratch files.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>
#include <random>
#include <string>

namespace cluscomp_test {

/// $CLUSCOMP_DATA, or ~/.cache/cluscomp: the same rule as scripts/setup.sh.
inline std::filesystem::path data_dir() {
  if (const char* d = std::getenv("CLUSCOMP_DATA"); d && *d) return d;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : "/tmp") / ".cache" / "cluscomp";
}

inline std::filesystem::path real_model_path() {
  return data_dir() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

/// A fresh scratch directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("cluscomp_test_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Writes `bytes` to `path` (tests' own scratch files; not atomic).
inline void write_bytes(const std::filesystem::path& path, const std::vector<unsigned char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// The whole file (empty when it does not exist).
inline std::vector<unsigned char> file_bytes(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace cluscomp_test
