#pragma once
// What SQLite gives the core's session opening (detail/open_session.hpp).
#include <asyncdb/detail/open_session.hpp>
#include <asyncdb/detail/sqlite/engine.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

#include <exception>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

struct sqlite_session_hooks {
  using engine_type = engine;
  using lane_type = lane;
  static constexpr const session_controls* controls = nullptr;  // AsyncDbSession's own, SQLite's

  // A lane holds its connection from open to close: it can always serve.
  static std::exception_ptr before_grant(lane&) noexcept { return nullptr; }

  // A deferred BEGIN takes its snapshot at the first read, so read once now: every read of the
  // session then sees the database as it was when the session opened.
  static std::exception_ptr take_snapshot(lane& l) noexcept {
    connection& c = l.conn();
    try {
      c.database().exec("BEGIN");
      c.database().execAndGet("SELECT count(*) FROM sqlite_schema");
      reset_statements(c.handle());
      return nullptr;
    } catch (...) {
      rollback_if_open(c.handle());
      return std::current_exception();
    }
  }

  static void after_session(lane&) noexcept {}
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
