#pragma once
// The two backends behind one interface, so that each promise of docs/reference.md is written once and
// run against both: SQLite on a file in a fresh temp folder, PostgreSQL on a fresh schema of the shared
// throwaway primary and replica (tests/postgres/CMakeLists.txt starts them). A test constructs the backend
// (its fresh database), opens it with a contract::config, and uses only the operations below; what differs
// between the backends (the database and DAO types, a session's run() argument, how to make a statement
// that runs until cancelled) stays in here.
#include "pg_support.hpp"

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace contract {

/// What a test may choose about the database; each backend maps it to its own options.
struct config {
  std::size_t readers = 2;                        ///< read-only connections (0: reads on the writer)
  std::size_t max_queued = 65536;                 ///< back-pressure bound
  std::chrono::milliseconds close_grace{5000};    ///< close()'s grace
  bool read_your_writes = false;                  ///< PostgreSQL only: SQLite's readers read the one file
  asyncdb::operation_observer observer{};         ///< told of every operation
  std::chrono::milliseconds hold_threshold{0};    ///< holds longer than this are told to on_hold
  asyncdb::hold_observer on_hold{};               ///< told of each hold past hold_threshold
  std::chrono::milliseconds operation_budget{0};  ///< the database's default budget (0: none)
};

/// Which connection ran an operation: its thread, and the connection itself (SQLite handle, server pid).
struct place {
  std::thread::id thread;
  std::int64_t connection = 0;
  friend bool operator==(const place&, const place&) = default;
};

/// The DAO's own exception type: it must reach the co_await as itself.
struct dao_error : std::runtime_error {
  dao_error(const std::string& what, int c) : std::runtime_error(what), code(c) {}
  int code;
};

/// A result whose move throws (issue 17 defect 1). The first move of an armed value, which stores the
/// DAO's return value while the DAO's exceptions are still caught, succeeds; the next one, handing the
/// result to the completion, throws.
struct move_failed : std::runtime_error {
  move_failed() : std::runtime_error("the result's move constructor threw") {}
};
struct throws_when_moved {
  bool armed = false;
  int moves = 0;
  throws_when_moved() = default;
  explicit throws_when_moved(bool a) : armed(a) {}
  throws_when_moved(throws_when_moved&& o) : armed(o.armed), moves(o.moves + 1) {
    if (armed && moves > 1) throw move_failed();
  }
  throws_when_moved& operator=(throws_when_moved&& o) {
    if (o.armed && o.moves > 0) throw move_failed();
    armed = o.armed;
    moves = o.moves + 1;
    return *this;
  }
};

/// Holds a replica's replay back until resume() (or its end): a replica that really lags.
class lag {
 public:
  lag() = default;
  lag(const lag&) = delete;
  lag& operator=(const lag&) = delete;
  virtual ~lag() = default;
  virtual void resume() {}
};

/// The options both backends spell alike, from `c`.
template <class Options>
void set_common(Options& o, const config& c) {
  o.max_queued = c.max_queued;
  o.close_grace = c.close_grace;
  o.observer = c.observer;
  o.hold_threshold = c.hold_threshold;
  o.on_hold = c.on_hold;
  o.operation_budget = c.operation_budget;
}

/// What both backends spell alike once the connection type is known: async_run on the writer or a reader,
/// with `fn` a generic lambda the tests write once (given the connection type here, so that asyncdb's own
/// overload checks never instantiate it with the other backend's).
template <class Database, class Connection>
struct runs_on {
  /// Runs `fn(connection&)` on the writer (async_run).
  template <class Fn, class Token = const net::use_awaitable_t<>&>
  static auto write(Database& db, Fn& fn, Token&& token = net::use_awaitable) {
    auto typed = [&fn](Connection& c) { return fn(c); };
    return asyncdb::async_run(db, typed, std::forward<Token>(token));
  }
  /// Runs `fn(connection&)` on a read-only connection (async_run with read_only).
  template <class Fn, class Token = const net::use_awaitable_t<>&>
  static auto read(Database& db, Fn& fn, Token&& token = net::use_awaitable) {
    auto typed = [&fn](Connection& c) { return fn(c); };
    return asyncdb::async_run(db, asyncdb::read_only, typed, std::forward<Token>(token));
  }
};

// --------------------------------------------------------------------------------------------------------

/// SQLite: one writer, `readers` read-only connections on one file of a fresh temp folder.
class sqlite_backend : public runs_on<asyncdb::database, SQLite::Database> {
 public:
  using database = asyncdb::database;
  using dao = test::UserOper;
  using users = test::AsyncUsers;
  using connection = SQLite::Database;
  static constexpr const char* name = "SQLite";

  database& open(const config& c = {}) {
    asyncdb::options o = test::default_options(c.readers);
    set_common(o, c);
    db_.emplace(dir_.file(), std::move(o));
    return *db_;
  }
  database& db() { return *db_; }

  /// Rows named `like` (an SQL LIKE pattern), counted on a connection of the test's own.
  std::int64_t rows(const std::string& like) const {
    SQLite::Database c(dir_.file(), SQLite::OPEN_READONLY);
    SQLite::Statement q(c, "SELECT count(*) FROM users WHERE name LIKE ?");
    q.bind(1, like);
    q.executeStep();
    return q.getColumn(0).getInt64();
  }

  using user_create = test::UserCreate;

  static std::int64_t id_of(connection& c) {
    return static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(c.getHandle()));
  }
  static void insert(connection& c, const std::string& name) {
    SQLite::Statement q(c, "INSERT INTO users(name, email) VALUES(?, 'x@x')");
    q.bind(1, name);
    q.exec();
  }
  static std::int64_t count(connection& c) { return c.execAndGet("SELECT count(*) FROM users").getInt64(); }
  /// Inserts rows named `name` + a number, one after another, until interrupted: a write that never ends.
  /// `started` is set to the connection's id just before its statement runs.
  static void insert_endlessly(connection& c, const std::string& name, std::atomic<std::int64_t>& started) {
    SQLite::Statement q(c,
                        "INSERT INTO users(name, email) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                        "WHERE i < 10000000000) SELECT ? || i, 'x@x' FROM n");
    q.bind(1, name);
    started = id_of(c);
    q.exec();
  }
  /// A read that runs for minutes unless cancelled; sets `started` as insert_endlessly does.
  static void read_endlessly(connection& c, std::atomic<std::int64_t>& started) {
    started = id_of(c);
    c.execAndGet(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n");
  }

  /// Whether the endless statement that set `started` runs now: SQLite's interrupt reaches a statement
  /// about to step as well as a stepping one, so having started is enough.
  bool stuck(std::int64_t started) const { return started != 0; }

  // In a session the connection itself is the argument of run(), inside a transaction or not.
  template <class Fn>
  static auto in_session(asyncdb::AsyncDbSession& s, Fn& fn) {
    auto typed = [&fn](connection& c) { return fn(c); };
    return s.run(typed);
  }
  template <class Fn>
  static auto in_session_transaction(asyncdb::AsyncDbSession& s, Fn& fn) {
    return in_session(s, fn);
  }

  /// Returns once a read-only connection sees every committed write (one file: at once).
  void replica_caught_up() const {}

  std::unique_ptr<lag> lag_replica() const { return std::make_unique<lag>(); }  // one file: nothing lags

 private:
  test::temp_dir dir_;
  std::optional<database> db_;  // after dir_: closed before the folder goes
};

// --------------------------------------------------------------------------------------------------------

namespace detail {
class pg_lag final : public lag {
 public:
  pg_lag() { exec("SELECT pg_wal_replay_pause()"); }
  ~pg_lag() override {
    try {
      resume();
    } catch (...) {
    }
  }
  void resume() override { exec("SELECT pg_wal_replay_resume()"); }

 private:
  static void exec(const std::string& sql) {
    pqxx::connection c{pgtest::replica()};
    pqxx::nontransaction t{c};
    t.exec(sql);
  }
};
}  // namespace detail

/// PostgreSQL: one writer on the primary (so that work queues as on SQLite), `readers` connections on the
/// replica, all in a schema of the test's own.
class postgres_backend : public runs_on<asyncdb::postgres::database, pqxx::connection> {
 public:
  using database = asyncdb::postgres::database;
  using dao = pgtest::PgUserOper;
  using users = pgtest::AsyncPgUserOper;
  using connection = pqxx::connection;
  static constexpr const char* name = "PostgreSQL";

  postgres_backend() { pgtest::wait_for_replica(); }  // the replica has the test's schema before readers use it

  database& open(const config& c = {}) {
    asyncdb::postgres::options o = schema_.options(1, c.readers);
    o.read_your_writes = c.read_your_writes;
    set_common(o, c);
    db_.emplace(std::move(o));
    return *db_;
  }
  database& db() { return *db_; }

  std::int64_t rows(const std::string& like) const {
    pqxx::connection c{pgtest::primary()};
    pqxx::nontransaction t{c};
    t.exec("SET search_path = " + schema_.name());
    return t.exec_params1("SELECT count(*) FROM users WHERE name LIKE $1", like)[0].as<std::int64_t>();
  }

  using user_create = pgtest::UserCreate;

  static std::int64_t id_of(connection& c) { return c.backendpid(); }
  static void insert(pqxx::transaction_base& t, const std::string& name) {
    t.exec_params("INSERT INTO users(name, email) VALUES ($1, 'x@x')", name);
  }
  static void insert(connection& c, const std::string& name) {
    pqxx::work w{c};
    insert(w, name);
    w.commit();
  }
  static std::int64_t count(pqxx::transaction_base& t) {
    return t.exec1("SELECT count(*) FROM users")[0].as<std::int64_t>();
  }
  static std::int64_t count(connection& c) {
    pqxx::read_transaction t{c};
    return count(t);
  }
  /// Inserts one row, then sleeps on the server inside the same transaction: a write that never ends.
  /// `started` is set to the server process's id after the insert.
  static void insert_endlessly(connection& c, const std::string& name, std::atomic<std::int64_t>& started) {
    pqxx::work w{c};
    insert(w, name + "1");
    started = c.backendpid();
    w.exec("SELECT pg_sleep(3600)");
    w.commit();
  }
  static void read_endlessly(pqxx::transaction_base& t, std::atomic<std::int64_t>& started) {
    started = t.conn().backendpid();
    t.exec("SELECT pg_sleep(3600)");
  }
  static void read_endlessly(connection& c, std::atomic<std::int64_t>& started) {
    pqxx::nontransaction t{c};
    read_endlessly(t, started);
  }

  /// Whether the server process `started` (the primary's or the replica's) is sleeping now: a cancel
  /// request that reaches an idle server process is dropped, so a test cancels only once the statement runs.
  bool stuck(std::int64_t started) const {
    if (started == 0) return false;
    if (!watch_primary_) watch_primary_.emplace(pgtest::primary());
    if (!watch_replica_) watch_replica_.emplace(pgtest::replica());
    return sleeping(*watch_primary_, started) || sleeping(*watch_replica_, started);
  }

  // A session's run() takes pqxx::connection& for the connection, pqxx::transaction_base& for its
  // transaction (the read session's snapshot, or the one begin() opened).
  template <class Fn>
  static auto in_session(asyncdb::AsyncDbSession& s, Fn& fn) {
    auto on_connection = [&fn](pqxx::connection& c) { return fn(c); };
    return s.run(on_connection);
  }
  template <class Fn>
  static auto in_session_transaction(asyncdb::AsyncDbSession& s, Fn& fn) {
    auto in_transaction = [&fn](pqxx::transaction_base& t) { return fn(t); };
    return s.run(in_transaction);
  }

  void replica_caught_up() const { pgtest::wait_for_replica(); }
  std::unique_ptr<lag> lag_replica() const { return std::make_unique<detail::pg_lag>(); }

 private:
  pgtest::schema schema_;
  mutable std::optional<pqxx::connection> watch_primary_;  // asks pg_stat_activity for stuck()
  mutable std::optional<pqxx::connection> watch_replica_;

  static bool sleeping(pqxx::connection& c, std::int64_t pid) {
    pqxx::nontransaction t{c};
    return t.exec_params1(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE "
                "'%pg_sleep%'",
                pid)[0]
               .as<int>() == 1;
  }
  std::optional<database> db_;  // after schema_: closed before the schema is dropped
};

}  // namespace contract
