#pragma once
// What an operation observer (options::observer, postgres::options::observer) is told after each operation.
#include <asyncdb/connection_role.hpp>
#include <asyncdb/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <source_location>
#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// How an operation ended, as the observer sees it.
enum class operation_outcome : unsigned char {
  succeeded,  ///< ran and completed without an exception
  failed,     ///< ran (or could not start on a closing or lost connection) and completed with an exception
  aborted,    ///< the caller's cancellation withdrew it, or interrupted it before anything of it committed
  rejected,   ///< never ran: refused at admission (queue full, database closed), or its connection was down
  timed_out,  ///< as aborted, but by its budget (its deadline had passed: the caller got deadline_exceeded)
};

/// One operation, as the observer is told of it once its outcome is fixed: every operation, once.
///
/// Runs on the connection's own thread, after the operation's outcome is fixed and before its completion
/// is handed to the caller's executor: the caller resumes after the observer returned. An operation that
/// never reached a connection (refused at admission, or cancelled while queued), and a session's opening that
/// never granted one, is reported on the thread that completed it (the caller's, the canceller's, or its budget's
/// timer), with `running` zero and `connection` its session's, else left at its default; a session keeps the
/// observer alive, so its operations are reported even after its database is gone. It holds the
/// connection meanwhile, so it must be quick (count, push to a queue, log without waiting), must not call
/// into any asyncdb database (it may be the one it waits for: a deadlock), and should not throw: an
/// exception it throws is caught and dropped. `name` and `where` refer to static storage and stay valid.
struct operation_record {
  std::string_view name;  ///< the DAO member or function, or the caller of run()
  /// Where it was started: the call of run() or async_run(); else, inside a session, where the session was opened.
  /// A call<&Dao::member>(args...) cannot take a location after its argument pack: its `name` names it, line 0 here.
  std::source_location where{};
  connection_role connection;           ///< the connection it ran on (writer 0, reader 1, ...); default if none
  int backend_pid = 0;                  ///< PostgreSQL: the server process that ran it; 0 on SQLite
  bool in_session = false;              ///< ran inside a session (on the session's connection)
  std::chrono::nanoseconds queued{0};   ///< from the call to the start on a connection
  std::chrono::nanoseconds running{0};  ///< on the connection, its commit (a shared one included) counted
  operation_outcome outcome = operation_outcome::succeeded;  ///< how it ended
  bool committed = false;      ///< something of it was committed (its own COMMIT, autocommit, or its group's)
  std::size_t group_size = 0;  ///< SQLite: operations sharing its group commit, itself included; 0 alone
};

/// Called after each operation; see operation_record for where it runs and what it may do.
using operation_observer = std::function<void(const operation_record&)>;

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
