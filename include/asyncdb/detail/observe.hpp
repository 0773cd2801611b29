#pragma once
// Calls the operation observer for the lanes of both engines.
#include <asyncdb/detail/job.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/observer.hpp>

#include <chrono>
#include <exception>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// What an operation keeps for the observer between its start and its completion; filled only when an
// observer is set, so that an unobserved operation reads no clock for it.
struct observed_run {
  std::chrono::steady_clock::time_point started{};
  std::chrono::steady_clock::time_point ended{};
  bool committed = false;

  void start() noexcept { started = std::chrono::steady_clock::now(); }
  void end(bool lease_committed) noexcept {
    ended = std::chrono::steady_clock::now();
    committed = lease_committed;
  }
  // Queue wait and run time into `r`; an operation that never started waited until now, one refused at
  // admission (never queued) not at all.
  void times(std::chrono::steady_clock::time_point enqueued_at, operation_record& r) const noexcept {
    if (started == std::chrono::steady_clock::time_point{}) {
      if (enqueued_at != std::chrono::steady_clock::time_point{})
        r.queued = std::chrono::steady_clock::now() - enqueued_at;
      return;
    }
    r.queued = started - enqueued_at;
    r.running = ended - started;
  }
};

// The outcome as the record reports it, from what the lane decided.
inline operation_outcome outcome_of(bool aborted, const std::exception_ptr& ep) noexcept {
  return aborted ? operation_outcome::aborted : ep ? operation_outcome::failed : operation_outcome::succeeded;
}

// An abort once the deadline has passed is the budget's (its caller is given deadline_exceeded then, see
// budget_handler), one before it the caller's own cancellation.
inline operation_outcome budgeted(operation_outcome o, const job& j) noexcept {
  return o == operation_outcome::aborted && j.deadline_passed() ? operation_outcome::timed_out : o;
}

// Of an operation that never reached a connection: the refusal at admission, or a cancellation while queued.
inline operation_outcome unrun_outcome(error_code ec) noexcept {
  return ec == net::error::operation_aborted ? operation_outcome::aborted : operation_outcome::rejected;
}

// The record of `j`, named `name`, which never reached a connection: `outcome` from unrun_outcome() or rejected.
inline operation_record unrun_record(const op_name& name, const job& j, operation_outcome outcome) noexcept {
  operation_record r;
  r.name = name.name;
  r.where = name.where;
  observed_run{}.times(j.enqueued_at, r);
  r.outcome = budgeted(outcome, j);
  return r;
}

// Why noexcept and a catch-all: the lane calls it between fixing an outcome and delivering it, where an
// exception would lose the caller's completion; an observer that throws loses only its own record.
inline void notify(const operation_observer& observer, const operation_record& r) noexcept {
  try {
    observer(r);
  } catch (...) {
  }
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
