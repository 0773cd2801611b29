// The operation observer (options::observer) is told of every operation, those that never reach a
// connection included: cancelled while queued (aborted), cut off by their budget while queued or running
// (timed_out), refused at the call (rejected); each once, with nothing committed for those that failed; inside a
// session too (with the session's connection), and a session's opening that never granted one.
#include "contract.hpp"

#include <asyncdb/budget.hpp>

#include <algorithm>
#include <mutex>
#include <type_traits>
#include <vector>

namespace {
using namespace std::chrono_literals;

// The records an observer is told of, from any thread.
struct observed_records {
  std::mutex mutex;
  std::vector<asyncdb::operation_record> records;

  asyncdb::operation_observer observer() {
    return [this](const asyncdb::operation_record& r) {
      std::lock_guard lock(mutex);
      records.push_back(r);
    };
  }
  std::vector<asyncdb::operation_record> all() {
    std::lock_guard lock(mutex);
    return records;
  }
};

// Operations that never reach a connection, and one cut off by its budget while running.
struct operation_fates_state {
  test::gate g;
  std::atomic<bool> entered{false};
  std::atomic<std::int64_t> endless_started{0};
  test::completion blocker;
  test::completion cancelled;
  test::completion queued[2];
  asyncdb::error_code queued_budget_error;
  asyncdb::error_code refused_error;
  asyncdb::error_code running_budget_error;
};

// On a database of one connection whose queue holds two: a blocker holds the connection while one queued
// operation is cancelled by its caller, one waits past its budget, two fill the queue and the next is
// refused; then, the blocker gone, one runs past its budget.
template <class B>
net::awaitable<void> operation_fates(typename B::database& db, operation_fates_state& st) {
  auto ex = co_await net::this_coro::executor;
  auto block = [&st](auto&) {
    st.entered = true;
    st.g.wait();
  };
  B::write(db, block, net::bind_executor(ex, test::record_into(st.blocker)));
  co_await test::until_set(st.entered);
  auto count = [](auto& c) { B::count(c); };
  net::cancellation_signal sig;
  auto cancellable = net::bind_cancellation_slot(sig.slot(), net::bind_executor(ex, test::record_into(st.cancelled)));
  B::write(db, count, cancellable);
  sig.emit(net::cancellation_type::terminal);
  const auto short_budget = asyncdb::budget(20ms);
  st.queued_budget_error = co_await test::error_of(B::write(db, count, short_budget));
  for (test::completion& out : st.queued) B::write(db, count, net::bind_executor(ex, test::record_into(out)));
  st.refused_error = co_await test::error_of(B::write(db, count));
  st.g.open();
  auto all_done = [&st] { return st.blocker.done && st.cancelled.done && st.queued[0].done && st.queued[1].done; };
  co_await test::poll_until(all_done);
  auto endless = [&st](auto& c) { B::read_endlessly(c, st.endless_started); };
  const auto run_budget = asyncdb::budget(200ms);
  st.running_budget_error = co_await test::error_of(B::write(db, endless, run_budget));
}

}  // namespace

TEMPLATE_TEST_CASE("the observer is told of operations cancelled while queued, refused, or cut off by their budget",
                   "[contract][observer]", CONTRACT_BACKENDS) {
  using B = TestType;
  constexpr bool server = std::is_same_v<B, contract::postgres_backend>;
  B b;
  observed_records log;
  operation_fates_state st;
  {
    contract::config c;
    c.readers = 0;
    c.max_queued = 2;
    c.observer = log.observer();
    auto& db = b.open(c);
    test::open_at_exit guard{st.g};
    net::io_context ctx;
    test::run(ctx, operation_fates<B>(db, st));
  }
  REQUIRE(st.cancelled.error == net::error::operation_aborted);
  REQUIRE(st.queued_budget_error == asyncdb::errc::deadline_exceeded);
  REQUIRE(st.refused_error == asyncdb::errc::queue_full);
  REQUIRE(st.running_budget_error == asyncdb::errc::deadline_exceeded);
  const std::vector<asyncdb::operation_record> records = log.all();
  CHECK(records.size() == 7);  // each operation issued, once
  auto count = [&records](asyncdb::operation_outcome outcome) {
    return std::count_if(records.begin(), records.end(),
                         [&](const asyncdb::operation_record& r) { return r.outcome == outcome; });
  };
  CHECK(count(asyncdb::operation_outcome::succeeded) == 3);
  CHECK(count(asyncdb::operation_outcome::aborted) == 1);
  CHECK(count(asyncdb::operation_outcome::timed_out) == 2);
  CHECK(count(asyncdb::operation_outcome::rejected) == 1);
  for (const asyncdb::operation_record& r : records) {
    INFO("name = " << r.name << ", outcome = " << static_cast<int>(r.outcome));
    CHECK(std::string(r.name).find("async_run") != std::string::npos);
    if (r.outcome != asyncdb::operation_outcome::succeeded) CHECK_FALSE(r.committed);
    const bool never_ran =
        r.outcome == asyncdb::operation_outcome::aborted || r.outcome == asyncdb::operation_outcome::rejected;
    if (never_ran) CHECK(r.running == 0ns);
    if (never_ran) CHECK(r.backend_pid == 0);
  }
  // The last one ran past its budget: timed out while running, on the server process that ran it.
  CHECK(records.back().outcome == asyncdb::operation_outcome::timed_out);
  CHECK(records.back().running > 0ns);
  CHECK(records.back().backend_pid == (server ? st.endless_started.load() : 0));
}

