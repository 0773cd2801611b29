#pragma once
// The canceller: sends the server the cancel requests of every connection of one database, each on a short
// thread of its own. A cancel request is a TCP round trip and a fork on the server (about 10 ms), so it never
// runs on the caller's thread nor on the connection's; and libpq's PQcancel waits, with no bound, for the
// server to close the request's socket, so a server that accepts and never answers (a stalled proxy or load
// balancer) must hold up only its own request, never another connection's, and never close() for long.
#include <asyncdb/detail/pg/libpq.hpp>

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace asyncdb::detail::pg {

class canceller {
 public:
  // One per connection; its address is stable for the life of the canceller.
  struct target {
    std::shared_ptr<PGcancel> handle;  // shared with a request in flight, which may outlive the connection
    int socket = -1;                   // the connection's, while it has one
    bool in_flight = false;
    std::uint64_t generation = 0;  // of the last request sent
    std::chrono::steady_clock::time_point sent_at{};
  };

  // `bound`: how long a request may go unanswered before it is given up (see settle and sever).
  explicit canceller(std::chrono::milliseconds bound) : bound_(bound) {}
  canceller(const canceller&) = delete;
  canceller& operator=(const canceller&) = delete;
  ~canceller() { stop(); }

  target& add_target() {
    std::lock_guard lock(shared_->mutex);
    return *targets_.emplace_back(std::make_unique<target>());
  }

  // Requests still in flight keep what they use (their handle, shared_) and touch no target any more.
  void stop() noexcept {
    std::lock_guard lock(shared_->mutex);
    shared_->stopped = true;
    for (auto& t : targets_) {
      t->handle.reset();
      t->socket = -1;
    }
  }

  // Any thread; blocks only for the mutex and a thread's start. A request in flight covers this one.
  void request(target& t) noexcept {
    std::unique_lock lock(shared_->mutex);
    if (shared_->stopped || !t.handle || t.in_flight) return;
    t.in_flight = true;
    t.sent_at = std::chrono::steady_clock::now();
    const std::uint64_t generation = ++t.generation;
    try {
      // Detached: a request to a server that never answers may never return; it owns what it uses.
      std::thread([s = shared_, h = t.handle, tp = &t, generation] {
        char error[256];
        PQcancel(h.get(), error, sizeof error);  // a failure (server gone) leaves nothing to cancel
        std::lock_guard done_lock(s->mutex);
        if (!s->stopped && tp->generation == generation) tp->in_flight = false;
        s->done.notify_all();
      }).detach();
    } catch (...) {
      t.in_flight = false;  // no thread: no cancel, as when the server cannot be reached
    }
  }

  // The lane's thread, once its operation can no longer be interrupted: waits for a request in flight, so
  // that no cancel meant for this operation reaches the server after it (the server ignores a cancel that
  // finds its backend idle). False when the request went unanswered for `bound`: it is given up, and it may
  // still land, so the lane replaces the connection before it runs anything else.
  bool settle(target& t) noexcept {
    std::unique_lock lock(shared_->mutex);
    if (!t.in_flight) return true;
    if (shared_->done.wait_until(lock, t.sent_at + bound_, [&] { return !t.in_flight; })) return true;
    t.in_flight = false;
    return false;
  }

  // The lane's thread, between operations: the connection's new cancel handle and socket (null, -1: none).
  void set_handle(target& t, PGcancel* h, int socket) noexcept {
    std::unique_lock lock(shared_->mutex);
    if (t.in_flight) shared_->done.wait_until(lock, t.sent_at + bound_, [&] { return !t.in_flight; });
    t.in_flight = false;
    t.handle = h != nullptr ? std::shared_ptr<PGcancel>(h, &PQfreeCancel) : nullptr;
    t.socket = socket;
  }

  // Any thread, for close() past its grace: a request unanswered for `bound` will not stop the statement, so
  // the connection's socket is shut down, which ends what the lane waits for (the operation fails with a
  // broken connection). Under the mutex that set_handle takes before the socket is closed: never another fd.
  void sever_if_unanswered(target& t) noexcept {
    std::lock_guard lock(shared_->mutex);
    if (t.in_flight && t.socket >= 0 && std::chrono::steady_clock::now() >= t.sent_at + bound_) {
      ::shutdown(t.socket, SHUT_RDWR);
    }
  }

 private:
  struct shared_state {
    std::mutex mutex;
    std::condition_variable done;
    bool stopped = false;
  };

  const std::chrono::milliseconds bound_;
  std::shared_ptr<shared_state> shared_ = std::make_shared<shared_state>();
  std::vector<std::unique_ptr<target>> targets_;
};

}  // namespace asyncdb::detail::pg
