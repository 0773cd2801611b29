#pragma once
// A session's budget (asyncdb::session_budget): one deadline for the open and everything after it. The open
// waits with it as with a per-call budget; once granted, the session's queue closes at the deadline (later
// operations fail with deadline_exceeded at once, and the lane rolls back what the session left open), and
// each of its operations carries the same deadline, so the one running then is cancelled through the
// cancellation path, whose contract (nothing of it in the database, or committed and reported) is unchanged.
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/session_state.hpp>

#include <memory>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// On the lane's thread as the session is granted. `ex` is the opener's executor: the timer runs there.
inline void expire_at(const std::shared_ptr<session_state>& s, const net::any_io_executor& ex,
                      budget_clock::time_point deadline) {
  s->deadline = deadline;
  if (deadline == budget_clock::time_point::max()) return;
  s->expiry = std::make_shared<budget_state>(ex, deadline, budget_left(deadline));
  // Weak: the session's state owns the timer; a session already released has nothing left to close.
  s->expiry->slot().assign([w = std::weak_ptr<session_state>(s)](net::cancellation_type) {
    if (auto st = w.lock()) st->queue.close(make_error_code(errc::deadline_exceeded));
  });
  s->expiry->arm();
}

// As the lane stops serving the session: a pending timer would keep the opener's executor busy until the deadline.
inline void stop_expiry(session_state& s) noexcept {
  if (s.expiry) s.expiry->finish();
}

// The token a session's own operations are started with: its deadline, if it has one. Once that has passed, the
// session is over even if its timer has not run yet (it runs on the opener's executor): an operation started now
// must fail at once, not race that timer to the connection.
inline until_t<net::use_awaitable_t<>> session_token(session_state* s) {
  if (s == nullptr || s->deadline == budget_clock::time_point::max()) return {budget_clock::time_point::max(), {}};
  if (budget_clock::now() >= s->deadline) s->queue.close(make_error_code(errc::deadline_exceeded));
  return {s->deadline, net::use_awaitable};
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
