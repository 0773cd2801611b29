#pragma once
#include <asyncdb/detail/connection.hpp>
#include <asyncdb/detail/dao_cache.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/session_state.hpp>
#include <asyncdb/error.hpp>
#include <asyncdb/options.hpp>
#include <asyncdb/stats.hpp>

#include <algorithm>
#if defined(__linux__)
#include <pthread.h>
#endif
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

namespace asyncdb::detail {

enum class lane_role { writer, reader };

// One thread that owns one connection from open to close and executes the jobs of one queue.
// The connection is only ever touched on this thread, except sqlite3_interrupt, which SQLite
// allows from any thread while the connection is open.
class lane {
 public:
  // How a lane serves its queue: the plain loop, or the writer's group commit.
  using serve_fn = void (*)(lane&, job_queue&, const options&);

  static void serve_one_by_one(lane& l, job_queue& q, const options&) {
    while (auto j = q.pop()) j->execute(l);
  }

  // `close_after` (optional) is waited for before the connection closes: the writer closes last, so
  // that SQLite checkpoints the WAL and removes the -wal and -shm files.
  lane(lane_role role, std::filesystem::path path, const options& opts, job_queue& queue, std::shared_ptr<counters> c,
       serve_fn serve = &serve_one_by_one, std::shared_future<void> close_after = {})
      : role_(role),
        path_(std::move(path)),
        opts_(opts),
        queue_(queue),
        counters_(std::move(c)),
        serve_(serve),
        close_after_(std::move(close_after)) {}
  lane(const lane&) = delete;
  lane& operator=(const lane&) = delete;
  ~lane() { join(); }

  // Opens the connection on the new thread and runs on_open there; rethrows what they threw.
  void start() {
    std::promise<void> opened;
    auto ready = opened.get_future();
    thread_ = std::thread([this, opened = std::move(opened)]() mutable { main(opened); });
    ready.get();
  }

  void join() noexcept {
    if (thread_.joinable()) thread_.join();
  }

  bool on_this_thread() const noexcept { return thread_.get_id() == std::this_thread::get_id(); }
  bool is_writer() const noexcept { return role_ == lane_role::writer; }

  // --- on the lane's thread --------------------------------------------------------------------
  SQLite::Database& connection() noexcept { return *db_; }
  sqlite3* handle() const noexcept { return db_->getHandle(); }
  // A DAO's constructor may prepare statements that write; preparing is not writing, so the
  // write watch looks away while a DAO is built.
  template <class Dao>
  Dao& dao() {
    struct look_away {
      bool& watching;
      bool saved = std::exchange(watching, false);
      ~look_away() { watching = saved; }
    } guard{watching_writes_};
    return daos_.get<Dao>(*db_);
  }
  counters& stats_counters() noexcept { return *counters_; }
  const std::shared_ptr<counters>& shared_counters() const noexcept { return counters_; }

  // Brings the connection back to a clean state after an operation and decides its outcome.
  // Outside a session nothing may survive a lease: an open transaction is rolled back, and turned
  // into an error if the operation claimed success, so a write is never silently dropped.
  // Inside a session the transaction belongs to the session, unless a cancellation hit it.
  std::exception_ptr settle(std::exception_ptr ep, bool cancelled, session_state* s, bool txn_before) {
    sqlite3* db = handle();
    reset_statements(db);
    if (s == nullptr) {
      if (rollback_reset(db) && !ep) ep = std::make_exception_ptr(std::system_error(errc::transaction_left_open));
    } else if (cancelled && (txn_before || in_transaction(db))) {
      rollback_reset(db);
      s->aborted = true;
    }
    return ep;
  }

  void run_control(control_statements::which w) { controls_.run(handle(), w); }
  // Commits seen on this connection (the commit hook's count), to tell a commit from a rollback.
  std::uint64_t commits() const noexcept { return commits_; }

  // --- write watch: readers only, for operations whose route is still being detected -----------
  void watch_writes() noexcept {
    write_attempted_ = false;
    watching_writes_ = true;
  }

