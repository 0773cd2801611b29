#pragma once
// The operation observer's record of an operation on a PostgreSQL lane.
#include <asyncdb/detail/observe.hpp>
#include <asyncdb/detail/pg/lane.hpp>

#include <string_view>

namespace asyncdb::detail::pg {

// On the lane's thread, once the outcome is fixed and before the completion is delivered. `backend_pid`
// is read by the caller while the connection is known to be there (0 for a refused operation).
inline void observe(const lane& l, const op_name& name, const observed_run& seen,
                    std::chrono::steady_clock::time_point enqueued_at, bool in_session, int backend_pid,
                    operation_outcome outcome) noexcept {
  operation_record r;
  r.name = name.name;
  r.where = name.where;
  r.connection = l.role();
  r.backend_pid = backend_pid;
  r.in_session = in_session;
  seen.times(enqueued_at, r);
  r.outcome = outcome;
  r.committed = seen.committed;
  notify(l.settings().observer, r);
}

}  // namespace asyncdb::detail::pg
