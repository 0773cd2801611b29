#pragma once
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/operation.hpp>

#include <chrono>
#include <optional>
#include <string_view>
#include <type_traits>
#include <variant>

namespace asyncdb::detail {

template <class Handler, class R>
struct async_op_for {
  using type = async_op<Handler, R>;
};
template <class Handler>
struct async_op_for<Handler, void> {
  using type = async_op<Handler>;
};

// Where a run_op may go: its kind (what was learned about its code) and, while its route is being
// detected on a reader, the writer's queue to move to if it tries to write.
struct op_route {
  op_kind* kind = nullptr;        // null inside a session
  job_queue* on_write = nullptr;  // set only when queued on the readers for detection
};

// Runs `fn(lane&) -> R` on whichever lane pops it: the database work of every public operation.
template <class Handler, class Fn, class R>
class run_op final : public async_op_for<Handler, R>::type {
  using base = typename async_op_for<Handler, R>::type;

 public:
  run_op(Handler handler, Fn fn, std::string_view name, session_state* session, op_route route)
      : base(std::move(handler)), fn_(std::in_place, std::move(fn)), name_(name), session_(session), route_(route) {}

  void execute(lane& l) noexcept override {
    if (!begin(l)) return;
    const bool watch = route_.on_write != nullptr && !l.is_writer();
    // Another call of the same kind was caught writing while this one waited: no trial run.
    if (watch && route_.kind->writes.load(std::memory_order_relaxed)) return move_to_writer(l);
    if (watch) l.watch_writes();
    const bool txn_before = session_ != nullptr && in_transaction(l.handle());
    run(l);
    if (watch && (l.stop_watching() || is_read_only_error(ep_))) return move_to_writer(l);
    bool cancelled = this->finish() && ep_;
    l.clear_interrupt();
    ep_ = l.settle(ep_, cancelled, session_, txn_before);
    end(l, cancelled);
    complete(l);
  }

  bool groupable() const noexcept override {
    return route_.kind != nullptr && !route_.kind->own_transaction.load(std::memory_order_relaxed);
  }

  // Inside the writer's shared transaction; see group_commit.
  grouped_run run_grouped(lane& l) noexcept override {
    if (!begin(l)) return grouped_run::skipped;
    sqlite3* db = l.handle();
    bool in_savepoint = true;
    try {
      l.run_control(control_statements::savepoint);
    } catch (...) {
      ep_ = std::current_exception();
      in_savepoint = false;
    }
    if (in_savepoint) run(l);
    reset_statements(db);
    const bool still_open = in_transaction(db);
    if (ep_ && in_savepoint && is_nested_transaction_error(ep_)) {
      // Its own BEGIN failed: it runs alone once the group is over, and is never grouped again. A DAO
      // that answered the failure with ROLLBACK has ended the shared transaction as well.
      if (still_open) rollback_to_savepoint(l);
      route_.kind->own_transaction.store(true, std::memory_order_relaxed);
      ep_ = nullptr;
      result_.reset();
      if (step_back(l)) return still_open ? grouped_run::alone : grouped_run::ended_alone;
      end(l, true);
      return still_open ? grouped_run::held : grouped_run::ended_transaction;
    }
    if (!still_open) {
      // It committed or rolled back the shared transaction itself, or SQLite rolled it back.
      if (!ep_) route_.kind->own_transaction.store(true, std::memory_order_relaxed);
      end(l, this->finish() && ep_);
      l.clear_interrupt();
      return grouped_run::ended_transaction;
    }
    const bool cancelled = this->finish() && ep_;
    l.clear_interrupt();
    if (in_savepoint) {
      if (ep_) {
        rollback_to_savepoint(l);
      } else {
        try {
          l.run_control(control_statements::release);
        } catch (...) {
          ep_ = std::current_exception();
          rollback_to_savepoint(l);
        }
      }
    }
    end(l, cancelled);
    return grouped_run::held;
  }

  bool complete_grouped(lane& l, std::exception_ptr undone) noexcept override {
    if (undone && !ep_) ep_ = std::move(undone);  // an operation that failed keeps its own error
    const bool ok = !ep_;
    complete(l);
    return ok;
  }

  bool take_back() noexcept override {
    if (ep_) return false;
    result_.reset();
    if (this->requeue()) return true;
    ep_ = std::make_exception_ptr(std::system_error(asio::error::operation_aborted));
    cancelled_ = true;
    return false;
  }

 protected:
  // Never ran (cancelled while queued, or refused): the lane will not touch fn_ any more.
  void release_work() noexcept override { fn_.reset(); }

 private:
  using result_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  bool begin(lane& l) noexcept {
    counters& c = l.stats_counters();
    if (!this->start(l)) {
      c.cancelled.fetch_add(1, std::memory_order_relaxed);  // already completed by the canceller
      return false;
    }
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    c.running.fetch_add(1, std::memory_order_relaxed);
    if (session_ == nullptr && l.is_writer()) l.hold(writer_holder::kind::operation, name_);
    return true;
  }

  void run(lane& l) noexcept {
    try {
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

  void end(lane& l, bool cancelled) noexcept {
    if (cancelled) {
      ep_ = std::make_exception_ptr(std::system_error(asio::error::operation_aborted));
      cancelled_ = true;
    }
    if (session_ == nullptr && l.is_writer()) l.release_hold();
    l.stats_counters().running.fetch_sub(1, std::memory_order_relaxed);
  }

  void complete(lane& l) noexcept {
    counters& c = l.stats_counters();
    (cancelled_ ? c.cancelled : ep_ ? c.failed : c.completed).fetch_add(1, std::memory_order_relaxed);
    fn_.reset();  // Asio's rule: what the operation captured is gone before its completion runs
    if constexpr (std::is_void_v<R>) {
      this->deliver(std::move(ep_));
    } else if (ep_) {
      this->deliver(std::move(ep_), R{});
    } else {
      this->deliver(nullptr, std::move(*result_));
    }
  }

  // Back to queued, off this lane; false (and completed as cancelled by the caller) if cancelled.
  bool step_back(lane& l) noexcept {
    const bool again = this->requeue();
    l.clear_interrupt();
    if (again) end(l, false);
    return again;
  }

  // It tried to write on a reader: nothing it did there stays, and it runs again on the writer,
  // where its kind goes directly from now on.
  void move_to_writer(lane& l) {
    l.settle(nullptr, false, nullptr, false);
    route_.kind->writes.store(true, std::memory_order_relaxed);
    ep_ = nullptr;
    result_.reset();
    job_queue* writer = std::exchange(route_.on_write, nullptr);
    if (!step_back(l)) {
      end(l, true);
      return complete(l);
    }
    l.stats_counters().rerouted.fetch_add(1, std::memory_order_relaxed);
    if (std::error_code ec = writer->push_again(this->shared_from_this()); ec && this->claim()) this->fail(ec);
  }

  void rollback_to_savepoint(lane& l) noexcept {
    try {
      l.run_control(control_statements::rollback_to);
      l.run_control(control_statements::release);
    } catch (...) {
      // Only fails if the savepoint is gone, and then so is the shared transaction: group_commit sees that.
    }
  }

  std::optional<Fn> fn_;
  std::optional<result_type> result_;
  std::exception_ptr ep_;
  std::string_view name_;   // static storage: a function name or a literal
  session_state* session_;  // the lane serving the session keeps it alive while this runs
  op_route route_;
  bool cancelled_ = false;
};

}  // namespace asyncdb::detail
