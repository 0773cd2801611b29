// Time budgets (budget.hpp, options::operation_budget): past its budget an operation is cancelled and
// fails with errc::deadline_exceeded, whether it waited in the queue or was running, and leaves nothing in
// the database; one that committed first succeeds; without a budget nothing changes.
#include "net.hpp"

#include <asyncdb/budget.hpp>

#include <chrono>

#include "support.hpp"

using namespace net::experimental::awaitable_operators;

namespace {

using namespace std::chrono_literals;

constexpr const char* budget_endless_insert =
    "INSERT INTO users(name, email) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 10000000000) SELECT 'endless' || i, 'e@x' FROM n";

struct budget_queued_state {
  test::gate g;
  std::atomic<bool> blocker_entered{false};
  std::atomic<bool> queued_ran{false};
  test::completion blocker;
  asyncdb::error_code queued_error;
  bool blocker_done_at_deadline = true;
};

// The writer is held by a blocker; a write queued behind it with a budget fails once the budget is gone.
net::awaitable<void> budget_queued(asyncdb::database& db, budget_queued_state& st) {
  auto ex = co_await net::this_coro::executor;
  auto block = [&st](SQLite::Database&) {
    st.blocker_entered = true;
    st.g.wait();
  };
  asyncdb::async_run(db, block, net::bind_executor(ex, test::record_into(st.blocker)));
  co_await test::until_set(st.blocker_entered);

  auto queued = [&st](SQLite::Database& c) {
    st.queued_ran = true;
    c.exec("INSERT INTO users(name, email) VALUES('queued', 'q@x')");
  };
  const auto token = asyncdb::budget(20ms);
  st.queued_error = co_await test::error_of(asyncdb::async_run(db, queued, token));
  st.blocker_done_at_deadline = st.blocker.done;
  st.g.open();
  auto blocker_done = [&st] { return st.blocker.done; };
  co_await test::poll_until(blocker_done);
  co_await asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); });  // behind the expired one
}

TEST_CASE("an operation queued past its budget fails with deadline_exceeded and never runs", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  budget_queued_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, budget_queued(db, st), 30s);

  CHECK_FALSE(st.blocker_done_at_deadline);
  CHECK(st.queued_error == asyncdb::errc::deadline_exceeded);
  CHECK(st.queued_error != net::error::operation_aborted);
  CHECK_FALSE(st.queued_ran);
  CHECK_FALSE(st.blocker.error);
  CHECK(test::rows_named(dir.file(), "queued") == 0);
  CHECK(db.stats().cancelled == 1);
}

// ------------------------------------------------------------------------------------------------

struct budget_running_state {
  std::atomic<bool> started{false};
  asyncdb::error_code error;
  std::int64_t next = -1;
};

net::awaitable<void> budget_running(asyncdb::database& db, budget_running_state& st) {
  auto endless = [&st](SQLite::Database& c) {
    st.started = true;
    c.exec(budget_endless_insert);
  };
  st.error = co_await test::error_of(asyncdb::async_run(db, endless));
  st.next = co_await asyncdb::async_run(db, [](SQLite::Database& c) { return c.execAndGet("SELECT 42").getInt64(); });
}

TEST_CASE("a running write past the database's default budget is interrupted and leaves nothing", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  budget_running_state st;
  asyncdb::options o = test::default_options();
  o.operation_budget = 100ms;
  asyncdb::database db{dir.file(), o};
  test::run(ctx, budget_running(db, st), 30s);

  CHECK(st.started);
  CHECK(st.error == asyncdb::errc::deadline_exceeded);
  CHECK(st.next == 42);  // the connection serves the next operation
  CHECK(test::count_rows(dir.file()) == 0);
}

// ------------------------------------------------------------------------------------------------

struct budget_own_cancel_state {
  std::atomic<bool> started{false};
  asyncdb::error_code error;
  std::size_t winner = 99;
};

net::awaitable<void> budget_recorded(net::awaitable<asyncdb::error_code> aw, asyncdb::error_code& out) {
  out = co_await std::move(aw);
}

// The caller's own cancellation still reaches an operation with a budget, and still says operation_aborted.
net::awaitable<void> budget_own_cancel(asyncdb::database& db, budget_own_cancel_state& st) {
  auto endless = [&st](SQLite::Database& c) {
    st.started = true;
    c.exec(budget_endless_insert);
  };
  const auto token = asyncdb::budget(1h);
  net::awaitable<asyncdb::error_code> op = test::error_of(asyncdb::async_run(db, endless, token));
  const std::variant<std::monostate, std::monostate> r =
      co_await (budget_recorded(std::move(op), st.error) || test::timer_after_start(st.started));
  st.winner = r.index();
}

TEST_CASE("an operation with a budget cancelled by its caller first fails with operation_aborted", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  budget_own_cancel_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::run(ctx, budget_own_cancel(db, st), 30s);

  CHECK(st.winner == 1);
  CHECK(st.error == net::error::operation_aborted);
  CHECK(test::count_rows(dir.file()) == 0);
}

// ------------------------------------------------------------------------------------------------

struct budget_committed_state {
  test::gate g;
  std::atomic<bool> committed{false};
  test::completion op;
  asyncdb::error_code probe_error;
};

