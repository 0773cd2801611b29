#pragma once
// Opening a session, for every backend: the open waits in a lane's queue like any operation; when popped, the lane
// itself becomes the session's server until the session ends. A backend gives a struct S with `engine_type`,
// `lane_type`, `controls` (its session_controls, null for SQLite's), `before_grant(l)` (why the lane cannot
// serve a session now, or null), `take_snapshot(l)` (a read session's one snapshot; on failure nothing is left
// open) and `after_session(l)` (once the session is over).
#include <asyncdb/detail/budget.hpp>
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/initiate.hpp>
#include <asyncdb/detail/job.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/observe.hpp>
#include <asyncdb/detail/session_budget.hpp>
#include <asyncdb/detail/session_state.hpp>
#include <asyncdb/error.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <source_location>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// `Session` is AsyncDbSession (a parameter only to break the include cycle with session.hpp).
template <class S, class Handler, class Session>
class session_open_op final : public async_op<Handler, Session>, public lane_task<typename S::lane_type> {
  using lane_type = typename S::lane_type;

 public:
  // `expiry`: the session's deadline timer, made by prepare_expiry(); null without a deadline. `observer`: the
  // database's (null: none), told of an open that never grants, and handed to the session for its operations.
  session_open_op(Handler handler, bool read_only, op_name name, budget_clock::time_point deadline,
                  std::shared_ptr<session_expiry> expiry, std::shared_ptr<const operation_observer> observer)
      : async_op<Handler, Session>(std::move(handler)),
        read_only_(read_only),
        name_(name),
        deadline_(deadline),
        expiry_(std::move(expiry)),
        observer_(std::move(observer)) {}

  // An open never granted leaves its timer here, registered with the opener's context (session_expiry).
  ~session_open_op() override {
    if (expiry_ != nullptr) expiry_->stop();
  }

  // job's entry point, which only SQLite lanes (detail::lane) call; other lanes call serve().
  void execute(lane& l) noexcept override {
    if constexpr (std::is_same_v<lane_type, lane>) {
      serve(l);
    } else {
      std::terminate();
    }
  }

  // Refused at admission or cancelled while it waited, on the refusing or cancelling thread, no lock held.
  void fail(error_code ec) noexcept override {
    report(unrun_outcome(ec), connection_role{});
    async_op<Handler, Session>::fail(ec);
  }

  // Its budget is only the wait for the session: it runs no statement of the caller's.
  bool runs_statements() const noexcept override { return false; }

  void serve(lane_type& l) noexcept override {
    counters& c = l.stats_counters();
    if (!this->start(l.conn())) return;
    // Granted: from here a cancellation is too late, the session is the result. An interrupt that
    // landed meanwhile is cleared, so it cannot reach the session's first operation.
    this->end_run();
    l.conn().end_lease();
    if (std::exception_ptr down = S::before_grant(l)) {
      c.failed.fetch_add(1, std::memory_order_relaxed);
      report(operation_outcome::rejected, l.role());
      this->deliver(std::move(down), Session{});
      return;
    }
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    auto state = std::make_shared<session_state>(l.shared_counters(), read_only_);
    state->controls = S::controls;
    state->where = name_.where;
    state->observer = observer_;
    state->connection = l.role();
    expire_at(state, expiry_, deadline_);
    const bool served = l.serve_session(state, name_, [&] {
      std::exception_ptr ep = read_only_ ? S::take_snapshot(l) : nullptr;
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
      report(operation_outcome::rejected, l.role());
      this->deliver(std::make_exception_ptr(system_error(errc::closed)), Session{});
    }
    S::after_session(l);
  }

  // Completed without serving (a closing lane, a connection down); a no-op if cancelled meanwhile.
  void refuse(lane_type& l, std::exception_ptr ep) noexcept override {
    if (!this->claim()) return;
    l.stats_counters().failed.fetch_add(1, std::memory_order_relaxed);
    report(operation_outcome::rejected, l.role());
    this->deliver(std::move(ep), Session{});
  }

 private:
  // An open that never granted a session is an operation that never ran: reported as one, before its completion.
  // A granted one is not an operation of its own (its session's operations are).
  void report(operation_outcome outcome, const connection_role& connection) noexcept {
    if (observer_ == nullptr) return;
    operation_record r = unrun_record(name_, *this, outcome);
    r.connection = connection;
    notify(*observer_, r);
  }

  bool read_only_;
  op_name name_;
  budget_clock::time_point deadline_;       // asyncdb::session_budget's, or max()
  std::shared_ptr<session_expiry> expiry_;  // its deadline timer, on the opener's executor; null without one
  std::shared_ptr<const operation_observer> observer_;
};

// Queues a session_open_op on the writer's (or the readers') queue. `Session` is AsyncDbSession.
// A session budget (`budget`, zero for none) bounds the open in place of the default operation budget.
template <class S, class Session, class Token>
auto open_session(typename S::engine_type& e, bool read_only, Token&& token, const std::source_location& where,
                  std::chrono::nanoseconds budget = {}) {
  return net::async_initiate<Token, void(std::exception_ptr, Session)>(
      [](auto handler, typename S::engine_type* e, bool ro, op_name name, std::chrono::nanoseconds budget) {
        const budget_clock::time_point deadline =
            budget == budget.zero() ? budget_clock::time_point::max() : deadline_after(budget);
        auto start = [&](auto h) {
          std::shared_ptr<session_expiry> expiry;
          if (deadline != budget_clock::time_point::max()) {
            expiry = prepare_expiry(timer_executor(net::get_associated_executor(h)), deadline);
          }
          auto op = std::make_shared<session_open_op<S, decltype(h), Session>>(std::move(h), ro, name, deadline,
                                                                               std::move(expiry), e->observer());
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
