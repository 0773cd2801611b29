#pragma once
// A wake-up for an io_context's event loop that does not go through Asio's scheduler lock: an eventfd that the
// context's reactor watches. Posting from another thread interrupts the loop's epoll_wait while holding that lock;
// the woken loop then blocks on the lock at once and the poster's unlock wakes it again (profiled: a third of the
// context switches of 64 point reads in flight). Writing to an eventfd holds no lock the loop needs.
#include <asyncdb/detail/asio.hpp>

#include <memory>
#include <utility>

#if defined(__linux__)
#include <sys/eventfd.h>
#include <unistd.h>
#endif

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

#if defined(__linux__)

class doorbell {
 public:
  // Null when no eventfd could be made: the caller then posts instead.
  static std::unique_ptr<doorbell> make(net::io_context& ctx) noexcept {
    const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return nullptr;
    try {
      return std::unique_ptr<doorbell>(new doorbell(ctx, fd));
    } catch (...) {
      ::close(fd);  // the descriptor never took it
      return nullptr;
    }
  }
  doorbell(const doorbell&) = delete;
  doorbell& operator=(const doorbell&) = delete;

  // Any thread, while this object lives (its owner orders ring() before destruction). Every write is an edge
  // for the reactor, whatever the counter already holds, so a ring never merges into an earlier one unseen.
  void ring() noexcept { (void)::eventfd_write(fd_, 1); }

  // On a thread running the context, one wait at a time: `fn(error_code)` runs there after the next ring(),
  // or with operation_aborted when the doorbell is destroyed first. The wait counts as the context's work
  // until then, as any pending operation does.
  template <class Fn>
  void wait(Fn fn) {
    descriptor_.async_wait(net::posix::stream_descriptor::wait_read, [fd = fd_, fn = std::move(fn)](error_code ec) {
      eventfd_t rung = 0;
      if (!ec) (void)::eventfd_read(fd, &rung);  // back to unreadable; EAGAIN if a spurious wake-up
      fn(ec);
    });
  }

 private:
  doorbell(net::io_context& ctx, int fd) : fd_(fd), descriptor_(ctx, fd) {}

  const int fd_;                              // owned by descriptor_, which closes it
  net::posix::stream_descriptor descriptor_;  // registered with the context's reactor, edge-triggered
};

#else

// Elsewhere completions are posted as any other handler.
class doorbell {
 public:
  static std::unique_ptr<doorbell> make(net::io_context&) noexcept { return nullptr; }
  void ring() noexcept {}
  template <class Fn>
  void wait(Fn) {}
};

#endif

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
