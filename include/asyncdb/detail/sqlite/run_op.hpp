#pragma once
// What the core's run_op (detail/run_op.hpp) asks of a SQLite lane, and route detection: a call of unknown
// route runs on a reader under a watch, and moves to the writer if it tries to write.
#include <asyncdb/detail/run_op.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

#include <exception>
#include <string_view>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

struct sqlite_hooks {
  using lane_type = lane;

  template <class Op>
  static void serve(Op& op, lane& l) noexcept {
    if (!op.begin(l)) return;
    connection& c = l.conn();
    const bool watch = op.route_.on_write != nullptr && !l.is_writer();
    // Another call of the same kind was caught writing while this one waited: no trial run.
    if (watch && op.route_.kind->writes.load(std::memory_order_relaxed)) return move_to_writer(op, l);
    if (watch) c.watch(watch_for::writes);
    const bool txn_before = op.session_ != nullptr && in_transaction(c.handle());
    op.run(l);
    if (watch && (c.stop_watching() || is_read_only_error(op.ep_))) return move_to_writer(op, l);
    op.end(l);
    op.ep_ = c.settle(op.ep_, op.aborted_, op.session_, txn_before);
    op.complete(l);
  }

  static bool closing(lane& l) noexcept { return l.conn().closing(); }
  static void hold(lane& l, const op_name& name, const session_state* s) noexcept {
    if (s == nullptr && l.is_writer()) l.hold(writer_holder::kind::operation, name);
  }
  static void release(lane& l, const session_state* s) noexcept {
    if (s == nullptr && l.is_writer()) l.release_hold();
  }
  static void before_run(lane&, const session_state*) noexcept {}
  static lease_end end_lease(lane& l) noexcept { return l.conn().end_lease(); }
  static bool committed(const lease_end& e) noexcept { return e.committed; }
  // The connection is settled later (serve), with the decision; group commit uses savepoints instead.
  static lease_report settle(lane&, const lease_end& e, std::exception_ptr&, const session_state*) noexcept {
    return {.commit_refused = e.commit_refused, .committed = e.committed};
  }
  static void decided(lane&, bool, session_state*) noexcept {}
  static void before_delivery(lane&, bool) noexcept {}
  static void after_delivery(lane&, bool) noexcept {}

  // A member of a group commit is completed after the shared COMMIT: the lane then says how large the group
  // was and whether that COMMIT went through, which counts for the members that succeeded.
  static void annotate(const lane& l, operation_record& r) noexcept {
    const lane::group_outcome g = l.completing_group();
    r.group_size = g.size;
    r.committed = r.committed || (g.committed && r.outcome == operation_outcome::succeeded);
  }

 private:
  // It tried to write on a reader: nothing it did there stays, and it runs again on the writer, where
  // its kind goes directly from now on.
  template <class Op>
  static void move_to_writer(Op& op, lane& l) {
    op.end(l);
    l.conn().settle(nullptr, false, nullptr, false);
    op.route_.kind->writes.store(true, std::memory_order_relaxed);
    job_queue* writer = std::exchange(op.route_.on_write, nullptr);
    if (!op.take_back_to(l, writer)) return;
    l.stats_counters().rerouted.fetch_add(1, std::memory_order_relaxed);
    if (error_code ec = writer->push_again(op.shared_from_this()); ec && op.claim()) op.fail(ec);
  }
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