// The operation commits, then stays past its deadline: the timer fires (a probe with a later deadline,
// queued behind it, expires after it on the same single-threaded context), and it still reports success.
net::awaitable<void> budget_committed(asyncdb::database& db, budget_committed_state& st) {
  auto ex = co_await net::this_coro::executor;
  auto dao = [&st](SQLite::Database& c) {
    c.exec("INSERT INTO users(name, email) VALUES('committed', 'c@x')");  // autocommit: durable at once
    st.committed = true;
    st.g.wait();
    c.exec("INSERT INTO users(name, email) VALUES('after', 'a@x')");
  };
  asyncdb::async_run(db, dao, asyncdb::budget(30ms, net::bind_executor(ex, test::record_into(st.op))));
  co_await test::until_set(st.committed);
  auto probe = [](SQLite::Database& c) { c.exec("SELECT 1"); };
  const auto token = asyncdb::budget(40ms);
  st.probe_error = co_await test::error_of(asyncdb::async_run(db, probe, token));
  st.g.open();
  auto done = [&st] { return st.op.done; };
  co_await test::poll_until(done);
}

TEST_CASE("an operation that committed before its deadline passed reports success", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  budget_committed_state st;
  asyncdb::options o = test::default_options();
  o.group_commit.enabled = false;  // its first statement commits on its own
  asyncdb::database db{dir.file(), o};
  test::open_at_exit guard{st.g};
  test::run(ctx, budget_committed(db, st), 30s);

  CHECK(st.probe_error == asyncdb::errc::deadline_exceeded);
  CHECK(st.op.done);
  CHECK_FALSE(st.op.error);
  CHECK(test::rows_named(dir.file(), "committed") == 1);
  CHECK(test::rows_named(dir.file(), "after") == 1);
}

// ------------------------------------------------------------------------------------------------

// A write session holds the writer, so the calls below wait in its queue.
net::awaitable<void> budget_within_call(asyncdb::database& db, asyncdb::error_code& out,
                                        std::atomic<bool>& queued_ran) {
  asyncdb::AsyncDbSession holder = co_await asyncdb::async_db_session(db);
  test::AsyncUsers users{db};
  const test::UserCreate ann{"within", "w@x"};
  auto queued = [&queued_ran](SQLite::Database& c) {
    queued_ran = true;
    c.exec("SELECT 1");
  };
  net::awaitable<void> op = asyncdb::async_run(db, queued);
  out = co_await test::error_of(asyncdb::within(20ms, std::move(op)));
  net::awaitable<std::int64_t> add = users.call<&test::UserOper::add>(ann);
  const asyncdb::error_code add_error = co_await test::error_of(asyncdb::within(20ms, std::move(add)));
  CHECK(add_error == asyncdb::errc::deadline_exceeded);
  holder.release();
}

TEST_CASE("within() bounds an awaitable: a call queued past it fails with deadline_exceeded", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::error_code error;
  std::atomic<bool> queued_ran{false};
  asyncdb::database db{dir.file(), test::default_options()};
  test::run(ctx, budget_within_call(db, error, queued_ran), 30s);

  CHECK(error == asyncdb::errc::deadline_exceeded);
  CHECK_FALSE(queued_ran);
  CHECK(test::rows_named(dir.file(), "within") == 0);
}

// ------------------------------------------------------------------------------------------------

net::awaitable<void> budget_session_open(asyncdb::database& db, asyncdb::error_code& out) {
  asyncdb::AsyncDbSession holder = co_await asyncdb::async_db_session(db);  // holds the writer
  const auto token = asyncdb::budget(20ms);
  out = co_await test::error_of(asyncdb::async_db_session(db, token));
  holder.release();
}

TEST_CASE("a session that cannot open within its budget fails with deadline_exceeded", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::error_code error;
  asyncdb::database db{dir.file(), test::default_options()};
  test::run(ctx, budget_session_open(db, error), 30s);
  CHECK(error == asyncdb::errc::deadline_exceeded);
}

// ------------------------------------------------------------------------------------------------

net::awaitable<std::int64_t> budget_unbounded(asyncdb::database& db) {
  const auto forever = asyncdb::budget(std::chrono::hours::max());  // saturates: no bound, not an overflow
  co_await asyncdb::async_run(
      db, [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('ok', 'o@x')"); }, forever);
  // A zero budget expires at once. A session holds the writer meanwhile: a write that started and committed
  // before the timer fired would rightly succeed.
  asyncdb::AsyncDbSession holder = co_await asyncdb::async_db_session(db);
  const auto zero_is_now = asyncdb::budget(0ms);
  const asyncdb::error_code e = co_await test::error_of(asyncdb::async_run(
      db, [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('no', 'n@x')"); }, zero_is_now));
  CHECK(e == asyncdb::errc::deadline_exceeded);
  holder.release();
  test::AsyncUsers users{db};
  co_return co_await users.call<&test::UserOper::count>();
}

TEST_CASE("a budget past the clock's range is no bound, and options' maximum is none either", "[budget]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::options o = test::default_options();
  o.operation_budget = std::chrono::milliseconds::max();
  asyncdb::database db{dir.file(), o};
  CHECK(test::run(ctx, budget_unbounded(db), 30s) == 1);
  CHECK(test::rows_named(dir.file(), "no") == 0);
}

}  // namespace
