#pragma once
#include <asyncdb/detail/asio.hpp>

#include <condition_variable>
#include <cstddef>
#include <iterator>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace asyncdb::detail {

// A completion that will be delivered to an execution context some time later, from a database
// thread. The registry below owns the decision "deliver or abandon", taken under its mutex.
class pending_completion {
 public:
  virtual ~pending_completion() = default;
  // Called once the context is shutting down: destroy the handler and the work guard, never invoke.
  virtual void abandon() noexcept = 0;
  // Invokes the handler with the outcome stored before queue_ready(); on the context's own thread.
  virtual void run_completion() = 0;
  virtual std::shared_ptr<pending_completion> keep_alive() noexcept = 0;

 private:
  friend class context_registry;
  pending_completion* prev_ = nullptr;
  pending_completion* next_ = nullptr;
  bool registered_ = false;
};

// Registered in each execution context that receives asyncdb completions, as Asio's own I/O
// services are: when the context is destroyed (or shut down) before a database operation finishes,
// shutdown() runs while the context is still alive, drops every handler and work guard we hold for
// it, and from then on nothing is posted there. Without it a database thread would post into a
// freed scheduler.
class context_registry final : public asio::execution_context::service {
 public:
  static inline asio::execution_context::id id;

  explicit context_registry(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}

  // False when the context is already shutting down: the caller must abandon the completion.
  bool add(pending_completion& p) {
    std::lock_guard lock(mutex_);
    if (shut_down_) return false;
    p.next_ = head_;
    if (head_ != nullptr) head_->prev_ = &p;
    head_ = &p;
    p.registered_ = true;
    return true;
  }

  // Runs `deliver` iff `p` is still registered, and unregisters it. `deliver` runs outside the lock
  // (it posts, which takes the scheduler's own lock and may wake a thread: holding ours meanwhile
  // stalled every caller registering a new operation), but shutdown() waits for it, so "post, then
  // the context dies" and "the context died, then no post" stay the only two orders.
  template <class Deliver>
  bool remove_and(pending_completion& p, Deliver&& deliver) {
    {
      std::lock_guard lock(mutex_);
      if (!p.registered_) return false;
      unlink(p);
      ++delivering_;
    }
    deliver();
    delivered();
    return true;
  }

  // For a completion that may run on any thread of this io_context (its handler's executor is the
  // context's plain executor): queued here, and one drain handler runs every completion queued by
  // then. A burst of completions then costs the scheduler one post, and the loop one wake-up,
  // instead of one each: per-completion posts kept the loop thread and the lanes fighting over the
  // scheduler's mutex. False if `p` was abandoned (the context is shutting down).
  bool queue_ready(pending_completion& p) {
    bool post_drain = false;
    {
      std::lock_guard lock(mutex_);
      if (!p.registered_) return false;
      unlink(p);
      ready_.push_back(p.keep_alive());
      post_drain = !std::exchange(drain_posted_, true);
      if (post_drain) ++delivering_;
    }
    if (post_drain) {
      post_drain_handler();
      delivered();
    }
    return true;
  }

 private:
  void post_drain_handler() {
    // Only queue_ready() posts, for completions whose executor is this io_context's.
    auto& ctx = static_cast<asio::io_context&>(context());
    asio::post(ctx.get_executor(), [this] { drain(); });
  }

  void drain() {
    std::vector<std::shared_ptr<pending_completion>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(ready_);
      ready_.swap(spare_);  // a steady stream of completions then allocates nothing here
      drain_posted_ = false;
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      try {
        batch[i]->run_completion();
      } catch (...) {
        // As from any handler, the exception leaves run(); the others complete in the next drain.
        bool post_drain = false;
        {
          std::lock_guard lock(mutex_);
          if (!shut_down_) {
            ready_.insert(ready_.begin(), std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i) + 1),
                          std::make_move_iterator(batch.end()));
            post_drain = !std::exchange(drain_posted_, true);
          }
        }
        if (post_drain) post_drain_handler();
        throw;
      }
    }
    batch.clear();
    std::lock_guard lock(mutex_);
    if (spare_.capacity() < batch.capacity()) spare_.swap(batch);
  }

  void delivered() {
    std::lock_guard lock(mutex_);
    if (--delivering_ == 0 && shut_down_) delivered_.notify_all();
  }

  void shutdown() override {
    std::vector<std::shared_ptr<pending_completion>> doomed;
    {
      std::unique_lock lock(mutex_);
      shut_down_ = true;
      while (head_ != nullptr) {
        pending_completion& p = *head_;
        unlink(p);
        doomed.push_back(p.keep_alive());
      }
      for (auto& p : ready_) doomed.push_back(std::move(p));
      ready_.clear();
      delivered_.wait(lock, [&] { return delivering_ == 0; });
    }
    // Outside the lock: destroying a coroutine frame may run destructors that start new operations.
    for (auto& p : doomed) {
      if (p) p->abandon();
    }
  }

  void unlink(pending_completion& p) noexcept {
    if (p.prev_ != nullptr) p.prev_->next_ = p.next_;
    if (p.next_ != nullptr) p.next_->prev_ = p.prev_;
    if (head_ == &p) head_ = p.next_;
    p.prev_ = p.next_ = nullptr;
    p.registered_ = false;
  }

  std::mutex mutex_;
  std::condition_variable delivered_;
  pending_completion* head_ = nullptr;
  std::vector<std::shared_ptr<pending_completion>> ready_;  // delivered, waiting for the drain
  std::vector<std::shared_ptr<pending_completion>> spare_;  // empty, keeps its capacity for the next drain
  std::size_t delivering_ = 0;
  bool drain_posted_ = false;
  bool shut_down_ = false;
};

}  // namespace asyncdb::detail
