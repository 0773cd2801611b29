#pragma once
// Shared test fixtures: a fresh folder per test, a DAO that records where it ran, and run() helpers
// that drive real io_contexts with a deadline instead of sleeps.
#include <asyncdb/asyncdb.hpp>

#include <catch2/catch.hpp>
#include "net.hpp"
#include "temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace test {

struct User {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  bool is_active = true;
};

struct UserCreate {
  std::string name;
  std::string email;
  bool is_active = true;
};

inline void create_schema(SQLite::Database& db) {
  if (db.tableExists("users")) return;
  db.exec(
      "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, email TEXT NOT NULL, "
      "is_active INTEGER NOT NULL DEFAULT 1)");
}

/// Options every test starts from: the schema on each connection (the writer creates it first).
inline asyncdb::options default_options(std::size_t readers = 2) {
  asyncdb::options o;
  o.readers = readers;
  o.on_open = [](SQLite::Database& c) { create_schema(c); };
  return o;
}

/// Where each DAO instance was built, and how many exist: the "one DAO per connection" contract.
struct dao_log {
  std::mutex mutex;
  std::vector<std::thread::id> constructed_on;
  std::atomic<int> alive{0};
  void constructed() {
    std::lock_guard lock(mutex);
    constructed_on.push_back(std::this_thread::get_id());
  }
  std::vector<std::thread::id> constructions() {
    std::lock_guard lock(mutex);
    return constructed_on;
  }
};
inline dao_log& user_dao_log() {
  static dao_log log;
  return log;
}

/// A synchronous DAO as users write it: prepared statements kept as members, no asyncdb in sight.
class UserOper {
 public:
  explicit UserOper(SQLite::Database& db)
      : db_(db),
        insert_(db, "INSERT INTO users(name, email, is_active) VALUES(?, ?, ?)"),
        by_name_(db, "SELECT id, name, email, is_active FROM users WHERE name = ?"),
        all_(db, "SELECT id, name, email, is_active FROM users ORDER BY id"),
        active_(db, "SELECT id, name, email, is_active FROM users WHERE is_active = 1 ORDER BY id") {
    user_dao_log().constructed();
    ++user_dao_log().alive;
  }
  ~UserOper() { --user_dao_log().alive; }
  UserOper(const UserOper&) = delete;
  UserOper& operator=(const UserOper&) = delete;

  std::int64_t add(const UserCreate& u) {
    insert_.reset();
    insert_.bind(1, u.name);
    insert_.bind(2, u.email);
    insert_.bind(3, u.is_active ? 1 : 0);
    insert_.exec();
    return db_.getLastInsertRowid();
  }
  std::optional<User> get_by_name(const std::string& name) {
    by_name_.reset();
    by_name_.bind(1, name);
    if (!by_name_.executeStep()) return std::nullopt;
    return row(by_name_);
  }
  std::vector<User> list() { return rows(all_); }
  std::vector<User> get_active_users() { return rows(active_); }
  std::int64_t count() { return db_.execAndGet("SELECT count(*) FROM users").getInt64(); }
  /// Returns the thread this DAO call ran on.
  std::thread::id where() { return std::this_thread::get_id(); }
  /// Throws a domain error of the DAO's own type.
  int fail(const std::string& why) { throw std::invalid_argument(why); }
  /// Fills an out-parameter, as many DAOs' getters do; false when there is no such user.
  bool find(const std::string& name, User& out) {
    std::optional<User> u = get_by_name(name);
    if (u) out = std::move(*u);
    return u.has_value();
  }
  /// Takes its argument by rvalue reference and moves from it: a second call would insert empty strings.
  std::int64_t add_moved(UserCreate&& u) {
    const UserCreate mine = std::move(u);
    return add(mine);
  }
  std::int64_t add_named(std::string&& name) { return add_moved(UserCreate{std::move(name), "named@x"}); }
  /// Which DAO object served the call.
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(this); }

  SQLite::Database& db() { return db_; }

 private:
  static User row(SQLite::Statement& s) {
    return User{s.getColumn(0).getInt64(), s.getColumn(1).getString(), s.getColumn(2).getString(),
                s.getColumn(3).getInt() != 0};
  }
  static std::vector<User> rows(SQLite::Statement& s) {
    s.reset();
    std::vector<User> out;
    while (s.executeStep()) out.push_back(row(s));
    return out;
  }

  SQLite::Database& db_;
  SQLite::Statement insert_;
  SQLite::Statement by_name_;
  SQLite::Statement all_;
  SQLite::Statement active_;
};

