#pragma once
// asyncio.gather for Asio awaitables: start all, wait for all, results in input order.
#include <asyncdb/detail/gather_state.hpp>

#include <exception>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Runs every awaitable concurrently on the caller's executor and waits for all of them; they start in
/// chunks of 128, so other handlers on that executor run between chunks.
/// Completion: awaitable<std::vector<T>> (awaitable<void> for void), results in input order.
/// Resumes on the caller's executor. Cancelling the gather cancels every child.
/// Throws, once all have finished, the first exception in input order.
template <class T, class Executor>
net::awaitable<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>, Executor> gather(
    std::vector<net::awaitable<T, Executor>> tasks) {
  using traits = detail::gather_vector_traits<T>;
  using signature = std::conditional_t<std::is_void_v<T>, void(std::exception_ptr),
                                       void(std::exception_ptr, std::vector<detail::gathered_t<T>>)>;
  return net::async_initiate<const net::use_awaitable_t<Executor>&, signature>(
      [](auto handler, std::vector<net::awaitable<T, Executor>> tasks) {
        using state_type = detail::gather_state<decltype(handler), traits>;
        auto state = std::make_shared<state_type>(std::move(handler), tasks.size());
        if constexpr (!std::is_void_v<T>) state->values().resize(tasks.size());
        if (tasks.empty()) return state->finish();
        state->connect_cancellation();
        detail::spawn_from(std::move(state),
                           std::make_shared<std::vector<net::awaitable<T, Executor>>>(std::move(tasks)), 0);
      },
      net::use_awaitable_t<Executor>{}, std::move(tasks));
}

/// Runs the awaitables concurrently and waits for all: `auto [a, b] = co_await gather(f(), g());`.
/// Completion: awaitable<std::tuple<T...>> (void results become std::monostate), in argument order.
/// Resumes on the caller's executor. Cancelling the gather cancels every child.
/// Throws, once all have finished, the first exception in argument order.
template <class Executor, class... Ts>
net::awaitable<std::tuple<detail::gathered_t<Ts>...>, Executor> gather(net::awaitable<Ts, Executor>... tasks) {
  using traits = detail::gather_tuple_traits<Ts...>;
  return net::async_initiate<const net::use_awaitable_t<Executor>&,
                             void(std::exception_ptr, std::tuple<detail::gathered_t<Ts>...>)>(
      [](auto handler, net::awaitable<Ts, Executor>... tasks) {
        using state_type = detail::gather_state<decltype(handler), traits>;
        auto state = std::make_shared<state_type>(std::move(handler), sizeof...(Ts));
        state->connect_cancellation();
        detail::spawn_children<state_type, Ts...>(state, std::index_sequence_for<Ts...>{}, std::move(tasks)...);
      },
      net::use_awaitable_t<Executor>{}, std::move(tasks)...);
}

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
