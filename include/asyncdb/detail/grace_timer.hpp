#pragma once
// close()'s grace, for every backend: how long running work may go on before it is interrupted.
#include <asyncdb/detail/deadline.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Calls `expired` on a thread of its own once `grace` has passed, then again every `repeat` (if positive)
// until destroyed; never, if destroyed first. `expired` runs under the timer's lock; it may wait briefly
// (SQLite's interrupt waits for a connection being closed), never for the thread destroying the timer.
class grace_timer {
 public:
  grace_timer(std::chrono::milliseconds grace, std::function<void()> expired,
              std::chrono::milliseconds repeat = std::chrono::milliseconds::zero()) noexcept {
    try {
      thread_ = std::thread([this, grace, repeat, expired = std::move(expired)] {
        std::unique_lock lock(mutex_);
        auto wait = capped_wait(grace);  // milliseconds::max() means never
        while (!cv_.wait_for(lock, wait, [this] { return done_; })) {
          expired();
          if (repeat <= std::chrono::milliseconds::zero()) return;
          wait = repeat;
        }
      });
    } catch (...) {
      // No thread for the timer: close() then waits for running work, as it would with an endless grace.
    }
  }
  grace_timer(const grace_timer&) = delete;
  grace_timer& operator=(const grace_timer&) = delete;
  ~grace_timer() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
