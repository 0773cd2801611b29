#pragma once
// The hand-rolled peer of WORKLOADS.md: what a user writes instead of asyncdb. An asio::thread_pool
// (default size: twice the cores), one connection shared by its threads behind a mutex, and the result
// posted back to the awaiting coroutine's executor, the event loop.
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>

#include <exception>
#include <filesystem>
#include <mutex>
#include <type_traits>
#include <utility>

#include "user_dao.hpp"

namespace bench {

class peer {
 public:
  peer(const std::filesystem::path& path, durability d) : db_(open_connection(path, d)), dao_(db_) {}
  peer(const peer&) = delete;
  peer& operator=(const peer&) = delete;
  ~peer() { pool_.join(); }

  /// Runs `fn(UserDao&) -> R` on a pool thread under the connection's mutex; resumes on the caller's executor.
  /// Takes `fn` by reference and copies it here, outside the caller's co_await expression (the g++ 12 trap).
  template <class Fn>
  asio::awaitable<std::invoke_result_t<std::decay_t<Fn>&, UserDao&>> run(Fn&& fn) {
    using F = std::decay_t<Fn>;
    using R = std::invoke_result_t<F&, UserDao&>;
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

 private:
  asio::thread_pool pool_;
  std::mutex mutex_;
  SQLite::Database db_;
  UserDao dao_;
};

}  // namespace bench
