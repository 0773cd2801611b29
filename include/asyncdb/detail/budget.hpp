#pragma once
// Time budgets, built on the cancellation every operation already honours: a timer on a strand of the
// handler's executor emits a terminal cancellation into the operation's slot when the deadline passes,
// and the handler turns the resulting operation_aborted into errc::deadline_exceeded. The contract is the
// cancellation contract unchanged (withdrawn or interrupted before committing: nothing is in the
// database; committed first: success), because it is the cancellation path.
#include <asyncdb/detail/asio.hpp>
#include <asyncdb/detail/job.hpp>
#include <asyncdb/error.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

using budget_clock = std::chrono::steady_clock;

// now() + d, saturating: a budget past the clock's range (duration::max() among them) has no bound.
template <class Rep, class Period>
budget_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  const budget_clock::time_point now = budget_clock::now();
  if (d <= d.zero()) return now;
  const auto left = budget_clock::time_point::max() - now;
  if (std::chrono::duration<long double>(d) >= std::chrono::duration<long double>(left)) {
    return budget_clock::time_point::max();
  }
  return now + std::chrono::duration_cast<budget_clock::duration>(d);
}

// A budget as nanoseconds, saturating: longer than nanoseconds can hold is no bound.
template <class Rep, class Period>
std::chrono::nanoseconds saturated_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using max_ns = std::chrono::duration<long double, std::nano>;
  if (max_ns(d) >= max_ns(std::chrono::nanoseconds::max())) return std::chrono::nanoseconds::max();
  if (d <= d.zero()) return std::chrono::nanoseconds::zero();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d);
}

