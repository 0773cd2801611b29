#pragma once
// How a database opens and bounds its connections.
#include <asyncdb/connection_role.hpp>
#include <asyncdb/detail/config.hpp>
#include <asyncdb/hold.hpp>
#include <asyncdb/observer.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

namespace SQLite {
class Database;
}

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// An on_open callback: `void(Connection&, const connection_role&)`, or `void(Connection&)` for one that
/// prepares every connection alike.
template <class Connection>
class on_open_function {
 public:
  on_open_function() = default;

  /// Wraps a callback that takes the connection and its role.
  template <class F>
  requires std::is_invocable_v<F&, Connection&, const connection_role&> on_open_function(F f) {
    if (!is_empty(f)) fn_ = std::move(f);
  }

  /// Wraps a callback that takes the connection alone and prepares every connection alike.
  template <class F>
  requires(!std::is_invocable_v<F&, Connection&, const connection_role&> && std::is_invocable_v<F&, Connection&>)
      on_open_function(F f) {
    if (!is_empty(f)) fn_ = [f = std::move(f)](Connection& c, const connection_role&) mutable { f(c); };
  }

  /// False when no callback is set.
  explicit operator bool() const noexcept { return static_cast<bool>(fn_); }

  /// Runs the callback for the connection `c` playing `role`.
  void operator()(Connection& c, const connection_role& role) const { fn_(c, role); }

 private:
  // An empty std::function or null pointer given for "none" stays none.
  template <class F>
  static bool is_empty(const F& f) noexcept {
    if constexpr (std::is_pointer_v<F>) {
      return f == nullptr;
    } else if constexpr (std::is_same_v<F, std::function<void(Connection&)>> ||
                         std::is_same_v<F, std::function<void(Connection&, const connection_role&)>>) {
      return !f;
    } else {
      return false;
    }
  }

  std::function<void(Connection&, const connection_role&)> fn_;
};

/// How independent writes waiting for the writer share one transaction (one commit) instead of one each.
struct group_commit_options {
  /// False gives every write its own transaction, as SQLite's autocommit would.
  bool enabled = true;

  /// Most operations one shared transaction holds.
  std::size_t max_operations = 1024;

  /// A shared transaction open this long takes no further operation and commits after the one running.
  std::chrono::microseconds max_duration{5000};
};

/// Settings of an asyncdb::database; an aggregate, so designated initializers work.
struct options {
  /// Read-only connections serving operations declared read-only, in parallel; 0 runs them on the writer.
  std::size_t readers = 2;

  /// How long a statement waits for a lock held by another process before failing with SQLITE_BUSY.
  std::chrono::milliseconds busy_timeout{5000};

  /// Operations allowed to wait at once; past it new ones fail at once with errc::queue_full.
  std::size_t max_queued = 65536;

  /// Runs once per connection on its own thread before it serves work, writer first (schema, pragmas); a
  /// callback taking a connection_role too learns which one (the readers cannot write). What it throws
  /// reaches the constructor naming the connection ("asyncdb: on_open failed on reader 0: ...").
  on_open_function<SQLite::Database> on_open{};

  /// How long an idle connection thread keeps polling for work before it sleeps. Zero sleeps at once. Polling
  /// saves the wake-up each operation otherwise costs (lower latency with few operations in flight) but burns
  /// CPU meanwhile: worth it only with more cores than connection and event-loop threads.
  std::chrono::microseconds poll_before_sleep{0};

  /// Group commit on the writer; operations of a session are never grouped.
  group_commit_options group_commit{};

  /// How long close() (or the destructor) lets queued and running work finish. Past it, operations still
  /// queued fail with errc::closed, a statement still running is interrupted (SQLITE_INTERRUPT, its open
  /// transaction rolled back) and one waiting for a lock stops waiting (SQLITE_BUSY). As long as busy_timeout
  /// by default, so that work which only waits for another process's lock is not cut short.
  std::chrono::milliseconds close_grace{5000};

  /// Once a write leaves the -wal file larger than this, the writer checkpoints and truncates it
  /// (wal_checkpoint(TRUNCATE)) before its next operation, holding new reads back meanwhile and waiting at
  /// most busy_timeout for open snapshots to end; if they do not, it tries again once the file has grown by as
  /// much again. Readers that always hold a snapshot starve SQLite's own checkpoint, and the WAL then grows
  /// without bound. Four times the size at which SQLite's own checkpoint starts; zero leaves it to SQLite alone.
  std::uint64_t wal_checkpoint_bytes = 16u << 20;

  /// Told of each operation that ran or was refused by a closing database, on the connection's thread
  /// before the caller resumes (see operation_record: quick, no database calls, exceptions dropped).
  /// Empty (the default) costs one test per operation.
  operation_observer observer{};

  /// A write session or operation holding the writer longer than this is reported to on_hold, once, while it
  /// still holds it (a session awaiting a slow call blocks every write). Zero (the default) turns it off.
  std::chrono::milliseconds hold_threshold{0};

  /// Told of each hold past hold_threshold, on a watchdog thread of the database (see hold_record).
  hold_observer on_hold{};

  /// Every operation's budget unless it was started with asyncdb::budget(): from its initiation to its
  /// completion, queue wait included; past it, it is cancelled and fails with errc::deadline_exceeded (see
  /// budget.hpp). Also bounds the wait to open a session, not the operations inside one. Zero: none.
  std::chrono::milliseconds operation_budget{0};
};

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
