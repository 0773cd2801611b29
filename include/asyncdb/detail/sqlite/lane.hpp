#pragma once
// A lane: one thread, the connection it owns from open to close, and the loop that serves one queue.
#include <asyncdb/detail/completion_batch.hpp>
#include <asyncdb/detail/holder.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/lane_thread.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/session_slot.hpp>
#include <asyncdb/detail/sqlite/connection.hpp>
#include <asyncdb/error.hpp>
#include <asyncdb/options.hpp>
#include <asyncdb/stats.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <source_location>
#include <string_view>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The connection is only ever touched on the lane's thread (connection::interrupt excepted).
class lane {
 public:
  // How a lane serves its queue: the plain loop, or the writer's group commit.
  using serve_fn = void (*)(lane&, job_queue&, const options&);

  // With a batch, a completion that finishes while more jobs wait may be held back (completion_batch).
  static void serve_one_by_one(lane& l, job_queue& q, const options&) {
    if (l.batch_ == nullptr) {
      while (auto j = q.pop()) j->execute(l);
      return;
    }
    const completion_batch::scope batching(*l.batch_);
    while (auto j = q.pop()) {
      l.batch_->more_work(q.size() > 0);
      j->execute(l);
      l.batch_->flush_if_due();
    }
  }

  // `close_after` (optional) is waited for before the connection closes: the writer closes last, so
  // that SQLite checkpoints the WAL and removes the -wal and -shm files.
  lane(connection_role role, std::filesystem::path path, const options& opts, job_queue& queue,
       std::shared_ptr<counters> c, serve_fn serve = &serve_one_by_one, std::shared_future<void> close_after = {},
       job_queue* readers = nullptr, completion_batch* batch = nullptr)
      : writer_(role.is_writer()),
        role_(role),
        path_(std::move(path)),
        opts_(opts),
        queue_(queue),
        counters_(std::move(c)),
        serve_(serve),
        close_after_(std::move(close_after)),
        readers_(readers),
        batch_(batch) {}
  lane(const lane&) = delete;
  lane& operator=(const lane&) = delete;
  // Opens the connection on the lane's thread and runs on_open there; rethrows what they threw.
  void start() {
    thread_.start(writer_ ? "asyncdb-writer" : "asyncdb-reader", [this](std::promise<void>& opened) { main(opened); });
  }
  void join() noexcept { thread_.join(); }

  // Any thread: close()'s grace is over (see connection::interrupt_for_close). Under conn_mutex_, so the
  // connection cannot close meanwhile.
  void interrupt_for_close() noexcept {
    std::lock_guard lock(conn_mutex_);
    if (conn_) conn_->interrupt_for_close();
  }

  // On the writer's thread, between two operations: the checkpoint policy, new reads held back meanwhile.
  void checkpoint_if_due() noexcept {
    if (!conn_->checkpoint_due()) return;
    if (readers_ != nullptr) readers_->hold(true);
    conn_->checkpoint();
    if (readers_ != nullptr) readers_->hold(false);
  }

  bool on_this_thread() const noexcept { return thread_.is_current(); }
  bool is_writer() const noexcept { return writer_; }

  // For the operation observer: the settings (its hook), which connection this is, and the group commit
  // whose members are being completed (size 0 outside one; set by group_commit).
  const options& settings() const noexcept { return opts_; }
  const connection_role& role() const noexcept { return role_; }
  struct group_outcome {
    std::size_t size = 0;
    bool committed = false;
  };
  void completing_group(group_outcome g) noexcept { group_ = g; }
  group_outcome completing_group() const noexcept { return group_; }

  // On the lane's thread only.
  connection& conn() noexcept { return *conn_; }
  counters& stats_counters() noexcept { return *counters_; }
  const std::shared_ptr<counters>& shared_counters() const noexcept { return counters_; }

  // Who holds the connection, for stats() and the hold watchdog; any thread.
  void hold(writer_holder::kind what, const op_name& name) noexcept { holder_.hold(what, name); }
  void release_hold() noexcept { holder_.release(); }
  const connection_holder& holds() const noexcept { return holder_; }
  writer_holder holder() const { return holder_.snapshot(); }

  // Serves one session until it is released (its queue closed and drained), then rolls back what it
  // left open. False, without serving, when the database is closing.
  bool serve_session(const std::shared_ptr<session_state>& s, const op_name& name,
                     const std::function<void()>& granted) {
    if (!sessions_.enter(s)) return false;
    hold(writer_holder::kind::session, name);
    // A reader refuses writes by itself; the writer serving a read session (readers = 0) must too, or a
    // write would succeed at its co_await and then be rolled back with the session.
    const bool refuse_writes = s->read_only && writer_;
    if (refuse_writes) conn_->query_only(true);
    granted();
    while (auto j = s->queue.pop()) j->execute(*this);
    rollback_if_open(conn_->handle());
    if (refuse_writes) conn_->query_only(false);
    release_hold();
    sessions_.leave();
    return true;
  }

  // Refuses new sessions and ends the one being served: what it already queued still runs, then its
  // open transaction is rolled back.
  void stop_sessions() { sessions_.stop(); }

 private:
  void main(std::promise<void>& opened) {
    std::exception_ptr failed;
    try {
      std::lock_guard lock(conn_mutex_);
      conn_.emplace(role_, path_, opts_);
    } catch (...) {
      failed = std::current_exception();
    }
    if (failed) {  // handed over outside the catch block, which would release its reference late
      close_connection();
      opened.set_exception(std::move(failed));
      return;
    }
    opened.set_value();
    serve_(*this, queue_, opts_);
    if (close_after_.valid()) close_after_.wait();
    close_connection();
  }

  void close_connection() noexcept {
    std::lock_guard lock(conn_mutex_);
    conn_.reset();
  }

  const bool writer_;
  const connection_role role_;
  const std::filesystem::path path_;
  const options& opts_;
  job_queue& queue_;
  std::shared_ptr<counters> counters_;
  serve_fn serve_;
  std::shared_future<void> close_after_;
  job_queue* const readers_;       // the writer's: the readers' queue, held during a checkpoint
  completion_batch* const batch_;  // a reader's, owned by the engine's batch_watch
  std::mutex conn_mutex_;          // guards opening and closing conn_ against interrupt_for_close
  std::optional<connection> conn_;

  connection_holder holder_;

  group_outcome group_;  // on the lane's thread only

  session_slot sessions_;
  lane_thread thread_;  // last: joined before the members its thread uses are destroyed
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
