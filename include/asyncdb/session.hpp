#pragma once
// Method 3 of the guide: a session pins one connection across awaits.
#include <asyncdb/budget.hpp>
#include <asyncdb/database.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/session_budget.hpp>
#include <asyncdb/detail/sqlite/initiate.hpp>
#include <asyncdb/detail/sqlite/invoke.hpp>
#include <asyncdb/detail/sqlite/session_open_op.hpp>
#include <asyncdb/routing.hpp>

#include <memory>
#include <source_location>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

namespace detail {
// A session of another backend (detail/pg/session.hpp) brings its own transaction control; its
// run/call recipes are templates defined with that backend.
struct session_controls {
  net::awaitable<void> (*begin)(std::shared_ptr<session_state>);
  net::awaitable<void> (*commit)(std::shared_ptr<session_state>);
  net::awaitable<void> (*rollback)(std::shared_ptr<session_state>);
};
template <class Fn>
auto pg_session_run(std::shared_ptr<session_state> s, Fn&& fn);
template <auto Member, class... Args>
auto pg_session_call(std::shared_ptr<session_state> s, Args&&... args);
template <class Dao>
inline constexpr bool is_sqlite_dao = std::is_constructible_v<Dao, SQLite::Database&>;
}  // namespace detail

/// Exclusive use of one connection across awaits: the writer for a write session (other writes wait),
/// one reader holding one snapshot for a read session. Operations run in the order they are started.
/// Destroying it ends the session without blocking: an open transaction is rolled back, never committed.
class AsyncDbSession {
  // First: the public members below deduce their return types from control().
  static void check_writable(const detail::session_state& s) {
    if (s.read_only) throw system_error(errc::read_only_session);
  }

  template <class Fn>
  auto control(Fn fn, std::string_view name, bool allowed_when_aborted = false) {
    using R = std::invoke_result_t<Fn&, detail::lane&, detail::session_state&>;
    detail::session_state* s = state_.get();
    const detail::op_name named{name, s != nullptr ? s->where : std::source_location{}};
    return detail::initiate_in_session<detail::sqlite_backend, R>(
        detail::session_token(s), state_,
        [fn = std::move(fn), s, allowed_when_aborted](detail::lane& l) mutable -> R {
          if (s->aborted && !allowed_when_aborted) throw system_error(errc::transaction_aborted);
          return fn(l, *s);
        },
        named);
  }