TEMPLATE_TEST_CASE("operations cancelled in a session's queue and session opens that never ran reach the observer",
                   "[contract][session][observer]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  observed_records log;
  contract::config cfg;
  cfg.observer = log.observer();
  auto& db = b.open(cfg);
  test::gate g;
  test::open_at_exit opener{g};
  std::atomic<bool> entered{false};
  contract::outcome blocked;
  contract::outcome queued_in_session;
  contract::outcome cancelled_open;
  contract::outcome timed_out_open;
  net::io_context ctx;
  auto body = [&]() -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    auto block = [&entered, &g](auto&) {
      entered = true;
      g.wait();
    };
    auto count = [](auto& c) { return B::count(c); };
    // Holds the writer: the opens below wait for it.
    asyncdb::AsyncDbSession writer = co_await asyncdb::async_db_session(db);
    // A read session busy at the gate, and an operation queued behind it there, cancelled while it waits.
    asyncdb::AsyncDbSession reader = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    net::co_spawn(ex, B::in_session(reader, block), contract::record(blocked));
    net::cancellation_signal in_session;
    net::co_spawn(ex, B::in_session(reader, count),
                  net::bind_cancellation_slot(in_session.slot(), contract::record(queued_in_session)));
    co_await test::until_set(entered);  // both started by now: the second waits in the session's queue
    in_session.emit(net::cancellation_type::terminal);
    co_await contract::until_done(queued_in_session);
    // Two opens waiting for the writer: one cancelled by its caller, one past its session budget.
    net::cancellation_signal open;
    asyncdb::async_db_session(
        db, net::bind_cancellation_slot(open.slot(), net::bind_executor(ex, contract::record(cancelled_open))));
    open.emit(net::cancellation_type::terminal);
    asyncdb::async_db_session(db, asyncdb::session_budget(50ms),
                              net::bind_executor(ex, contract::record(timed_out_open)));
    co_await contract::until_done(cancelled_open);
    co_await contract::until_done(timed_out_open);
    g.open();
    co_await contract::until_done(blocked);
  };
  test::run(ctx, body());
  REQUIRE(blocked.error == nullptr);
  REQUIRE(test::code_of(queued_in_session.error) == net::error::operation_aborted);
  REQUIRE(test::code_of(cancelled_open.error) == net::error::operation_aborted);
  REQUIRE(test::code_of(timed_out_open.error) == asyncdb::errc::deadline_exceeded);
  const std::vector<asyncdb::operation_record> records = log.all();
  auto ran = std::find_if(records.begin(), records.end(), [](const asyncdb::operation_record& r) {
    return r.in_session && r.outcome == asyncdb::operation_outcome::succeeded;
  });
  REQUIRE(ran != records.end());  // the blocker, on the read session's connection
  CHECK(ran->connection.kind == asyncdb::connection_role::reader);
  auto count_of = [&records](asyncdb::operation_outcome outcome, bool in_session) {
    return std::count_if(records.begin(), records.end(), [&](const asyncdb::operation_record& r) {
      return r.outcome == outcome && r.in_session == in_session;
    });
  };
  CHECK(count_of(asyncdb::operation_outcome::aborted, true) == 1);     // cancelled in the session's queue
  CHECK(count_of(asyncdb::operation_outcome::aborted, false) == 1);    // the cancelled open
  CHECK(count_of(asyncdb::operation_outcome::timed_out, false) == 1);  // the open past its budget
  CHECK(records.size() == 4);  // one record each, the blocker's included; granted opens are not operations
  for (const asyncdb::operation_record& r : records) {
    INFO("outcome " << static_cast<int>(r.outcome) << ", in session " << r.in_session);
    CHECK(r.where.line() != 0);  // a session's operations report where it was opened, an open its own call
    if (r.outcome == asyncdb::operation_outcome::succeeded) continue;
    CHECK(r.running == 0ns);
    CHECK_FALSE(r.committed);
    // Inside the session: its connection, the one the blocker ran on.
    if (r.in_session) CHECK(r.connection.name() == ran->connection.name());
  }
}
