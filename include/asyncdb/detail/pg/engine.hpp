#pragma once
// The lanes of one PostgreSQL database: `writers` connections to the primary sharing one queue, and
// `readers` connections per replica (or read-only ones to the primary) sharing another.
#include <asyncdb/detail/counters.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/pg/canceller.hpp>
#include <asyncdb/detail/pg/config.hpp>
#include <asyncdb/detail/pg/lane.hpp>
#include <asyncdb/error.hpp>

#include <chrono>
#include <memory>
#include <mutex>
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
  lane_settings settings;
};

class engine {
 public:
  explicit engine(engine_config cfg)
      : cfg_(std::move(cfg)), counters_(make_counters(cfg_)), writer_queue_(counters_), reader_queue_(counters_) {
    cfg_.settings.written_lsn = &written_lsn_;
    if (cfg_.writers == 0) throw std::invalid_argument("asyncdb: postgres::options::writers must be at least 1");
    cancels_.start();
    try {
      const std::string primary = with_connect_timeout(cfg_.primary, cfg_.connect_timeout);
      for (std::size_t i = 0; i < cfg_.writers; ++i) add_lane(primary, true, false, false, writer_queue_);
      if (cfg_.replicas.empty()) {
        for (std::size_t i = 0; i < cfg_.readers; ++i) add_lane(primary, false, true, false, reader_queue_);
      }
      for (const std::string& r : cfg_.replicas) {
        const std::string replica = with_connect_timeout(r, cfg_.connect_timeout);
        for (std::size_t i = 0; i < cfg_.readers; ++i) add_lane(replica, false, true, true, reader_queue_);
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
    if (on_own_thread()) {
      throw std::logic_error(
          "asyncdb: postgres::database::close() called from one of its own threads (inside an operation); it "
          "would wait for itself");
    }
    stop();
  }

  bool on_own_thread() const noexcept {
    for (const auto& l : lanes_) {
      if (l->on_this_thread()) return true;
    }
    return false;
  }

  static void close_in_background(std::unique_ptr<engine> e) {
    e->writer_queue_.close(make_error_code(errc::closed));
    e->reader_queue_.close(make_error_code(errc::closed));
    engine* raw = e.release();
    try {
      std::thread([raw] { delete raw; }).detach();
    } catch (...) {
      // No thread to close it on: leaking the connections beats terminating inside a destructor.
    }
  }

  job_queue& queue(bool read_only) noexcept { return read_only && has_readers() ? reader_queue_ : writer_queue_; }
  bool has_readers() const noexcept { return cfg_.readers > 0; }
  counters& stats_counters() noexcept { return *counters_; }
  const std::vector<std::unique_ptr<lane>>& lanes() const noexcept { return lanes_; }

 private:
  static std::shared_ptr<counters> make_counters(const engine_config& c) {
    auto p = std::make_shared<counters>();
    p->max_queued = c.max_queued;
    return p;
  }

  void add_lane(const std::string& conninfo, bool writer, bool read_only, bool on_replica, job_queue& q) {
    lanes_.push_back(
        std::make_unique<lane>(conninfo, writer, read_only, on_replica, cfg_.settings, q, counters_, cancels_));
    lanes_.back()->start();
  }

  // Intake stops, sessions end, each lane drains its queue and closes its connection on its own thread;
  // the canceller goes last, as lanes may wait for its requests. Idempotent.
  void stop() noexcept {
    std::lock_guard lock(stop_mutex_);
    writer_queue_.close(make_error_code(errc::closed));
    reader_queue_.close(make_error_code(errc::closed));
    for (auto& l : lanes_) l->stop_sessions();
    for (auto& l : lanes_) l->join();
    cancels_.stop();
  }

  std::atomic<std::uint64_t> written_lsn_{0};
  engine_config cfg_;
  std::shared_ptr<counters> counters_;
  job_queue writer_queue_;
  job_queue reader_queue_;
  canceller cancels_;
  std::vector<std::unique_ptr<lane>> lanes_;
  std::mutex stop_mutex_;
};

}  // namespace asyncdb::detail::pg
