#pragma once
/// Several matrices compressed at once (CompressOptions::jobs): the runner that the bpw search's
/// estimates and the driver's matrices share. Part of pipeline/compress.hpp, which includes it.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

namespace compress_detail {

/// Runs task(i) for i in [0, n) on `jobs` threads (the caller's among them), which take the
/// indices in order. The first exception a task throws, or the first fail(), stops the other jobs:
/// they take no new index, and tasks poll stopped() at their progress points to leave early (what
/// they throw then is ignored). run() rethrows that first exception.
class JobRunner {
 public:
  explicit JobRunner(int jobs) : jobs_(std::max(1, jobs)) {}
  template <class F>
  void run(size_t n, F&& task) {
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next++; i < n && !stop_.load(); i = next++) {
        try {
          task(i);
        } catch (...) {
          fail(std::current_exception());
        }
      }
    };
    std::vector<std::thread> pool;
    for (int j = 1; j < jobs_ && static_cast<size_t>(j) < n; ++j) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
    if (failure_) std::rethrow_exception(failure_);
  }
  /// Records e as the outcome unless another came first, and stops the jobs.
  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return;  // jobs leaving because of the first one
    failure_ = std::move(e);
    stop_.store(true);
  }
  bool stopped() const { return stop_.load(); }

 private:
  int jobs_;
  std::mutex mu_;
  std::atomic<bool> stop_{false};
  std::exception_ptr failure_;
};

/// Matrices at once for CompressOptions::jobs (0: min(threads, 2)), at most `matrices`.
inline int resolve_jobs(int requested, int threads, size_t matrices) {
  const int64_t j = requested > 0 ? requested : std::min(threads, 2);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(j, static_cast<int64_t>(matrices))));
}

}  // namespace compress_detail

CLUSCOMP_NAMESPACE_END
