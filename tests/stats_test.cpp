// Statistics (database::stats()): queue depth, running operations, outcome counters, queue wait, and
// who holds the writer (an operation by its DAO member or caller, a session by the function that opened it).
#include "net.hpp"

#include <condition_variable>
#include <mutex>

#include "support.hpp"

using namespace net::experimental::awaitable_operators;

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Where gated_dao waits; set by the test that uses it.
test::gate* dao_gate = nullptr;
std::atomic<bool>* dao_entered = nullptr;

// A synchronous DAO whose add() waits at the test's gate before inserting.
class gated_dao {
 public:
  explicit gated_dao(SQLite::Database& db) : db_(db) {}
  std::int64_t add(const UserCreate& u) {
    dao_entered->store(true);
    dao_gate->wait();
    SQLite::Statement q(db_, "INSERT INTO users(name, email) VALUES(?, ?)");
    q.bind(1, u.name);
    q.bind(2, u.email);
    q.exec();
    return db_.getLastInsertRowid();
  }

 private:
  SQLite::Database& db_;
};

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&gated_dao::add> = true;  // it must hold the writer, not try a reader first

namespace {

class AsyncGated : public asyncdb::to_async_db_oper<AsyncGated, gated_dao> {
 public:
  using to_async_db_oper::to_async_db_oper;
};

// ------------------------------------------------------------------------------------------------

struct holder_state {
  test::gate g;
  std::atomic<bool> entered{false};
  int finished = 0;
  asyncdb::stats while_blocked;
  asyncdb::stats after;
};

net::awaitable<void> gated_add(asyncdb::database& db, holder_state& st) {
  AsyncGated users{db};
  UserCreate u{"gated", "g@x"};
  co_await users.call<&gated_dao::add>(u);
  ++st.finished;
}

net::awaitable<void> plain_write(asyncdb::database& db, holder_state& st) {
  co_await asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); });
  ++st.finished;
}

net::awaitable<void> hold_writer_with_an_operation(asyncdb::database& db, holder_state& st) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, gated_add(db, st), net::detached);
  co_await test::until_set(st.entered);
  net::co_spawn(ex, plain_write(db, st), net::detached);
  net::co_spawn(ex, plain_write(db, st), net::detached);
  auto two_queued = [&db] { return db.stats().queued == 2; };
  co_await test::poll_until(two_queued);
  st.while_blocked = db.stats();
  st.g.open();
  auto all_done = [&st] { return st.finished == 3; };
  co_await test::poll_until(all_done);
  st.after = db.stats();
}

TEST_CASE("stats() names the operation holding the writer and counts the operations queued behind it", "[stats]") {
  test::temp_dir dir;
  net::io_context ctx;
  holder_state st;
  dao_gate = &st.g;
  dao_entered = &st.entered;
  {
    asyncdb::database db{dir.file(), test::default_options()};
    test::open_at_exit guard{st.g};
    test::run(ctx, hold_writer_with_an_operation(db, st), 30s);
  }
  dao_gate = nullptr;
  dao_entered = nullptr;

  const asyncdb::stats& s = st.while_blocked;
  CHECK(s.running == 1);
  CHECK(s.queued == 2);
  CHECK(s.writer.what == asyncdb::writer_holder::kind::operation);
  INFO("writer.name = " << s.writer.name);
  CHECK(contains(s.writer.name, "add"));
  CHECK(s.writer.held_for > std::chrono::nanoseconds::zero());
  CHECK(st.after.writer.what == asyncdb::writer_holder::kind::none);
  CHECK(st.after.running == 0);
  CHECK(st.after.queued == 0);
  CHECK(st.after.completed == 3);
  CHECK(st.after.queue_wait > std::chrono::nanoseconds::zero());  // the two writes waited behind the add
}

// ------------------------------------------------------------------------------------------------

struct run_holder_state {
  test::gate g;
  std::atomic<bool> entered{false};
  bool done = false;
  asyncdb::writer_holder holder;
};

net::awaitable<void> hold_writer_via_run(asyncdb::database& db, run_holder_state& st) {
  AsyncGated users{db};
  auto wait_in_dao = [&st](gated_dao&) {
    st.entered = true;
    st.g.wait();
  };
  co_await users.run(wait_in_dao);
}

net::awaitable<void> observe_run_holder(asyncdb::database& db, run_holder_state& st) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, hold_writer_via_run(db, st), [&st](std::exception_ptr) { st.done = true; });
  co_await test::until_set(st.entered);
  st.holder = db.stats().writer;
  st.g.open();
  auto finished = [&st] { return st.done; };
  co_await test::poll_until(finished);
}

TEST_CASE("stats() names the calling function for an operation given as a callable", "[stats]") {
  test::temp_dir dir;
  net::io_context ctx;
  run_holder_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, observe_run_holder(db, st), 30s);

  CHECK(st.holder.what == asyncdb::writer_holder::kind::operation);
  INFO("writer.name = " << st.holder.name);
  CHECK(contains(st.holder.name, "hold_writer_via_run"));
}

// ------------------------------------------------------------------------------------------------

struct session_holder_state {
  asyncdb::writer_holder in_session;
  std::size_t running_while_idle = 99;
  asyncdb::writer_holder during_read_session;
};

