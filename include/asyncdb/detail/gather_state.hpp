#pragma once
#include <asyncdb/detail/asio.hpp>

#include <algorithm>
#include <atomic>
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
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Shared by the children of one gather. Each child writes only its own value slot; the one that
// brings `remaining_` to zero (acq_rel: it sees every other child's writes) completes the parent.
// Children run with cancellation slots of their own, fed from the parent's slot, so cancelling the
// gather cancels every child. That slot holds a weak reference: the parent's handler lives in this
// state, and a strong one would keep both alive forever if the context were destroyed first.
// Traits: values_type, and complete(handler, first_error, values).
template <class Handler, class Traits>
class gather_state : public std::enable_shared_from_this<gather_state<Handler, Traits>> {
 public:
  gather_state(Handler handler, std::size_t n) : handler_(std::move(handler)), errors_(n), signals_(n), remaining_(n) {}

  auto get_executor() const { return net::get_associated_executor(handler_); }
  typename Traits::values_type& values() noexcept { return values_; }
  net::cancellation_slot child_slot(std::size_t i) { return signals_[i].slot(); }

  // For a child spawned after the gather was cancelled: it is cancelled as it starts.
  void cancel_if_cancelled(std::size_t i) {
    const auto type = cancelled_.load(std::memory_order_relaxed);
    if (type != net::cancellation_type::none) signals_[i].emit(type);
  }

  void connect_cancellation() {
    slot_ = net::get_associated_cancellation_slot(handler_);
    if (slot_.is_connected()) slot_.template emplace<forward_cancellation>(this->weak_from_this());
  }

  // On the parent's executor, from child `i`'s completion.
  void child_done(std::size_t i, std::exception_ptr ep) {
    errors_[i] = std::move(ep);
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish();
  }

  // Results in input order; on failure, the first failure in input order.
  void finish() {
    slot_.clear();
    std::exception_ptr first;
    for (auto& e : errors_) {
      if (e) {
        first = e;
        break;
      }
    }
    auto ex = get_executor();  // before the handler moves out
    net::post(ex, [h = std::move(handler_), first, v = std::move(values_)]() mutable {
      Traits::complete(std::move(h), first, std::move(v));
    });
  }

 private:
  struct forward_cancellation {
    std::weak_ptr<gather_state> state;
    void operator()(net::cancellation_type type) const {
      if (auto s = state.lock()) {
        s->cancelled_.store(type, std::memory_order_relaxed);
        for (auto& sig : s->signals_) sig.emit(type);
      }
    }
  };

  Handler handler_;
  typename Traits::values_type values_{};
  std::vector<std::exception_ptr> errors_;
  std::vector<net::cancellation_signal> signals_;
  std::atomic<std::size_t> remaining_;
  net::cancellation_slot slot_;
  // Written by the canceller, read by the chunk spawner: both on the parent's executor, but that may be
  // an io_context run by several threads.
  std::atomic<net::cancellation_type> cancelled_{net::cancellation_type::none};
};

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
                    net::awaitable<Ts, Executor>... tasks) {
  auto ex = state->get_executor();
  (net::co_spawn(ex, std::move(tasks),
                 net::bind_cancellation_slot(
                     state->child_slot(I),
                     child_completion<State, Ts>(
                         state, I, [](auto& values, auto&& v) { std::get<I>(values).emplace(std::move(v)); }))),
   ...);
}

// Children start in chunks, each chunk a handler of its own: starting 10,000 at once would hold the
// event loop for milliseconds, and every timer and socket on it would wait that long.
inline constexpr std::size_t gather_chunk = 128;

template <class State, class T, class Executor>
void spawn_from(std::shared_ptr<State> state, std::shared_ptr<std::vector<net::awaitable<T, Executor>>> tasks,
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
    net::co_spawn(ex, std::move((*tasks)[i]),
                  net::bind_cancellation_slot(state->child_slot(i), child_completion<State, T>(state, i, store)));
    state->cancel_if_cancelled(i);
  }
  if (to < tasks->size()) {
    net::post(ex, [state = std::move(state), tasks = std::move(tasks), to]() mutable {
      spawn_from(std::move(state), std::move(tasks), to);
    });
  }
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
