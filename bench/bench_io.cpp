// GGUF I/O benchmark on the real model: time to map + parse the file, and single-threaded
// dequantisation of every tensor to fp32. 5 repetitions, medians reported; one untimed warm-up
// pass first so the page cache holds the file (the numbers are for a warm cache).
//
//   bench_io [MODEL.gguf]     (default: the real model from tests/support/test_data.hpp)
//
// Last line: RESULT io load_ms=... dequant_mb_s=... dequant_gb_s_out=... tensors=N
// where dequant_mb_s counts quantised input bytes (1 MB = 1e6 B) and dequant_gb_s_out counts fp32
// output bytes (1 GB = 1e9 B).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "support/test_data.hpp"

using namespace cluscomp;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct TypeStats {
  int tensors = 0;
  uint64_t in_bytes = 0;
  uint64_t elements = 0;
  std::vector<double> ms;  // per repetition
};

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : cluscomp_test::real_model_path().string();
  constexpr int kReps = 5;
  try {
    // Load/parse: construct the reader (open, mmap, parse and validate the header).
    std::vector<double> load_ms;
    { GgufReader warm(path); }
    for (int i = 0; i < kReps; ++i) {
      const double t0 = now_ms();
      GgufReader r(path);
      load_ms.push_back(now_ms() - t0);
    }

    GgufReader r(path);
    uint64_t max_elems = 0;
    for (const auto& t : r.tensors()) max_elems = std::max(max_elems, t.n_elements);
    std::vector<float> out(static_cast<size_t>(max_elems));
    std::map<std::string, TypeStats> by_type;
    for (const auto& t : r.tensors()) {
      TypeStats& s = by_type[ggml_type_name(t.type)];
      ++s.tensors;
      s.in_bytes += t.n_bytes;
      s.elements += t.n_elements;
    }
    for (const auto& t : r.tensors()) dequantize_tensor_into(r, t, out.data());  // warm-up

    std::vector<double> total_ms;
    volatile float sink = 0.0f;
    for (int rep = 0; rep < kReps; ++rep) {
      std::map<std::string, double> rep_ms;
      const double t0 = now_ms();
      for (const auto& t : r.tensors()) {
        const double a = now_ms();
        dequantize_tensor_into(r, t, out.data());
        rep_ms[ggml_type_name(t.type)] += now_ms() - a;
        sink = sink + out[0];
      }
      total_ms.push_back(now_ms() - t0);
      for (auto& kv : rep_ms) by_type[kv.first].ms.push_back(kv.second);
    }

    uint64_t in_bytes = 0, elements = 0;
    std::printf("model: %s (%zu bytes, GGUF v%u, %zu tensors, %zu keys)\n", path.c_str(), r.size(),
                r.version(), r.tensors().size(), r.metadata().size());
    std::printf("%-8s %8s %14s %14s %12s %12s %12s\n", "type", "tensors", "in_bytes", "elements",
                "median_ms", "in_MB/s", "out_GB/s");
    for (const auto& kv : by_type) {
      const TypeStats& s = kv.second;
      const double ms = median(s.ms);
      std::printf("%-8s %8d %14llu %14llu %12.3f %12.1f %12.3f\n", kv.first.c_str(), s.tensors,
                  static_cast<unsigned long long>(s.in_bytes),
                  static_cast<unsigned long long>(s.elements), ms, s.in_bytes / (ms * 1e3),
                  s.elements * 4.0 / (ms * 1e6));
      in_bytes += s.in_bytes;
      elements += s.elements;
    }
    const double dq_ms = median(total_ms);
    const double ld_ms = median(load_ms);
    std::printf("load (map + parse + validate): median %.3f ms over %d runs\n", ld_ms, kReps);
    std::printf("dequantise all tensors, 1 thread: median %.3f ms over %d runs\n", dq_ms, kReps);
    std::printf("RESULT io load_ms=%.9g dequant_mb_s=%.9g dequant_gb_s_out=%.9g tensors=%zu\n",
                ld_ms, in_bytes / (dq_ms * 1e3), elements * 4.0 / (dq_ms * 1e6),
                r.tensors().size());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_io: %s\n", e.what());
    return 1;
  }
  return 0;
}
