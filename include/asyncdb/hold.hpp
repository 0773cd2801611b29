#pragma once
// What the hold hook (options::on_hold, postgres::options::on_hold) is told of a connection held past the
// hold threshold.
#include <asyncdb/connection_role.hpp>
#include <asyncdb/detail/config.hpp>
#include <asyncdb/stats.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <source_location>
#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// A hold of a connection past the threshold (SQLite: the writer; PostgreSQL: any of its connections),
/// reported once per hold while it still lasts.
///
/// Told on the database's watchdog thread (one per database, only when the threshold is set), never on a
/// connection's: it may take its time, but must not call close() on that database (close waits for the
/// watchdog) and should not throw (an exception is caught and dropped). `name` and `where` refer to static storage.
struct hold_record {
  writer_holder::kind what = writer_holder::kind::none;  ///< an operation or a write session
  std::string_view name;                                 ///< the DAO member or function, or where the session opened
  std::source_location where{};  ///< where the session was opened, or run()/async_run() called; line 0 for a call<>
  std::chrono::nanoseconds held_for{0};  ///< since the holder took the connection
  std::size_t queued_behind = 0;  ///< operations waiting in its queue (PostgreSQL: its pool's, writers' or readers')
  connection_role connection;     ///< the connection held (SQLite: always the writer)
  int backend_pid = 0;            ///< PostgreSQL: the server process of that connection; 0 on SQLite
};

/// Called once per hold past options::hold_threshold.
using hold_observer = std::function<void(const hold_record&)>;

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
