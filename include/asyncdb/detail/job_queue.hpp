#pragma once
#include <asyncdb/detail/brief_lock.hpp>
#include <asyncdb/detail/completion_batch.hpp>
#include <asyncdb/detail/counters.hpp>
#include <asyncdb/detail/deadline.hpp>
#include <asyncdb/detail/job.hpp>
#include <asyncdb/error.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// FIFO of jobs feeding one or more lanes: an intrusive list, so a cancelled job leaves it in O(1). All
// queues of a database share one admission counter, so options::max_queued bounds the whole database,
// sessions included; `counters::queued` counts exactly the jobs linked in some queue.
class job_queue {
 public:
  // `poll_for`: how long a consumer finding the queue empty keeps looking before it sleeps.
  explicit job_queue(std::shared_ptr<counters> c, std::chrono::microseconds poll_for = {})
      : counters_(std::move(c)), poll_for_(poll_for) {}
  job_queue(const job_queue&) = delete;
  job_queue& operator=(const job_queue&) = delete;
  // Lanes drain their queues before they end; a job still linked here is dropped, never leaked.
  ~job_queue() {
    while (head_ != nullptr) unlink(*head_);
  }

  // The wake-up push() owes a sleeping consumer, given when this object dies. The caller declares it before
  // taking the lock it pushes under, so that the woken consumer does not find that lock still held: the
  // operation's own lock, which the lane takes first thing (profiled: with the signal given under it, the
  // lane slept again at once on that lock in 12% of one-in-flight's context switches, and the unlock that
  // woke it preempted the event loop in another 9%).
  class deferred_wake {
   public:
    deferred_wake() = default;
    deferred_wake(const deferred_wake&) = delete;
    deferred_wake& operator=(const deferred_wake&) = delete;
    ~deferred_wake() {
      if (queue_ != nullptr) queue_->ready_.notify_one();
    }

   private:
    friend class job_queue;
    job_queue* queue_ = nullptr;  // the queue lives as long as the lanes that pop from it
  };

  // On error the job was not queued and the caller must fail it; the queue never fails it itself,
  // because the caller may still hold locks the job's completion must not run under.
  error_code push(std::shared_ptr<job> j, deferred_wake& wake) {
    auto lock = lock_briefly(mutex_);
    if (closed_) return close_reason_;
    if (counters_->queued.fetch_add(1, std::memory_order_relaxed) >= counters_->max_queued) {
      counters_->queued.fetch_sub(1, std::memory_order_relaxed);
      return make_error_code(errc::queue_full);
    }
    j->enqueued_at = std::chrono::steady_clock::now();
    link(std::move(j));
    // A consumer that is awake takes the job without being told.
    if (must_wake()) wake.queue_ = this;
    return {};
  }

  // Queues a job admitted once already, which a reader hands to the writer: no admission check, and
  // accepted after close() while the queue is kept open. On error the caller fails the job.
  error_code push_again(std::shared_ptr<job> j) {
    bool wake = false;
    {
      auto lock = lock_briefly(mutex_);
      if (closed_ && !kept_open_) return close_reason_;
      counters_->queued.fetch_add(1, std::memory_order_relaxed);
      link(std::move(j));
      wake = must_wake();
    }
    if (wake) ready_.notify_one();
    return {};
  }

  // Blocks until a job is available; returns null once the queue is closed, drained and not kept open.
  // A consumer that finds a job takes it without sleeping; one that finds none first polls for up to
  // `poll_for` (if set), then sleeps, counted in sleepers_ so that producers wake it, and only it.
  std::shared_ptr<job> pop() {
    const auto can_return = [&] {
      return (head_ != nullptr && !held_) || (head_ == nullptr && closed_ && !kept_open_);
    };
    auto lock = lock_briefly(mutex_);
    if ((head_ == nullptr || held_) && completion_batch::owes_here()) {
      // A lane that is about to wait (or to end) first posts the completions it held back.
      lock.unlock();
      completion_batch::flush_current();
      lock.lock();
    }
    if (!can_return() && poll_for_.count() > 0) {
      lock.unlock();
      poll();
      lock.lock();
    }
    // Not wait(lock, pred): every return from wait() must settle one pending wake, before sleeping again.
    while (!can_return()) {
      ++sleepers_;
      ready_.wait(lock);
      --sleepers_;
      if (wakes_pending_ > 0) --wakes_pending_;
    }
    return head_ != nullptr ? unlink(*head_) : nullptr;
  }

  // While held, pop() hands out nothing (jobs wait queued, and stay cancellable as such): the writer holds
  // the readers' queue during a checkpoint, so that no new snapshot keeps the checkpoint from finishing.
  void hold(bool held) {
    {
      auto lock = lock_briefly(mutex_);
      held_ = held;
    }
    if (!held) ready_.notify_all();
  }

