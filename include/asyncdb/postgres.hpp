#pragma once
// The PostgreSQL backend: the same names as for SQLite, over libpqxx connections. Opt-in: only this
// header needs libpqxx (link asyncdb::asyncdb_postgres).
#include <asyncdb/asyncdb.hpp>
#include <asyncdb/detail/pg/initiate.hpp>
#include <asyncdb/detail/pg/session.hpp>

#include <pqxx/connection>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <source_location>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncdb::detail {
struct pg_database_access;
}

namespace asyncdb::postgres {

/// Settings of an asyncdb::postgres::database; an aggregate, so designated initializers work.
struct options {
  /// The primary's libpq connection string or URI; writes and undeclared operations run there.
  std::string primary;

  /// Streaming replicas: operations declared read-only run there. Empty: on read-only primary connections.
  std::vector<std::string> replicas{};

  /// Connections to the primary, serving writes in parallel (at least 1).
  std::size_t writers = 4;

  /// Read-only connections per replica, or to the primary when there is no replica; 0 sends reads to the writers.
  std::size_t readers = 2;

  /// Runs on each connection's own thread after every connect, reconnects included (prepare, search_path);
  /// a callback taking a connection_role too learns which one: writer N on the primary, or reader N on
  /// replica M (replica -1: a read-only connection to the primary). What it throws names the connection.
  on_open_function<pqxx::connection> on_open{};

  /// Operations allowed to wait at once; past it new ones fail at once with errc::queue_full.
  std::size_t max_queued = 65536;

  /// Bound on each connect attempt, added to a conninfo that sets no connect_timeout; 0 leaves libpq's.
  /// Also how long a cancel request may go unanswered before its connection is replaced (5 s when 0).
  std::chrono::seconds connect_timeout{5};

  /// Wait after a failed reconnect before the next attempt; doubles up to max_reconnect_backoff.
  std::chrono::milliseconds reconnect_backoff{100};
  /// The longest wait between two reconnect attempts.
  std::chrono::milliseconds max_reconnect_backoff{5000};

  /// Fails an operation that caught a failed statement inside its transaction and returned normally: the
  /// server rolled that transaction back, though libpqxx 6.4 reports its COMMIT as a success.
  bool refuse_swallowed_errors = true;

  /// Makes every read on a replica, and each read session's snapshot, wait until the replica has replayed
  /// this database's last committed write (its primary WAL position, asked after each operation that may have
  /// committed: one more round trip per write; outside a transaction block any statement that succeeds on a
  /// primary connection may have, since SELECT f() and CALL write under their tags).
  bool read_your_writes = false;

  /// The longest a read waits for the replica under read_your_writes before it fails.
  std::chrono::milliseconds replica_wait{5000};

  /// How long close() (or the destructor) lets queued and running work finish. Past it, operations still
  /// queued fail with errc::closed and the statements still running are cancelled on the server (the
  /// operation fails with the server's error, 57014, its transaction rolled back); a COMMIT under way ends
  /// as the server decides. A connection whose cancel request goes unanswered for connect_timeout (a server
  /// that accepts and never answers) is shut down instead: its operation fails with a broken connection.
  std::chrono::milliseconds close_grace{5000};

  /// Replaces a connection after this age, less up to a fifth drawn per connection so they do not all go at
  /// once; only between operations, never inside a session, the replacement connected (on_open run) before
  /// the old one closes. 0 or milliseconds::max(): never.
  std::chrono::milliseconds max_lifetime{std::chrono::hours(1)};

  /// Before an operation on a connection idle this long, asks the server for an empty round trip, bounded by
  /// connect_timeout, and replaces the connection if it does not answer. 0 or milliseconds::max(): never.
  std::chrono::milliseconds idle_validation_after{std::chrono::seconds(30)};

  /// A session or operation holding a connection longer than this is reported to on_hold, once, while it still
  /// holds it (a write session awaiting a slow call keeps its connection from every other write). Zero (the
  /// default) turns it off.
  std::chrono::milliseconds hold_threshold{0};

