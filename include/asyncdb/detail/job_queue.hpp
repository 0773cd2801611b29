#pragma once
#include <asyncdb/detail/counters.hpp>
#include <asyncdb/detail/job.hpp>
#include <asyncdb/error.hpp>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <system_error>

namespace asyncdb::detail {

// FIFO of jobs feeding one or more lanes. All queues of a database share one admission counter,
// so options::max_queued bounds the whole database, sessions included.
class job_queue {
 public:
  explicit job_queue(std::shared_ptr<counters> c) : counters_(std::move(c)) {}

  // On error the job was not queued and the caller must fail it; the queue never fails it itself,
  // because the caller may still hold locks the job's completion must not run under.
  std::error_code push(std::shared_ptr<job> j) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return close_reason_;
      if (counters_->queued.fetch_add(1, std::memory_order_relaxed) >= counters_->max_queued) {
        counters_->queued.fetch_sub(1, std::memory_order_relaxed);
        return make_error_code(errc::queue_full);
      }
      j->enqueued_at = std::chrono::steady_clock::now();
      jobs_.push_back(std::move(j));
    }
    ready_.notify_one();
    return {};
  }

  // Blocks until a job is available; returns null once the queue is closed and drained.
  std::shared_ptr<job> pop() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !jobs_.empty() || closed_; });
    if (jobs_.empty()) return nullptr;
    auto j = std::move(jobs_.front());
    jobs_.pop_front();
    counters_->queued.fetch_sub(1, std::memory_order_relaxed);
    return j;
  }

  // Refuses new jobs with `why`; jobs already queued are still popped and executed.
  void close(std::error_code why) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      closed_ = true;
      close_reason_ = why;
    }
    ready_.notify_all();
  }

 private:
  std::shared_ptr<counters> counters_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::shared_ptr<job>> jobs_;
  bool closed_ = false;
  std::error_code close_reason_;
};

}  // namespace asyncdb::detail
