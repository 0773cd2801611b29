#pragma once
#include <asyncdb/detail/asio.hpp>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace asyncdb::detail {

// A completion that will be delivered to an execution context some time later, from a database
// thread. The registry below owns the decision "deliver or abandon", taken under its mutex.
class pending_completion {
 public:
  virtual ~pending_completion() = default;
  // Called once the context is shutting down: destroy the handler and the work guard, never invoke.
  virtual void abandon() noexcept = 0;
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
    std::lock_guard lock(mutex_);
    if (--delivering_ == 0 && shut_down_) delivered_.notify_all();
    return true;
  }

 private:
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
  std::size_t delivering_ = 0;
  bool shut_down_ = false;
};

}  // namespace asyncdb::detail