  /// Told of each hold past hold_threshold, with the connection and its backend_pid, on a watchdog thread of
  /// the database (see hold_record).
  hold_observer on_hold{};

  /// Told of each operation that ran or was refused on a connection that was down, on the connection's
  /// thread before the caller resumes (see operation_record: quick, no database calls, exceptions dropped);
  /// backend_pid says which server process ran it. Empty (the default) costs one test per operation.
  operation_observer observer{};

  /// Every operation's budget unless it was started with asyncdb::budget(), queue wait included; past it, it
  /// is cancelled (on the server too) and fails with errc::deadline_exceeded (see budget.hpp). Also bounds the
  /// wait to open a session, not the operations inside one. Zero: none. A budget (this one or a per-call one)
  /// is also the server's statement_timeout for the operation's statements, each bounded by the whole budget
  /// plus 500 ms, so that a client that dies or a lost cancel leaves nothing running past it: per statement,
  /// not for the operation as a whole; never above a lower statement_timeout the connection already had.
  /// One SET per connection for this default, one more where a per-call budget needs another value.
  std::chrono::milliseconds operation_budget{0};
};

/// One connection as stats() sees it.
struct connection_stats {
  /// Connecting (first connect or reconnect), serving, down until its next attempt, or closed.
  enum class state { connecting, ready, down, closed };
  bool primary = true;  ///< a writer on the primary, or a read-only connection
  /// Where the connection is now.
  state status = state::connecting;
  int backend_pid = 0;                   ///< the server process serving it, 0 while not connected
  std::uint64_t connects = 0;            ///< successful connects, the first included
  std::string last_error;                ///< why it last went down or failed to connect
  std::string holder;                    ///< the operation or session using it now, empty when idle
  std::chrono::nanoseconds held_for{0};  ///< since holder took it; 0 when idle
};

/// asyncdb::stats for the whole database (its `writer`: the longest current hold of a primary connection),
/// and each connection's state.
struct stats : asyncdb::stats {
  std::vector<connection_stats> connections;  ///< one per connection
};

/// A PostgreSQL primary (and its replicas) served by connection threads; operations never run on the
/// caller's thread, each connection is only ever used by its own thread.
class database {
 public:
  /// Connects every connection, writers first, running on_open on each; throws what the first failing
  /// connect or on_open threw (pqxx::broken_connection when the server is unreachable).
  explicit database(options opts) : engine_(std::make_unique<detail::pg::engine>(config_of(std::move(opts)))) {}

  database(const database&) = delete;
  database& operator=(const database&) = delete;

  /// Closes as close() does; on one of its own threads, in the background.
  ~database() {
    if (engine_ && engine_->on_own_thread()) detail::close_in_background(std::move(engine_));
  }

  /// Stops intake (errc::closed), runs what is queued, rolls back open sessions, closes every connection on
  /// its own thread and joins them. Blocks; idempotent. Throws std::logic_error from inside an operation.
  void close() { engine_->close(); }

  /// Returns queue depth, outcomes and each connection's state and last error.
  postgres::stats stats() const {
    postgres::stats s;
    engine_->fill_stats(s);
    for (const auto& l : engine_->lanes()) {
      const detail::pg::lane_snapshot ls = l->snapshot();
      s.connections.push_back({l->is_writer(), static_cast<connection_stats::state>(ls.state), ls.backend_pid,
                               ls.connects, ls.last_error, ls.holder.name, ls.holder.held_for});
      const bool held = ls.holder.what != writer_holder::kind::none;
      if (l->is_writer() && held &&
          (s.writer.what == writer_holder::kind::none || ls.holder.held_for > s.writer.held_for)) {
        s.writer = ls.holder;
      }
    }
    return s;
  }

 private:
  friend struct detail::pg_database_access;

  static detail::pg::engine_config config_of(options o) {
    return {std::move(o.primary),
            std::move(o.replicas),
            o.writers,
            o.readers,
            o.max_queued,
            o.connect_timeout,
            o.close_grace,
            {std::move(o.on_open), o.reconnect_backoff, o.max_reconnect_backoff, o.refuse_swallowed_errors,
             o.read_your_writes, o.replica_wait, nullptr, o.max_lifetime, o.idle_validation_after,
             o.connect_timeout.count() > 0 ? o.connect_timeout : std::chrono::seconds(5), std::move(o.observer)},
            detail::saturated_ns(o.operation_budget),
            o.hold_threshold,
            std::move(o.on_hold)};
  }

