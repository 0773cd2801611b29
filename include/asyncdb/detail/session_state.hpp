#pragma once
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/observer.hpp>

#include <memory>
#include <source_location>
#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

class session_expiry;  // detail/session_budget.hpp

struct session_controls;  // set by a backend other than SQLite (detail/pg/session.hpp)

// Shared by an AsyncDbSession and the lane serving it. Closing `queue` is the whole release
// protocol: the lane drains it, rolls back what is open and returns to its pool, so releasing a
// session never needs a free worker and never blocks the releasing thread.
struct session_state {
  session_state(std::shared_ptr<counters> c, bool read_only) : queue(c), stats(std::move(c)), read_only(read_only) {}

  job_queue queue;
  const std::shared_ptr<counters> stats;
  const bool read_only;
  bool aborted = false;                        // only touched on the serving lane's thread
  const session_controls* controls = nullptr;  // null: an SQLite session
  std::source_location where{};                // where it was opened: its operations report it (static storage)
  // asyncdb::session_budget: set once, on the serving lane's thread, before the session is handed out.
  budget_clock::time_point deadline = budget_clock::time_point::max();
  std::shared_ptr<session_expiry> expiry;  // the timer that closes `queue` at the deadline (session_budget.hpp)
  // Set once, on the serving lane's thread, before the session is handed out: what reports its operations that never
  // reach the connection (refused, cancelled in the queue). Shared: a session may outlive its database.
  std::shared_ptr<const operation_observer> observer;
  connection_role connection{};  // the connection serving it
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
