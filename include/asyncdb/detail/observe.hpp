#pragma once
// Calls the operation observer for the lanes of both engines.
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
  // Queue wait and run time into `r`; an operation that never started waited until now.
  void times(std::chrono::steady_clock::time_point enqueued_at, operation_record& r) const noexcept {
    if (started == std::chrono::steady_clock::time_point{}) {
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
