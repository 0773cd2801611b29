#pragma once
// How every backend's operations are built and queued, written once. A backend gives a struct B with
// `hooks` (its run_op hooks), `engine_type`, `pick(engine&, route, op_route&) -> job_queue&` (its queue choice,
// made when the operation starts), `route_of<F, Owner>()` and `kind<Tag>()` (what it learns about code, or null);
// its lane's native connection is found as `native_connection(lane&)` (detail/invoke.hpp).
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/invoke.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/op_memory.hpp>
#include <asyncdb/detail/run_op.hpp>
#include <asyncdb/detail/type_checks.hpp>
#include <asyncdb/error.hpp>

#include <exception>
#include <memory>
#include <source_location>
#include <string_view>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class R>
struct signature_of {
  using type = void(std::exception_ptr, R);
};
template <>
struct signature_of<void> {
  using type = void(std::exception_ptr);
};
template <class R>
using signature_t = typename signature_of<R>::type;

// The one submission path of the library: `op` was registered with its handler's context (attached),
// and is queued now; a refusal, or a cancellation that arrived meanwhile, completes it at once. A null
// queue is a session that has ended or was moved from. Refusals count in `rejected` only outside sessions.
inline void enqueue(const std::shared_ptr<operation_base>& op, bool attached, job_queue* queue, counters* stats,
                    bool count_rejection = true) {
  if (!attached) return;
  const error_code ec = op->admit(queue, stats);
  if (!ec) return;
  if (stats != nullptr && ec == net::error::operation_aborted) {
    stats->cancelled.fetch_add(1, std::memory_order_relaxed);
  } else if (stats != nullptr && count_rejection) {
    stats->rejected.fetch_add(1, std::memory_order_relaxed);
  }
  op->fail(ec);
}

template <class T>
inline constexpr bool is_use_awaitable = false;
template <class Executor>
inline constexpr bool is_use_awaitable<net::use_awaitable_t<Executor>> = true;

// Queues `fn(lane&)` and wires its completion to `handler`; `unrun_observer` is told if it never reaches a lane
// (the database's observer; inside a session, the one the session took from it). The operation is its one
// allocation, recycled (detail/op_memory.hpp says why not from the handler's associated allocator): once warm,
// none.
template <class B, class R, class Handler, class Fn>
void submit(Handler&& handler, job_queue* queue, counters* stats, Fn&& fn, op_name name, session_state* session,
            op_route route, std::shared_ptr<const operation_observer> unrun_observer = nullptr) {
  using op_type = run_op<typename B::hooks, std::decay_t<Handler>, std::decay_t<Fn>, R>;
  auto op = std::allocate_shared<op_type>(op_allocator<op_type>(), std::forward<Handler>(handler), std::forward<Fn>(fn),
                                          name, session, route, std::move(unrun_observer));
  const bool attached = op->attach();
  enqueue(op, attached, queue, stats, session == nullptr);
}

// `kind` is what the backend learns about this operation's code (see op_kind), or null.
template <class B, class R, class Token, class Fn>
auto initiate(Token&& token, typename B::engine_type& e, route r, op_kind* kind, Fn fn, op_name name) {
  check_result<R>();
  return net::async_initiate<Token, signature_t<R>>(
      [](auto handler, typename B::engine_type* e, route r, op_kind* k, Fn f, op_name n) {
        op_route where{k};
        job_queue& q = B::pick(*e, r, where);
        start_with_default(std::move(handler), e->operation_budget(), [&](auto h) {
          submit<B, R>(std::move(h), &q, &e->stats_counters(), std::move(f), n, nullptr, where, e->observer());
        });
      },
      token, &e, r, kind, std::move(fn), name);
}

// The one recipe behind `call<&Dao::member>(args...)` and `async_db_operation<&f>{}(db, args...)`:
// refuse what g++ 12 would corrupt, store the arguments, route as `Owner` (or a specialization) says.
template <class B, auto F, class Dao, class Owner, class... Args>
auto initiate_call(typename B::engine_type& e, Args&&... args) {
  refuse_coawait_temporaries<Args...>();
  using lane_type = typename B::hooks::lane_type;
  using R = call_result_t<F, Dao, lane_type, Args...>;
  static_assert((check_result<R>(), true));  // evaluated now: its message comes before any other error
  if constexpr (valid_result<R>) {
    return initiate<B, R>(net::use_awaitable, e, B::template route_of<F, Owner>(), B::template kind<operation_tag<F>>(),
                          bind_call<F, Dao, lane_type>(std::forward<Args>(args)...), name_of<F>());
  }
}

// The recipe behind async_run and to_async_db_oper::run: `fn(get(lane))` on the writer, or a reader when
// `read_only`. `Get` is a captureless lambda type.
template <class B, class Token, class Fn, class Get>
auto initiate_run(typename B::engine_type& e, bool read_only, Fn&& fn, Token&& token, Get, op_name name) {
  if constexpr (is_use_awaitable<std::decay_t<Token>>) refuse_coawait_temporary_callable<Fn>();
  using lane_type = typename B::hooks::lane_type;
  using R = std::invoke_result_t<std::decay_t<Fn>&, std::invoke_result_t<Get, lane_type&>>;
  return initiate<B, R>(
      std::forward<Token>(token), e, read_only ? route::reader : route::writer, B::template kind<std::decay_t<Fn>>(),
      [f = std::decay_t<Fn>(std::forward<Fn>(fn))](lane_type& l) mutable -> R { return f(Get{}(l)); }, name);
}

template <class B, class Token, class Fn>
auto async_run_on(typename B::engine_type& e, bool read_only, Fn&& fn, Token&& token,
                  const std::source_location& where) {
  return initiate_run<B>(
      e, read_only, std::forward<Fn>(fn), std::forward<Token>(token),
      [](auto& l) -> auto& { return native_connection(l); }, op_name{"async_run", where});
}

// A session operation holds its session's state until it is queued: an awaitable may be started
// long after it was created.
template <class B, class R, class Token, class Fn>
auto initiate_in_session(Token&& token, std::shared_ptr<session_state> session, Fn fn, op_name name) {
  check_result<R>();
  return net::async_initiate<Token, signature_t<R>>(
      [](auto handler, std::shared_ptr<session_state> s, Fn f, op_name n) {
        submit<B, R>(std::move(handler), s ? &s->queue : nullptr, s ? s->stats.get() : nullptr, std::move(f), n,
                     s.get(), op_route{}, s ? s->observer : nullptr);
      },
      token, std::move(session), std::move(fn), name);
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
