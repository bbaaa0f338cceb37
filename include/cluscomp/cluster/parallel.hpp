#pragma once
/// A minimal fork-join helper on std::thread for the CPU k-means. No global pool: each call starts
/// its workers and joins them, which costs tens of microseconds and keeps the library free of
/// global state. Work items are claimed dynamically, but every item writes only its own outputs,
/// so results never depend on which thread ran which item.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace cluster_detail {

/// The number of workers for a requested count: 0 means std::thread::hardware_concurrency().
inline int resolve_threads(int requested) {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

/// Calls fn(begin, end, worker) over [0, n) in chunks of `chunk` items, claimed dynamically by
/// `threads` workers (worker in [0, threads)). An exception thrown by fn stops further claims and
/// is rethrown on the calling thread after every worker has joined.
template <class Fn>
void parallel_chunks(int threads, int64_t n, int64_t chunk, Fn&& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t nchunks = (n + chunk - 1) / chunk;
  const int nt = static_cast<int>(std::min<int64_t>(std::max(threads, 1), nchunks));
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(nt));
  auto work = [&](int w) {
    try {
      for (;;) {
        if (failed.load(std::memory_order_relaxed)) return;
        const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
        if (c >= nchunks) return;
        const int64_t b = c * chunk;
        fn(b, std::min(n, b + chunk), w);
      }
    } catch (...) {
      errors[static_cast<size_t>(w)] = std::current_exception();
      failed.store(true, std::memory_order_relaxed);
    }
  };
  if (nt == 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    pool.reserve(static_cast<size_t>(nt - 1));
    try {
      for (int w = 1; w < nt; ++w) pool.emplace_back(work, w);
    } catch (...) {
      failed.store(true);
      for (auto& t : pool) t.join();
      throw;
    }
    work(0);
    for (auto& t : pool) t.join();
  }
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Calls fn(worker, begin, end) once per worker over a static split of [0, n) into `threads`
/// contiguous ranges (used where each worker must own one range, e.g. histogram passes).
template <class Fn>
void parallel_static(int threads, int64_t n, Fn&& fn) {
  const int nt = std::max(threads, 1);
  parallel_chunks(nt, nt, 1, [&](int64_t b, int64_t, int) {
    const int64_t lo = n * b / nt, hi = n * (b + 1) / nt;
    fn(static_cast<int>(b), lo, hi);
  });
}

}  // namespace cluster_detail
CLUSCOMP_NAMESPACE_END
