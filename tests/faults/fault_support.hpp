#pragma once
// What every fault case shares: a way to say "cannot run here" that ctest counts as skipped, and a
// watchdog that turns a hang into a failed test instead of a CI timeout.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace faults {

/// Ends this test process with ctest's skip code (SKIP_RETURN_CODE 4), printing why; never counts as passed.
[[noreturn]] inline void skip(const std::string& why) {
  std::fprintf(stdout, "SKIPPED: %s\n", why.c_str());
  std::fflush(stdout);
  std::_Exit(4);
}

/// Aborts the process with `what` if it is still alive after `limit`: a hang fails the test, loudly.
class watchdog {
 public:
  watchdog(std::chrono::milliseconds limit, std::string what)
      : what_(std::move(what)), thread_([this, limit] {
          std::unique_lock lock(mutex_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "watchdog: %s still running after %lld ms\n", what_.c_str(),
                         static_cast<long long>(limit.count()));
            std::fflush(stderr);
            std::abort();
          }
        }) {}
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  std::string what_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace faults
