#pragma once
// The one session a lane serves at a time, and the switch that refuses new ones once the database closes.
#include <asyncdb/detail/session_state.hpp>
#include <asyncdb/error.hpp>

#include <memory>
#include <mutex>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

class session_slot {
 public:
  /// Takes `s` as the session being served; false, taking nothing, once stop() was called.
  bool enter(const std::shared_ptr<session_state>& s) {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    current_ = s;
    return true;
  }

  /// The session served is over.
  void leave() noexcept {
    std::lock_guard lock(mutex_);
    current_.reset();
  }

  /// Refuses new sessions and ends the one being served: what it already queued still runs.
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (current_) current_->queue.close(make_error_code(errc::closed));
  }

  /// Marks the session being served, if any, as aborted: its transaction died with the connection.
  void abort_current() noexcept {
    std::lock_guard lock(mutex_);
    if (current_) current_->aborted = true;
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<session_state> current_;
  bool stopping_ = false;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
