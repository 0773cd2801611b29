#pragma once
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/session_state.hpp>
#include <asyncdb/detail/sqlite/engine.hpp>
#include <asyncdb/detail/sqlite/initiate.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

#include <exception>
#include <memory>
#include <source_location>
#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Waits in a lane's queue like any operation; when popped, the lane itself becomes the session's
// server until the session ends. `Session` is AsyncDbSession (a parameter only to break the include cycle).
template <class Handler, class Session>
class session_open_op final : public async_op<Handler, Session> {
 public:
  session_open_op(Handler handler, bool read_only, std::string_view name)
      : async_op<Handler, Session>(std::move(handler)), read_only_(read_only), name_(name) {}

  void execute(lane& l) noexcept override {
    counters& c = l.stats_counters();
    if (!this->start(l.conn())) return;
    // Granted: from here a cancellation is too late, the session is the result. An interrupt that
    // landed meanwhile is cleared, so it cannot reach the session's first operation.
    this->end_run();
    l.conn().end_lease();
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    auto state = std::make_shared<session_state>(l.shared_counters(), read_only_);
    const bool served = l.serve_session(state, name_, [&] {
      std::exception_ptr ep;
      if (read_only_) ep = take_snapshot(l);
      if (ep) {
        state->queue.close(make_error_code(errc::session_ended));
        c.failed.fetch_add(1, std::memory_order_relaxed);
        this->deliver(std::move(ep), Session{});
      } else {
        c.completed.fetch_add(1, std::memory_order_relaxed);
        this->deliver(nullptr, Session{state});
      }
    });
    if (!served) {
      c.failed.fetch_add(1, std::memory_order_relaxed);
      this->deliver(std::make_exception_ptr(system_error(errc::closed)), Session{});
    }
  }

 private:
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

  bool read_only_;
  std::string_view name_;
};

// Queues a session_open_op on the writer's (or the readers') queue. `Session` is AsyncDbSession.
template <class Session, class Token>
auto open_session(engine& e, bool read_only, Token&& token, const std::source_location& where) {
  return net::async_initiate<Token, void(std::exception_ptr, Session)>(
      [](auto handler, engine* e, bool ro, std::string_view name) {
        start_with_default(std::move(handler), e->operation_budget(), [&](auto h) {
          using op_type = session_open_op<decltype(h), Session>;
          auto op = std::make_shared<op_type>(std::move(h), ro, name);
          const bool attached = op->attach();
          enqueue(op, attached, &e->queue(ro), &e->stats_counters());
        });
      },
      token, &e, read_only, std::string_view(where.function_name()));
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
