#pragma once
// The operation observer's record of an operation on a SQLite lane.
#include <asyncdb/detail/observe.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// On the lane's thread, once the outcome is fixed and before the completion is delivered. A member of
// a group commit is completed after the shared COMMIT: the lane then says how large the group was and
// whether that COMMIT went through, which counts for the members that succeeded.
inline void observe(const lane& l, const op_name& name, const observed_run& seen,
                    std::chrono::steady_clock::time_point enqueued_at, bool in_session,
                    operation_outcome outcome) noexcept {
  operation_record r;
  r.name = name.name;
  r.where = name.where;
  r.connection = l.role();
  r.in_session = in_session;
  seen.times(enqueued_at, r);
  r.outcome = outcome;
  const lane::group_outcome g = l.completing_group();
  r.group_size = g.size;
  r.committed = seen.committed || (g.committed && outcome == operation_outcome::succeeded);
  notify(l.settings().observer, r);
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
