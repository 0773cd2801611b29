#pragma once
// The runtime: the threads and connections that serve one SQLite database file.
#include <asyncdb/detail/sqlite/engine.hpp>
#include <asyncdb/options.hpp>
#include <asyncdb/stats.hpp>

#include <filesystem>
#include <memory>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

namespace detail {
struct database_access;
}

/// One SQLite file served by one writer connection and `options::readers` read-only connections,
/// each owned by its own thread; operations never run on the caller's thread.
class database {
 public:
  /// Opens every connection (writer first, WAL, on_open on each); throws SQLite::Exception on a bad
  /// path and system_error(errc::memory_database) for ":memory:".
  explicit database(const std::filesystem::path& path, options opts = {})
      : engine_(std::make_unique<detail::engine>(path, std::move(opts))) {}

  database(const database&) = delete;  // operations and sessions refer to it
  database& operator=(const database&) = delete;

  /// Closes as close() does. On one of the database's own threads (its last owner captured by an
  /// operation), it cannot wait for itself: intake stops at once and the database closes in the background.
  ~database() {
    if (engine_ && engine_->on_own_thread()) detail::close_in_background(std::move(engine_));
  }

  /// Stops intake (later operations fail with errc::closed), runs what is already queued, rolls back
  /// open sessions, closes each connection on its own thread and joins them. Blocks; idempotent.
  /// Bounded by options::close_grace: past it, operations still queued fail with errc::closed and running
  /// statements are interrupted (SQLITE_INTERRUPT), so it returns within the grace plus the time a statement
  /// takes to notice; only C++ code of a DAO that runs no statement can hold it longer.
  /// Throws std::logic_error when called from inside an operation.
  void close() { engine_->close(); }

  /// Returns a snapshot of queue depth, outcomes, queue wait and who holds the writer.
  asyncdb::stats stats() const { return engine_->snapshot(); }

 private:
  friend struct detail::database_access;
  std::unique_ptr<detail::engine> engine_;
};

namespace detail {
struct database_access {
  static engine& of(database& db) noexcept { return *db.engine_; }
};
}  // namespace detail

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