  // Ends the watch; returns whether the operation tried to write. The authorizer sees statements
  // prepared meanwhile; the VM-step counters see statements prepared earlier (a DAO's members), so
  // even a DAO that swallowed SQLITE_READONLY is caught.
  bool stop_watching() noexcept {
    watching_writes_ = false;
    bool wrote = write_attempted_;
    sqlite3* db = handle();
    for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s != nullptr; s = sqlite3_next_stmt(db, s)) {
      if (sqlite3_stmt_readonly(s) == 0 && sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 1) > 0) {
        wrote = true;
        sqlite3_reset(s);  // else it keeps SQLITE_READONLY, and SQLiteCpp's next reset() would throw it
      }
    }
    return wrote;
  }

  // --- interrupt guard: any thread, only while one of this lane's operations runs ---------------
  // Inside a group commit only the first operation may be interrupted: SQLite answers an interrupted
  // write by rolling back the whole transaction, which would take the others' writes with it.
  void set_interruptible(bool yes) noexcept { interruptible_.store(yes, std::memory_order_relaxed); }

  void interrupt() noexcept {
    if (!interruptible_.load(std::memory_order_relaxed)) return;
    {
      std::lock_guard lock(interrupt_mutex_);
      interrupted_.store(true, std::memory_order_relaxed);
    }
    interrupt_cv_.notify_all();
    sqlite3_interrupt(handle());
  }

  // Called by the lane once an operation is marked done: no interrupt for it can arrive after that,
  // so clearing here means no interrupt ever reaches the next lease.
  void clear_interrupt() noexcept {
    std::lock_guard lock(interrupt_mutex_);
    interrupted_.store(false, std::memory_order_relaxed);
  }

  // --- who holds the connection, for stats() ----------------------------------------------------
  void hold(writer_holder::kind what, std::string_view name) noexcept {
    std::lock_guard lock(holder_mutex_);
    holder_what_ = what;
    holder_name_ = name;
    holder_since_ = std::chrono::steady_clock::now();
  }
  void release_hold() noexcept { hold(writer_holder::kind::none, {}); }
  writer_holder holder() const {
    std::lock_guard lock(holder_mutex_);
    writer_holder h;
    h.what = holder_what_;
    if (h.what != writer_holder::kind::none) {
      h.name = std::string(holder_name_);
      h.held_for = std::chrono::steady_clock::now() - holder_since_;
    }
    return h;
  }

  // --- sessions ---------------------------------------------------------------------------------
  // Serves one session until it is released (its queue closed and drained), then rolls back what
  // it left open. False, without serving, when the database is closing.
  bool serve_session(const std::shared_ptr<session_state>& s, std::string_view name,
                     const std::function<void()>& granted) {
    {
      std::lock_guard lock(session_mutex_);
      if (stopping_) return false;
      session_ = s;
    }
    hold(writer_holder::kind::session, name);
    granted();
    while (auto j = s->queue.pop()) j->execute(*this);
    rollback_if_open(handle());
    release_hold();
    std::lock_guard lock(session_mutex_);
    session_.reset();
    return true;
  }

  // Refuses new sessions and ends the one being served: what it already queued still runs, then
  // its open transaction is rolled back.
  void stop_sessions() {
    std::lock_guard lock(session_mutex_);
    stopping_ = true;
    if (session_) session_->queue.close(make_error_code(errc::closed));
  }

  bool stopping() {
    std::lock_guard lock(session_mutex_);
    return stopping_;
  }

 private:
  void main(std::promise<void>& opened) {
#if defined(__linux__)
    // Visible in top, perf and gdb; the name is best effort (15 characters at most).
    pthread_setname_np(pthread_self(), role_ == lane_role::writer ? "asyncdb-writer" : "asyncdb-reader");
#endif
    try {
      open();
    } catch (...) {
      daos_.clear();
      db_.reset();
      opened.set_exception(std::current_exception());
      return;
    }
    opened.set_value();
    serve_(*this, queue_, opts_);
    if (close_after_.valid()) close_after_.wait();
    daos_.clear();
    controls_.finalize();
    db_.reset();
  }

  void open() {
    const bool writer = role_ == lane_role::writer;
    const int flags = (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) |
                      SQLITE_OPEN_NOMUTEX;  // one thread per connection: SQLite's own mutex is waste
    try {
      db_.emplace(path_, flags);
    } catch (const SQLite::Exception& e) {
      throw SQLite::Exception("asyncdb: cannot open '" + path_.string() + "': " + e.what(), e.getErrorCode());
    }
    sqlite3* h = handle();
    // The busy handler goes first, before any statement: even the WAL pragma can meet a lock.
    sqlite3_busy_handler(h, &lane::on_busy, this);
    sqlite3_progress_handler(h, 1000, &lane::on_progress, this);
    sqlite3_commit_hook(h, &lane::on_commit, this);
    if (!writer) sqlite3_set_authorizer(h, &lane::on_authorize, this);
    if (writer) {
      const std::string mode = db_->execAndGet("PRAGMA journal_mode=WAL").getString();
      if (mode != "wal") {
        throw SQLite::Exception("asyncdb: cannot use WAL on '" + path_.string() + "' (journal_mode is " + mode +
                                    "); readers would block the writer",
                                SQLITE_ERROR);
      }
    }
    if (opts_.on_open) opts_.on_open(*db_);
    if (rollback_if_open(h)) throw std::system_error(errc::transaction_left_open, "asyncdb: on_open");
  }

  // Our own busy handler instead of sqlite3_busy_timeout: the same waiting, but a cancellation
  // wakes it at once instead of after the whole timeout.
  static int on_busy(void* self, int count) noexcept {
    using namespace std::chrono;
    static constexpr int delays_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    auto& l = *static_cast<lane*>(self);
    const auto now = steady_clock::now();
    if (count == 0) l.busy_since_ = now;
    const auto left = l.opts_.busy_timeout - duration_cast<milliseconds>(now - l.busy_since_);
    if (left <= milliseconds::zero()) return 0;
    const auto delay = std::min(milliseconds(delays_ms[std::min(count, 11)]), left);
    std::unique_lock lock(l.interrupt_mutex_);
    l.interrupt_cv_.wait_for(lock, delay, [&] { return l.interrupted_.load(std::memory_order_relaxed); });
    return l.interrupted_.load(std::memory_order_relaxed) ? 0 : 1;
  }

  // sqlite3_interrupt is lost when it lands between two statements; this catches the next long one.
  static int on_progress(void* self) noexcept {
    return static_cast<lane*>(self)->interrupted_.load(std::memory_order_relaxed) ? 1 : 0;
  }

  // A statement too short to reach the progress handler may still run after a cancellation; turning
  // its commit into a rollback guarantees that a cancelled operation never commits a write.
  static int on_commit(void* self) noexcept {
    if (on_progress(self) != 0) return 1;
    ++static_cast<lane*>(self)->commits_;
    return 0;
  }

  static int on_authorize(void* self, int action, const char*, const char*, const char*, const char*) noexcept {
    auto& l = *static_cast<lane*>(self);
    const bool writes = (action >= SQLITE_CREATE_INDEX && action <= SQLITE_INSERT) || action == SQLITE_UPDATE ||
                        (action >= SQLITE_ALTER_TABLE && action <= SQLITE_DROP_VTABLE);
    if (writes && l.watching_writes_) l.write_attempted_ = true;
    return SQLITE_OK;
  }

  const lane_role role_;
  const std::filesystem::path path_;
  const options& opts_;
  job_queue& queue_;
  std::shared_ptr<counters> counters_;
  serve_fn serve_;
  std::shared_future<void> close_after_;
  std::optional<SQLite::Database> db_;
  dao_cache daos_;  // declared after db_: destroyed first
  control_statements controls_;
  std::thread thread_;
  std::uint64_t commits_ = 0;
  bool watching_writes_ = false;
  bool write_attempted_ = false;
  std::atomic<bool> interruptible_{true};

  std::mutex interrupt_mutex_;
  std::condition_variable interrupt_cv_;
  std::atomic<bool> interrupted_{false};
  std::chrono::steady_clock::time_point busy_since_{};

  mutable std::mutex holder_mutex_;
  writer_holder::kind holder_what_ = writer_holder::kind::none;
  std::string_view holder_name_;
  std::chrono::steady_clock::time_point holder_since_{};

  std::mutex session_mutex_;
  std::shared_ptr<session_state> session_;
  bool stopping_ = false;
};

}  // namespace asyncdb::detail
