#pragma once
// asyncio.gather for Asio awaitables: start all, wait for all, results in input order.
#include <asyncdb/detail/gather_state.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace asyncdb {

namespace detail {
template <class T>
using gathered_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class T>
struct gather_vector_traits {
  using values_type = std::vector<std::optional<T>>;
  template <class Handler>
  static void complete(Handler&& h, std::exception_ptr ep, values_type&& values) {
    std::vector<T> out;
    if (!ep) {
      out.reserve(values.size());
      for (auto& v : values) out.push_back(std::move(*v));
    }
    std::move(h)(ep, std::move(out));
  }
};

template <>
struct gather_vector_traits<void> {
  using values_type = std::monostate;
  template <class Handler>
  static void complete(Handler&& h, std::exception_ptr ep, values_type&&) {
    std::move(h)(ep);
  }
};

template <class... Ts>
struct gather_tuple_traits {
  using values_type = std::tuple<std::optional<gathered_t<Ts>>...>;
  template <class Handler>
  static void complete(Handler&& h, std::exception_ptr ep, values_type&& values) {
    if (ep) {
      std::move(h)(ep, std::tuple<gathered_t<Ts>...>{});
    } else {
      std::move(h)(ep, std::apply([](auto&... v) { return std::tuple<gathered_t<Ts>...>(std::move(*v)...); }, values));
    }
  }
};

template <class State, class T, class Store>
auto child_completion(std::shared_ptr<State> state, std::size_t i, Store store) {
  if constexpr (std::is_void_v<T>) {
    return [state = std::move(state), i, store](std::exception_ptr ep) {
      if (!ep) store(state->values(), std::monostate{});
      state->child_done(i, ep);
    };
  } else {
    return [state = std::move(state), i, store](std::exception_ptr ep, T value) {
      if (!ep) store(state->values(), std::move(value));
      state->child_done(i, ep);
    };
  }
}

template <class State, class... Ts, std::size_t... I, class Executor>
void spawn_children(const std::shared_ptr<State>& state, std::index_sequence<I...>,
                    asio::awaitable<Ts, Executor>... tasks) {
  auto ex = state->get_executor();
  (asio::co_spawn(ex, std::move(tasks),
                  asio::bind_cancellation_slot(
                      state->child_slot(I),
                      child_completion<State, Ts>(
                          state, I, [](auto& values, auto&& v) { std::get<I>(values).emplace(std::move(v)); }))),
   ...);
}

// Children start in chunks, each chunk a handler of its own: starting 10,000 at once would hold the
// event loop for milliseconds, and every timer and socket on it would wait that long.
inline constexpr std::size_t gather_chunk = 128;

template <class State, class T, class Executor>
void spawn_from(std::shared_ptr<State> state, std::shared_ptr<std::vector<asio::awaitable<T, Executor>>> tasks,
                std::size_t from) {
  const std::size_t to = std::min(tasks->size(), from + gather_chunk);
  auto ex = state->get_executor();
  for (std::size_t i = from; i < to; ++i) {
    auto store = [i](auto& values, auto&& v) {
      if constexpr (std::is_void_v<T>) {
        (void)i;  // void results have no slot
      } else {
        values[i].emplace(std::move(v));
      }
    };
    asio::co_spawn(ex, std::move((*tasks)[i]),
                   asio::bind_cancellation_slot(state->child_slot(i), child_completion<State, T>(state, i, store)));
    state->cancel_if_cancelled(i);
  }
  if (to < tasks->size()) {
    asio::post(ex, [state = std::move(state), tasks = std::move(tasks), to]() mutable {
      spawn_from(std::move(state), std::move(tasks), to);
    });
  }
}
}  // namespace detail

/// Runs every awaitable concurrently on the caller's executor and waits for all of them; they start in
/// chunks of 128, so other handlers on that executor run between chunks.
/// Completion: awaitable<std::vector<T>> (awaitable<void> for void), results in input order.
/// Resumes on the caller's executor. Cancelling the gather cancels every child.
/// Throws, once all have finished, the first exception in input order.
template <class T, class Executor>
asio::awaitable<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>, Executor> gather(
    std::vector<asio::awaitable<T, Executor>> tasks) {
  using traits = detail::gather_vector_traits<T>;
  using signature = std::conditional_t<std::is_void_v<T>, void(std::exception_ptr),
                                       void(std::exception_ptr, std::vector<detail::gathered_t<T>>)>;
  return asio::async_initiate<const asio::use_awaitable_t<Executor>&, signature>(
      [](auto handler, std::vector<asio::awaitable<T, Executor>> tasks) {
        using state_type = detail::gather_state<decltype(handler), traits>;
        auto state = std::make_shared<state_type>(std::move(handler), tasks.size());
        if constexpr (!std::is_void_v<T>) state->values().resize(tasks.size());
        if (tasks.empty()) return state->finish();
        state->connect_cancellation();
        detail::spawn_from(std::move(state),
                           std::make_shared<std::vector<asio::awaitable<T, Executor>>>(std::move(tasks)), 0);
      },
      asio::use_awaitable_t<Executor>{}, std::move(tasks));
}

/// Runs the awaitables concurrently and waits for all: `auto [a, b] = co_await gather(f(), g());`.
/// Completion: awaitable<std::tuple<T...>> (void results become std::monostate), in argument order.
/// Resumes on the caller's executor. Cancelling the gather cancels every child.
/// Throws, once all have finished, the first exception in argument order.
template <class Executor, class... Ts>
asio::awaitable<std::tuple<detail::gathered_t<Ts>...>, Executor> gather(asio::awaitable<Ts, Executor>... tasks) {
  using traits = detail::gather_tuple_traits<Ts...>;
  return asio::async_initiate<const asio::use_awaitable_t<Executor>&,
                              void(std::exception_ptr, std::tuple<detail::gathered_t<Ts>...>)>(
      [](auto handler, asio::awaitable<Ts, Executor>... tasks) {
        using state_type = detail::gather_state<decltype(handler), traits>;
        auto state = std::make_shared<state_type>(std::move(handler), sizeof...(Ts));
        state->connect_cancellation();
        detail::spawn_children<state_type, Ts...>(state, std::index_sequence_for<Ts...>{}, std::move(tasks)...);
      },
      asio::use_awaitable_t<Executor>{}, std::move(tasks)...);
}

}  // namespace asyncdb
