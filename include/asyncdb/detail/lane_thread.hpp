#pragma once
// The thread of one lane, whatever its backend: started once, joined once.
#include <asyncdb/detail/config.hpp>

#if defined(__linux__)
#include <pthread.h>
#endif
#include <future>
#include <thread>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

class lane_thread {
 public:
  lane_thread() = default;
  lane_thread(const lane_thread&) = delete;
  lane_thread& operator=(const lane_thread&) = delete;
  ~lane_thread() { join(); }

  /// Runs `body(std::promise<void>& opened)` on a new thread named `name`; returns once `body` has set
  /// `opened`, rethrowing the exception it was set to (the connection failed to open).
  template <class Body>
  void start(const char* name, Body body) {
    std::promise<void> opened;
    auto ready = opened.get_future();
    thread_ = std::thread([name, body = std::move(body), opened = std::move(opened)]() mutable {
#if defined(__linux__)
      // Visible in top, perf and gdb; the name is best effort (15 characters at most).
      pthread_setname_np(pthread_self(), name);
#else
      (void)name;
#endif
      body(opened);
    });
    ready.get();
  }

  /// Waits for the thread to end; a no-op when it never started or was joined already.
  void join() noexcept {
    if (thread_.joinable()) thread_.join();
  }

  /// True on this lane's own thread.
  bool is_current() const noexcept { return thread_.get_id() == std::this_thread::get_id(); }

 private:
  std::thread thread_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
