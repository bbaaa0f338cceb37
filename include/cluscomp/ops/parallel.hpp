#pragma once
/// A small persistent thread pool for the CPU runtime. A decode step runs a few hundred parallel
/// regions (every projection of every block), so workers are started once per pool and woken per
/// region instead of being created per call. There is no global pool: whoever runs the model owns
/// one (LlamaModel does).
///
/// Determinism: tasks are claimed dynamically, but every task writes only its own outputs and
/// computes them in an order that does not depend on which thread runs it, so results never depend
/// on the number of threads.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/host/parallel.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// Fixed set of workers; the calling thread takes part in every region. Not copyable or movable
/// (hold it in a unique_ptr). One region at a time: a parallel_for issued from inside a task, or
/// from a second thread while a region runs, executes serially in the calling thread.
class ThreadPool {
 public:
  /// `threads` in total including the caller (<= 0: hardware concurrency). If the OS refuses a
  /// worker, the pool runs with the ones it got: results are the same either way.
  explicit ThreadPool(int threads) {
    const int n = resolve_thread_count(threads);
    workers_.reserve(static_cast<size_t>(n - 1));
    for (int i = 1; i < n; ++i) {
      try {
        workers_.emplace_back([this] { worker_loop(); });
      } catch (const std::system_error&) {
        break;
      }
    }
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads that take part in a region (workers + the caller).
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  /// Calls fn(task) for every task in [0, n). An exception thrown by a task stops further claims
  /// and is rethrown here after every participant has finished.
  template <class F>
  void parallel_for(int64_t n, F&& fn) {
    if (n <= 0) return;
    bool expected = false;
    if (workers_.empty() || n == 1 || !busy_.compare_exchange_strong(expected, true)) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;
    }
    std::function<void(int64_t)> job = [&fn](int64_t i) { fn(i); };
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      n_tasks_ = n;
      next_.store(0);
      failed_.store(false);
      error_ = nullptr;
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    run_tasks();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return active_ == 0; });
      job_ = nullptr;
    }
    std::exception_ptr err = error_;
    error_ = nullptr;
    busy_.store(false);
    if (err) std::rethrow_exception(err);
  }

 private:
  void run_tasks() {
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) return;
      const int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_tasks_) return;
      try {
        (*job_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true);
      }
    }
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      run_tasks();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --active_;
      }
      done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::mutex error_mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::atomic<bool> busy_{false};
  bool stop_ = false;
  uint64_t generation_ = 0;
  int active_ = 0;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_tasks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

/// Runs fn(task) over [0, n) on `pool`, or serially when pool is null.
template <class F>
void parallel_for(ThreadPool* pool, int64_t n, F&& fn) {
  if (pool) {
    pool->parallel_for(n, std::forward<F>(fn));
  } else {
    for (int64_t i = 0; i < n; ++i) fn(i);
  }
}

CLUSCOMP_NAMESPACE_END
