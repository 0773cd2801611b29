#pragma once
// The database work of every public operation, for every backend: one run of `fn(lane&) -> R`, its counters,
// its outcome (decide()), its observer record and its delivery. A backend answers the questions about its lane
// and connection through a hooks struct (detail/sqlite/run_op.hpp, detail/pg/run_op.hpp) and nothing else.
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/name_of.hpp>
#include <asyncdb/detail/observe.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/outcome.hpp>
#include <asyncdb/error.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class Handler, class R>
struct async_op_for {
  using type = async_op<Handler, R>;
};
template <class Handler>
struct async_op_for<Handler, void> {
  using type = async_op<Handler>;
};

// Where a run_op may go: its kind (what was learned about its code) and, while its route is being
// detected on a reader, the writer's queue to move to if it tries to write (SQLite only).
struct op_route {
  op_kind* kind = nullptr;        // null inside a session, and for a backend that learns nothing
  job_queue* on_write = nullptr;  // set only when queued on the readers for detection
};

// Hooks answers, as static members: lane_type; closing(l) (close()'s grace is over: refuse instead of
// starting); hold(l, name, session) and release(l, session) (who holds the connection, for stats());
// before_run(l, session) (may throw: the operation's failure); end_lease(l) (the backend's own record of the
// lease) and committed(lease); settle(l, lease, ep, session) -> lease_report (may replace ep first);
// decided(l, aborted, session); annotate(l, record) (the observer record's backend fields); before_delivery(l,
// committed); after_delivery(l, read_session); serve(op, l), which calls the phases in order.
template <class Hooks, class Handler, class Fn, class R>
class run_op final : public async_op_for<Handler, R>::type,
                     public lane_task<typename Hooks::lane_type>,
                     public lane_op<typename Hooks::lane_type> {
  using base = typename async_op_for<Handler, R>::type;
  using lane_type = typename Hooks::lane_type;
  friend Hooks;

 public:
  // `observer`: told of the operation if it never reaches a lane (null: not told). Shared: a cancellation may
  // complete a queued operation on another thread while its database is being destroyed. `session` is alive now
  // (its caller holds it), maybe not when the operation fails: what the record needs of it is read here.
  run_op(Handler handler, Fn fn, op_name name, session_state* session, op_route route,
         std::shared_ptr<const operation_observer> observer = nullptr)
      : base(std::move(handler)),
        fn_(std::in_place, std::move(fn)),
        name_(name),
        session_(session),
        route_(route),
        unrun_observer_(std::move(observer)),
        unrun_connection_(session != nullptr ? session->connection : connection_role{}) {}

  // Refused at admission or cancelled while queued, on the refusing or cancelling thread, no lock held.
  void fail(error_code ec) noexcept override {
    if (unrun_observer_ != nullptr) {
      operation_record r = record(unrun_outcome(ec));
      r.connection = unrun_connection_;
      notify(*unrun_observer_, r);
    }
    base::fail(ec);
  }

  // job's entry point, which only SQLite lanes (detail::lane) call; other lanes call serve().
  void execute(lane& l) noexcept override {
    if constexpr (std::is_same_v<lane_type, lane>) {
      serve(l);
    } else {
      std::terminate();
    }
  }

  group_member* group() noexcept override {
    if constexpr (std::is_same_v<lane_type, lane>) {
      const bool may = session_ == nullptr && route_.kind != nullptr &&
                       !route_.kind->own_transaction.load(std::memory_order_relaxed);
      return may ? this : nullptr;
    } else {
      return nullptr;
    }
  }

  void serve(lane_type& l) noexcept override { Hooks::serve(*this, l); }

  void refuse(lane_type& l, std::exception_ptr ep) noexcept override {
    if (!this->claim()) return;
    l.stats_counters().failed.fetch_add(1, std::memory_order_relaxed);
    observe(l, operation_outcome::rejected);
    fn_.reset();
    this->deliver_result(std::move(ep), result_);
  }

  bool begin(lane_type& l) noexcept override {
    if (Hooks::closing(l)) {
      refuse(l, std::make_exception_ptr(system_error(errc::closed)));
      return false;
    }
    if (!this->start(l.conn())) return false;
    if (l.settings().observer) seen_.start();
    counters& c = l.stats_counters();
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    c.running.fetch_add(1, std::memory_order_relaxed);
    Hooks::hold(l, name_, session_);
    return true;
  }

  void run(lane_type& l) noexcept override {
    try {
      Hooks::before_run(l, session_);
      if constexpr (std::is_void_v<R>) {
        (*fn_)(l);
        result_.emplace();
      } else {
        result_.emplace((*fn_)(l));
      }
    } catch (...) {
      ep_ = std::current_exception();
    }
  }

  // Aborted as decide() says; nothing of it is in the database then (the backend's settle, or SQLite's
  // savepoint, undoes the rest).
  bool end(lane_type& l, std::exception_ptr instead = nullptr) noexcept override {
    if (instead) ep_ = std::move(instead);
    const bool cancelled = this->end_run();
    const auto lease = Hooks::end_lease(l);
    if (l.settings().observer) seen_.end(Hooks::committed(lease));
    lease_report r = Hooks::settle(l, lease, ep_, session_);
    r.cancel_requested = cancelled;
    r.failed = ep_ != nullptr;
    committed_ = r.committed;
    aborted_ = decide(r) == verdict::aborted;
    Hooks::decided(l, aborted_, session_);
    Hooks::release(l, session_);
    l.stats_counters().running.fetch_sub(1, std::memory_order_relaxed);
    return aborted_ || ep_;
  }

  bool complete(lane_type& l, std::exception_ptr undone = nullptr) noexcept override {
    if (aborted_) {
      ep_ = std::make_exception_ptr(system_error(net::error::operation_aborted));
    } else if (undone && !ep_) {
      ep_ = std::move(undone);
    }
    counters& c = l.stats_counters();
    (aborted_ ? c.cancelled : ep_ ? c.failed : c.completed).fetch_add(1, std::memory_order_relaxed);
    observe(l, outcome_of(aborted_, ep_));
    Hooks::before_delivery(l, committed_);
    // The lane keeps a session alive while it serves it, but read it now: nothing of this after delivery.
    const bool read_session = session_ != nullptr && session_->read_only;
    fn_.reset();  // Asio's rule: what the operation captured is gone before its completion runs
    const bool ok = !ep_;
    this->deliver_result(std::move(ep_), result_);
    Hooks::after_delivery(l, read_session);
    return ok;
  }

  bool take_back(lane_type& l) noexcept override { return take_back_to(l, nullptr); }

  op_kind& kind() noexcept override { return *route_.kind; }

 protected:
  // Never ran (cancelled while queued, or refused): the lane will not touch fn_ any more.
  void release_work() noexcept override { fn_.reset(); }

 private:
  using result_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  // Drops the outcome of a run that does not count and queues the operation again (on `q`, or for the
  // lane to run directly); a cancellation that came first completes it instead.
  // On the lane's thread, once the outcome is fixed and before the completion is delivered.
  void observe(lane_type& l, operation_outcome outcome) noexcept {
    if (!l.settings().observer) return;
    operation_record r = record(outcome);
    r.connection = l.role();
    Hooks::annotate(l, r);
    notify(l.settings().observer, r);
  }

  // What every record says, whether or not the operation reached a connection.
  operation_record record(operation_outcome outcome) const noexcept {
    operation_record r;
    r.name = name_.name;
    r.where = name_.where;
    r.in_session = session_ != nullptr;
    seen_.times(this->enqueued_at, r);
    r.outcome = budgeted(outcome, *this);
    r.committed = seen_.committed;
    return r;
  }

  bool take_back_to(lane_type& l, job_queue* q) noexcept {
    ep_ = nullptr;
    result_.reset();
    aborted_ = false;
    if (operation_base::take_back(q)) return true;
    aborted_ = true;
    complete(l);
    return false;
  }

  std::optional<Fn> fn_;
  std::optional<result_type> result_;
  std::exception_ptr ep_;
  op_name name_;            // static storage: a function name or a literal; where it was called, if known
  session_state* session_;  // the lane serving the session keeps it alive while this runs
  op_route route_;
  bool aborted_ = false;
  bool committed_ = false;                                    // something of its lease committed
  observed_run seen_;                                         // for the observer only
  std::shared_ptr<const operation_observer> unrun_observer_;  // the database's observer, if set (or its session's)
  connection_role unrun_connection_;                          // its session's connection; default outside one
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
