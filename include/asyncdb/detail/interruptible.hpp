#pragma once
#include <chrono>

namespace asyncdb::detail {

// What an operation may do to the connection running it, from another thread: the one seam between
// the operation state machine (operation.hpp) and a backend's connection (SQLite or PostgreSQL).
class interruptible {
 public:
  // Any thread, under the operation's lock and only while it runs there. Never waits for the database; it
  // may take a short lock and start a thread (PostgreSQL's cancel request).
  virtual void interrupt() noexcept = 0;
  // The connection's thread, as an operation queued at `queued_at` starts running on it.
  virtual void begin_lease(std::chrono::steady_clock::time_point queued_at) noexcept = 0;

 protected:
  ~interruptible() = default;
};

}  // namespace asyncdb::detail
