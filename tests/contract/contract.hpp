#pragma once
// What every conformance test uses: both backends, the Catch2 list of them, and the waits (each with a
// deadline) for operations started with a callback.
#include "backends.hpp"

#include <atomic>
#include <chrono>
#include <exception>

/// The backends every promise is run against: TEMPLATE_TEST_CASE("...", "[contract]", CONTRACT_BACKENDS).
#define CONTRACT_BACKENDS contract::sqlite_backend, contract::postgres_backend

namespace contract {

/// How an operation started with a callback ended; written on the loop's thread, read there.
struct outcome {
  bool done = false;
  std::exception_ptr error;
};

/// A completion handler for void(std::exception_ptr[, R]) that fills `out`.
inline auto record(outcome& out) {
  return [&out](std::exception_ptr e, auto&&...) {
    out.error = e;
    out.done = true;
  };
}

/// Waits on the caller's executor (polling, with a deadline) until `out` is filled.
inline net::awaitable<void> until_done(const outcome& out) {
  auto is_done = [&out] { return out.done; };
  co_await test::poll_until(is_done);
}

/// Waits until the endless statement that set `started` runs, so that a cancel reaches it running.
template <class Backend>
net::awaitable<void> until_stuck(const Backend& b, const std::atomic<std::int64_t>& started) {
  auto is_stuck = [&b, &started] { return b.stuck(started.load()); };
  co_await test::poll_until(is_stuck);
}

/// Runs `ctx` until `done()` holds; throws past `deadline` (a hang) instead of waiting for ever.
template <class Pred>
void run_until(net::io_context& ctx, Pred done, std::chrono::seconds deadline = std::chrono::seconds(30)) {
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("run_until: deadline passed");
    if (ctx.stopped()) ctx.restart();
    ctx.run_one_for(std::chrono::milliseconds(1));
  }
}

}  // namespace contract
