#pragma once
// The event-loop side of the bench, shared by the peer and asyncdb: N worker coroutines pulling operation
// numbers from one counter on ONE io_context thread, the 1 ms loop-lag probe, and the peer's when_all.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <system_error>
#include <utility>
#include <vector>

namespace bench {

using clock = std::chrono::steady_clock;

/// A 1 ms periodic timer on the loop; records how late it fires at worst (WORKLOADS.md "L").
class lag_probe {
 public:
  explicit lag_probe(asio::io_context& ioc) : timer_(ioc) {}

  void start() { asio::co_spawn(timer_.get_executor(), tick(this), asio::detached); }
  /// On the loop thread.
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }
  clock::duration worst() const { return worst_; }

 private:
  static asio::awaitable<void> tick(lag_probe* self) {
    auto next = clock::now() + std::chrono::milliseconds(1);
    while (!self->stopped_) {
      self->timer_.expires_at(next);
      std::error_code ec;
      auto token = asio::redirect_error(asio::use_awaitable, ec);
      co_await self->timer_.async_wait(token);
      const auto now = clock::now();
      if (self->stopped_) break;
      self->worst_ = std::max(self->worst_, now - next);
      while (next <= now) next += std::chrono::milliseconds(1);  // a stalled loop skips the missed ticks
    }
  }

  asio::steady_timer timer_;
  bool stopped_ = false;
  clock::duration worst_{0};
};

/// What run_in_flight measured.
struct loop_result {
  double seconds = 0;
  clock::duration worst_lag{0};
};

namespace detail {
struct run_state {
  std::size_t total = 0;
  std::size_t next = 0;
  std::size_t workers_left = 0;
  lag_probe* probe = nullptr;
  std::vector<clock::duration>* latencies = nullptr;
  clock::time_point end{};
  std::exception_ptr error;
};

template <class Op>
asio::awaitable<void> worker(run_state* st, Op* op) {
  try {
    for (std::size_t i = st->next++; i < st->total; i = st->next++) {
      if (st->latencies != nullptr) {
        const auto t0 = clock::now();
        auto r = co_await (*op)(i);
        st->latencies->push_back(clock::now() - t0);
        op->consume(r);
      } else {
        auto r = co_await (*op)(i);
        op->consume(r);
      }
    }
  } catch (...) {
    if (!st->error) st->error = std::current_exception();
    st->next = st->total;
  }
  if (--st->workers_left == 0) {
    st->end = clock::now();
    if (st->probe != nullptr) st->probe->stop();
  }
}
}  // namespace detail

/// Runs operations 0..total-1 with `in_flight` of them outstanding at a time, all started and resumed on
/// the calling thread, which runs `ioc`. `op(i)` returns the awaitable of operation i; `op.consume(result)`
/// checks its result. Optionally records each operation's latency, and runs the lag probe meanwhile.
template <class Op>
loop_result run_in_flight(asio::io_context& ioc, Op& op, std::size_t total, std::size_t in_flight, bool probe,
                          std::vector<clock::duration>* latencies = nullptr) {
  detail::run_state st;
  st.total = total;
  st.workers_left = in_flight;
  st.latencies = latencies;
  lag_probe lag(ioc);
  if (probe) {
    st.probe = &lag;
    lag.start();
  }
  const auto t0 = clock::now();
  for (std::size_t k = 0; k < in_flight; ++k) asio::co_spawn(ioc, detail::worker(&st, &op), asio::detached);
  ioc.run();
  ioc.restart();
  if (st.error) std::rethrow_exception(st.error);
  return {std::chrono::duration<double>(st.end - t0).count(), lag.worst()};
}

/// Runs one coroutine to completion on `ioc` (on the calling thread) and returns its value.
template <class T>
T run_on_loop(asio::io_context& ioc, asio::awaitable<T> task) {
  std::exception_ptr error;
  T value{};
  asio::co_spawn(ioc, std::move(task), [&](std::exception_ptr e, T v) {
    error = e;
    value = std::move(v);
  });
  ioc.run();
  ioc.restart();
  if (error) std::rethrow_exception(error);
  return value;
}

/// The peer's "start all, await all" (Asio 1.22 has no ranged parallel group): each task co_spawned, a
/// counter, and a timer that the last completion cancels. Results in input order; rethrows the first error.
template <class T>
asio::awaitable<std::vector<T>> when_all(std::vector<asio::awaitable<T>> tasks) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<T> results(tasks.size());
  std::size_t left = tasks.size();
  std::exception_ptr first;
  asio::steady_timer done(ex, clock::time_point::max());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    // The frame outlives every child: this coroutine waits for all of them below.
    asio::co_spawn(ex, std::move(tasks[i]), [&, i](std::exception_ptr e, T v) {
      if (e && !first) first = e;
      if (!e) results[i] = std::move(v);
      if (--left == 0) done.cancel();
    });
  }
  if (left > 0) {
    std::error_code ec;
    auto token = asio::redirect_error(asio::use_awaitable, ec);
    co_await done.async_wait(token);
  }
  if (first) std::rethrow_exception(first);
  co_return results;
}

}  // namespace bench
