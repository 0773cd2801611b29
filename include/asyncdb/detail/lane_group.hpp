#pragma once
// The lanes of one database, whatever its backend, and what a database does with them alike when it closes.
#include <asyncdb/detail/config.hpp>

#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class Lane>
class lane_group {
 public:
  /// Starts `l` (its connection opens on its own thread) and keeps it; rethrows what its start threw.
  Lane& add(std::unique_ptr<Lane> l) {
    lanes_.push_back(std::move(l));
    lanes_.back()->start();
    return *lanes_.back();
  }

  /// True on one of the lanes' threads, that is inside an operation of this database.
  bool contains_current_thread() const noexcept {
    for (const auto& l : lanes_) {
      if (l->on_this_thread()) return true;
    }
    return false;
  }

  /// Throws std::logic_error when called inside an operation: `close` would wait for itself.
  void refuse_close_from_own_thread(const char* database_name) const {
    if (!contains_current_thread()) return;
    throw std::logic_error(std::string("asyncdb: ") + database_name +
                           "::close() called from one of its own threads (inside an operation); it would wait "
                           "for itself");
  }

  const std::vector<std::unique_ptr<Lane>>& all() const noexcept { return lanes_; }
  bool empty() const noexcept { return lanes_.empty(); }
  std::size_t size() const noexcept { return lanes_.size(); }
  Lane& operator[](std::size_t i) const noexcept { return *lanes_[i]; }

 private:
  std::vector<std::unique_ptr<Lane>> lanes_;
};

/// For a database whose last owner dies on one of its own threads (a shared_ptr captured by an operation's
/// function object): that thread cannot join itself, so `e->stop_intake()` refuses new work now and a thread
/// of its own destroys the engine, closing it as close() would once the calling lane is back in its loop.
template <class Engine>
void close_in_background(std::unique_ptr<Engine> e) noexcept {
  e->stop_intake();
  Engine* raw = e.release();
  try {
    std::thread([raw] { delete raw; }).detach();
  } catch (...) {
    // No thread to close it on: leaking the connections beats terminating inside a destructor.
  }
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
