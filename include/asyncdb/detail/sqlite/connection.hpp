#pragma once
// The SQLite side of a lane: everything asyncdb knows about SQLite sits behind this one type.
#include <asyncdb/detail/completion_batch.hpp>
#include <asyncdb/detail/dao_cache.hpp>
#include <asyncdb/detail/interruptible.hpp>
#include <asyncdb/detail/on_open.hpp>
#include <asyncdb/detail/session_state.hpp>
#include <asyncdb/detail/sqlite/sqlite.hpp>
#include <asyncdb/error.hpp>
#include <asyncdb/options.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// What a watch looks for while one operation runs (see connection::watch).
enum class watch_for : unsigned char { nothing, writes, transactions };

// How the interrupt guard saw the lease that just ended. An interrupt is refused once something committed, and
// a commit after an interrupt is refused: a cancelled lease either committed or had its commits refused.
struct lease_end {
  bool committed = false;       // the commit hook let a commit of the operation through
  bool commit_refused = false;  // the commit hook turned a commit of it into a rollback
};

// One SQLite connection, opened, used and closed on its lane's thread; only interrupt() may be called
// from another thread, and only while one of this connection's operations runs (operation_base
// guarantees it: it calls interrupt() under its own lock, in its running state).
class connection final : public interruptible {
 public:
  // Opens `path` (read-write and WAL for the writer, read-only for a reader), installs the hooks and
  // runs on_open. Throws SQLite::Exception naming the path, or what on_open threw naming the connection.
  connection(const connection_role& role, const std::filesystem::path& path, const options& opts)
      : writer_(role.is_writer()),
        opts_(opts),
        wal_path_(path.string() + "-wal"),
        checkpoint_at_(opts.wal_checkpoint_bytes) {
    const int flags = (writer_ ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY) |
                      SQLITE_OPEN_NOMUTEX;  // one thread per connection: SQLite's own mutex is waste
    std::string mode;
    // SQLite opens lazily: a file that is not a database, or that the writer may not write, fails at the
    // WAL pragma, the first statement; that error names the path too.
    try {
      db_.emplace(path, flags);
      sqlite3* h = handle();
      // The busy handler goes first, before any statement: even the WAL pragma can meet a lock. The
      // authorizer is set once: setting it expires every prepared statement.
      sqlite3_busy_handler(h, &connection::on_busy, this);
      sqlite3_progress_handler(h, 1000, &connection::on_progress, this);
      sqlite3_commit_hook(h, &connection::on_commit, this);
      sqlite3_set_authorizer(h, &connection::on_authorize, this);
      if (writer_) mode = db_->execAndGet("PRAGMA journal_mode=WAL").getString();
    } catch (const SQLite::Exception& e) {
      throw SQLite::Exception("asyncdb: cannot open '" + path.string() + "': " + e.what(), e.getErrorCode());
    }
    if (writer_ && mode != "wal") {
      throw SQLite::Exception("asyncdb: cannot use WAL on '" + path.string() + "' (journal_mode is " + mode +
                                  "); readers would block the writer",
                              SQLITE_ERROR);
    }
    run_on_open<SQLite::Exception>(opts_.on_open, *db_, role, [](const SQLite::Exception& e, const std::string& name) {
      return SQLite::Exception(name + e.what(), e.getErrorCode());
    });
    if (rollback_if_open(handle())) {
      throw system_error(errc::transaction_left_open, "asyncdb: on_open on " + role.name());
    }
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // DAOs and prepared statements first: a connection cannot close with statements left.
  ~connection() {
    daos_.clear();
    controls_.finalize();
  }

  SQLite::Database& database() noexcept { return *db_; }
  sqlite3* handle() const noexcept { return db_->getHandle(); }
  bool is_writer() const noexcept { return writer_; }

  // A DAO's constructor may prepare statements that write or BEGIN; preparing is not doing, so the
  // watch looks away while a DAO is built.
  template <class Dao>
  Dao& dao() {
    const watch_for saved = std::exchange(watching_, watch_for::nothing);
    struct restore {
      connection& c;
      watch_for w;
      ~restore() { c.watching_ = w; }
    } guard{*this, saved};
    return daos_.get<Dao>(*db_);
  }

  // Starts watching the running operation: for writes on a reader (route detection), for transaction
  // statements on the writer (group commit). The authorizer sees statements prepared meanwhile.
  void watch(watch_for what) noexcept {
    seen_ = false;
    watching_ = what;
  }

  // Ends the watch; returns whether the operation did what was watched for. For writes, the VM-step
  // counters also see statements prepared earlier (a DAO's members), so even a DAO that swallowed
  // SQLITE_READONLY is caught.
  bool stop_watching() noexcept {
    const watch_for what = std::exchange(watching_, watch_for::nothing);
    if (what != watch_for::writes) return seen_;
    sqlite3* db = handle();
    for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s != nullptr; s = sqlite3_next_stmt(db, s)) {
      if (sqlite3_stmt_readonly(s) == 0 && sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 1) > 0) {
        seen_ = true;
        sqlite3_reset(s);  // else it keeps SQLITE_READONLY, and SQLiteCpp's next reset() would throw it
      }
    }
    return seen_;
  }

  // Any thread. Stops the running operation at its next statement (or wait for a lock), unless it has
  // already committed something: then it runs to its end, so that "aborted" always means "nothing of
  // it is in the database".
  void interrupt() noexcept override {
    {
      std::lock_guard lock(guard_mutex_);
      if (committed_) return;
      interrupted_.store(true, std::memory_order_relaxed);
    }
    guard_cv_.notify_all();
    sqlite3_interrupt(handle());
  }

  // Any thread, while the connection is open (lane::interrupt_for_close guarantees it): close()'s grace
  // is over. Every statement from now on stops at its next progress check or lock wait; what already
  // committed stays committed, and the operation fails with SQLITE_INTERRUPT.
  void interrupt_for_close() noexcept {
    {
      std::lock_guard lock(guard_mutex_);
      closing_.store(true, std::memory_order_relaxed);
    }
    guard_cv_.notify_all();
    sqlite3_interrupt(handle());
  }

  // Whether close()'s grace is over: the lane then starts nothing more.
  bool closing() const noexcept { return closing_.load(std::memory_order_relaxed); }

  // Called as an operation starts running: commits before it (on_open's, a previous lease's) do not
  // make it uninterruptible. `queued_at` is when the operation was queued (see on_busy).
  void begin_lease(std::chrono::steady_clock::time_point queued_at) noexcept override {
    std::lock_guard lock(guard_mutex_);
    committed_ = commit_refused_ = false;
    lease_queued_at_ = queued_at;
  }

  // Called once the operation can no longer be interrupted (operation_base left `running`), so no
  // interrupt meant for it ever reaches the next lease.
  lease_end end_lease() noexcept {
    std::lock_guard lock(guard_mutex_);
    const lease_end e{committed_, commit_refused_};
    interrupted_.store(false, std::memory_order_relaxed);
    if (!gave_up_) blocked_since_ = {};
    gave_up_ = false;
    committed_ = commit_refused_ = false;
    return e;
  }

  // Brings the connection back to a clean state after an operation and decides its outcome. Outside a
  // session nothing may survive a lease: an open transaction is rolled back, and turned into an error
  // if the operation claimed success, so a write is never silently dropped. Inside a write session the
  // transaction belongs to the session, unless an interrupt hit it; a read session's snapshot survives
  // one (SQLite rolls nothing back for an interrupted read).
  std::exception_ptr settle(std::exception_ptr ep, bool aborted, session_state* s, bool txn_before) {
    sqlite3* db = handle();
    reset_statements(db);
    if (s == nullptr) {
      if (rollback_reset(db) && !ep) ep = std::make_exception_ptr(system_error(errc::transaction_left_open));
    } else if (aborted && !s->read_only && (txn_before || in_transaction(db))) {
      rollback_reset(db);
      s->aborted = true;
    }
    return ep;
  }

  void run_control(control_statements::which w) { controls_.run(handle(), w); }

  // While on, every write fails with SQLITE_READONLY, as on a read-only connection (checked when a statement
  // runs, so statements prepared earlier are refused too). Turned off, the writing statements are reset: a
  // statement keeps the error of its last step, and SQLiteCpp's next reset() of it would throw that.
  void query_only(bool on) noexcept {
    sqlite3* db = handle();
    sqlite3_exec(db, on ? "PRAGMA query_only = ON" : "PRAGMA query_only = OFF", nullptr, nullptr, nullptr);
    if (on) return;
    for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s != nullptr; s = sqlite3_next_stmt(db, s)) {
      if (sqlite3_stmt_readonly(s) == 0) sqlite3_reset(s);
    }
  }

  // The writer's checkpoint policy (options::wal_checkpoint_bytes), between two operations: whether the
  // -wal file has passed the threshold. Only after a commit, so the file's size is looked at once per write
  // at most; TRUNCATE (below), so that size means "written since the last checkpoint that finished" (a
  // RESTART leaves the file as large as it was).
  bool checkpoint_due() noexcept {
    if (!writer_ || opts_.wal_checkpoint_bytes == 0 || commits_ == commits_at_check_) return false;
    commits_at_check_ = commits_;
    std::error_code ec;
    wal_size_ = std::filesystem::file_size(wal_path_, ec);
    return !ec && wal_size_ >= checkpoint_at_ && !in_transaction(handle());
  }

  // Copies the WAL back and truncates it, waiting (busy handler, at most busy_timeout) for the readers of
  // older snapshots; if they hold on longer, the next try waits until the file has grown as much again.
  // The checkpoint is no operation: its wait has a budget of its own and leaves the busy handler's record of
  // the operations' waits as it found it, or the next write would count the checkpoint's wait as its own.
  void checkpoint() noexcept {
    const auto blocked_since = std::exchange(blocked_since_, {});
    const bool gave_up = std::exchange(gave_up_, false);
    const int rc = sqlite3_wal_checkpoint_v2(handle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    blocked_since_ = blocked_since;
    gave_up_ = gave_up;
    checkpoint_at_ = rc == SQLITE_OK ? opts_.wal_checkpoint_bytes : wal_size_ + opts_.wal_checkpoint_bytes;
  }

  // Commits seen on this connection (the commit hook's count), to tell a commit from a rollback.
  std::uint64_t commits() const noexcept { return commits_; }

 private:
  // Our own busy handler instead of sqlite3_busy_timeout: the same waiting, but an interrupt wakes it
  // at once instead of after the whole timeout.
  static int on_busy(void* self, int count) noexcept {
    using namespace std::chrono;
    static constexpr int delays_ms[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    auto& c = *static_cast<connection*>(self);
    const auto now = steady_clock::now();
    if (count == 0) {
      // An operation queued while an earlier one was already waiting for this lock has been waiting as
      // long: its budget starts then, so that writes queued together fail one busy_timeout after they
      // were queued, not one busy_timeout after another (and close() waits no longer).
      const bool blocked = c.blocked_since_ != steady_clock::time_point{};
      c.busy_since_ = blocked ? std::max(c.blocked_since_, c.lease_queued_at_) : now;
      if (!blocked) c.blocked_since_ = now;
    }
    const auto left = c.opts_.busy_timeout - duration_cast<milliseconds>(now - c.busy_since_);
    if (left <= milliseconds::zero()) {
      c.gave_up_ = true;
      return 0;
    }
    const auto delay = std::min(milliseconds(delays_ms[std::min(count, 11)]), left);
    completion_batch::flush_current();  // nothing held back waits for another process's lock
    std::unique_lock lock(c.guard_mutex_);
    c.guard_cv_.wait_for(lock, delay, [&] { return c.stopped(); });
    return c.stopped() ? 0 : 1;
  }

  // sqlite3_interrupt is lost when it lands between two statements; this catches the next long one.
  // interrupted_ is never set once the lease has committed, so this never fails a committed statement.
  static int on_progress(void* self) noexcept {
    if (completion_batch* b = completion_batch::current()) b->flush_if_due();
    return static_cast<connection*>(self)->stopped() ? 1 : 0;
  }

  bool stopped() const noexcept {
    return interrupted_.load(std::memory_order_relaxed) || closing_.load(std::memory_order_relaxed);
  }

  // A statement too short to reach the progress handler may still run after an interrupt; turning its
  // commit into a rollback keeps an interrupted operation from committing. A commit let through makes
  // the rest of the lease uninterruptible (interrupt() checks committed_ under the same lock).
  static int on_commit(void* self) noexcept {
    auto& c = *static_cast<connection*>(self);
    std::lock_guard lock(c.guard_mutex_);
    if (c.interrupted_.load(std::memory_order_relaxed)) {
      c.commit_refused_ = true;
      return 1;
    }
    c.committed_ = true;
    ++c.commits_;
    return 0;
  }

  static int on_authorize(void* self, int action, const char*, const char*, const char*, const char*) noexcept {
    auto& c = *static_cast<connection*>(self);
    switch (c.watching_) {
      case watch_for::nothing:
        break;
      case watch_for::writes:
        if ((action >= SQLITE_CREATE_INDEX && action <= SQLITE_INSERT) || action == SQLITE_UPDATE ||
            (action >= SQLITE_ALTER_TABLE && action <= SQLITE_DROP_VTABLE)) {
          c.seen_ = true;
        }
        break;
      case watch_for::transactions:
        if (action == SQLITE_TRANSACTION) c.seen_ = true;  // BEGIN, COMMIT, END, ROLLBACK (not TO)
        break;
    }
    return SQLITE_OK;
  }

  const bool writer_;
  const options& opts_;
  std::optional<SQLite::Database> db_;
  dao_cache daos_;  // declared after db_: destroyed first
  control_statements controls_;
  std::uint64_t commits_ = 0;
  const std::filesystem::path wal_path_;
  std::uintmax_t checkpoint_at_;        // the -wal size that triggers the next checkpoint
  std::uint64_t commits_at_check_ = 0;  // commits_ when the size was last looked at
  std::uintmax_t wal_size_ = 0;         // the size then
  watch_for watching_ = watch_for::nothing;
  bool seen_ = false;

  std::mutex guard_mutex_;  // orders interrupt() against the commit hook
  std::condition_variable guard_cv_;
  std::atomic<bool> interrupted_{false};  // read lock-free by the progress handler
  std::atomic<bool> closing_{false};      // close()'s grace is over; never cleared
  bool committed_ = false;
  bool commit_refused_ = false;
  std::chrono::steady_clock::time_point busy_since_{};
  // Since when this connection has been waiting for another process's lock without getting it: set by
  // the first wait, kept while operations give up on it, cleared by the first one that does not.
  std::chrono::steady_clock::time_point blocked_since_{};
  std::chrono::steady_clock::time_point lease_queued_at_{};
  bool gave_up_ = false;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
