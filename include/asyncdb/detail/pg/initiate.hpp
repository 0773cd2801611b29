#pragma once
// How PostgreSQL operations are built and queued: the SQLite recipe (detail/sqlite/initiate.hpp) with a
// PostgreSQL lane underneath.
#include <asyncdb/detail/invoke.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/pg/engine.hpp>
#include <asyncdb/detail/pg/run_op.hpp>
#include <asyncdb/detail/submit.hpp>
#include <asyncdb/detail/type_checks.hpp>

#include <pqxx/connection>

#include <functional>
#include <memory>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace asyncdb::detail::pg {

// A DAO of this backend: built from the connection, and not also from an SQLite one.
template <class Dao>
concept dao = std::is_constructible_v<Dao, pqxx::connection&> && !std::is_constructible_v<Dao, SQLite::Database&>;

template <class F>
inline constexpr bool takes_connection = false;
template <class R, class... A>
inline constexpr bool takes_connection<R (*)(pqxx::connection&, A...)> = true;

// A DAO member of this backend, or a function taking pqxx::connection& first.
template <auto F>
concept operation =
    (std::is_member_function_pointer_v<decltype(F)> && dao<member_class_t<F>>) || takes_connection<decltype(F)>;

// detail/invoke.hpp's connection for a free function: the lane's pqxx::connection.
inline pqxx::connection& native_connection(lane& l) noexcept { return l.conn().get(); }

template <class R, class Handler, class Fn>
void submit(Handler&& handler, job_queue* queue, counters* stats, Fn&& fn, std::string_view name,
            session_state* session) {
  using op_type = run_op<hooks, std::decay_t<Handler>, std::decay_t<Fn>, R>;
  auto op = std::make_shared<op_type>(std::forward<Handler>(handler), std::forward<Fn>(fn), name, session, op_route{});
  const bool attached = op->attach();
  enqueue(op, attached, queue, stats, session == nullptr);
}

// Read-only operations go to the readers; everything else (undeclared included) to the primary: a
// PostgreSQL connection cannot tell asyncdb that a statement would have written, it only refuses it.
template <class R, class Token, class Fn>
auto initiate(Token&& token, engine& e, bool read_only, Fn fn, std::string_view name) {
  check_result<R>();
  return net::async_initiate<Token, signature_t<R>>(
      [](auto handler, engine* e, bool ro, Fn f, std::string_view n) {
        start_with_default(std::move(handler), e->operation_budget(), [&](auto h) {
          submit<R>(std::move(h), &e->queue(ro), &e->stats_counters(), std::move(f), n, nullptr);
        });
      },
      token, &e, read_only, std::move(fn), name);
}

template <auto F, class Dao, class Owner, class... Args>
auto initiate_call(engine& e, Args&&... args) {
  refuse_coawait_temporaries<Args...>();
  using R = call_result_t<F, Dao, lane, Args...>;
  static_assert((check_result<R>(), true));  // evaluated now: its message comes before any other error
  if constexpr (valid_result<R>) {
    return initiate<R>(net::use_awaitable, e, declared_route<F, Owner>() == route::reader,
                       bind_call<F, Dao, lane>(std::forward<Args>(args)...), name_of<F>());
  }
}

template <class Token, class Fn>
auto async_run_on(engine& e, bool read_only, Fn&& fn, Token&& token) {
  if constexpr (is_use_awaitable<std::decay_t<Token>>) refuse_coawait_temporary_callable<Fn>();
  using R = std::invoke_result_t<std::decay_t<Fn>&, pqxx::connection&>;
  return initiate<R>(
      std::forward<Token>(token), e, read_only,
      [f = std::decay_t<Fn>(std::forward<Fn>(fn))](lane& l) mutable -> R { return f(l.conn().get()); }, "async_run");
}

}  // namespace asyncdb::detail::pg