  // Returns the next job if one is waiting, else null at once.
  std::shared_ptr<job> try_pop() {
    auto lock = lock_briefly(mutex_);
    return head_ != nullptr ? unlink(*head_) : nullptr;
  }

  // Whether the next job may join a group commit; it stays queued (and cancellable as such).
  bool next_is_groupable() {
    auto lock = lock_briefly(mutex_);
    return head_ != nullptr && head_->group() != nullptr;
  }

  // Jobs waiting now, for the hold watchdog's report; any thread.
  std::size_t size() const noexcept { return size_.load(std::memory_order_relaxed); }

  // Takes `j` out if it is still queued here, giving its place back. The caller holds its own reference,
  // so the returned one (null if `j` was not queued) is never the last.
  std::shared_ptr<job> withdraw(job& j) {
    auto lock = lock_briefly(mutex_);
    return j.queue_ == this ? unlink(j) : nullptr;
  }

  // While kept open, a closed queue still takes push_again() and its consumer keeps waiting: the
  // writer must outlive the readers that may hand it a job.
  void keep_open(bool keep) {
    {
      auto lock = lock_briefly(mutex_);
      kept_open_ = keep;
    }
    ready_.notify_all();
  }

  // Refuses new jobs with `why`; jobs already queued are still popped and executed.
  void close(error_code why) {
    {
      auto lock = lock_briefly(mutex_);
      if (closed_) return;
      closed_ = true;
      closing_.store(true, std::memory_order_relaxed);
      close_reason_ = why;
    }
    ready_.notify_all();
  }

 private:
  // Polling instead of sleeping saves the wake-up a sleeping consumer costs its next job (10-20 us on
  // a small VM), but burns a core meanwhile, so pop() polls only right after a job, never while idle.
  // Pause instructions between looks, not a yield() each: every yield is a system call, and a context
  // switch whenever another thread is runnable; one every 64 looks (about a microsecond) still hands
  // the core to a thread waiting for it, such as the event loop that is about to queue the next job.
  void poll() {
    const auto until = saturating_deadline(std::chrono::steady_clock::now(), poll_for_);
    for (unsigned looks = 1; size_.load(std::memory_order_relaxed) == 0; ++looks) {
      if (closing_.load(std::memory_order_relaxed)) return;
      if (looks % 64 != 0) {
        cpu_relax();
        continue;
      }
      if (std::chrono::steady_clock::now() >= until) return;
      std::this_thread::yield();
    }
  }

  // Whether the job just linked needs a sleeper woken: only if some sleeper has not been told yet. A
  // second signal to a condition variable whose first woken waiter has not run yet makes glibc's
  // signaller wait for it (profiled: the loop thread blocked inside notify_one while lanes woke), and
  // the lane already woken takes the next job anyway, as it pops again before it sleeps. Under mutex_.
  bool must_wake() {
    if (sleepers_ <= wakes_pending_) return false;
    ++wakes_pending_;
    return true;
  }

  void link(std::shared_ptr<job> j) {
    job& n = *j;
    n.queued_self_ = std::move(j);
    n.queue_ = this;
    n.prev_ = tail_;
    n.next_ = nullptr;
    (tail_ != nullptr ? tail_->next_ : head_) = &n;
    tail_ = &n;
    size_.fetch_add(1, std::memory_order_relaxed);
  }

  std::shared_ptr<job> unlink(job& n) {
    (n.prev_ != nullptr ? n.prev_->next_ : head_) = n.next_;
    (n.next_ != nullptr ? n.next_->prev_ : tail_) = n.prev_;
    n.prev_ = n.next_ = nullptr;
    n.queue_ = nullptr;
    size_.fetch_sub(1, std::memory_order_relaxed);
    counters_->queued.fetch_sub(1, std::memory_order_relaxed);
    return std::move(n.queued_self_);
  }

  std::shared_ptr<counters> counters_;
  const std::chrono::microseconds poll_for_;
  std::mutex mutex_;
  std::condition_variable ready_;
  job* head_ = nullptr;
  job* tail_ = nullptr;
  std::atomic<std::size_t> size_{0};  // jobs linked, readable without the mutex while polling
  std::atomic<bool> closing_{false};
  bool closed_ = false;
  bool kept_open_ = false;
  bool held_ = false;
  std::size_t sleepers_ = 0;       // consumers waiting on ready_: push() notifies only when one is
  std::size_t wakes_pending_ = 0;  // notify_one() calls whose waiter has not woken yet (<= sleepers_)
  error_code close_reason_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