  std::unique_ptr<detail::pg::engine> engine_;
};

}  // namespace asyncdb::postgres

namespace asyncdb {

namespace detail {
struct pg_database_access {
  static pg::engine& of(postgres::database& db) noexcept { return *db.engine_; }
};
}  // namespace detail

/// Runs `fn(pqxx::connection&) -> R` on a primary connection.
/// Completion: void(std::exception_ptr, R), or void(std::exception_ptr) when R is void. Resumes on the
/// handler's associated executor. Thread-safe. Errors: fn's exception, errc::closed / queue_full,
/// operation_aborted, pqxx::broken_connection when the connection is down, pqxx::in_doubt_error when it was
/// lost during fn's COMMIT (never reported as operation_aborted).
template <class Fn, class Token = const net::use_awaitable_t<>&>
requires(!std::is_same_v<std::decay_t<Fn>, read_only_t>) auto async_run(
    postgres::database& db, Fn&& fn, Token&& token = net::use_awaitable,
    std::source_location where = std::source_location::current()) {
  return detail::async_run_on<detail::pg::backend>(detail::pg_database_access::of(db), false, std::forward<Fn>(fn),
                                                   std::forward<Token>(token), where);
}

/// Runs `fn(pqxx::connection&) -> R` on a read-only connection (a replica's, if any); writes fail with
/// SQLSTATE 25006. Otherwise as the primary overload.
template <class Fn, class Token = const net::use_awaitable_t<>&>
auto async_run(postgres::database& db, read_only_t, Fn&& fn, Token&& token = net::use_awaitable,
               std::source_location where = std::source_location::current()) {
  return detail::async_run_on<detail::pg::backend>(detail::pg_database_access::of(db), true, std::forward<Fn>(fn),
                                                   std::forward<Token>(token), where);
}

/// to_async_db_oper for a DAO built from `pqxx::connection&`: one Dao per connection, built on first use on
/// that connection's thread and rebuilt after a reconnect. Routing as for SQLite, except that an
/// undeclared member runs on the primary.
template <class Derived, class Dao>
requires detail::pg::dao<Dao>
class to_async_db_oper<Derived, Dao> {
 public:
  /// Binds to `db`, which must outlive this object's operations.
  explicit to_async_db_oper(postgres::database& db) noexcept : db_(&db) {}

  /// Refuses any other database (asyncdb::database) at compile time with a message, not a bare mismatch.
  template <class Other>
  requires(!std::is_base_of_v<to_async_db_oper, std::remove_cv_t<Other>>) explicit to_async_db_oper(Other&) {
    static_assert(std::is_same_v<Other, postgres::database>,
                  "asyncdb: this DAO is constructed from pqxx::connection&, so its to_async_db_oper needs an "
                  "asyncdb::postgres::database; an asyncdb::database serves DAOs constructed from "
                  "SQLite::Database&");
  }

  /// Calls the DAO's `Member` with `args` on a reader if declared read-only, else on the primary.
  /// Completion: awaitable<R>. Resumes on the awaiting coroutine's executor. Thread-safe.
  /// Throws what the member threw (pqxx::in_doubt_error for a connection lost during its COMMIT), or
  /// errc::closed / queue_full, operation_aborted, pqxx::broken_connection.
  template <auto Member, class... Args>
  auto call(Args&&... args) const {
    static_assert(
        std::is_member_function_pointer_v<decltype(Member)> && std::is_base_of_v<detail::member_class_t<Member>, Dao>,
        "asyncdb: call<&X::f> needs a member function of the DAO class (or of one of its bases)");
    return detail::initiate_call<detail::pg::backend, Member, Dao, Derived>(detail::pg_database_access::of(*db_),
                                                                            std::forward<Args>(args)...);
  }

