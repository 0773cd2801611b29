#pragma once
#include <asyncdb/detail/asio.hpp>
#include <asyncdb/detail/brief_lock.hpp>
#include <asyncdb/detail/completion_batch.hpp>
#include <asyncdb/detail/op_memory.hpp>

#include <cstddef>
#include <iterator>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

class completion_registry;

// A completion that a database thread will deliver to an execution context some time later.
class pending_completion {
 public:
  virtual ~pending_completion() = default;
  // The context is shutting down: destroy the handler and the work guard, never invoke.
  virtual void abandon() noexcept = 0;
  // Invokes the handler with the outcome stored before queue_ready(); on the context's own thread. `self` is
  // the drain's reference to this completion, dropped before the handler runs.
  virtual void run_completion(std::shared_ptr<pending_completion> self) = 0;
  virtual std::shared_ptr<pending_completion> keep_alive() noexcept = 0;

 private:
  friend class completion_registry;
  pending_completion* prev_ = nullptr;
  pending_completion* next_ = nullptr;
  bool registered_ = false;
};

// The completions pending for one execution context, and the one lock under which each is either
// delivered (posted while the context is alive) or abandoned (by shutdown). Shared by the context's
// service and every operation registered here, so a database thread holding it never touches freed
// memory, whenever the context dies.
class completion_registry final : public owed_drain, public std::enable_shared_from_this<completion_registry> {
 public:
  explicit completion_registry(net::execution_context& ctx) : context_(&ctx) {}

  // Registers `p`. False when the context is already shutting down: the caller must abandon it.
  bool add(pending_completion& p) {
    return add_and(p, [] {});
  }

  // As add(), running `then` under the lock once `p` is registered: the context is alive meanwhile.
  template <class Then>
  bool add_and(pending_completion& p, Then&& then) {
    auto lock = lock_briefly(mutex_);
    if (shut_down_) return false;
    p.next_ = head_;
    if (head_ != nullptr) head_->prev_ = &p;
    head_ = &p;
    p.registered_ = true;
    then();
    return true;
  }

  // Runs `then` under the lock iff `p` is still registered (the context is alive meanwhile), leaving it
  // registered; false if the context has abandoned `p`.
  template <class Then>
  bool while_registered(pending_completion& p, Then&& then) {
    auto lock = lock_briefly(mutex_);
    if (!p.registered_) return false;
    then();
    return true;
  }

  // Runs `deliver` under the lock iff `p` is still registered, and unregisters it; false if the context
  // has abandoned `p`. `deliver` may post to the context (posting never runs a handler inline), so
  // "posted, then the context dies" and "the context died, then nothing is posted" are the only orders.
  template <class Deliver>
  bool remove_and(pending_completion& p, Deliver&& deliver) {
    auto lock = lock_briefly(mutex_);
    if (!p.registered_) return false;
    unlink(p);
    deliver();
    return true;
  }

  // For a completion whose handler may run on any thread of this io_context: `store` saves its outcome,
  // and one drain handler runs every completion queued by then. A burst of completions then costs the
  // scheduler one post, and the loop one wake-up, instead of one each. False if `p` was abandoned.
  // The post happens after mutex_ is released: posting wakes the loop (an epoll interrupt, under the
  // scheduler's lock), and a loop woken while this thread still held mutex_ went straight back to sleep
  // on it in the drain (profiled: a third of W1c1's context switches). The caller's operation holds this
  // registry, and the caller holds the operation, so the registry outlives the post. A lane that has more
  // jobs queued may owe the post instead (completion_batch, which holds the registry until it pays).
  template <class Store>
  bool queue_ready(pending_completion& p, Store&& store) {
    completion_batch* const batch = completion_batch::current();
    const bool may_defer = batch != nullptr && batch->may_defer();
    bool post = false, defer = false;
    const bool delivered = remove_and(p, [&] {
      store();
      ready_.push_back(p.keep_alive());
      if (!std::exchange(drain_posted_, true)) {
        defer = drain_owed_ = may_defer;
        post = !defer;
      } else if (drain_owed_ && (!may_defer || ready_.size() >= completion_batch::size)) {
        // A thread that would not hold its own completion back (the writer, a PostgreSQL lane, a
        // canceller) posts what another lane holds back, rather than wait for that lane.
        drain_owed_ = false;
        post = true;
      }
    });
    if (post) post_drain_from_outside();
    if (defer) batch->owe(shared_from_this());
    return delivered;
  }

  // The lane that deferred this registry's drain posts it now, unless another lane has meanwhile.
  void pay() noexcept override {
    bool post = false;
    {
      auto lock = lock_briefly(mutex_);
      post = std::exchange(drain_owed_, false);
    }
    if (post) post_drain_from_outside();
  }

