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

#include "temp_dir.hpp"

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

// ---- shared by the cancellation, WAL, shutdown and hostile-DAO cases ----
#include <filesystem>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace faults {

/// The value of the environment variable `name` as a number, or `fallback` when unset or not a number.
inline long env_number(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != nullptr && *end == '\0' ? n : fallback;
}

/// A fresh directory under the system temp dir (asyncdb-fault-<pid>-XXXXXX), removed at scope exit, or by the
/// next one made if this process dies first (test::temp_dir).
class scratch_dir {
 public:
  std::filesystem::path file(std::string_view name = "fault.db") const { return dir_.path() / name; }

 private:
  test::temp_dir dir_{"asyncdb-fault"};
};

/// A query that counts for hours: what a case interrupts or cancels mid-statement.
inline constexpr const char* endless_count =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n";

/// Milliseconds since `start`, as a double, for printed figures.
inline double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace faults
