#pragma once
#include <asyncdb/detail/config.hpp>

#if defined(__linux__)
#include <pthread.h>
#endif
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// A registry whose drain a lane may owe: pay() posts the drain if it is still owed.
class owed_drain {
 public:
  virtual ~owed_drain() = default;
  virtual void pay() noexcept = 0;
};

class batch_watch;

// The drains one lane owes. Waking the event loop per completion costs the loop a sleep and a wake,
// and on a small machine the lane its core (profiled: W1's loop drained bursts of 2-3 completions);
// a lane that will run another job at once lets completions gather first. What it holds back is posted
// when `size` completions wait (by whichever lane appends the last), when `cap` has passed since the
// first (checked after each job, in SQLite's progress and busy handlers, and by batch_watch, which sees
// a lane stuck in a DAO's own code), and before the lane's thread waits: its queue dry, a session, a lock.
class completion_batch {
 public:
  static constexpr std::size_t size = 16;
  static constexpr std::chrono::microseconds cap{50};

  // Makes `b` this thread's batch while it lives.
  class scope {
   public:
    explicit scope(completion_batch& b) noexcept : outer_(std::exchange(current_, &b)) {}
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;
    ~scope() {
      current_->flush();
      current_ = outer_;
    }

   private:
    completion_batch* outer_;
  };

  explicit completion_batch(batch_watch& w) noexcept : watch_(w) {}

  // This thread's batch, null outside a lane that batches.
  static completion_batch* current() noexcept { return current_; }

  // Whether a completion finishing now may wait for the next job's: set by the lane before each job.
  bool may_defer() const noexcept { return more_work_; }
  void more_work(bool more) noexcept { more_work_ = more; }

  inline void owe(std::shared_ptr<owed_drain> d);

  void flush() noexcept {
    std::vector<std::shared_ptr<owed_drain>> owed;
    {
      std::lock_guard lock(mutex_);
      owed.swap(owed_);
      since_.store(0, std::memory_order_seq_cst);
    }
    for (auto& d : owed) d->pay();
  }

  void flush_if_due() noexcept {
    const auto since = since_.load(std::memory_order_relaxed);
    if (since != 0 && now_ticks() - since >= cap_ticks) flush();
  }

  bool owes() const noexcept { return since_.load(std::memory_order_seq_cst) != 0; }

  // Whether this thread holds completions back: false outside a lane that batches.
  static bool owes_here() noexcept { return current_ != nullptr && current_->owes(); }

  // Before this thread waits: a no-op outside a lane that batches.
  static void flush_current() noexcept {
    if (current_ != nullptr) current_->flush();
  }

 private:
  using clock = std::chrono::steady_clock;
  static constexpr clock::rep cap_ticks = std::chrono::duration_cast<clock::duration>(cap).count();
  static clock::rep now_ticks() noexcept { return clock::now().time_since_epoch().count() | 1; }  // never 0

  inline static thread_local completion_batch* current_ = nullptr;
  batch_watch& watch_;
  std::mutex mutex_;  // owed_, against batch_watch's flush
  std::vector<std::shared_ptr<owed_drain>> owed_;
  std::atomic<clock::rep> since_{0};  // when owed_ became non-empty; 0 while empty
  bool more_work_ = false;            // the lane's thread only
};

// One thread per database with readers, asleep unless some lane holds completions back: then it looks
// every `period` and posts what has waited `cap`, whatever the lane is doing (a DAO blocked in its own
// code, waiting for the very caller whose completion is held back, would otherwise never see it). The
// lanes signal it only when it sleeps and they start holding back.
class batch_watch {
 public:
  static constexpr std::chrono::milliseconds period{1};

  batch_watch() = default;
  batch_watch(const batch_watch&) = delete;
  batch_watch& operator=(const batch_watch&) = delete;
  ~batch_watch() { stop(); }

  // A batch for one lane; before start().
  completion_batch& add() { return batches_.emplace_back(*this); }

  void start() {
    if (batches_.empty()) return;
    thread_ = std::thread([this] {
#if defined(__linux__)
      pthread_setname_np(pthread_self(), "asyncdb-watch");  // as the lanes name theirs: visible in top and perf
#endif
      watch();
    });
  }

  // After the lanes have ended.
  void stop() noexcept {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  // A lane started holding back. seq_cst, with the batch's since_ stored before: either this sees the
  // watcher asleep and wakes it, or the watcher, after it cleared armed_, sees the batch owing.
  void arm() {
    if (armed_.load(std::memory_order_seq_cst)) return;
    {
      std::lock_guard lock(mutex_);
      armed_.store(true, std::memory_order_seq_cst);
    }
    wake_.notify_one();
  }

 private:
  void watch() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stopping_ || armed_.load(std::memory_order_seq_cst); });
      if (stopping_) return;
      wake_.wait_for(lock, period, [this] { return stopping_; });
      if (stopping_) return;
      lock.unlock();
      armed_.store(false, std::memory_order_seq_cst);
      for (auto& b : batches_) {
        b.flush_if_due();
        if (b.owes()) armed_.store(true, std::memory_order_seq_cst);
      }
      lock.lock();
    }
  }

  std::deque<completion_batch> batches_;  // a deque: the lanes hold references
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> armed_{false};
  bool stopping_ = false;
  std::thread thread_;
};

void completion_batch::owe(std::shared_ptr<owed_drain> d) {
  {
    std::lock_guard lock(mutex_);
    if (owed_.empty()) since_.store(now_ticks(), std::memory_order_seq_cst);
    owed_.push_back(std::move(d));
  }
  watch_.arm();
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
