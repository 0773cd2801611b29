#pragma once
// Who holds one connection now (an operation or a session, since when), for stats() and the hold watchdog.
#include <asyncdb/detail/config.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/stats.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <source_location>
#include <string>
#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

struct hold_state {
  writer_holder::kind what = writer_holder::kind::none;
  std::string_view name;         // static storage: a function name or a literal
  std::source_location where{};  // where it was started; line 0: unknown
  std::chrono::steady_clock::time_point since{};
  std::uint64_t id = 0;  // one per hold, so that the hold watchdog reports each once
  int backend_pid = 0;   // PostgreSQL: the server process of the connection held; 0 on SQLite
};

// Set by the connection's thread, read by stats() and the watchdog on theirs: a mutex, taken twice per
// operation and never contended for long (a copy of a few words).
class connection_holder {
 public:
  void hold(writer_holder::kind what, const op_name& name, int backend_pid = 0) noexcept {
    std::lock_guard lock(mutex_);
    state_ = {what, name.name, name.where, std::chrono::steady_clock::now(), state_.id + 1, backend_pid};
  }
  void release() noexcept { hold(writer_holder::kind::none, op_name(std::string_view{})); }

  hold_state state() const noexcept {
    std::lock_guard lock(mutex_);
    return state_;
  }

  // For stats(): what holds the connection, and for how long so far.
  writer_holder snapshot() const {
    const hold_state s = state();
    writer_holder h;
    h.what = s.what;
    if (h.what != writer_holder::kind::none) {
      h.name = std::string(s.name);
      h.held_for = std::chrono::steady_clock::now() - s.since;
    }
    return h;
  }

 private:
  mutable std::mutex mutex_;
  hold_state state_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
