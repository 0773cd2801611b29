#pragma once
// Runs `fn(lane&) -> R` on a PostgreSQL lane: the database work of every public PostgreSQL operation.
#include <asyncdb/detail/completion.hpp>
#include <asyncdb/detail/outcome.hpp>
#include <asyncdb/detail/pg/lane.hpp>
#include <asyncdb/detail/pg/observe.hpp>
#include <asyncdb/detail/session_state.hpp>
#include <asyncdb/error.hpp>

#include <pqxx/except>

#include <chrono>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>

namespace asyncdb::detail::pg {

template <class Handler, class R>
struct async_op_for {
  using type = async_op<Handler, R>;
};
template <class Handler>
struct async_op_for<Handler, void> {
  using type = async_op<Handler>;
};

inline bool is_broken_connection(const std::exception_ptr& ep) noexcept {
  try {
    std::rethrow_exception(ep);
  } catch (const pqxx::broken_connection&) {
    return true;
  } catch (...) {
    return false;
  }
}

inline bool is_in_doubt(const std::exception_ptr& ep) noexcept {
  if (!ep) return false;
  try {
    std::rethrow_exception(ep);
  } catch (const pqxx::in_doubt_error&) {
    return true;
  } catch (...) {
    return false;
  }
}

// Fixes the outcome of a lease once the operation can no longer be interrupted: a transaction the
// operation left open is rolled back (and reported), a connection it broke is reported, and with
// refuse_swallowed_errors a write the server silently rolled back fails instead of succeeding.
inline std::exception_ptr settle(lane& l, std::exception_ptr ep, const lease_watch& w, session_state* s) {
  connection& c = l.conn();
  if (c.is_broken()) {
    // libpqxx 6.4's own words for it are often beside the point ("Could not obtain client encoding: not
    // connected."); libpq kept what the server said. An in_doubt_error (a pqxx::failure) and the DAO's own
    // exceptions are left as they are.
    if (!ep || is_broken_connection(ep)) {
      const std::string why = c.last_error();
      ep = std::make_exception_ptr(pqxx::broken_connection("asyncdb: the connection was lost during this operation" +
                                                           (why.empty() ? std::string() : ": " + why)));
    }
    return ep;
  }
  if (s == nullptr && c.rollback_if_open() && !ep) {
    ep = std::make_exception_ptr(system_error(errc::transaction_left_open));
  }
  if (!ep && w.rolled_back_after_error && l.settings().refuse_swallowed_errors) {
    ep = std::make_exception_ptr(std::runtime_error(
        "asyncdb: a statement of this operation failed inside a transaction and the operation caught the error, "
        "so the server rolled the whole transaction back (libpqxx 6.4 reports such a COMMIT as a success); "
        "nothing of that transaction was written. Let the error propagate, or set "
        "postgres::options::refuse_swallowed_errors to false if the rollback was intended"));
  }
  return ep;
}

template <class Handler, class Fn, class R>
class run_op final : public async_op_for<Handler, R>::type, public task {
  using base = typename async_op_for<Handler, R>::type;

 public:
  run_op(Handler handler, Fn fn, op_name name, session_state* session)
      : base(std::move(handler)), fn_(std::in_place, std::move(fn)), name_(name), session_(session) {}

  // Only PostgreSQL lanes pop these, and they call serve().
  void execute(detail::lane&) noexcept override { std::terminate(); }

  void serve(lane& l) noexcept override {
    if (!this->start(l.conn())) return;
    if (l.settings().observer) seen_.start();
    counters& c = l.stats_counters();
    c.queue_wait_ns.fetch_add((std::chrono::steady_clock::now() - this->enqueued_at).count(),
                              std::memory_order_relaxed);
    c.running.fetch_add(1, std::memory_order_relaxed);
    if (session_ == nullptr) l.hold(name_);
    try {
      if (session_ == nullptr) l.catch_up();
      if constexpr (std::is_void_v<R>) {
        (*fn_)(l);
        result_.emplace();
      } else {
        result_.emplace((*fn_)(l));
      }
    } catch (...) {
      ep_ = std::current_exception();
    }
    const bool cancelled = this->end_run();
    const lease_watch w = l.conn().end_lease();
    if (l.settings().observer) seen_.end(w.commits > 0);
    ep_ = settle(l, std::move(ep_), w, session_);
    // Aborted only when nothing of it reached the database: no COMMIT and no autocommit write went
    // through, and the failure is not a lost COMMIT, whose outcome nobody knows.
    const bool aborted = decide({.cancel_requested = cancelled,
                                 .failed = ep_ != nullptr,
                                 .committed = w.commits > 0,
                                 .in_doubt = is_in_doubt(ep_)}) == verdict::aborted;
    // A cancelled statement leaves a write session's transaction failed on the server: only rollback() may
    // follow. A read session's is rolled back to before the operation and goes on.
    if (aborted && session_ != nullptr && !session_->read_only && l.session_transaction()) session_->aborted = true;
    const bool read_session = session_ != nullptr && session_->read_only;
    if (session_ == nullptr) l.hold(op_name(std::string_view{}));
    c.running.fetch_sub(1, std::memory_order_relaxed);
    if (aborted) ep_ = std::make_exception_ptr(system_error(net::error::operation_aborted));
    // After a given-up cancel, asked on the replacement connection: its WAL position is past the commit.
    if (w.commits > 0 && !l.conn().is_broken() && !l.replace_if_needed()) l.note_write();
    (aborted ? c.cancelled : ep_ ? c.failed : c.completed).fetch_add(1, std::memory_order_relaxed);
    if (l.settings().observer) {
      observe(l, name_, seen_, this->enqueued_at, session_ != nullptr, l.conn().backend_pid(),
              outcome_of(aborted, ep_));
    }
    fn_.reset();
    this->deliver_result(std::move(ep_), result_);
    // After the caller has its answer: the lane does it before it takes the session's next operation.
    if (read_session) l.keep_snapshot();
    l.after_operation();
  }

  void refuse(lane& l, std::exception_ptr ep) noexcept override {
    if (!this->claim()) return;
    l.stats_counters().failed.fetch_add(1, std::memory_order_relaxed);
    if (l.settings().observer)
      observe(l, name_, seen_, this->enqueued_at, session_ != nullptr, 0, operation_outcome::rejected);
    fn_.reset();
    if constexpr (std::is_void_v<R>) {
      this->deliver(std::move(ep));
    } else {
      this->deliver(std::move(ep), R{});
    }
  }

 protected:
  void release_work() noexcept override { fn_.reset(); }

 private:
  using result_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
  std::optional<Fn> fn_;
  std::optional<result_type> result_;
  std::exception_ptr ep_;
  op_name name_;            // static storage
  session_state* session_;  // the lane serving the session keeps it alive while this runs
  observed_run seen_;       // for postgres::options::observer only
};

}  // namespace asyncdb::detail::pg
