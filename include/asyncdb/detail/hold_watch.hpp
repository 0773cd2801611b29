#pragma once
// options::hold_threshold (SQLite's writer) and postgres::options::hold_threshold (each connection): a
// watchdog that reports a hold of a connection once it has lasted the threshold.
#include <asyncdb/connection_role.hpp>
#include <asyncdb/detail/holder.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/hold.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// One connection the watchdog looks at; the engine's lanes and queues outlive the watchdog.
struct watched_connection {
  const connection_holder* holder;
  const job_queue* queue;  // where the operations that wait for it queue
  connection_role role;
};

// One thread per database, only when a threshold is set. It looks at each connection's holder and sleeps
// until the earliest current hold would reach the threshold; with no hold to watch, a full threshold, since
// a hold starting after the look cannot be due sooner. So the lanes never signal it (no cost per operation),
// and a hold is seen at most one threshold late, while the lane thread is inside user code or parked in a
// session. Each hold carries an id: it is reported once however long it lasts.
class hold_watch {
 public:
  hold_watch(std::vector<watched_connection> watched, std::chrono::milliseconds threshold, const hold_observer& hook)
      : watched_(std::move(watched)), threshold_(saturated(threshold)), hook_(hook) {
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
    std::vector<std::uint64_t> reported(watched_.size(), 0);
    std::unique_lock lock(mutex_);
    while (!done_) {
      auto due = std::chrono::steady_clock::now() + threshold_;
      for (std::size_t i = 0; i < watched_.size() && !done_; ++i) {
        const hold_state h = watched_[i].holder->state();
        if (h.what == writer_holder::kind::none || h.id == reported[i]) continue;
        const auto at = h.since + threshold_;
        const auto now = std::chrono::steady_clock::now();
        if (now < at) {
          due = std::min(due, at);
          continue;
        }
        reported[i] = h.id;
        lock.unlock();
        report(watched_[i], h, now);
        lock.lock();
      }
      cv_.wait_until(lock, due, [this] { return done_; });
    }
  }

  // Why a catch-all: an exception out of the hook would end the watchdog's thread (std::terminate).
  void report(const watched_connection& c, const hold_state& h, std::chrono::steady_clock::time_point now) noexcept {
    hold_record r;
    r.what = h.what;
    r.name = h.name;
    r.where = h.where;
    r.held_for = now - h.since;
    r.queued_behind = c.queue->size();
    r.connection = c.role;
    r.backend_pid = h.backend_pid;
    try {
      hook_(r);
    } catch (...) {
    }
  }

  const std::vector<watched_connection> watched_;
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
