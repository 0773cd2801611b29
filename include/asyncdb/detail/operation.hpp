#pragma once
#include <asyncdb/detail/context_registry.hpp>
#include <asyncdb/detail/counters.hpp>
#include <asyncdb/detail/interruptible.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/session_state.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <system_error>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The state machine every operation shares, whatever its handler: it decides who completes it (the
// lane, a canceller, or a refusing queue) and guards the interrupt.
//
//   created --admit--> queued --start--> running --end_run--> ran --> done (delivered)
//     |                  |                                     +--take_back--> queued (to run again)
//     |                  +--cancel or claim--> done (completed by the canceller or the refuser)
//     +--cancel: marked only; admit() then completes it instead of queueing it
//
// `mutex_` orders a cancellation against the lane: interrupt() is only called with it held and the
// state `running`, so an interrupt can never outlive the run it was meant for; a queued operation is
// withdrawn from its queue under it, and the lane only ever starts what it popped through start().
class operation_base : public job, public pending_completion, public std::enable_shared_from_this<operation_base> {
 public:
  std::shared_ptr<pending_completion> keep_alive() noexcept override { return weak_from_this().lock(); }

  // created -> queued on `q` (null: a session that ended), reporting to `c`. Returns why it was not queued:
  // operation_aborted for a cancellation that arrived while the operation was being set up (its slot is
  // connected before it is queued), or the queue's refusal. The caller then completes it. Under the
  // operation's lock, so a cancellation is either seen here or finds the operation in its queue.
  error_code admit(job_queue* q, counters* c) {
    job_queue::deferred_wake wake;  // given after mutex_ is released: the lane starts by taking it
    std::lock_guard lock(mutex_);
    queue_ = q;
    counters_ = c;
    error_code ec = cancel_requested_ ? error_code(net::error::operation_aborted)
                    : q != nullptr    ? q->push(shared_from_this(), wake)
                                      : make_error_code(errc::session_ended);
    state_ = ec ? op_state::done : op_state::queued;
    return ec;
  }

  // From the handler's cancellation slot, on any thread.
  void cancel() noexcept {
    std::unique_lock lock(mutex_);
    cancel_requested_ = true;
    if (state_ == op_state::queued) {
      state_ = op_state::done;
      std::shared_ptr<job> withdrawn = queue_ != nullptr ? queue_->withdraw(*this) : nullptr;
      lock.unlock();
      if (counters_ != nullptr) counters_->cancelled.fetch_add(1, std::memory_order_relaxed);
      fail(net::error::operation_aborted);
    } else if (state_ == op_state::running) {
      conn_->interrupt();
    }
  }

  // Takes the right to complete an operation that never ran; false if someone else has it.
  bool claim() noexcept {
    std::lock_guard lock(mutex_);
    if (state_ != op_state::queued) return false;
    state_ = op_state::done;
    return true;
  }

  // queued -> running on `c`; false if a canceller completed it already.
  bool start(interruptible& c) noexcept {
    std::lock_guard lock(mutex_);
    if (state_ != op_state::queued) return false;
    state_ = op_state::running;
    conn_ = &c;
    c.begin_lease(enqueued_at);
    return true;
  }

  // running -> ran: no interrupt can reach it from here on. Returns whether a cancellation arrived, or its
  // deadline passed: a run that fails after it is the budget's cancellation even when the budget's timer has
  // not fired yet (its executor was busy) and the server stopped the statement first (PostgreSQL's
  // statement_timeout, set from the budget): aborted, deadline_exceeded, never a generic error.
  bool end_run() noexcept {
    std::lock_guard lock(mutex_);
    state_ = op_state::ran;
    conn_ = nullptr;
    return cancel_requested_ || deadline_passed();
  }

  // ran -> queued, to run again (on `q`, or directly by the lane when null). False, and done, if a
  // cancellation arrived meanwhile: the caller then completes it as cancelled.
  bool take_back(job_queue* q) noexcept {
    std::lock_guard lock(mutex_);
    if (cancel_requested_) {
      state_ = op_state::done;
      return false;
    }
    state_ = op_state::queued;
    queue_ = q;
    return true;
  }

  void mark_done() noexcept {
    std::lock_guard lock(mutex_);
    state_ = op_state::done;
  }

 private:
  enum class op_state : unsigned char { created, queued, running, ran, done };

  std::mutex mutex_;
  op_state state_ = op_state::created;
  bool cancel_requested_ = false;
  interruptible* conn_ = nullptr;  // while running
  job_queue* queue_ = nullptr;     // while queued
  counters* counters_ = nullptr;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