/// UserOper made asynchronous with nothing added: users.call<&UserOper::member>(args...).
class AsyncUsers : public asyncdb::to_async_db_oper<AsyncUsers, UserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
};

/// Polls `done()` every millisecond on the caller's executor, so other handlers keep running; throws
/// past the deadline instead of hanging. Takes an lvalue: name the predicate before the co_await (g++ 12).
template <class Pred>
net::awaitable<void> poll_until(Pred& done, std::chrono::seconds deadline = std::chrono::seconds(10)) {
  net::steady_timer timer{co_await net::this_coro::executor};
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("poll_until: deadline passed");
    timer.expires_after(std::chrono::milliseconds(1));
    co_await timer.async_wait(net::use_awaitable);
  }
}

/// Waits (polling, with poll_until's deadline) until `flag` is set, typically by DAO code on a database thread.
inline net::awaitable<void> until_set(const std::atomic<bool>& flag) {
  auto is_set = [&flag] { return flag.load(); };
  co_await poll_until(is_set);
}

/// What a hold hook (options::on_hold) was told, from the watchdog's thread.
struct hold_log {
  std::mutex mutex;
  std::vector<asyncdb::hold_record> holds;
  std::vector<std::string> names;

  asyncdb::hold_observer hook() {
    return [this](const asyncdb::hold_record& r) {
      std::lock_guard lock(mutex);
      holds.push_back(r);
      names.emplace_back(r.name);
    };
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return holds.size();
  }
};

