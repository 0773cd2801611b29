#pragma once
// The lanes of one database, whatever its backend, what a database does with them alike when it closes, and
// what every engine shares: its counters, its writer and reader queues (the intake) and their statistics.
#include <asyncdb/detail/config.hpp>
#include <asyncdb/detail/counters.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/error.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The closes close_in_background() started, joined when the program exits: main returning waits for them as it
// would for close() on its own thread, instead of running static destructors under them (and ending the process
// before the work they still had queued ran). Created with the first database, so it is destroyed before
// everything that existed by then. Each close is bounded by its database's close grace.
class background_closes {
 public:
  static background_closes& instance() {
    static background_closes closes;
    return closes;
  }
  background_closes(const background_closes&) = delete;
  background_closes& operator=(const background_closes&) = delete;

  ~background_closes() {
    for (;;) {  // a close may start another (a database owned by the one closing)
      std::vector<running> all;
      {
        std::lock_guard lock(mutex_);
        all.swap(running_);
      }
      if (all.empty()) return;
      for (auto& r : all) r.thread.join();
    }
  }

  // Runs `close` on a thread of its own; false if no thread could be started.
  template <class Close>
  bool start(Close close) noexcept {
    try {
      std::lock_guard lock(mutex_);
      std::erase_if(running_, [](running& r) {  // the finished ones: each join returns at once
        if (!r.done->load(std::memory_order_acquire)) return false;
        r.thread.join();
        return true;
      });
      auto done = std::make_shared<std::atomic<bool>>(false);
      std::thread t([close = std::move(close), done]() mutable {
        close();
        done->store(true, std::memory_order_release);
      });
      running_.push_back({std::move(t), std::move(done)});
      return true;
    } catch (...) {
      return false;
    }
  }

 private:
  background_closes() = default;

  struct running {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mutex_;
  std::vector<running> running_;
};

template <class Lane>
class lane_group {
 public:
  lane_group() { background_closes::instance(); }  // before the first database can need it: see background_closes

  /// Starts `l` (its connection opens on its own thread) and keeps it; rethrows what its start threw.
  Lane& add(std::unique_ptr<Lane> l) {
    lanes_.push_back(std::move(l));
    lanes_.back()->start();
    return *lanes_.back();
  }

  /// True on one of the lanes' threads, that is inside an operation of this database.
  bool contains_current_thread() const noexcept {
    for (const auto& l : lanes_) {
      if (l->on_this_thread()) return true;
    }
    return false;
  }

  /// Throws std::logic_error when called inside an operation: `close` would wait for itself.
  void refuse_close_from_own_thread(const char* database_name) const {
    if (!contains_current_thread()) return;
    throw std::logic_error(std::string("asyncdb: ") + database_name +
                           "::close() called from one of its own threads (inside an operation); it would wait "
                           "for itself");
  }

  const std::vector<std::unique_ptr<Lane>>& all() const noexcept { return lanes_; }
  bool empty() const noexcept { return lanes_.empty(); }
  std::size_t size() const noexcept { return lanes_.size(); }
  Lane& operator[](std::size_t i) const noexcept { return *lanes_[i]; }

 private:
  std::vector<std::unique_ptr<Lane>> lanes_;
};

/// For a database whose last owner dies on one of its own threads (a shared_ptr captured by an operation's
/// function object): that thread cannot join itself, so `e->stop_intake()` refuses new work now and a thread
/// of its own destroys the engine, closing it as close() would once the calling lane is back in its loop.
/// The program's exit waits for that thread (background_closes).
template <class Engine>
void close_in_background(std::unique_ptr<Engine> e) noexcept {
  e->stop_intake();
  Engine* raw = e.release();
  // Without a thread to close it on, leaking the connections beats terminating inside a destructor.
  (void)background_closes::instance().start([raw] { delete raw; });
}

// A base of each engine, so constructed before its lanes and destroyed after them: a lane serves a queue
// until it is joined.
class engine_intake {
 public:
  engine_intake(std::size_t max_queued, std::size_t readers, std::chrono::microseconds poll_for = {})
      : counters_(make_counters(max_queued)),
        writer_queue_(counters_, poll_for),
        reader_queue_(counters_, poll_for),
        readers_(readers) {}

  // Intake stops at once (errc::closed); the rest of close() is left to the destructor (close_in_background).
  void stop_intake() noexcept {
    writer_queue_.close(make_error_code(errc::closed));
    reader_queue_.close(make_error_code(errc::closed));
  }

  job_queue& queue(bool read_only) noexcept { return read_only && has_readers() ? reader_queue_ : writer_queue_; }
  job_queue& writer_queue() noexcept { return writer_queue_; }
  bool has_readers() const noexcept { return readers_ > 0; }
  counters& stats_counters() noexcept { return *counters_; }
  const std::shared_ptr<counters>& shared_counters() const noexcept { return counters_; }

  // The fields of `s` every backend's stats have.
  template <class Stats>
  void fill_stats(Stats& s) const noexcept {
    const counters& c = *counters_;
    s.queued = c.queued.load(std::memory_order_relaxed);
    s.running = c.running.load(std::memory_order_relaxed);
    s.completed = c.completed.load(std::memory_order_relaxed);
    s.failed = c.failed.load(std::memory_order_relaxed);
    s.cancelled = c.cancelled.load(std::memory_order_relaxed);
    s.rejected = c.rejected.load(std::memory_order_relaxed);
    s.queue_wait = std::chrono::nanoseconds(c.queue_wait_ns.load(std::memory_order_relaxed));
  }

 protected:
  ~engine_intake() = default;

  std::shared_ptr<counters> counters_;
  job_queue writer_queue_;
  job_queue reader_queue_;

 private:
  static std::shared_ptr<counters> make_counters(std::size_t max_queued) {
    auto c = std::make_shared<counters>();
    c->max_queued = max_queued;
    return c;
  }

  std::size_t readers_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
