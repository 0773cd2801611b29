#pragma once
// The canceller: a thread of its own sends the server the cancel requests of every connection of one
// database. A cancel request is a TCP round trip and a fork on the server (about 10 ms), so it never runs
// on the caller's thread nor on the connection's.
#include <asyncdb/detail/pg/libpq.hpp>

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace asyncdb::detail::pg {

class canceller {
 public:
  // One per connection; its address is stable for the life of the canceller.
  struct target {
    PGcancel* handle = nullptr;  // replaced only on the lane's thread, with no request in flight
    bool pending = false;
    bool in_flight = false;
  };

  canceller() = default;
  canceller(const canceller&) = delete;
  canceller& operator=(const canceller&) = delete;
  ~canceller() { stop(); }

  target& add_target() {
    std::lock_guard lock(mutex_);
    return *targets_.emplace_back(std::make_unique<target>());
  }

  void start() {
    thread_ = std::thread([this] { main(); });
  }

  void stop() noexcept {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    for (auto& t : targets_) set_handle(*t, nullptr);
  }

  // Any thread; never blocks beyond the mutex. A request already pending or in flight covers this one.
  void request(target& t) noexcept {
    {
      std::lock_guard lock(mutex_);
      if (t.handle == nullptr || t.pending || t.in_flight) return;
      t.pending = true;
    }
    wake_.notify_all();
  }

  // The lane's thread, once its operation can no longer be interrupted: drops a request not yet sent and
  // waits for one in flight, so that no cancel meant for this operation reaches the server after it. The
  // server ignores a cancel that finds its backend idle, so a request that has returned cannot hit the
  // next operation.
  void settle(target& t) noexcept {
    std::unique_lock lock(mutex_);
    t.pending = false;
    done_.wait(lock, [&] { return !t.in_flight; });
  }

  // The lane's thread, between operations (nothing pending or in flight for `t`).
  void set_handle(target& t, PGcancel* h) noexcept {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return !t.in_flight; });
    t.pending = false;
    if (t.handle != nullptr) PQfreeCancel(t.handle);
    t.handle = h;
  }

 private:
  void main() {
    std::unique_lock lock(mutex_);
    for (;;) {
      target* next = nullptr;
      wake_.wait(lock, [&] {
        // Round robin from the target after the last one served: close() re-requests every 100 ms, and a
        // scan from the first target would serve the first few lanes for ever and never the others.
        for (std::size_t i = 0; i < targets_.size(); ++i) {
          const std::size_t k = (cursor_ + 1 + i) % targets_.size();
          if (targets_[k]->pending) {
            next = targets_[k].get();
            cursor_ = k;
            return true;
          }
        }
        return stopping_;
      });
      if (next == nullptr) return;
      next->pending = false;
      next->in_flight = true;
      PGcancel* h = next->handle;
      lock.unlock();
      char error[256];
      PQcancel(h, error, sizeof error);  // a failure (server gone) leaves nothing to cancel
      lock.lock();
      next->in_flight = false;
      done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::unique_ptr<target>> targets_;
  std::size_t cursor_ = 0;  // the target served last
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace asyncdb::detail::pg
