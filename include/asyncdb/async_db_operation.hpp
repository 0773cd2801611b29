#pragma once
// Method 2 and 4 of the guide: one DAO member or one function, awaitable.
#include <asyncdb/database.hpp>
#include <asyncdb/detail/sqlite/initiate.hpp>
#include <asyncdb/routing.hpp>

#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Wraps `Operation`, a DAO member `R (Dao::*)(Args...)` or a function `R (*)(SQLite::Database&, Args...)`,
/// into an awaitable call. Members run on the connection's own Dao instance, created there on first use.
template <auto Operation>
struct async_db_operation {
  /// Runs the operation on a reader if `is_read_only<Operation>`, on the writer if `is_write<Operation>`,
  /// else on a reader until it first tries to write (docs/reference.md, "Routing"); arguments are copied
  /// into owning values.
  /// Completion: awaitable<R>. Resumes on the awaiting coroutine's executor. Thread-safe.
  /// Throws at the co_await what the operation threw, or errc::closed / queue_full / operation_aborted.
  template <class... Args>
  auto operator()(database& db, Args&&... args) const {
    using dao = typename detail::default_dao<Operation>::type;
    return detail::initiate_call<detail::sqlite_backend, Operation, dao, void>(detail::database_access::of(db),
                                                                               std::forward<Args>(args)...);
  }
};

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
