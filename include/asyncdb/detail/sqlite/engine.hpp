#pragma once
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/completion_batch.hpp>
#include <asyncdb/detail/grace_timer.hpp>
#include <asyncdb/detail/hold_watch.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/lane_group.hpp>
#include <asyncdb/detail/sqlite/group_commit.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>
#include <asyncdb/detail/sqlite/sqlite.hpp>
#include <asyncdb/error.hpp>
#include <asyncdb/options.hpp>
#include <asyncdb/stats.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The lanes of one database file: one writer with its own queue, `readers` readers sharing one.
class engine : public engine_intake {
 public:
  engine(const std::filesystem::path& path, options opts)
      : engine_intake(opts.max_queued, opts.readers, opts.poll_before_sleep), opts_(std::move(opts)) {
    if (is_private_database(path)) throw system_error(errc::memory_database, "asyncdb: '" + path.string() + "'");
    writer_queue_.keep_open(opts_.readers > 0);  // until the readers, which may hand it writes, are gone
    try {
      // One at a time, writer first: it creates the file and switches it to WAL, which the
      // read-only connections cannot do, and on_open sees connections in a fixed order.
      lanes_.add(std::make_unique<lane>(connection_role{connection_role::writer, 0}, path, opts_, writer_queue_,
                                        counters_, &group_commit::serve, readers_closed_.get_future().share(),
                                        &reader_queue_));
      for (std::size_t i = 0; i < opts_.readers; ++i) {
        lanes_.add(std::make_unique<lane>(connection_role{connection_role::reader, i}, path, opts_, reader_queue_,
                                          counters_, &lane::serve_one_by_one, std::shared_future<void>{}, nullptr,
                                          &batches_.add()));
      }
      batches_.start();
      if (opts_.hold_threshold.count() > 0 && opts_.on_hold) {
        hold_watch_.emplace(std::vector<watched_connection>{{&lanes_[0].holds(), &writer_queue_, lanes_[0].role()}},
                            opts_.hold_threshold, opts_.on_hold);
      }
    } catch (...) {
      stop();
      throw;
    }
  }

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;
  ~engine() { stop(); }

  void close() {
    lanes_.refuse_close_from_own_thread("database");
    stop();
  }

  bool on_own_thread() const noexcept { return lanes_.contains_current_thread(); }

  std::chrono::nanoseconds operation_budget() const noexcept { return budget_; }
  // The operation observer, or null when unset: told of an operation refused or cancelled before it ran.
  const std::shared_ptr<const operation_observer>& observer() const noexcept { return observer_; }

  stats snapshot() const {
    stats s;
    fill_stats(s);
    const counters& c = *counters_;
    s.group_commits = c.group_commits.load(std::memory_order_relaxed);
    s.grouped = c.grouped.load(std::memory_order_relaxed);
    s.rerouted = c.rerouted.load(std::memory_order_relaxed);
    if (!lanes_.empty()) s.writer = lanes_[0].holder();
    return s;
  }

 private:
  // Intake stops first, then sessions end, then each lane drains its queue and closes its
  // connection on its own thread; joining is last. Idempotent and safe from several threads. A timer
  // bounds the draining: past options::close_grace every lane is interrupted (see lane::interrupt_for_close).
  void stop() noexcept {
    std::lock_guard lock(stop_mutex_);
    if (stopped_) return;
    hold_watch_.reset();  // nothing is reported once close() has begun
    stop_intake();
    for (const auto& l : lanes_.all()) l->stop_sessions();
    grace_timer timer(opts_.close_grace, [this] {
      for (const auto& l : lanes_.all()) l->interrupt_for_close();
    });
    for (std::size_t i = 1; i < lanes_.size(); ++i) lanes_[i].join();
    writer_queue_.keep_open(false);
    if (!readers_closed_set_) {
      readers_closed_.set_value();
      readers_closed_set_ = true;
    }
    if (!lanes_.empty()) lanes_[0].join();
    batches_.stop();  // the lanes have posted what they held back before they ended
    stopped_ = true;
  }

  options opts_;
  std::chrono::nanoseconds budget_ = saturated_ns(opts_.operation_budget);
  std::shared_ptr<const operation_observer> observer_ =
      opts_.observer ? std::make_shared<const operation_observer>(opts_.observer) : nullptr;
  std::promise<void> readers_closed_;  // the writer's connection closes after every reader's
  bool readers_closed_set_ = false;
  batch_watch batches_;  // the readers' completion batches: outlives the lanes that use them
  lane_group<lane> lanes_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
  std::optional<hold_watch> hold_watch_;  // options::hold_threshold; stopped first in stop()
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
