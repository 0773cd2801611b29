#pragma once
// Time budgets: a deadline per operation that counts its wait in the queue as well as its run.
#include <asyncdb/detail/budget.hpp>

#include <chrono>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// A completion token: `token`, with a budget for the operation it starts (made by asyncdb::budget()).
template <class Token>
struct budget_t {
  std::chrono::nanoseconds duration;  ///< from the initiation; nanoseconds::max() is no bound
  Token token;                        ///< the token that receives the completion
};

/// Gives the operation started with this token `d` from its initiation (the co_await, for use_awaitable) to
/// complete, queue wait included, overriding options::operation_budget. Past it, the operation is cancelled as
/// by its cancellation slot and completes with errc::deadline_exceeded, unless it had committed (success).
/// `duration::max()` (or any `d` past the clock's range) is no budget at all: not options::operation_budget either.
/// For every asyncdb call that takes a token: async_run, async_db_session (bounding the wait for the session).
/// On PostgreSQL it also bounds the operation's statements on the server (statement_timeout, see
/// postgres::options::operation_budget).
template <class Rep, class Period, class Token = net::use_awaitable_t<>>
budget_t<std::decay_t<Token>> budget(std::chrono::duration<Rep, Period> d, Token&& token = {}) {
  return {detail::saturated_ns(d), std::forward<Token>(token)};
}

/// A budget for a whole session, its open included (made by asyncdb::session_budget()).
struct session_budget_t {
  std::chrono::nanoseconds duration;  ///< from the open's initiation; nanoseconds::max() is no bound
};

/// Gives the session opened with it (`async_db_session(db, session_budget(d))`) `d` from the open's initiation,
/// the wait for the connection included. Past it: an open still waiting completes with errc::deadline_exceeded;
/// the operation of the session running then is cancelled and fails with deadline_exceeded, unless it had
/// committed (success); every later operation of it fails with deadline_exceeded at once; and the session ends,
/// its open transaction rolled back, so nothing it had not committed is in the database.
template <class Rep, class Period>
session_budget_t session_budget(std::chrono::duration<Rep, Period> d) noexcept {
  return {detail::saturated_ns(d)};
}

/// Awaits `op` (an operation's awaitable, e.g. `users.call<&Dao::f>(x)`, or any coroutine of several) with
/// budget `d`, counted from this co_await: past it, what `op` awaits is cancelled, and an operation it
/// cancelled that way throws errc::deadline_exceeded. Resumes on the awaiting coroutine's executor. Bounds the
/// client only: a PostgreSQL server's statement_timeout follows budget(), not within().
template <class Rep, class Period, class T, class Executor>
net::awaitable<T, Executor> within(std::chrono::duration<Rep, Period> d, net::awaitable<T, Executor> op) {
  const Executor ex = co_await net::this_coro::executor;
  const budget_t<net::use_awaitable_t<Executor>> token = budget(d, net::use_awaitable_t<Executor>{});
  co_return co_await net::co_spawn(ex, std::move(op), token);
}

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb

#include <asyncdb/detail/budget_token.hpp>
