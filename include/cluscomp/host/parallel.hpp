#pragma once
/// Fork-join on std::thread: the one place one-shot CPU parallelism is implemented (k-means,
/// codebook decode; ops/parallel.hpp's persistent ThreadPool builds on resolve_thread_count).
/// No global pool: each call starts its workers and joins them (tens of microseconds), which keeps
/// the library free of global state. Work items are claimed dynamically, but every item writes
/// only its own outputs, so results never depend on which thread ran which item.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

#include "cluscomp/core/config.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The number of workers for a requested count: 0 (or less) means hardware_concurrency().
inline int resolve_thread_count(int requested) {
  if (requested > 0) return requested;
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

/// Calls fn(begin, end, worker) over [0, n) in chunks of `chunk` items, claimed dynamically by up
/// to `threads` workers (worker in [0, threads)). A worker thread that the system refuses to start
/// is simply not used: the others claim its chunks, so the result is the same. An exception thrown
/// by fn stops further claims and is rethrown on the calling thread after every worker has joined.
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
  std::vector<std::thread> pool;
  if (nt > 1) {
    try {
      pool.reserve(static_cast<size_t>(nt - 1));
      for (int w = 1; w < nt; ++w) pool.emplace_back(work, w);
    } catch (const std::system_error&) {  // fewer workers; the work is claimed by the rest
    } catch (const std::bad_alloc&) {
    }
  }
  work(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// Calls fn(part, begin, end) once for each of `parts` contiguous ranges of [0, n) (part p covers
/// [n*p/parts, n*(p+1)/parts)), run by up to `parts` workers. For passes where each part must own
/// one range (histograms, output bands).
template <class Fn>
void parallel_static(int parts, int64_t n, Fn&& fn) {
  const int np = std::max(parts, 1);
  parallel_chunks(np, np, 1, [&](int64_t p, int64_t, int) {
    const int64_t lo = n * p / np, hi = n * (p + 1) / np;
    fn(static_cast<int>(p), lo, hi);
  });
}

CLUSCOMP_NAMESPACE_END
