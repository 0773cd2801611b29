#pragma once
// What the core's run_op (detail/run_op.hpp) asks of a PostgreSQL lane.
#include <asyncdb/detail/pg/lane.hpp>
#include <asyncdb/detail/run_op.hpp>
#include <asyncdb/error.hpp>

#include <pqxx/except>

#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace asyncdb::detail::pg {

inline bool is_broken_connection(const std::exception_ptr& ep) noexcept {
  try {
    std::rethrow_exception(ep);
  } catch (const pqxx::broken_connection&) {
    return true;
  } catch (...) {
    return false;
  }
}

inline bool is_in_doubt(const std::exception_ptr& ep) noexcept {
  if (!ep) return false;
  try {
    std::rethrow_exception(ep);
  } catch (const pqxx::in_doubt_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

// Fixes the outcome of a lease once the operation can no longer be interrupted: a transaction the
// operation left open is rolled back (and reported), a connection it broke is reported, and with
// refuse_swallowed_errors a write the server silently rolled back fails instead of succeeding.
inline std::exception_ptr settle(lane& l, std::exception_ptr ep, const lease_watch& w, session_state* s) {
  connection& c = l.conn();
  if (c.is_broken()) {
    // libpqxx 6.4's own words for it are often beside the point ("Could not obtain client encoding: not
    // connected."); libpq kept what the server said. An in_doubt_error (a pqxx::failure) and the DAO's own
    // exceptions are left as they are.
    if (!ep || is_broken_connection(ep)) {
      const std::string why = c.last_error();
      ep = std::make_exception_ptr(pqxx::broken_connection("asyncdb: the connection was lost during this operation" +
                                                           (why.empty() ? std::string() : ": " + why)));
    }
    return ep;
  }
  if (s == nullptr && c.rollback_if_open() && !ep) {
    ep = std::make_exception_ptr(system_error(errc::transaction_left_open));
  }
  if (!ep && w.rolled_back_after_error && l.settings().refuse_swallowed_errors) {
    ep = std::make_exception_ptr(std::runtime_error(
        "asyncdb: a statement of this operation failed inside a transaction and the operation caught the error, "
        "so the server rolled the whole transaction back (libpqxx 6.4 reports such a COMMIT as a success); "
        "nothing of that transaction was written. Let the error propagate, or set "
        "postgres::options::refuse_swallowed_errors to false if the rollback was intended"));
  }
  return ep;
}

struct hooks {
  using lane_type = lane;

  template <class Op>
  static void serve(Op& op, lane& l) noexcept {
    if (!op.begin(l)) return;
    op.run(l);
    op.end(l);
    op.complete(l);
  }

  // The lane itself refuses what it pops once close()'s grace is over.
  static bool closing(lane&) noexcept { return false; }
  static void hold(lane& l, const op_name& name, const session_state* s) noexcept {
    if (s == nullptr) l.hold(name);
  }
  static void release(lane& l, const session_state* s) noexcept {
    if (s == nullptr) l.hold(op_name(std::string_view{}));
  }
  // read_your_writes: a read outside a session waits for the replica first.
  static void before_run(lane& l, const session_state* s) {
    if (s == nullptr) l.catch_up();
  }
  static lease_watch end_lease(lane& l) noexcept { return l.conn().end_lease(); }
  static bool committed(const lease_watch& w) noexcept { return w.commits > 0; }
  // Aborted only when nothing of it reached the database: no COMMIT and no autocommit write went through,
  // and the failure is not a lost COMMIT, whose outcome nobody knows.
  static lease_report settle(lane& l, const lease_watch& w, std::exception_ptr& ep, session_state* s) {
    ep = pg::settle(l, std::move(ep), w, s);
    return {.committed = w.commits > 0, .in_doubt = is_in_doubt(ep)};
  }
  // A cancelled statement leaves a write session's transaction failed on the server: only rollback() may
  // follow. A read session's is rolled back to before the operation and goes on (after_delivery).
  static void decided(lane& l, bool aborted, session_state* s) noexcept {
    if (aborted && s != nullptr && !s->read_only && l.session_transaction()) s->aborted = true;
  }
  // After a given-up cancel, asked on the replacement connection: its WAL position is past the commit.
  static void before_delivery(lane& l, bool committed) noexcept {
    if (committed && !l.conn().is_broken() && !l.replace_if_needed()) l.note_write();
  }
  // After the caller has its answer: the lane does it before it takes the session's next operation.
  static void after_delivery(lane& l, bool read_session) noexcept {
    if (read_session) l.keep_snapshot();
    l.after_operation();
  }

  // Called while the connection is known to be there; a refused operation ran on none (backend_pid 0).
  static void annotate(lane& l, operation_record& r) noexcept {
    r.backend_pid = r.outcome == operation_outcome::rejected ? 0 : l.conn().backend_pid();
  }
};

}  // namespace asyncdb::detail::pg