/// A door DAO code waits at on a database thread until the test opens it. The wait gives up after
/// 30 s so that a failing test ends instead of hanging in the database's destructor.
class gate {
 public:
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(30), [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

/// Declared after the database: opens the gate before the database joins its threads, even when a
/// test fails half-way.
struct open_at_exit {
  gate& g;
  ~open_at_exit() { g.open(); }
};

/// The right-hand side of `op || ...`: completes once `started` is set (the operation's code runs), then
/// after 5 ms more, so a cancellation reaches a running operation, never a queued one.
inline net::awaitable<void> timer_after_start(const std::atomic<bool>& started) {
  co_await until_set(started);
  net::steady_timer timer{co_await net::this_coro::executor, std::chrono::milliseconds(5)};
  co_await timer.async_wait(net::use_awaitable);
}

/// The error code a completion carried: none for no exception, the code of a asyncdb::system_error, and
/// errc::state_not_recoverable standing for "some other exception".
inline asyncdb::error_code code_of(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const asyncdb::system_error& s) {
    return s.code();
  } catch (...) {
    return std::make_error_code(std::errc::state_not_recoverable);  // "some other exception"
  }
}

/// Awaits `aw` and returns the code of the asyncdb::system_error it threw, or no error; other exceptions propagate.
template <class T>
net::awaitable<asyncdb::error_code> error_of(net::awaitable<T> aw) {
  try {
    co_await std::move(aw);
  } catch (const asyncdb::system_error& e) {
    co_return e.code();
  }
  co_return asyncdb::error_code{};
}

/// How a callback-style operation ended, as filled in by record_into(); read on the test thread.
struct completion {
  bool done = false;
  asyncdb::error_code error;
};

/// A completion handler for `void(std::exception_ptr)` that stores code_of(e) in `out`, then marks it done.
inline auto record_into(completion& out) {
  return [&out](std::exception_ptr e) {
    out.error = code_of(e);
    out.done = true;
  };
}

/// Rows of `users` named `name`, counted on a connection of its own (not through asyncdb).
inline int rows_named(const std::filesystem::path& file, const std::string& name) {
  SQLite::Database c(file, SQLite::OPEN_READWRITE);
  SQLite::Statement q(c, "SELECT count(*) FROM users WHERE name = ?");
  q.bind(1, name);
  q.executeStep();
  return q.getColumn(0).getInt();
}

/// Rows of `users` matching the SQL condition `where`, counted on a read-only connection of its own.
inline std::int64_t count_rows(const std::filesystem::path& file, const std::string& where = "1") {
  SQLite::Database plain(file, SQLite::OPEN_READONLY);
  return plain.execAndGet("SELECT count(*) FROM users WHERE " + where).getInt64();
}

/// Runs `ctx` on `threads` threads at once, each for at most `deadline`, and returns once all have stopped.
inline void run_on_threads(net::io_context& ctx, std::size_t threads, std::chrono::seconds deadline) {
  std::vector<std::thread> pool;
  for (std::size_t i = 0; i < threads; ++i) pool.emplace_back([&] { ctx.run_for(deadline); });
  for (auto& t : pool) t.join();
}

/// Where run() and run_threads() keep a coroutine's result (an int placeholder for void).
template <class T>
using result_slot = std::optional<std::conditional_t<std::is_void_v<T>, int, T>>;

/// Spawns `aw` on `ctx`; when it ends, stores what it threw in `error` and what it returned in `value`,
/// then sets `done` (a bool, or an atomic when several threads run `ctx`).
template <class T, class Done>
void spawn_recorded(net::io_context& ctx, net::awaitable<T> aw, result_slot<T>& value, std::exception_ptr& error,
                    Done& done) {
  // Pointers, not references: the handler runs after this function returned.
  if constexpr (std::is_void_v<T>) {
    net::co_spawn(ctx, std::move(aw), [err = &error, fin = &done](std::exception_ptr e) {
      *err = e;
      *fin = true;
    });
  } else {
    net::co_spawn(ctx, std::move(aw), [val = &value, err = &error, fin = &done](std::exception_ptr e, T v) {
      *err = e;
      if (!e) val->emplace(std::move(v));
      *fin = true;
    });
  }
}

/// Runs `aw` on `ctx` until it and everything it started finish; fails the test past `deadline`
/// (a hang), and rethrows what the coroutine threw. io_context::run returning proves no work is left.
template <class T>
T run(net::io_context& ctx, net::awaitable<T> aw, std::chrono::seconds deadline = std::chrono::seconds(60)) {
  result_slot<T> value;
  std::exception_ptr error;
  bool done = false;
  spawn_recorded(ctx, std::move(aw), value, error, done);
  ctx.restart();
  ctx.run_for(deadline);
  if (!done) throw std::runtime_error("test::run: deadline passed, the coroutine did not finish (hang)");
  if (!ctx.stopped()) ctx.run();  // anything still pending would be a leak of work
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*value);
}

/// As run(), with the io_context run by `threads` threads at once.
template <class T>
T run_threads(std::size_t threads, net::awaitable<T> aw, std::chrono::seconds deadline = std::chrono::seconds(60)) {
  net::io_context ctx;
  std::atomic<bool> done{false};
  std::exception_ptr error;
  result_slot<T> value;
  spawn_recorded(ctx, std::move(aw), value, error, done);
  run_on_threads(ctx, threads, deadline);
  if (!done) throw std::runtime_error("test::run_threads: deadline passed, the coroutine did not finish (hang)");
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<T>) return std::move(*value);
}

}  // namespace test

template <>
inline constexpr bool asyncdb::is_read_only<&test::UserOper::get_by_name> = true;
template <>
inline constexpr bool asyncdb::is_read_only<&test::UserOper::list> = true;
template <>
inline constexpr bool asyncdb::is_read_only<&test::UserOper::get_active_users> = true;
template <>
inline constexpr bool asyncdb::is_read_only<&test::UserOper::count> = true;
// Declared, so the tests of the other contracts do not depend on which test taught asyncdb first
// that add writes (what detection learns is process-wide); routing_test.cpp covers detection.
template <>
inline constexpr bool asyncdb::is_write<&test::UserOper::add> = true;
template <>
inline constexpr bool asyncdb::is_write<&test::UserOper::where> = true;
