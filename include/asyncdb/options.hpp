#pragma once
// How a database opens and bounds its connections.
#include <chrono>
#include <cstddef>
#include <functional>

namespace SQLite {
class Database;
}

namespace asyncdb {

/// Settings of an asyncdb::database; an aggregate, so designated initializers work.
struct options {
  /// Read-only connections serving operations declared read-only, in parallel; 0 runs them on the writer.
  std::size_t readers = 2;

  /// How long a statement waits for a lock held by another process before failing with SQLITE_BUSY.
  std::chrono::milliseconds busy_timeout{5000};

  /// Operations allowed to wait at once; past it new ones fail at once with errc::queue_full.
  std::size_t max_queued = 65536;

  /// Runs once per connection on its own thread before it serves work, writer first (schema, pragmas).
  std::function<void(SQLite::Database&)> on_open{};
};

}  // namespace asyncdb