  // Called by the context's service: drops every pending handler, outside the lock, since destroying
  // a coroutine frame may run destructors that start new operations (which add() then refuses).
  void shutdown() {
    {
      std::lock_guard lock(post_mutex_);
      context_alive_ = false;
    }
    std::vector<std::shared_ptr<pending_completion>> doomed;
    {
      auto lock = lock_briefly(mutex_);
      shut_down_ = true;
      while (head_ != nullptr) {
        pending_completion& p = *head_;
        unlink(p);
        doomed.push_back(p.keep_alive());
      }
      for (auto& p : ready_) doomed.push_back(std::move(p));
      ready_.clear();
    }
    for (auto& p : doomed) {
      if (p) p->abandon();
    }
  }

 private:
  // From a lane: the context may be shutting down meanwhile, and the post must then not happen.
  // post_mutex_ orders it against shutdown(): "posted, then the context dies" or "died, nothing posted".
  void post_drain_from_outside() {
    std::lock_guard lock(post_mutex_);
    if (context_alive_) post_drain();
  }

  // Only for completions whose executor is this io_context's; directly only from the drain itself, which
  // runs inside the context. Asio's own recycling of the posted operation is the posting thread's, which a
  // lane's is not: from the cache of operations, the one-in-flight case posts without allocating (Asio
  // frees the memory before it runs the drain, so it is back in the cache by the next post).
  void post_drain() {
    net::post(static_cast<net::io_context&>(*context_).get_executor(),
              net::bind_allocator(op_allocator<void>(), [self = this] { self->drain(); }));
  }

  // Runs the completions queued by now, then those queued meanwhile, until none is left or `burst` have
  // run. drain_posted_ stays set all along, so a lane finishing an operation during the drain only appends
  // to ready_: it neither posts nor wakes the loop (each post costs the lane the scheduler's lock and an
  // epoll interrupt, and the woken loop preempts it on a small machine). Past the budget the drain posts
  // itself again, behind the loop's timers and I/O, which therefore wait for at most one burst.
  void drain() {
    static constexpr std::size_t burst = 256;
    std::size_t ran = 0;
    std::vector<std::shared_ptr<pending_completion>> batch;
    for (;;) {
      {
        auto lock = lock_briefly(mutex_);
        if (spare_.capacity() < batch.capacity()) spare_.swap(batch);
        if (ready_.empty()) {
          drain_posted_ = false;
          return;
        }
        if (ran >= burst) {
          post_drain();  // drain_posted_ stays set: this drain goes on later
          return;
        }
        batch.clear();
        batch.swap(ready_);
        ready_.swap(spare_);  // a steady stream of completions then allocates nothing here
      }
      run_batch(batch);
      ran += batch.size();
      batch.clear();
    }
  }

  void run_batch(std::vector<std::shared_ptr<pending_completion>>& batch) {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      try {
        // Handed over, not kept until the batch ends: if it is the last reference, the operation's memory is
        // back in its cache before the handler starts the next operation (Asio frees its own operations
        // before their upcall for the same reason).
        pending_completion& p = *batch[i];
        p.run_completion(std::move(batch[i]));
      } catch (...) {
        // As from any handler, the exception leaves run(); the others complete in the next drain, which
        // this one posts (drain_posted_ is still set).
        auto lock = lock_briefly(mutex_);
        if (!shut_down_) {
          ready_.insert(ready_.begin(), std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i) + 1),
                        std::make_move_iterator(batch.end()));
          if (ready_.empty()) {
            drain_posted_ = false;
          } else {
            post_drain();
          }
        }
        throw;
      }
    }
  }

  void unlink(pending_completion& p) noexcept {
    if (p.prev_ != nullptr) p.prev_->next_ = p.next_;
    if (p.next_ != nullptr) p.next_->prev_ = p.prev_;
    if (head_ == &p) head_ = p.next_;
    p.prev_ = p.next_ = nullptr;
    p.registered_ = false;
  }

  net::execution_context* context_;  // alive while !shut_down_, and while context_alive_ under post_mutex_
  std::mutex post_mutex_;
  bool context_alive_ = true;
  std::mutex mutex_;
  pending_completion* head_ = nullptr;
  std::vector<std::shared_ptr<pending_completion>> ready_;  // delivered, waiting for the drain
  std::vector<std::shared_ptr<pending_completion>> spare_;  // empty, keeps its capacity for the next drain
  bool drain_posted_ = false;
  bool drain_owed_ = false;  // drain_posted_ is set, but the lane that set it has not posted yet
  bool shut_down_ = false;
};

// Registered in each execution context that receives asyncdb completions, as Asio's own I/O services
// are: when the context is shut down or destroyed before a database operation finishes, shutdown()
// runs while the context is still alive, and from then on nothing is posted there.
class context_registry final : public net::execution_context::service {
 public:
  static inline net::execution_context::id id;

  explicit context_registry(net::execution_context& ctx)
      : net::execution_context::service(ctx), registry_(std::make_shared<completion_registry>(ctx)) {}

  const std::shared_ptr<completion_registry>& registry() const noexcept { return registry_; }

 private:
  void shutdown() override { registry_->shutdown(); }

  std::shared_ptr<completion_registry> registry_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
