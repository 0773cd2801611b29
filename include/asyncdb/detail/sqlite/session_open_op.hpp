#pragma once
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/session_budget.hpp>
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
  session_open_op(Handler handler, bool read_only, op_name name, budget_clock::time_point deadline)
      : async_op<Handler, Session>(std::move(handler)), read_only_(read_only), name_(name), deadline_(deadline) {}

  // Before the operation is queued: where the session's deadline timer will run (the opener's executor).
  void time_on(net::any_io_executor ex) { executor_ = std::move(ex); }

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
    state->where = name_.where;
    expire_at(state, executor_, deadline_);
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
    stop_expiry(*state);
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
  op_name name_;
  budget_clock::time_point deadline_;  // asyncdb::session_budget's, or max()
  net::any_io_executor executor_;      // where the session's deadline timer runs
};

// Queues a session_open_op on the writer's (or the readers') queue. `Session` is AsyncDbSession.
// A session budget (`budget`, zero for none) bounds the open in place of the default operation budget.
template <class Session, class Token>
auto open_session(engine& e, bool read_only, Token&& token, const std::source_location& where,
                  std::chrono::nanoseconds budget = {}) {
  return net::async_initiate<Token, void(std::exception_ptr, Session)>(
      [](auto handler, engine* e, bool ro, op_name name, std::chrono::nanoseconds budget) {
        const budget_clock::time_point deadline =
            budget == budget.zero() ? budget_clock::time_point::max() : deadline_after(budget);
        auto start = [&](auto h) {
          using op_type = session_open_op<decltype(h), Session>;
          net::any_io_executor ex;
          if (deadline != budget_clock::time_point::max()) ex = timer_executor(net::get_associated_executor(h));
          auto op = std::make_shared<op_type>(std::move(h), ro, name, deadline);
          op->time_on(std::move(ex));
          const bool attached = op->attach();
          enqueue(op, attached, &e->queue(ro), &e->stats_counters());
        };
        if (budget == budget.zero()) return start_with_default(std::move(handler), e->operation_budget(), start);
        start_within(std::move(handler), deadline, budget, start);
      },
      token, &e, read_only, op_name{where.function_name(), where}, budget);
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
