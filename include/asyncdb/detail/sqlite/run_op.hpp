#pragma once
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/outcome.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>
#include <asyncdb/detail/sqlite/observe.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>
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
// detected on a reader, the writer's queue to move to if it tries to write.
struct op_route {
  op_kind* kind = nullptr;        // null inside a session
  job_queue* on_write = nullptr;  // set only when queued on the readers for detection
};

// Runs `fn(lane&) -> R` on whichever lane pops it: the database work of every public operation.
template <class Handler, class Fn, class R>
class run_op final : public async_op_for<Handler, R>::type, public group_member {
  using base = typename async_op_for<Handler, R>::type;

 public:
  run_op(Handler handler, Fn fn, op_name name, session_state* session, op_route route)
      : base(std::move(handler)), fn_(std::in_place, std::move(fn)), name_(name), session_(session), route_(route) {}

  void execute(lane& l) noexcept override {
    if (!begin(l)) return;
    connection& c = l.conn();
    const bool watch = route_.on_write != nullptr && !l.is_writer();
    // Another call of the same kind was caught writing while this one waited: no trial run.
    if (watch && route_.kind->writes.load(std::memory_order_relaxed)) return move_to_writer(l);
    if (watch) c.watch(watch_for::writes);
    const bool txn_before = session_ != nullptr && in_transaction(c.handle());
    run(l);
    if (watch && (c.stop_watching() || is_read_only_error(ep_))) return move_to_writer(l);
    end(l);
    ep_ = c.settle(ep_, aborted_, session_, txn_before);
    complete(l);
  }

  group_member* group() noexcept override {
    const bool may =
        session_ == nullptr && route_.kind != nullptr && !route_.kind->own_transaction.load(std::memory_order_relaxed);
    return may ? this : nullptr;
  }

  bool begin(lane& l) noexcept override {
    counters& c = l.stats_counters();
    if (l.conn().closing()) {  // close()'s grace is over: what is still queued does not start
      if (this->claim()) {
        c.failed.fetch_add(1, std::memory_order_relaxed);
        if (l.settings().observer)
          observe(l, name_, seen_, this->enqueued_at, session_ != nullptr, operation_outcome::rejected);
        this->fail(make_error_code(errc::closed));
      }
      return false;
    }
    if (!this->start(l.conn())) return false;
    if (l.settings().observer) seen_.start();
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    c.running.fetch_add(1, std::memory_order_relaxed);
    if (session_ == nullptr && l.is_writer()) l.hold(writer_holder::kind::operation, name_);
    return true;
  }

  void run(lane& l) noexcept override {
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

  // Aborted as decide() says; nothing of it is in the database then (settle or the savepoint undoes the rest).
  bool end(lane& l, std::exception_ptr instead = nullptr) noexcept override {
    if (instead) ep_ = std::move(instead);
    const bool cancelled = this->end_run();
    const lease_end e = l.conn().end_lease();
    if (l.settings().observer) seen_.end(e.committed);
    aborted_ = decide({.cancel_requested = cancelled,
                       .failed = ep_ != nullptr,
                       .commit_refused = e.commit_refused,
                       .committed = e.committed}) == verdict::aborted;
    if (session_ == nullptr && l.is_writer()) l.release_hold();
    l.stats_counters().running.fetch_sub(1, std::memory_order_relaxed);
    return aborted_ || ep_;
  }

  bool complete(lane& l, std::exception_ptr undone = nullptr) noexcept override {
    if (aborted_) {
      ep_ = std::make_exception_ptr(system_error(net::error::operation_aborted));
    } else if (undone && !ep_) {
      ep_ = std::move(undone);
    }
    counters& c = l.stats_counters();
    (aborted_ ? c.cancelled : ep_ ? c.failed : c.completed).fetch_add(1, std::memory_order_relaxed);
    if (l.settings().observer)
      observe(l, name_, seen_, this->enqueued_at, session_ != nullptr, outcome_of(aborted_, ep_));
    fn_.reset();  // Asio's rule: what the operation captured is gone before its completion runs
    const bool ok = !ep_;
    this->deliver_result(std::move(ep_), result_);
    return ok;
  }

  bool take_back(lane& l) noexcept override { return take_back_to(l, nullptr); }

  op_kind& kind() noexcept override { return *route_.kind; }

 protected:
  // Never ran (cancelled while queued, or refused): the lane will not touch fn_ any more.
  void release_work() noexcept override { fn_.reset(); }

 private:
  using result_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  // Drops the outcome of a run that does not count and queues the operation again (on `q`, or for the
  // lane to run directly); a cancellation that came first completes it instead.
  bool take_back_to(lane& l, job_queue* q) noexcept {
    ep_ = nullptr;
    result_.reset();
    aborted_ = false;
    if (operation_base::take_back(q)) return true;
    aborted_ = true;
    complete(l);
    return false;
  }

  // It tried to write on a reader: nothing it did there stays, and it runs again on the writer, where
  // its kind goes directly from now on.
  void move_to_writer(lane& l) {
    end(l);
    l.conn().settle(nullptr, false, nullptr, false);
    route_.kind->writes.store(true, std::memory_order_relaxed);
    job_queue* writer = std::exchange(route_.on_write, nullptr);
    if (!take_back_to(l, writer)) return;
    l.stats_counters().rerouted.fetch_add(1, std::memory_order_relaxed);
    if (error_code ec = writer->push_again(this->shared_from_this()); ec && this->claim()) this->fail(ec);
  }

  std::optional<Fn> fn_;
  std::optional<result_type> result_;
  std::exception_ptr ep_;
  op_name name_;            // static storage: a function name or a literal
  session_state* session_;  // the lane serving the session keeps it alive while this runs
  op_route route_;
  bool aborted_ = false;
  observed_run seen_;  // for options::observer only
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
