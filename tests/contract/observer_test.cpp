// The operation observer against both backends: every operation is reported once, those that never reached a
// connection included, inside a session (with the session's connection) and for a session's opening.
#include "contract.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

namespace {
using namespace std::chrono_literals;

// The records an observer is told of, from any thread.
struct record_log {
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

}  // namespace

TEMPLATE_TEST_CASE("operations cancelled in a session's queue and session opens that never ran reach the observer",
                   "[contract][session][observer]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  record_log log;
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
