#pragma once
// Sessions on PostgreSQL: AsyncDbSession pinned to one connection, its transaction held by asyncdb as a
// pqxx transaction object, so that libpqxx itself refuses a DAO's own transaction inside it.
#include <asyncdb/detail/open_session.hpp>
#include <asyncdb/detail/pg/initiate.hpp>
#include <asyncdb/detail/session_budget.hpp>
#include <asyncdb/session.hpp>

#include <pqxx/transaction>

#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace asyncdb::detail::pg {

[[noreturn]] inline void rethrow_nested_transaction(const pqxx::usage_error& e) {
  throw std::logic_error(
      std::string("asyncdb: this code opened its own transaction inside the session's transaction, which it cannot "
                  "join (libpqxx allows one transaction per connection); nothing of it ran. Pass the session a "
                  "function taking pqxx::transaction_base& to run inside its transaction. libpqxx: ") +
      e.what());
}

// Runs `fn` inside the session, with libpqxx's refusal of a nested transaction made explicit.
template <class R, class Fn>
auto in_session(std::shared_ptr<session_state> s, Fn fn, std::string_view name, bool allowed_when_aborted = false) {
  session_state* raw = s.get();
  const op_name named{name, raw != nullptr ? raw->where : std::source_location{}};
  const until_t<net::use_awaitable_t<>> token = session_token(raw);
  return initiate_in_session<backend, R>(
      token, std::move(s),
      [fn = std::move(fn), raw, allowed_when_aborted](lane& l) mutable -> R {
        if (raw->aborted && !allowed_when_aborted) throw system_error(errc::transaction_aborted);
        try {
          return fn(l, *raw);
        } catch (const pqxx::usage_error& e) {
          if (l.session_transaction()) rethrow_nested_transaction(e);
          throw;
        }
      },
      named);
}

inline void check_writable(const session_state& s) {
  if (s.read_only) throw system_error(errc::read_only_session);
}

inline net::awaitable<void> session_begin(std::shared_ptr<session_state> s) {
  return in_session<void>(
      std::move(s),
      [](lane& l, session_state& st) {
        check_writable(st);
        if (l.session_transaction()) throw std::logic_error("asyncdb: begin() with a transaction already open");
        l.session_transaction() = std::make_unique<pqxx::work>(l.conn().get());
      },
      "AsyncDbSession::begin");
}

inline net::awaitable<void> session_commit(std::shared_ptr<session_state> s) {
  return in_session<void>(
      std::move(s),
      [](lane& l, session_state& st) {
        check_writable(st);
        if (!l.session_transaction()) throw std::logic_error("asyncdb: commit() without begin()");
        auto txn = std::move(l.session_transaction());
        txn->commit();
      },
      "AsyncDbSession::commit");
}

inline net::awaitable<void> session_rollback(std::shared_ptr<session_state> s) {
  return in_session<void>(
      std::move(s),
      [](lane& l, session_state& st) {
        check_writable(st);
        st.aborted = false;
        l.end_session_transaction();
      },
      "AsyncDbSession::rollback", /*allowed_when_aborted=*/true);
}

inline constexpr session_controls controls{&session_begin, &session_commit, &session_rollback};

inline void check_postgres(const std::shared_ptr<session_state>& s) {
  if (s && s->controls != &controls) {
    throw std::logic_error("asyncdb: a PostgreSQL function or DAO given to an SQLite session");
  }
}

// `fn(pqxx::transaction_base&)` runs inside the session's transaction (the read session's snapshot, or
// the one begin() opened); `fn(pqxx::connection&)` gets the connection, `fn(Dao&)` its DAO instance.
template <class Fn>
auto run(std::shared_ptr<session_state> s, Fn&& fn) {
  check_postgres(s);
  using F = std::decay_t<Fn>;
  if constexpr (std::is_invocable_v<F&, pqxx::transaction_base&>) {
    using R = std::invoke_result_t<F&, pqxx::transaction_base&>;
    return in_session<R>(
        std::move(s),
        [f = F(std::forward<Fn>(fn))](lane& l, session_state&) mutable -> R {
          if (!l.session_transaction()) {
            throw std::logic_error("asyncdb: run(fn(pqxx::transaction_base&)) needs an open transaction: begin()");
          }
          return f(*l.session_transaction());
        },
        "AsyncDbSession::run");
  } else if constexpr (dao<typename first_param<F>::type>) {
    using target = typename first_param<F>::type;
    using R = std::invoke_result_t<F&, target&>;
    return in_session<R>(
        std::move(s),
        [f = F(std::forward<Fn>(fn))](lane& l, session_state&) mutable -> R { return f(l.conn().dao<target>()); },
        "AsyncDbSession::run");
  } else {
    using R = std::invoke_result_t<F&, pqxx::connection&>;
    return in_session<R>(
        std::move(s), [f = F(std::forward<Fn>(fn))](lane& l, session_state&) mutable -> R { return f(l.conn().get()); },
        "AsyncDbSession::run");
  }
}

template <auto Member, class... Args>
auto call(std::shared_ptr<session_state> s, Args&&... args) {
  check_postgres(s);
  using dao = member_class_t<Member>;
  using R = call_result_t<Member, dao, lane, Args...>;
  return in_session<R>(
      std::move(s),
      [bound = bind_call<Member, dao, lane>(std::forward<Args>(args)...)](lane& l, session_state&) mutable -> R {
        return bound(l);
      },
      name_of<Member>());
}

// What PostgreSQL gives the core's session opening (detail/open_session.hpp).
struct session_hooks {
  using engine_type = engine;
  using lane_type = lane;
  static constexpr const session_controls* controls = &pg::controls;

  // A cancel request given up may still land on that backend: the session starts on a new connection.
  static std::exception_ptr before_grant(lane& l) noexcept { return l.replace_if_needed(); }

  // One snapshot for every read of the session, taken now; under read_your_writes, once the replica has
  // replayed the caller's last write, as for a plain read.
  static std::exception_ptr take_snapshot(lane& l) noexcept {
    try {
      l.catch_up();
      l.open_snapshot();
      return nullptr;
    } catch (...) {
      l.end_session_transaction();
      return std::current_exception();
    }
  }

  static void after_session(lane& l) noexcept { l.after_operation(); }
};

}  // namespace asyncdb::detail::pg

namespace asyncdb::detail {
template <class Fn>
auto pg_session_run(std::shared_ptr<session_state> s, Fn&& fn) {
  return pg::run(std::move(s), std::forward<Fn>(fn));
}
template <auto Member, class... Args>
auto pg_session_call(std::shared_ptr<session_state> s, Args&&... args) {
  return pg::call<Member>(std::move(s), std::forward<Args>(args)...);
}
}  // namespace asyncdb::detail
