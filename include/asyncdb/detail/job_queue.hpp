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

  // Queues a job admitted once already, which a reader hands to the writer: no admission check,
  // and accepted after close() while the queue is kept open. On error the caller fails the job.
  std::error_code push_again(std::shared_ptr<job> j) {
    {
      std::lock_guard lock(mutex_);
      if (closed_ && !kept_open_) return close_reason_;
      counters_->queued.fetch_add(1, std::memory_order_relaxed);
      jobs_.push_back(std::move(j));
    }
    ready_.notify_one();
    return {};
  }

  // Blocks until a job is available; returns null once the queue is closed, drained and not kept open.
  std::shared_ptr<job> pop() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !jobs_.empty() || (closed_ && !kept_open_); });
    return take(lock);
  }

  // Returns the next job if one is waiting, else null at once.
  std::shared_ptr<job> try_pop() {
    std::unique_lock lock(mutex_);
    return take(lock);
  }

  // Whether the next job exists and may join a group commit; it stays queued (and cancellable as such).
  bool next_is_groupable() {
    std::lock_guard lock(mutex_);
    return !jobs_.empty() && jobs_.front()->groupable();
  }

  // While kept open, a closed queue still takes push_again() and its consumer keeps waiting: the
  // writer must outlive the readers that may hand it a job.
  void keep_open(bool keep) {
    {
      std::lock_guard lock(mutex_);
      kept_open_ = keep;
    }
    ready_.notify_all();
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
  std::shared_ptr<job> take(std::unique_lock<std::mutex>&) {
    if (jobs_.empty()) return nullptr;
    auto j = std::move(jobs_.front());
    jobs_.pop_front();
    counters_->queued.fetch_sub(1, std::memory_order_relaxed);
    return j;
  }

  std::shared_ptr<counters> counters_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::shared_ptr<job>> jobs_;
  bool closed_ = false;
  bool kept_open_ = false;
  std::error_code close_reason_;
};

}  // namespace asyncdb::detail