 public:
  /// An empty session; every operation on it fails with errc::session_ended.
  AsyncDbSession() noexcept = default;
  /// Takes over a session that async_db_session() opened.
  explicit AsyncDbSession(std::shared_ptr<detail::session_state> state) noexcept : state_(std::move(state)) {}
  /// Takes over `other`'s session; `other` becomes empty.
  AsyncDbSession(AsyncDbSession&& other) noexcept = default;
  /// Releases this session (as release()), then takes over `other`'s.
  AsyncDbSession& operator=(AsyncDbSession&& other) noexcept {
    if (this != &other) {
      release();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  AsyncDbSession(const AsyncDbSession&) = delete;
  AsyncDbSession& operator=(const AsyncDbSession&) = delete;
  ~AsyncDbSession() { release(); }

  /// Ends the session now: queued operations still run, then an open transaction is rolled back.
  void release() noexcept {
    if (auto s = std::exchange(state_, nullptr)) s->queue.close(make_error_code(errc::session_ended));
  }

  /// True until released or moved from.
  explicit operator bool() const noexcept { return state_ != nullptr; }

  /// Starts a write transaction with BEGIN IMMEDIATE. Completion: awaitable<void>; resumes on the caller's
  /// executor. Throws errc::read_only_session on a read session, errc::transaction_aborted after a cancelled one.
  net::awaitable<void> begin() {
    if (state_ && state_->controls) return state_->controls->begin(state_);
    return control(
        [](detail::lane& l, detail::session_state& s) {
          check_writable(s);
          l.conn().database().exec("BEGIN IMMEDIATE");
        },
        "AsyncDbSession::begin");
  }

  /// Commits the open transaction; as begin() otherwise (SQLite's error if none is open).
  net::awaitable<void> commit() {
    if (state_ && state_->controls) return state_->controls->commit(state_);
    return control(
        [](detail::lane& l, detail::session_state& s) {
          check_writable(s);
          l.conn().database().exec("COMMIT");
        },
        "AsyncDbSession::commit");
  }

  /// Rolls back the open transaction, if any, and clears errc::transaction_aborted.
  net::awaitable<void> rollback() {
    if (state_ && state_->controls) return state_->controls->rollback(state_);
    return control(
        [](detail::lane& l, detail::session_state& s) {
          if (s.read_only) throw system_error(errc::read_only_session);
          s.aborted = false;
          detail::rollback_if_open(l.conn().handle());
        },
        "AsyncDbSession::rollback", /*allowed_when_aborted=*/true);
  }

  /// Runs `fn(SQLite::Database&) -> R`, or `fn(Dao&) -> R` on the connection's own DAO instance (the one
  /// call<> uses; fn's parameter names Dao), on the session's connection. Completion: awaitable<R>; resumes
  /// on the caller's executor; start operations of one session from one coroutine at a time.
  /// Throws fn's exception, errc::session_ended, errc::transaction_aborted or operation_aborted.
  template <class Fn>
  auto run(Fn&& fn) {
    detail::refuse_coawait_temporary_callable<Fn>();
    using dao = typename detail::first_param<std::decay_t<Fn>>::type;
    if constexpr (detail::is_sqlite_dao<dao> && !std::is_same_v<dao, SQLite::Database>) {
      return run_sqlite<dao>(std::forward<Fn>(fn));
    } else if constexpr (std::is_invocable_v<std::decay_t<Fn>&, SQLite::Database&>) {
      return run_sqlite<SQLite::Database>(std::forward<Fn>(fn));
    } else {
      return detail::pg_session_run(state_, std::forward<Fn>(fn));
    }
  }

  /// Calls `(dao.*Member)(args...)` on the connection's own DAO instance; as run() otherwise.
  template <auto Member, class... Args>
  auto call(Args&&... args) {
    static_assert(std::is_member_function_pointer_v<decltype(Member)>,
                  "asyncdb: AsyncDbSession::call<&Dao::member> needs a DAO member function");
    if constexpr (!detail::is_sqlite_dao<detail::member_class_t<Member>>) {
      detail::refuse_coawait_temporaries<Args...>();
      return detail::pg_session_call<Member>(state_, std::forward<Args>(args)...);
    } else {
      return call_sqlite<Member>(std::forward<Args>(args)...);
    }
  }

 private:
  // `Target` is SQLite::Database for the connection itself, else the DAO class.
  template <class Target, class Fn>
  auto run_sqlite(Fn&& fn) {
    using R = std::invoke_result_t<std::decay_t<Fn>&, Target&>;
    return control(
        [f = std::decay_t<Fn>(std::forward<Fn>(fn))](detail::lane& l, detail::session_state&) mutable -> R {
          if constexpr (std::is_same_v<Target, SQLite::Database>) {
            return f(detail::native_connection(l));
          } else {
            return f(l.conn().dao<Target>());
          }
        },
        "AsyncDbSession::run");
  }

  template <auto Member, class... Args>
  auto call_sqlite(Args&&... args) {
    detail::refuse_coawait_temporaries<Args...>();
    using dao = detail::member_class_t<Member>;
    using R = detail::call_result_t<Member, dao, detail::lane, Args...>;
    return control([bound = detail::bind_call<Member, dao, detail::lane>(std::forward<Args>(args)...)](
                       detail::lane& l, detail::session_state&) mutable -> R { return bound(l); },
                   detail::name_of<Member>());
  }

  std::shared_ptr<detail::session_state> state_;
};

/// Opens a write session: waits (asynchronously) for the writer, then holds it until the session ends.
/// Completion: void(std::exception_ptr, AsyncDbSession). Resumes on the handler's executor. Thread-safe.
/// Errors: errc::closed, errc::queue_full, operation_aborted.
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(database& db, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::sqlite_session_hooks, AsyncDbSession>(detail::database_access::of(db), false,
                                                                            std::forward<Token>(token), where);
}

/// Opens a write session with a budget for the whole session, its open included (see session_budget()).
/// As above otherwise; errors add errc::deadline_exceeded.
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(database& db, session_budget_t budget, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::sqlite_session_hooks, AsyncDbSession>(
      detail::database_access::of(db), false, std::forward<Token>(token), where, budget.duration);
}

/// Opens a read session on a reader: one snapshot, taken at open, for all its reads. As above otherwise.
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(database& db, read_only_t, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::sqlite_session_hooks, AsyncDbSession>(detail::database_access::of(db), true,
                                                                            std::forward<Token>(token), where);
}

/// Opens a read session with a budget for the whole session, its open included (see session_budget()).
template <class Token = const net::use_awaitable_t<>&>
auto async_db_session(database& db, read_only_t, session_budget_t budget, Token&& token = net::use_awaitable,
                      std::source_location where = std::source_location::current()) {
  return detail::open_session<detail::sqlite_session_hooks, AsyncDbSession>(
      detail::database_access::of(db), true, std::forward<Token>(token), where, budget.duration);
}

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
