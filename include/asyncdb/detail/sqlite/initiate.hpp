#pragma once
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/sqlite/engine.hpp>
#include <asyncdb/detail/sqlite/invoke.hpp>
#include <asyncdb/detail/sqlite/run_op.hpp>
#include <asyncdb/detail/submit.hpp>
#include <asyncdb/detail/type_checks.hpp>

#include <exception>
#include <memory>
#include <string_view>
#include <type_traits>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Queues `fn(lane&)` and wires its completion to `handler`.
template <class R, class Handler, class Fn>
void submit(Handler&& handler, job_queue* queue, counters* stats, Fn&& fn, std::string_view name,
            session_state* session, op_route route) {
  using op_type = run_op<sqlite_hooks, std::decay_t<Handler>, std::decay_t<Fn>, R>;
  auto op = std::make_shared<op_type>(std::forward<Handler>(handler), std::forward<Fn>(fn), name, session, route);
  const bool attached = op->attach();
  enqueue(op, attached, queue, stats, session == nullptr);
}

// Chosen when the operation starts, not when its awaitable is made: what was learned meanwhile counts.
inline job_queue& pick_queue(engine& e, route r, op_route& where) {
  switch (r) {
    case route::reader:
      return e.queue(true);
    case route::writer:
      return e.writer_queue();
    case route::detect:
      break;
  }
  if (!e.has_readers() || where.kind->writes.load(std::memory_order_relaxed)) return e.writer_queue();
  where.on_write = &e.writer_queue();
  return e.queue(true);
}

// `kind` is what the library learns about this operation's code; see op_kind.
template <class R, class Token, class Fn>
auto initiate(Token&& token, engine& e, route r, op_kind& kind, Fn fn, std::string_view name) {
  check_result<R>();
  return net::async_initiate<Token, signature_t<R>>(
      [](auto handler, engine* e, route r, op_kind* k, Fn f, std::string_view n) {
        op_route where{k};
        job_queue& q = pick_queue(*e, r, where);
        start_with_default(std::move(handler), e->operation_budget(), [&](auto h) {
          submit<R>(std::move(h), &q, &e->stats_counters(), std::move(f), n, nullptr, where);
        });
      },
      token, &e, r, &kind, std::move(fn), name);
}

// An operation that moves from its arguments runs once: never a trial on a reader that the writer
// would repeat.
template <auto F, class Owner>
constexpr route route_of() noexcept {
  constexpr route declared = declared_route<F, Owner>();
  return consumes_arguments<F> && declared == route::detect ? route::writer : declared;
}

// Nor in a group commit, which runs its members again alone when the shared transaction is lost:
// such an operation starts out as one that needs a transaction of its own.
template <auto F>
requires consumes_arguments<F>
inline op_kind kind_of<operation_tag<F>>{{false}, {true}};

// The one recipe behind `call<&Dao::member>(args...)` and `async_db_operation<&f>{}(db, args...)`:
// refuse what g++ 12 would corrupt, store the arguments, route as `Owner` (or a specialization) says.
template <auto F, class Dao, class Owner, class... Args>
auto initiate_call(engine& e, Args&&... args) {
  refuse_coawait_temporaries<Args...>();
  using R = call_result_t<F, Dao, lane, Args...>;
  static_assert((check_result<R>(), true));  // evaluated now: its message comes before any other error
  if constexpr (valid_result<R>) {
    return initiate<R>(net::use_awaitable, e, route_of<F, Owner>(), kind_of<operation_tag<F>>,
                       bind_call<F, Dao, lane>(std::forward<Args>(args)...), name_of<F>());
  }
}

// A session operation holds its session's state until it is queued: an awaitable may be started
// long after it was created.
template <class R, class Token, class Fn>
auto initiate_in_session(Token&& token, std::shared_ptr<session_state> session, Fn fn, std::string_view name) {
  check_result<R>();
  return net::async_initiate<Token, signature_t<R>>(
      [](auto handler, std::shared_ptr<session_state> s, Fn f, std::string_view n) {
        submit<R>(std::move(handler), s ? &s->queue : nullptr, s ? s->stats.get() : nullptr, std::move(f), n, s.get(),
                  op_route{});
      },
      token, std::move(session), std::move(fn), name);
}

// The recipe behind async_run: `fn(SQLite::Database&)` on the writer, or a reader when `read_only`.
template <class Token, class Fn>
auto async_run_on(engine& e, bool read_only, Fn&& fn, Token&& token) {
  if constexpr (is_use_awaitable<std::decay_t<Token>>) refuse_coawait_temporary_callable<Fn>();
  using R = std::invoke_result_t<std::decay_t<Fn>&, SQLite::Database&>;
  return initiate<R>(
      std::forward<Token>(token), e, read_only ? route::reader : route::writer, kind_of<std::decay_t<Fn>>,
      [f = std::decay_t<Fn>(std::forward<Fn>(fn))](lane& l) mutable -> R { return f(l.conn().database()); },
      "async_run");
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