net::awaitable<void> open_session_for_stats(asyncdb::database& db, session_holder_state& st) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.begin();
  co_await s.run([](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('s', 's@x')"); });
  st.in_session = db.stats().writer;
  st.running_while_idle = db.stats().running;
}

net::awaitable<void> observe_session_holder(asyncdb::database& db, session_holder_state& st) {
  co_await open_session_for_stats(db, st);
  auto released = [&db] { return db.stats().writer.what == asyncdb::writer_holder::kind::none; };
  co_await test::poll_until(released);
  asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
  co_await r.call<&UserOper::count>();
  st.during_read_session = db.stats().writer;
}

TEST_CASE("stats() names the coroutine that opened the write session holding the writer", "[stats][session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  session_holder_state st;
  test::run(ctx, observe_session_holder(db, st), 30s);

  CHECK(st.in_session.what == asyncdb::writer_holder::kind::session);
  INFO("writer.name = " << st.in_session.name);
  CHECK(contains(st.in_session.name, "open_session_for_stats"));
  CHECK(st.in_session.held_for > std::chrono::nanoseconds::zero());
  CHECK(st.running_while_idle == 0);  // a session holds the writer; it is not an operation running
  CHECK(st.during_read_session.what == asyncdb::writer_holder::kind::none);
}

// ------------------------------------------------------------------------------------------------

struct counting_state {
  test::gate g;
  std::atomic<bool> blocker_entered{false};
  std::atomic<bool> spin_started{false};
  std::atomic<bool> cancelled_ran{false};
  asyncdb::stats at_start;
  int add_ok = 0;
  int fail_seen = 0;
  test::completion blocker;
  test::completion to_cancel;
  net::cancellation_signal signal;
  test::completion behind;
  asyncdb::error_code refused;
  asyncdb::error_code interrupted;
  asyncdb::stats at_end;
  asyncdb::stats after_close;
  asyncdb::error_code after_close_error;
};

net::awaitable<void> do_counted_things(asyncdb::database& db, counting_state& st) {
  auto ex = co_await net::this_coro::executor;
  st.at_start = db.stats();
  // 3 operations that complete.
  for (int i = 0; i < 3; ++i) {
    UserCreate u{"ok" + std::to_string(i), "o@x"};
    co_await asyncdb::async_db_operation<&UserOper::add>{}(db, u);
    ++st.add_ok;
  }
  // 2 operations whose DAO throws.
  for (int i = 0; i < 2; ++i) {
    const std::string why = "no";
    try {
      co_await asyncdb::async_db_operation<&UserOper::fail>{}(db, why);
    } catch (const std::invalid_argument&) {
      ++st.fail_seen;
    }
  }
  // A blocker (completes), one operation cancelled while queued, one that waits and completes,
  // and one refused because max_queued (2) is reached.
  auto block = [&st](SQLite::Database&) {
    st.blocker_entered = true;
    st.g.wait();
  };
  asyncdb::async_run(db, block, net::bind_executor(ex, test::record_into(st.blocker)));
  co_await test::until_set(st.blocker_entered);
  auto never = [&st](SQLite::Database&) { st.cancelled_ran = true; };
  asyncdb::async_run(
      db, never,
      net::bind_cancellation_slot(st.signal.slot(), net::bind_executor(ex, test::record_into(st.to_cancel))));
  asyncdb::async_run(
      db, [](SQLite::Database& c) { c.exec("SELECT 1"); }, net::bind_executor(ex, test::record_into(st.behind)));
  st.refused = co_await test::error_of(asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); }));
  st.signal.emit(net::cancellation_type::terminal);
  st.g.open();
  auto drained = [&st] { return st.blocker.done && st.to_cancel.done && st.behind.done; };
  co_await test::poll_until(drained);
  // One operation cancelled while running.
  auto spin = [&st](SQLite::Database& c) {
    st.spin_started = true;
    return c
        .execAndGet(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) "
            "SELECT count(*) FROM n")
        .getInt64();
  };
  const std::variant<std::int64_t, std::monostate> r =
      co_await (asyncdb::async_run(db, spin) || test::timer_after_start(st.spin_started));
  st.interrupted =
      r.index() == 1 ? asyncdb::error_code{} : asyncdb::error_code{std::make_error_code(std::errc::timed_out)};
  st.at_end = db.stats();
  db.close();
  st.after_close_error =
      co_await test::error_of(asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); }));
  st.after_close = db.stats();
}

TEST_CASE("stats() counts completed, failed, cancelled and rejected operations exactly", "[stats]") {
  test::temp_dir dir;
  net::io_context ctx;
  counting_state st;
  asyncdb::options opts = test::default_options();
  opts.max_queued = 2;
  asyncdb::database db{dir.file(), opts};
  test::open_at_exit guard{st.g};
  test::run(ctx, do_counted_things(db, st), 30s);

  const asyncdb::stats& a = st.at_start;
  CHECK(a.completed == 0);
  CHECK(a.failed == 0);
  CHECK(a.cancelled == 0);
  CHECK(a.rejected == 0);
  CHECK(a.queued == 0);
  CHECK(a.running == 0);

  REQUIRE(st.add_ok == 3);
  REQUIRE(st.fail_seen == 2);
  CHECK_FALSE(st.blocker.error);
  CHECK(st.to_cancel.error == net::error::operation_aborted);
  CHECK_FALSE(st.cancelled_ran);
  CHECK_FALSE(st.behind.error);
  CHECK(st.refused == asyncdb::errc::queue_full);
  CHECK_FALSE(st.interrupted);

  const asyncdb::stats& e = st.at_end;
  CHECK(e.completed == 5);  // 3 adds, the blocker, the one behind it
  CHECK(e.failed == 2);     // the DAO's own exceptions
  CHECK(e.cancelled == 2);  // one while queued, one while running
  CHECK(e.rejected == 1);   // queue full
  CHECK(e.queued == 0);
  CHECK(e.running == 0);
  CHECK(e.queue_wait > std::chrono::nanoseconds::zero());
  CHECK(e.writer.what == asyncdb::writer_holder::kind::none);

  CHECK(st.after_close_error == asyncdb::errc::closed);
  CHECK(st.after_close.rejected == 2);  // refused because closed
  CHECK(st.after_close.completed == 5);
}

}  // namespace