inline bool is_operation_aborted(const std::exception_ptr& ep) noexcept {
  if (!ep) return false;
  try {
    std::rethrow_exception(ep);
  } catch (const system_error& e) {
    return e.code() == net::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

// The executor the budget's timer runs on: the handler's own when it is an I/O executor (so the cancellation
// is emitted where the operation's completion runs, as Asio's own `||` does), the system executor otherwise
// (use_future's, say).
template <class Executor>
net::any_io_executor timer_executor(const Executor& ex) {
  if constexpr (std::is_convertible_v<const Executor&, net::any_io_executor>) {
    return ex;
  } else {
    return net::system_executor();
  }
}

// Timer, signal and the caller's own slot, behind one mutex: the timer fires, the caller cancels and the
// operation completes on whatever threads run their executors.
class budget_state : public std::enable_shared_from_this<budget_state> {
 public:
  budget_state(net::any_io_executor ex, budget_clock::time_point deadline, std::chrono::nanoseconds budget)
      : timer_(std::move(ex)), deadline_(deadline), budget_(budget) {}

  // After the operation connected its cancellation handler to signal_: an earlier emit would be lost.
  void arm() {
    if (deadline_ == budget_clock::time_point::max()) return;
    std::lock_guard lock(mutex_);
    if (done_) return;
    timer_.expires_at(deadline_);
    // Weak: the operation owns this state through its handler; a pending wait must not keep it.
    timer_.async_wait([w = weak_from_this()](const error_code& ec) {
      if (auto s = w.lock(); s && !ec) s->emit(net::cancellation_type::terminal, true);
    });
  }

  // The caller's own cancellation (`||`, a parent's signal) still reaches the operation, through signal_.
  void forward_from(net::cancellation_slot upstream) {
    if (!upstream.is_connected()) return;
    upstream_ = upstream;
    upstream_.emplace<forwarder>(forwarder{weak_from_this()});
  }

  // As the operation completes, on its handler's executor: no emit after this. Whether the deadline passed
  // (the timer may not have run yet when the operation itself saw it pass: operation_base::end_run).
  bool finish() noexcept {
    std::lock_guard lock(mutex_);
    done_ = true;
    try {
      timer_.cancel();
    } catch (...) {  // cancel() reports failure only as an exception; the wait then ends at the deadline, harmlessly
    }
    if (upstream_.is_connected()) upstream_.clear();
    return expired_ || budget_clock::now() >= deadline_;
  }

  net::cancellation_slot slot() noexcept { return signal_.slot(); }
  budget_clock::time_point deadline() const noexcept { return deadline_; }
  std::chrono::nanoseconds budget() const noexcept { return budget_; }

 private:
  struct forwarder {
    std::weak_ptr<budget_state> state;
    void operator()(net::cancellation_type type) const {
      if (auto s = state.lock()) s->emit(type, false);
    }
  };

  // The operation's cancel() only takes its own lock and posts any completion, so holding ours is safe.
  void emit(net::cancellation_type type, bool expired) {
    std::lock_guard lock(mutex_);
    if (done_) return;
    expired_ = expired_ || expired;
    signal_.emit(type);
  }

  std::mutex mutex_;
  net::basic_waitable_timer<budget_clock> timer_;
  net::cancellation_signal signal_;
  net::cancellation_slot upstream_;
  budget_clock::time_point deadline_;
  std::chrono::nanoseconds budget_;  // the whole budget, from the initiation to deadline_
  bool done_ = false;
  bool expired_ = false;
};

// The handler an operation with a budget completes: the caller's, with the state's signal as its slot.
template <class Handler>
class budget_handler {
 public:
  using executor_type = net::associated_executor_t<Handler>;
  using cancellation_slot_type = net::cancellation_slot;

  budget_handler(Handler h, budget_clock::time_point deadline, std::chrono::nanoseconds budget)
      : state_(std::make_shared<budget_state>(timer_executor(net::get_associated_executor(h)), deadline, budget)),
        handler_(std::move(h)) {
    state_->forward_from(net::get_associated_cancellation_slot(handler_));
  }

  executor_type get_executor() const noexcept { return net::get_associated_executor(handler_); }
  cancellation_slot_type get_cancellation_slot() const noexcept { return state_->slot(); }
  const std::shared_ptr<budget_state>& state() const noexcept { return state_; }

  template <class... Results>
  void operator()(std::exception_ptr ep, Results&&... results) {
    if (state_->finish() && is_operation_aborted(ep)) {
      ep = std::make_exception_ptr(system_error(make_error_code(errc::deadline_exceeded)));
    }
    std::move(handler_)(std::move(ep), std::forward<Results>(results)...);
  }

 private:
  std::shared_ptr<budget_state> state_;
  Handler handler_;
};

template <class T>
inline constexpr bool is_budget_handler = false;
template <class Handler>
inline constexpr bool is_budget_handler<budget_handler<Handler>> = true;

// The one way an operation gets a budget: `start(handler)` queues it, with `handler` wrapped when there is
// a deadline. A handler that carries a per-call budget already keeps it (it overrides the default).
template <class Handler, class Start>
void start_within(Handler&& handler, budget_clock::time_point deadline, std::chrono::nanoseconds budget,
                  Start&& start) {
  using handler_type = std::decay_t<Handler>;
  if constexpr (is_budget_handler<handler_type>) {
    std::forward<Start>(start)(std::forward<Handler>(handler));
  } else {
    if (deadline == budget_clock::time_point::max()) return std::forward<Start>(start)(std::forward<Handler>(handler));
    budget_handler<handler_type> wrapped(std::forward<Handler>(handler), deadline, budget);
    auto state = wrapped.state();
    std::forward<Start>(start)(std::move(wrapped));
    state->arm();
  }
}

// budget(max()): no bound, and none from the database's default either. The handler is wrapped as any budgeted
// one (the mark start_with_default keeps), with a deadline that never comes: no timer is armed.
template <class Handler, class Start>
void start_unbounded(Handler&& handler, Start&& start) {
  using handler_type = std::decay_t<Handler>;
  if constexpr (is_budget_handler<handler_type>) {
    std::forward<Start>(start)(std::forward<Handler>(handler));
  } else {
    std::forward<Start>(start)(budget_handler<handler_type>(
        std::forward<Handler>(handler), budget_clock::time_point::max(), std::chrono::nanoseconds::max()));
  }
}

// The database-wide default: zero is no budget, and costs this one branch.
template <class Handler, class Start>
void start_with_default(Handler&& handler, std::chrono::nanoseconds default_budget, Start&& start) {
  if (default_budget == default_budget.zero()) return std::forward<Start>(start)(std::forward<Handler>(handler));
  start_within(std::forward<Handler>(handler), deadline_after(default_budget), default_budget,
               std::forward<Start>(start));
}

// What is left of a budget ending at `deadline`: none left is zero, no deadline is max().
inline std::chrono::nanoseconds budget_left(budget_clock::time_point deadline) noexcept {
  if (deadline == budget_clock::time_point::max()) return std::chrono::nanoseconds::max();
  return std::max(std::chrono::nanoseconds::zero(), std::chrono::nanoseconds(deadline - budget_clock::now()));
}

// Records on `j` (before it is queued) the budget its handler carries, if any.
template <class Handler>
void record_budget(const Handler& h, job& j) noexcept {
  if constexpr (is_budget_handler<Handler>) {
    j.deadline = h.state()->deadline();
    j.budget = h.state()->budget();
  }
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
