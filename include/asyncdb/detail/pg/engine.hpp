#pragma once
// The lanes of one PostgreSQL database: `writers` connections to the primary sharing one queue, and
// `readers` connections per replica (or read-only ones to the primary) sharing another.
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/grace_timer.hpp>
#include <asyncdb/detail/hold_watch.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/lane_group.hpp>
#include <asyncdb/detail/pg/canceller.hpp>
#include <asyncdb/detail/pg/config.hpp>
#include <asyncdb/detail/pg/lane.hpp>
#include <asyncdb/error.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace asyncdb::detail::pg {

struct engine_config {
  std::string primary;
  std::vector<std::string> replicas;
  std::size_t writers = 4;
  std::size_t readers = 2;
  std::size_t max_queued = 65536;
  std::chrono::seconds connect_timeout{5};
  std::chrono::milliseconds close_grace{5000};
  lane_settings settings;
  std::chrono::nanoseconds operation_budget{0};  // saturated; zero is none
  std::chrono::milliseconds hold_threshold{0};   // zero is off
  hold_observer on_hold;
};

class engine : public engine_intake {
 public:
  explicit engine(engine_config cfg)
      : engine_intake(cfg.max_queued, cfg.readers),
        cfg_(std::move(cfg)),
        cancels_(cfg_.connect_timeout.count() > 0 ? cfg_.connect_timeout : std::chrono::seconds(5)) {
    cfg_.settings.written_lsn = &written_lsn_;
    if (cfg_.writers == 0) throw std::invalid_argument("asyncdb: postgres::options::writers must be at least 1");
    try {
      const std::string primary = with_connect_timeout(cfg_.primary, cfg_.connect_timeout);
      for (std::size_t i = 0; i < cfg_.writers; ++i) {
        add_lane(primary, true, false, {connection_role::writer, i}, writer_queue_);
      }
      std::size_t reader = 0;
      if (cfg_.replicas.empty()) {
        for (std::size_t i = 0; i < cfg_.readers; ++i) {
          add_lane(primary, false, true, {connection_role::reader, reader++}, reader_queue_);
        }
      }
      for (std::size_t r = 0; r < cfg_.replicas.size(); ++r) {
        const std::string replica = with_connect_timeout(cfg_.replicas[r], cfg_.connect_timeout);
        for (std::size_t i = 0; i < cfg_.readers; ++i) {
          add_lane(replica, false, true, {connection_role::reader, reader++, static_cast<int>(r)}, reader_queue_);
        }
      }
      if (cfg_.hold_threshold.count() > 0 && cfg_.on_hold) {
        std::vector<watched_connection> watched;
        for (const auto& l : lanes_.all()) {
          watched.push_back({&l->holds(), l->is_writer() ? &writer_queue_ : &reader_queue_, l->role()});
        }
        hold_watch_.emplace(std::move(watched), cfg_.hold_threshold, cfg_.on_hold);
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
    lanes_.refuse_close_from_own_thread("postgres::database");
    stop();
  }

  bool on_own_thread() const noexcept { return lanes_.contains_current_thread(); }

  std::chrono::nanoseconds operation_budget() const noexcept { return cfg_.operation_budget; }
  // The operation observer, or null when unset: told of an operation refused or cancelled before it ran.
  const std::shared_ptr<const operation_observer>& observer() const noexcept { return observer_; }
  const std::vector<std::unique_ptr<lane>>& lanes() const noexcept { return lanes_.all(); }

 private:
  void add_lane(const std::string& conninfo, bool writer, bool read_only, const connection_role& role, job_queue& q) {
    std::atomic<int>& connected = &q == &writer_queue_ ? connected_writers_ : connected_readers_;
    lanes_.add(
        std::make_unique<lane>(conninfo, writer, read_only, role, cfg_.settings, q, connected, counters_, cancels_));
  }

  // Intake stops, sessions end, each lane drains its queue and closes its connection on its own thread;
  // the canceller goes last, as lanes may wait for its requests. Past close_grace every lane starts nothing
  // more and what runs is cancelled on the server, again every grace_repeat until it ends (a cancel
  // only stops the statement running as it arrives); a connection whose cancel request has gone unanswered
  // for connect_timeout has its socket shut down. Idempotent.
  void stop() noexcept {
    std::lock_guard lock(stop_mutex_);
    hold_watch_.reset();  // nothing is reported once close() has begun
    stop_intake();
    for (const auto& l : lanes_.all()) l->stop_sessions();
    {
      grace_timer timer(
          cfg_.close_grace,
          [this] {
            for (const auto& l : lanes_.all()) l->interrupt_for_close();
          },
          grace_repeat);
      for (const auto& l : lanes_.all()) l->join();
    }
    cancels_.stop();
  }

  static constexpr std::chrono::milliseconds grace_repeat{100};

  std::atomic<std::uint64_t> written_lsn_{0};
  std::atomic<int> connected_writers_{0};  // lanes of each queue with a connection now (lane::count_connected)
  std::atomic<int> connected_readers_{0};
  engine_config cfg_;
  std::shared_ptr<const operation_observer> observer_ =
      cfg_.settings.observer ? std::make_shared<const operation_observer>(cfg_.settings.observer) : nullptr;
  canceller cancels_;
  lane_group<lane> lanes_;
  std::optional<hold_watch> hold_watch_;  // hold_threshold; stopped first in stop()
  std::mutex stop_mutex_;
};

}  // namespace asyncdb::detail::pg
