#pragma once
// The hand-rolled peer of WORKLOADS.md: what a user writes instead of asyncdb. An asio::thread_pool, one
// connection shared by its threads behind a mutex, and the result posted back to the awaiting coroutine's
// executor, the event loop. One template for both backends: the SQLite bench uses asio's default pool size
// (twice the cores), the PostgreSQL bench 4 threads.
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

namespace bench {

/// asio::thread_pool's own default size: twice the cores.
inline std::size_t default_pool_size() {
  const std::size_t n = 2 * static_cast<std::size_t>(std::thread::hardware_concurrency());
  return n == 0 ? 2 : n;
}

template <class Connection, class Dao>
class basic_peer {
 public:
  /// Takes the connection, builds its one Dao on this thread and starts `threads` pool threads.
  basic_peer(std::unique_ptr<Connection> conn, std::size_t threads)
      : pool_(threads), conn_(std::move(conn)), dao_(*conn_) {}
  basic_peer(const basic_peer&) = delete;
  basic_peer& operator=(const basic_peer&) = delete;
  ~basic_peer() { pool_.join(); }

  /// Runs `fn(Dao&) -> R` on a pool thread under the connection's mutex; resumes on the caller's executor.
  /// Takes `fn` by reference and copies it here, outside the caller's co_await expression (the g++ 12 trap).
  template <class Fn>
  asio::awaitable<std::invoke_result_t<std::decay_t<Fn>&, Dao&>> run(Fn&& fn) {
    using F = std::decay_t<Fn>;
    using R = std::invoke_result_t<F&, Dao&>;
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr, R)>(
        [this](auto handler, F f) {
          auto work = asio::make_work_guard(asio::get_associated_executor(handler));
          asio::post(pool_, [this, f = std::move(f), handler = std::move(handler), work = std::move(work)]() mutable {
            std::exception_ptr ep;
            R result{};
            try {
              std::lock_guard lock(mutex_);
              result = f(dao_);
            } catch (...) {
              ep = std::current_exception();
            }
            asio::post(work.get_executor(), [handler = std::move(handler), ep, result = std::move(result)]() mutable {
              std::move(handler)(ep, std::move(result));
            });
          });
        },
        asio::use_awaitable, F(std::forward<Fn>(fn)));
  }

 protected:
  /// Only while no operation runs (before the first, after the last).
  Connection& connection() { return *conn_; }

 private:
  asio::thread_pool pool_;
  std::mutex mutex_;
  std::unique_ptr<Connection> conn_;
  Dao dao_;
};

}  // namespace bench