  /// Runs `fn(Dao&) -> R` on the primary; as call() otherwise.
  template <class Fn>
  auto run(Fn&& fn, std::source_location where = std::source_location::current()) const {
    return run_on(false, std::forward<Fn>(fn), where);
  }

  /// Runs `fn(Dao&) -> R` on a read-only connection; as call() otherwise.
  template <class Fn>
  auto run(read_only_t, Fn&& fn, std::source_location where = std::source_location::current()) const {
    return run_on(true, std::forward<Fn>(fn), where);
  }

  /// Returns the database this object calls into.
  postgres::database& get_database() const noexcept { return *db_; }

 protected:
  ~to_async_db_oper() = default;

 private:
  template <class Fn>
  auto run_on(bool read_only, Fn&& fn, const std::source_location& where) const {
    return detail::initiate_run<detail::pg::backend>(
        detail::pg_database_access::of(*db_), read_only, std::forward<Fn>(fn), net::use_awaitable,
        [](detail::pg::lane& l) -> Dao& { return l.conn().dao<Dao>(); }, detail::op_name{where.function_name(), where});
  }

  postgres::database* db_;
};

/// async_db_operation for a DAO member of a PostgreSQL DAO or a function `R f(pqxx::connection&, Args...)`.
template <auto Operation>
requires detail::pg::operation<Operation>
struct async_db_operation<Operation> {
  /// Runs the operation on a reader if `is_read_only<Operation>`, else on the primary; arguments are copied.
  /// Completion: awaitable<R>. Resumes on the awaiting coroutine's executor. Thread-safe.
  template <class... Args>
  auto operator()(postgres::database& db, Args&&... args) const {
    using dao = typename detail::default_dao<Operation>::type;
    return detail::initiate_call<detail::pg::backend, Operation, dao, void>(detail::pg_database_access::of(db),
                                                                            std::forward<Args>(args)...);
  }
};

}  // namespace asyncdb

namespace asyncdb {

/// Opens a write session on one primary connection, held until the session ends; other writes keep
/// running on the other primary connections. begin()/commit()/rollback() control a pqxx::work asyncdb
/// holds; run(fn(pqxx::transaction_base&)) runs inside it, and a DAO that opens its own transaction there
/// fails with std::logic_error (never commits). Leaving the scope rolls back. If the session's connection is
/// lost, this and every later operation of the session fails with pqxx::broken_connection (its transaction,
/// temporary tables, settings and locks are gone); they never run on another connection.
/// Completion: void(std::exception_ptr, AsyncDbSession). Resumes on the handler's executor. Thread-safe.
/// Errors: errc::closed, errc::queue_full, operation_aborted, pqxx::broken_connection.
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(postgres::database& db, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::pg::session_hooks, AsyncDbSession>(detail::pg_database_access::of(db), false,
                                                                         std::forward<Token>(token), where);
}

/// Opens a write session with a budget for the whole session, its open included (see session_budget()).
/// As above otherwise; errors add errc::deadline_exceeded.
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(postgres::database& db, session_budget_t budget, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::pg::session_hooks, AsyncDbSession>(
      detail::pg_database_access::of(db), false, std::forward<Token>(token), where, budget.duration);
}

/// Opens a read session: one REPEATABLE READ, READ ONLY transaction (one snapshot) on a read-only
/// connection, for run(fn(pqxx::transaction_base&)), taken after read_your_writes' wait. A failed or
/// cancelled operation is rolled back to a savepoint taken after the previous one (one round trip per
/// operation), so the next runs on the same snapshot. As above otherwise.
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(postgres::database& db, read_only_t, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::pg::session_hooks, AsyncDbSession>(detail::pg_database_access::of(db), true,
                                                                         std::forward<Token>(token), where);
}

/// Opens a read session with a budget for the whole session, its open included (see session_budget()).
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(postgres::database& db, read_only_t, session_budget_t budget, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::pg::session_hooks, AsyncDbSession>(
      detail::pg_database_access::of(db), true, std::forward<Token>(token), where, budget.duration);
}

}  // namespace asyncdb
