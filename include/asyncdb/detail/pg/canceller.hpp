#pragma once
// The canceller: sends the server the cancel requests of every connection of one database, each on a short
// thread of its own. A cancel request is a TCP round trip and a fork on the server (about 10 ms), so it never
// runs on the caller's thread nor on the connection's; and libpq's PQcancel waits, with no bound, for the
// server to close the request's socket, so a server that accepts and never answers (a stalled proxy or load
// balancer) must hold up only its own request, never another connection's, and never close() for long.
// Such a request's thread never ends: a target keeps at most one, so that they do not pile up.
#include <asyncdb/detail/pg/libpq.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

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
    // A duplicate of the connection's socket, owned here: libpq closes its own descriptor when it finds the
    // connection ended, and that number may then be reused by any other socket; this one cannot be.
    int socket = -1;
    bool in_flight = false;        // a request this target waits for (cleared when it is answered or given up)
    bool alive = false;            // a request thread still runs (it may never end: see request)
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
      close_socket(*t);
    }
  }

  // Any thread; blocks only for the mutex and a thread's start. A request in flight covers this one. While an
  // earlier request that was given up still waits for its server, none is sent: the new one counts as
  // unanswered at once (settle gives it up, sever_if_unanswered acts), as that server does not answer.
  void request(target& t) noexcept {
    std::unique_lock lock(shared_->mutex);
    if (shared_->stopped || !t.handle || t.in_flight) return;
    t.in_flight = true;
    t.sent_at = std::chrono::steady_clock::now();
    const std::uint64_t generation = ++t.generation;
    if (t.alive) {
      t.sent_at = std::chrono::steady_clock::time_point::min();  // due already (see due)
      return;
    }
    t.alive = true;
    try {
      // Detached: a request to a server that never answers may never return; it owns what it uses.
      std::thread([s = shared_, h = t.handle, tp = &t, generation] {
        char error[256];
        PQcancel(h.get(), error, sizeof error);  // a failure (server gone) leaves nothing to cancel
        std::lock_guard done_lock(s->mutex);
        if (!s->stopped) {
          if (tp->generation == generation) tp->in_flight = false;
          tp->alive = false;
        }
        s->done.notify_all();
      }).detach();
    } catch (...) {
      t.in_flight = false;  // no thread: no cancel, as when the server cannot be reached
      t.alive = false;
    }
  }

  // The lane's thread, once its operation can no longer be interrupted: waits for a request in flight, so
  // that no cancel meant for this operation reaches the server after it (the server ignores a cancel that
  // finds its backend idle). False when the request went unanswered for `bound`: it is given up, and it may
  // still land, so the lane replaces the connection before it runs anything else.
  bool settle(target& t) noexcept {
    std::unique_lock lock(shared_->mutex);
    if (!t.in_flight) return true;
    if (shared_->done.wait_until(lock, due(t), [&] { return !t.in_flight; })) return true;
    t.in_flight = false;
    return false;
  }

  // The lane's thread, between operations: the connection's new cancel handle and socket (null, -1: none).
  // False when a request in flight was given up (as settle).
  bool set_handle(target& t, PGcancel* h, int socket) noexcept {
    std::unique_lock lock(shared_->mutex);
    const bool answered = !t.in_flight || shared_->done.wait_until(lock, due(t), [&] { return !t.in_flight; });
    t.in_flight = false;
    t.handle = h != nullptr ? std::shared_ptr<PGcancel>(h, &PQfreeCancel) : nullptr;
    close_socket(t);
    // Without a duplicate (no descriptor left) sever_if_unanswered cannot act: the request still bounds settle.
    if (socket >= 0 && !shared_->stopped) t.socket = ::fcntl(socket, F_DUPFD_CLOEXEC, 0);
    return answered;
  }

  // Any thread, for close() past its grace: a request unanswered for `bound` will not stop the statement, so
  // the connection's socket is shut down, which ends what the lane waits for (the operation fails with a
  // broken connection). Through the target's own duplicate: the same socket, whatever libpq closed.
  void sever_if_unanswered(target& t) noexcept {
    std::lock_guard lock(shared_->mutex);
    if (t.in_flight && t.socket >= 0 && std::chrono::steady_clock::now() >= due(t)) ::shutdown(t.socket, SHUT_RDWR);
  }

  // For tests: targets whose request thread still runs.
  std::size_t live_requests() const noexcept {
    std::lock_guard lock(shared_->mutex);
    std::size_t n = 0;
    for (const auto& t : targets_) n += t->alive ? 1 : 0;
    return n;
  }

 private:
  // When a request is given up; saturates (a bound of years must not wrap into the past).
  std::chrono::steady_clock::time_point due(const target& t) const noexcept {
    using clock = std::chrono::steady_clock;
    const auto max = clock::time_point::max();
    if (bound_ >= std::chrono::duration_cast<std::chrono::milliseconds>(clock::duration::max())) return max;
    const auto bound = std::chrono::duration_cast<clock::duration>(bound_);
    return t.sent_at > max - bound ? max : t.sent_at + bound;
  }

  static void close_socket(target& t) noexcept {
    if (t.socket >= 0) ::close(t.socket);
    t.socket = -1;
  }

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
