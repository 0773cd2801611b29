#pragma once
// options::hold_threshold: a watchdog that reports a hold of the writer once it has lasted the threshold.
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>
#include <asyncdb/hold.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// One thread per database, only when a threshold is set. It looks at the writer's holder (lane::hold_state)
// and sleeps until the current hold would reach the threshold; with no hold to watch, a full threshold, since
// a hold starting after the look cannot be due sooner. So the lanes never signal it (no cost per operation),
// and a hold is seen at most one threshold late, while the lane thread is inside user code or parked in a
// session. Each hold carries an id: it is reported once however long it lasts.
class hold_watch {
 public:
  hold_watch(const lane& writer, const job_queue& queue, std::chrono::milliseconds threshold, const hold_observer& hook)
      : writer_(writer), queue_(queue), threshold_(saturated(threshold)), hook_(hook) {
    thread_ = std::thread([this] { watch(); });
  }
  hold_watch(const hold_watch&) = delete;
  hold_watch& operator=(const hold_watch&) = delete;
  ~hold_watch() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

 private:
  // time_point + a duration near milliseconds::max() overflows; a century is never reached.
  static std::chrono::milliseconds saturated(std::chrono::milliseconds t) noexcept {
    return std::clamp(t, std::chrono::milliseconds(1), std::chrono::milliseconds(std::chrono::hours(24 * 365 * 100)));
  }

  void watch() {
    std::uint64_t reported = 0;
    std::unique_lock lock(mutex_);
    while (!done_) {
      const lane::holder_state h = writer_.hold_state();
      const auto now = std::chrono::steady_clock::now();
      auto due = now + threshold_;
      if (h.what != writer_holder::kind::none && h.id != reported) {
        due = h.since + threshold_;
        if (now >= due) {
          reported = h.id;
          lock.unlock();
          report(h, now);
          lock.lock();
          continue;
        }
      }
      cv_.wait_until(lock, due, [this] { return done_; });
    }
  }

  // Why a catch-all: an exception out of the hook would end the watchdog's thread (std::terminate).
  void report(const lane::holder_state& h, std::chrono::steady_clock::time_point now) noexcept {
    hold_record r;
    r.what = h.what;
    r.name = h.name;
    r.where = h.where;
    r.held_for = now - h.since;
    r.queued_behind = queue_.size();
    try {
      hook_(r);
    } catch (...) {
    }
  }

  const lane& writer_;
  const job_queue& queue_;
  const std::chrono::milliseconds threshold_;
  const hold_observer& hook_;  // the engine's options, which outlive the watchdog
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;  // last: started once the members it uses exist
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
