// Cancellation (Asio per-operation cancellation): a queued operation never runs, a running one is
// interrupted on its own connection only, a late interrupt never reaches the next operation, a busy
// wait stops, the connection is clean afterwards, and a session learns its transaction was aborted.
#include "net.hpp"

#include <sqlite3.h>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>

#include "support.hpp"

using namespace net::experimental::awaitable_operators;

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

// Awaits `aw`, records how it ended, and rethrows: lets a test see the error `||` swallows.
template <class T>
net::awaitable<T> recorded(net::awaitable<T> aw, asyncdb::error_code& out) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(aw);
      out = {};
    } else {
      T v = co_await std::move(aw);
      out = {};
      co_return v;
    }
  } catch (const asyncdb::system_error& e) {
    out = e.code();
    throw;
  }
}

// A query that runs for minutes unless interrupted.
constexpr const char* endless_count =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n";

// Runs `sql` and returns SQLite's error code (SQLITE_OK when it ran to the end).
int code_running(SQLite::Database& c, const char* sql) {
  try {
    c.execAndGet(sql);
    return SQLITE_OK;
  } catch (const SQLite::Exception& e) {
    return e.getErrorCode();
  }
}

// ------------------------------------------------------------------------------------------------

struct timeout_queued_state {
  test::gate g;
  std::atomic<bool> blocker_entered{false};
  std::atomic<bool> queued_ran{false};
  std::size_t winner = 99;
  asyncdb::error_code queued_error;
  test::completion blocker;
  bool blocker_done_at_timeout = true;
};

net::awaitable<void> timeout_queued_op(asyncdb::database& db, timeout_queued_state& st) {
  auto ex = co_await net::this_coro::executor;
  auto block = [&st](SQLite::Database&) {
    st.blocker_entered = true;
    st.g.wait();
  };
  asyncdb::async_run(db, block, net::bind_executor(ex, test::record_into(st.blocker)));
  co_await test::until_set(st.blocker_entered);

  auto queued = [&st](SQLite::Database&) {
    st.queued_ran = true;
    return 1;
  };
  net::steady_timer timer{ex, 20ms};
  const std::variant<int, std::monostate> r =
      co_await (recorded(asyncdb::async_run(db, queued), st.queued_error) || timer.async_wait(net::use_awaitable));
  st.winner = r.index();
  st.blocker_done_at_timeout = st.blocker.done;
  st.g.open();
  auto blocker_done = [&st] { return st.blocker.done; };
  co_await test::poll_until(blocker_done);
  co_await asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); });  // behind the cancelled one
}

namespace {

// An executor of an io_context that emits `signal` the first time it is asked for its execution context, which
// asyncdb does while setting an operation up, after connecting its cancellation slot: a cancellation that
// arrives between that and the queueing. Everything else is the wrapped executor's.
template <class Inner>
struct emitting_executor {
  Inner inner;
  net::cancellation_signal* signal;
  bool* armed;

  net::execution_context& query(net::execution::context_t) const noexcept {
    if (*armed) {
      *armed = false;
      signal->emit(net::cancellation_type::terminal);
    }
    return net::query(inner, net::execution::context);
  }
  template <class Property>
  auto query(const Property& p) const -> decltype(net::query(std::declval<const Inner&>(), p)) {
    return net::query(inner, p);
  }
  template <class Property>
  auto require(const Property& p) const
      -> emitting_executor<std::decay_t<decltype(net::require(std::declval<const Inner&>(), p))>> {
    return {net::require(inner, p), signal, armed};
  }
  template <class Property>
  auto prefer(const Property& p) const
      -> emitting_executor<std::decay_t<decltype(net::prefer(std::declval<const Inner&>(), p))>> {
    return {net::prefer(inner, p), signal, armed};
  }
  template <class F>
  void execute(F&& f) const {
    net::execution::execute(inner, std::forward<F>(f));
  }
  friend bool operator==(const emitting_executor& a, const emitting_executor& b) noexcept { return a.inner == b.inner; }
  friend bool operator!=(const emitting_executor& a, const emitting_executor& b) noexcept { return !(a == b); }
};

}  // namespace

TEST_CASE(
    "a cancellation arriving while an operation is set up completes it once as aborted, counted, holding no "
    "queue place",
    "[cancellation][backpressure]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  test::gate g;
  test::open_at_exit guard{g};
  std::atomic<bool> blocker_entered{false};
  auto block = [&](SQLite::Database&) {
    blocker_entered = true;
    g.wait();
  };
  test::completion blocker;
  asyncdb::async_run(db, block, net::bind_executor(ctx, test::record_into(blocker)));
  while (!blocker_entered) std::this_thread::yield();

  net::cancellation_signal signal;
  bool armed = true;
  std::atomic<bool> ran{false};
  int completions = 0;
  asyncdb::error_code error;
  auto fn = [&ran](SQLite::Database&) {
    ran = true;
    return 1;
  };
  auto cb = [&](std::exception_ptr ep, int) {
    ++completions;
    error = test::code_of(ep);
  };
  const emitting_executor<net::io_context::executor_type> ex{ctx.get_executor(), &signal, &armed};
  asyncdb::async_run(db, fn, net::bind_cancellation_slot(signal.slot(), net::bind_executor(ex, cb)));
  const bool emitted_during_setup = !armed;
  const asyncdb::stats while_writer_held = db.stats();
  g.open();
  ctx.run_for(30s);
  const asyncdb::stats after = db.stats();

  REQUIRE(emitted_during_setup);
  CHECK(while_writer_held.queued == 0);  // no max_queued place held by what is already cancelled
  CHECK(while_writer_held.cancelled == 1);
  CHECK(completions == 1);
  CHECK(error == net::error::operation_aborted);
  CHECK_FALSE(ran);
  CHECK(blocker.done);
  CHECK(after.cancelled == 1);
  CHECK(after.queued == 0);
}

TEST_CASE("op || timer cancels a queued operation, which never runs", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  timeout_queued_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, timeout_queued_op(db, st), 30s);

  CHECK(st.winner == 1);
  CHECK_FALSE(st.blocker_done_at_timeout);
  CHECK(st.queued_error == net::error::operation_aborted);
  CHECK_FALSE(st.queued_ran);
  CHECK_FALSE(st.blocker.error);
}

// ------------------------------------------------------------------------------------------------

struct isolation_state {
  std::atomic<bool> reader_active{false};
  std::atomic<bool> reader_stopped{false};
  std::atomic<std::int64_t> reader_progress{0};
  std::atomic<bool> stop_reading{false};
  std::atomic<bool> writer_started{false};
  int writer_sqlite_code = -1;
  bool reader_progressed_while_writer_interrupted = false;
  asyncdb::error_code writer_error;
  std::size_t winner = 99;
  std::int64_t reader_rows = -1;
  int reader_sqlite_code = -1;
  bool reader_done = false;
  asyncdb::error_code reader_error;
  std::int64_t next_writer_result = -1;
};

struct set_at_exit {
  std::atomic<bool>& flag;
  ~set_at_exit() { flag = true; }
};

// Keeps one statement stepping on the reader for the whole time the writer's operation is being
// interrupted, so an interrupt that reached this connection (SQLite's or asyncdb's own) would stop it.
std::int64_t long_read(SQLite::Database& c, isolation_state& st) {
  SQLite::Statement q(c,
                      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) "
                      "SELECT i FROM n");
  try {
    std::int64_t rows = 0;
    while (q.executeStep()) {
      ++rows;
      st.reader_progress = rows;
      if (rows == 1) st.reader_active = true;
      if (st.stop_reading) break;
    }
    st.reader_sqlite_code = SQLITE_OK;
    st.reader_stopped = true;
    return rows;
  } catch (const SQLite::Exception& e) {
    st.reader_sqlite_code = e.getErrorCode();
    st.reader_stopped = true;
    throw;
  }
}

net::awaitable<void> reader_task(asyncdb::database& db, isolation_state& st) {
  auto fn = [&st](SQLite::Database& c) { return long_read(c, st); };
  try {
    st.reader_rows = co_await asyncdb::async_run(db, asyncdb::read_only, fn);
  } catch (const asyncdb::system_error& e) {
    st.reader_error = e.code();
  } catch (...) {
    st.reader_error = std::make_error_code(std::errc::state_not_recoverable);
  }
  st.reader_done = true;
}

net::awaitable<void> interrupt_writer_only(asyncdb::database& db, isolation_state& st) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, reader_task(db, st), net::detached);
  co_await test::until_set(st.reader_active);

  auto endless = [&st](SQLite::Database& c) {
    st.writer_started = true;
    st.writer_sqlite_code = code_running(c, endless_count);
    // Still inside the interrupted operation: let the reader step many more rows meanwhile.
    const std::int64_t from = st.reader_progress;
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!st.reader_stopped && st.reader_progress < from + 50000 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::yield();
    }
    st.reader_progressed_while_writer_interrupted = st.reader_progress >= from + 50000;
    if (st.writer_sqlite_code != SQLITE_OK) throw SQLite::Exception("interrupted", st.writer_sqlite_code);
    return std::int64_t{0};
  };
  const std::variant<std::int64_t, std::monostate> r = co_await (
      recorded(asyncdb::async_run(db, endless), st.writer_error) || test::timer_after_start(st.writer_started));
  st.winner = r.index();

  st.stop_reading = true;  // only now: the reader kept stepping through the whole interruption
  auto reader_done = [&st] { return st.reader_done; };
  co_await test::poll_until(reader_done);
  st.next_writer_result =
      co_await asyncdb::async_run(db, [](SQLite::Database& c) { return c.execAndGet("SELECT 41 + 1").getInt64(); });
}

TEST_CASE("a running operation is interrupted on its own connection only", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  isolation_state st;
  asyncdb::database db{dir.file(), test::default_options(1)};
  set_at_exit stop_reader{st.stop_reading};
  test::run(ctx, interrupt_writer_only(db, st), 30s);

  CHECK(st.winner == 1);
  CHECK(st.writer_sqlite_code == SQLITE_INTERRUPT);
  CHECK(st.writer_error == net::error::operation_aborted);
  CHECK(st.reader_progressed_while_writer_interrupted);
  CHECK_FALSE(st.reader_error);
  CHECK(st.reader_sqlite_code == SQLITE_OK);
  CHECK(st.reader_rows > 1);
  CHECK(st.next_writer_result == 42);
}

// ------------------------------------------------------------------------------------------------

struct late_interrupt_state {
  int rounds = 0;
  int first_aborted = 0;
  int first_completed = 0;
  int first_other = 0;
  std::atomic<int> first_interrupted_while_running{0};
  int next_failed = 0;
  int next_completed = 0;
  // One per round, never moved, alive until the test ends: handlers refer to them.
  std::deque<test::completion> firsts;
  std::deque<test::completion> nexts;
  std::deque<std::int64_t> next_rows;
  std::deque<net::cancellation_signal> signals;
};

net::awaitable<void> cancel_then_next(asyncdb::database& db, late_interrupt_state& st, int rounds) {
  auto ex = co_await net::this_coro::executor;
  for (int i = 0; i < rounds; ++i) {
    // The first operation's length and the moment of the cancellation vary, so the cancellation lands
    // at every point of its life: queued, running, finished but not yet delivered. The next operation
    // is long enough (well over 1000 VM steps) that a leftover interrupt would stop it.
    // Handlers capture pointers into the deques, never the frame's reference variables.
    test::completion* first = &st.firsts.emplace_back();
    test::completion* next = &st.nexts.emplace_back();
    std::int64_t* next_rows = &st.next_rows.emplace_back(0);
    net::cancellation_signal* signal = &st.signals.emplace_back();
    const int first_rows = 2000 * (i % 5);
    auto first_op = [&st, first_rows](SQLite::Database& c) {
      const std::string sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
                              std::to_string(first_rows) + ") SELECT count(*) FROM n";
      const int code = code_running(c, sql.c_str());
      if (code == SQLITE_INTERRUPT) ++st.first_interrupted_while_running;
      if (code != SQLITE_OK) throw SQLite::Exception("first", code);
    };
    auto long_op = [](SQLite::Database& c) {
      return c
          .execAndGet(
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
              "SELECT count(*) FROM n")
          .getInt64();
    };
    asyncdb::async_run(
        db, first_op, net::bind_cancellation_slot(signal->slot(), net::bind_executor(ex, [first](std::exception_ptr e) {
                                                    first->error = test::code_of(e);
                                                    first->done = true;
                                                  })));
    if (i % 3 != 0) {
      net::steady_timer pause{ex, std::chrono::microseconds(100 * (i % 7))};
      co_await pause.async_wait(net::use_awaitable);
    }
    if (!first->done) signal->emit(net::cancellation_type::terminal);
    asyncdb::async_run(db, long_op, net::bind_executor(ex, [next, next_rows](std::exception_ptr e, std::int64_t rows) {
                         next->error = test::code_of(e);
                         *next_rows = rows;
                         next->done = true;
                       }));
    auto both = [first, next] { return first->done && next->done; };
    co_await test::poll_until(both);
    ++st.rounds;
    if (first->error == net::error::operation_aborted) {
      ++st.first_aborted;
    } else if (!first->error) {
      ++st.first_completed;
    } else {
      ++st.first_other;
    }
    ((next->error || *next_rows != 20000) ? st.next_failed : st.next_completed)++;
  }
}

TEST_CASE("a late interrupt never reaches the next operation on the same connection", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  late_interrupt_state st;
  constexpr int rounds = 60;
  test::run(ctx, cancel_then_next(db, st, rounds), 60s);

  CHECK(st.rounds == rounds);
  CHECK(st.first_other == 0);
  CHECK(st.first_aborted + st.first_completed == rounds);
  CHECK(st.next_failed == 0);
  CHECK(st.next_completed == rounds);
}

// ------------------------------------------------------------------------------------------------

// Starts `dao` with st.signal as its cancellation slot and st.op as its record; once the DAO code sets
// st.between (then waits at st.g), emits the cancellation, opens st.g, and waits until the operation completed.
template <class State, class Dao>
net::awaitable<void> cancel_between_statements_of(asyncdb::database& db, Dao& dao, State& st) {
  auto ex = co_await net::this_coro::executor;
  asyncdb::async_run(db, dao,
                     net::bind_cancellation_slot(st.signal.slot(), net::bind_executor(ex, test::record_into(st.op))));
  co_await test::until_set(st.between);
  st.signal.emit(net::cancellation_type::terminal);
  st.g.open();
  auto done = [&st] { return st.op.done; };
  co_await test::poll_until(done);
}

struct between_state {
  test::gate g;
  std::atomic<bool> between{false};
  int second_statement_code = -1;
  bool third_statement_ran = false;
  test::completion op;
  net::cancellation_signal signal;
  std::int64_t next_result = -1;
};

net::awaitable<void> cancel_between_statements(asyncdb::database& db, between_state& st) {
  // The first statement only reads: an operation that has committed something is no longer interrupted.
  auto dao = [&st](SQLite::Database& c) {
    c.execAndGet("SELECT count(*) FROM users");
    st.between = true;
    st.g.wait();  // the test emits the cancellation, then opens the gate
    st.second_statement_code = code_running(
        c, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) SELECT count(*) FROM n");
    if (st.second_statement_code != SQLITE_OK) throw SQLite::Exception("stopped", st.second_statement_code);
    c.exec("INSERT INTO users(name, email) VALUES('third', 't@x')");
    st.third_statement_ran = true;
  };
  co_await cancel_between_statements_of(db, dao, st);
  st.next_result = co_await asyncdb::async_run(db, [](SQLite::Database& c) {
    return c
        .execAndGet(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) "
            "SELECT count(*) FROM n")
        .getInt64();
  });
}

TEST_CASE("an operation cancelled between two statements stops at the next one, and the next operation runs",
          "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  between_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, cancel_between_statements(db, st), 30s);

  CHECK(st.second_statement_code == SQLITE_INTERRUPT);
  CHECK_FALSE(st.third_statement_ran);
  CHECK(st.op.error == net::error::operation_aborted);
  CHECK(st.next_result == 50000);
  CHECK(test::rows_named(dir.file(), "third") == 0);
}

// ------------------------------------------------------------------------------------------------

struct short_between_state {
  test::gate g;
  std::atomic<bool> between{false};
  bool second_statement_ran = false;
  test::completion op;
  net::cancellation_signal signal;
};

net::awaitable<void> cancel_before_a_short_statement(asyncdb::database& db, short_between_state& st) {
  auto dao = [&st](SQLite::Database& c) {
    c.execAndGet("SELECT count(*) FROM users");
    st.between = true;
    st.g.wait();  // the test emits the cancellation, then opens the gate
    c.exec("INSERT INTO users(name, email) VALUES('short', 's@x')");  // one row: a few dozen VM steps
    st.second_statement_ran = true;
  };
  co_await cancel_between_statements_of(db, dao, st);
}

// The interrupt that lands between statements is lost by SQLite, and a one-row INSERT is too short for the
// progress handler; the commit hook is what turns its commit into a rollback.
TEST_CASE("an operation cancelled between two statements does not run even a short next statement", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  short_between_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, cancel_before_a_short_statement(db, st), 30s);

  CHECK_FALSE(st.second_statement_ran);
  CHECK(st.op.error == net::error::operation_aborted);
  CHECK(test::rows_named(dir.file(), "short") == 0);
}

net::awaitable<void> cancel_after_a_commit(asyncdb::database& db, short_between_state& st) {
  auto dao = [&st](SQLite::Database& c) {
    c.exec("INSERT INTO users(name, email) VALUES('committed', 'c@x')");  // autocommit: durable at once
    st.between = true;
    st.g.wait();  // the test emits the cancellation, then opens the gate
    c.exec("INSERT INTO users(name, email) VALUES('after', 'a@x')");
    st.second_statement_ran = true;
  };
  co_await cancel_between_statements_of(db, dao, st);
}

// operation_aborted must mean "nothing of it is in the database": one that already committed a statement
// can no longer say that, so it runs to its end and reports what really happened.
TEST_CASE("an operation cancelled after it committed a statement runs to its end and succeeds", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  short_between_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, cancel_after_a_commit(db, st), 30s);

  CHECK(st.second_statement_ran);
  CHECK_FALSE(st.op.error);
  CHECK(test::rows_named(dir.file(), "committed") == 1);
  CHECK(test::rows_named(dir.file(), "after") == 1);
}

// ------------------------------------------------------------------------------------------------

struct busy_state {
  test::completion op;
  net::cancellation_signal signal;
  std::atomic<bool> entered{false};
};

net::awaitable<void> cancel_busy_wait(asyncdb::database& db, busy_state& st) {
  auto ex = co_await net::this_coro::executor;
  auto insert = [&st](SQLite::Database& c) {
    st.entered = true;
    c.exec("INSERT INTO users(name, email) VALUES('blocked', 'b@x')");  // waits in the busy handler
  };
  asyncdb::async_run(db, insert,
                     net::bind_cancellation_slot(st.signal.slot(), net::bind_executor(ex, test::record_into(st.op))));
  auto running = [&] { return db.stats().running == 1 && st.entered; };
  co_await test::poll_until(running);
  st.signal.emit(net::cancellation_type::terminal);
  auto done = [&st] { return st.op.done; };
  co_await test::poll_until(done);  // 10 s at most: far below the 30 s busy timeout
}

TEST_CASE("a wait in SQLite's busy handler stops when the operation is cancelled", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::options opts = test::default_options();
  opts.busy_timeout = 30s;
  asyncdb::database db{dir.file(), opts};
  SQLite::Database locker(dir.file(), SQLite::OPEN_READWRITE);
  locker.exec("BEGIN IMMEDIATE");  // another process's writer, as far as asyncdb can tell
  busy_state st;
  test::run(ctx, cancel_busy_wait(db, st), 30s);
  locker.exec("ROLLBACK");

  CHECK(st.op.done);
  CHECK(st.op.error == net::error::operation_aborted);
  CHECK(test::rows_named(dir.file(), "blocked") == 0);
}

// ------------------------------------------------------------------------------------------------

std::atomic<bool>* spinner_started = nullptr;  // set by the test that uses spinner_dao

// A DAO holding a prepared statement as a member, left stepping when its call is interrupted.
class spinner_dao {
 public:
  explicit spinner_dao(SQLite::Database& db) : db_(db), rows_(db, "SELECT id FROM users ORDER BY id") {}
  std::int64_t spin_in_transaction() {
    db_.exec("BEGIN");
    db_.exec("INSERT INTO users(name, email) VALUES('spun', 's@x')");
    rows_.reset();
    rows_.executeStep();  // a statement still stepping, owned by the DAO
    spinner_started->store(true);
    return db_.execAndGet(endless_count).getInt64();
  }

 private:
  SQLite::Database& db_;
  SQLite::Statement rows_;
};

struct clean_state {
  std::atomic<bool> started{false};
  std::size_t winner = 99;
  asyncdb::error_code error;
  int autocommit = -1;
  int busy_statements = -1;
  int spun_rows = -1;
};

struct connection_state {
  int autocommit;
  int busy_statements;
  int spun_rows;
};

connection_state inspect(SQLite::Database& c) {
  sqlite3* h = c.getHandle();
  int busy = 0;
  for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
    if (sqlite3_stmt_busy(s) != 0) ++busy;
  }
  const int autocommit = sqlite3_get_autocommit(h);  // before our own statement below
  const int spun = c.execAndGet("SELECT count(*) FROM users WHERE name = 'spun'").getInt();
  return {autocommit, busy, spun};
}

net::awaitable<void> cancel_then_inspect(asyncdb::database& db, clean_state& st) {
  const std::variant<std::int64_t, std::monostate> r =
      co_await (recorded(asyncdb::async_db_operation<&spinner_dao::spin_in_transaction>{}(db), st.error) ||
                test::timer_after_start(st.started));
  st.winner = r.index();
  const connection_state c = co_await asyncdb::async_run(db, inspect);
  st.autocommit = c.autocommit;
  st.busy_statements = c.busy_statements;
  st.spun_rows = c.spun_rows;
}

TEST_CASE("after a cancellation the connection has no open transaction and no stepping statement", "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  clean_state st;
  spinner_started = &st.started;
  test::run(ctx, cancel_then_inspect(db, st), 30s);
  spinner_started = nullptr;

  CHECK(st.winner == 1);
  CHECK(st.error == net::error::operation_aborted);
  CHECK(st.autocommit == 1);
  CHECK(st.busy_statements == 0);
  CHECK(st.spun_rows == 0);
}

// ------------------------------------------------------------------------------------------------

struct session_abort_state {
  std::atomic<bool> started{false};
  std::size_t winner = 99;
  asyncdb::error_code cancelled_error;
  int lock_after_cancel = -1;
  asyncdb::error_code add_after;
  asyncdb::error_code commit_after;
  asyncdb::error_code begin_after;
  std::int64_t t2_id = 0;
};

net::awaitable<void> interrupt_session_transaction(asyncdb::database& db, const std::filesystem::path& file,
                                                   session_abort_state& st) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.begin();
  UserCreate t1{"t1", "t1@x"};
  co_await s.call<&UserOper::add>(t1);
  auto endless = [&st](SQLite::Database& c) {
    st.started = true;
    return c.execAndGet(endless_count).getInt64();
  };
  const std::variant<std::int64_t, std::monostate> r =
      co_await (recorded(s.run(endless), st.cancelled_error) || test::timer_after_start(st.started));
  st.winner = r.index();
  // A plain connection can take the write lock only if the session's BEGIN IMMEDIATE was rolled back.
  SQLite::Database other(file, SQLite::OPEN_READWRITE);
  try {
    other.exec("BEGIN IMMEDIATE");
    other.exec("ROLLBACK");
    st.lock_after_cancel = SQLITE_OK;
  } catch (const SQLite::Exception& e) {
    st.lock_after_cancel = e.getErrorCode();
  }

  UserCreate u2{"u2", "u2@x"};
  st.add_after = co_await test::error_of(s.call<&UserOper::add>(u2));
  st.commit_after = co_await test::error_of(s.commit());
  st.begin_after = co_await test::error_of(s.begin());
  co_await s.rollback();
  co_await s.begin();
  UserCreate t2{"t2", "t2@x"};
  st.t2_id = co_await s.call<&UserOper::add>(t2);
  co_await s.commit();
}

TEST_CASE("a session operation interrupted inside a transaction rolls it back and the session says so",
          "[cancellation][session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  session_abort_state st;
  test::run(ctx, interrupt_session_transaction(db, dir.file(), st), 30s);

  CHECK(st.winner == 1);
  CHECK(st.cancelled_error == net::error::operation_aborted);
  CHECK(st.lock_after_cancel == SQLITE_OK);
  CHECK(st.add_after == asyncdb::errc::transaction_aborted);
  CHECK(st.commit_after == asyncdb::errc::transaction_aborted);
  CHECK(st.begin_after == asyncdb::errc::transaction_aborted);
  CHECK(st.t2_id > 0);
  CHECK(test::rows_named(dir.file(), "t1") == 0);
  CHECK(test::rows_named(dir.file(), "u2") == 0);
  CHECK(test::rows_named(dir.file(), "t2") == 1);
}

// ------------------------------------------------------------------------------------------------

void sums_schema(SQLite::Database& c) {
  test::create_schema(c);
  if (!c.tableExists("sums")) c.exec("CREATE TABLE sums(k INTEGER, v INTEGER)");
}

// One autocommit INSERT of about 4,000 VM steps, shaped so that its last progress-handler call (one every
// 1,000 steps) comes at the very end of the statement, after its COMMIT. A cancellation landing while that
// commit is written (an fsync: most of the operation's time) meets a write that is already durable.
constexpr const char* summed_insert =
    "INSERT INTO sums(k, v) SELECT ?, sum(x) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "LIMIT 234) SELECT x FROM c)";

auto summed_insert_of(std::int64_t key) {
  return [key](SQLite::Database& c) {
    SQLite::Statement q(c, summed_insert);
    q.bind(1, key);
    q.exec();
  };
}

struct commit_race_state {
  std::vector<std::optional<asyncdb::error_code>> outcomes;  // per attempt, whose key is its index
  unsigned seed = 0;
};

// Awaits `aw` and stores how it ended: no error, or code_of() its exception; nothing escapes.
net::awaitable<void> outcome_into(net::awaitable<void> aw, std::optional<asyncdb::error_code>& out) {
  try {
    co_await std::move(aw);
    out = asyncdb::error_code{};
  } catch (...) {
    out = test::code_of(std::current_exception());
  }
}

// One attempt after another, each with its own key, each raced against a timer whose delay is drawn
// log-uniformly from 1 us to 20 ms, so that whatever this machine's fsync costs right now, the cancellation
// lands at every point of an attempt's life: queued, running, committing, done.
net::awaitable<void> cancel_writes_at_random(asyncdb::database& db, commit_race_state& st) {
  auto ex = co_await net::this_coro::executor;
  std::mt19937 random{st.seed};
  std::uniform_real_distribution<double> log_delay(0.0, std::log(20000.0));
  for (std::size_t key = 0; key < st.outcomes.size(); ++key) {
    auto insert = summed_insert_of(static_cast<std::int64_t>(key));
    const auto delay = std::chrono::microseconds(static_cast<std::int64_t>(std::exp(log_delay(random))));
    net::steady_timer timer{ex, delay};
    co_await (outcome_into(asyncdb::async_run(db, insert), st.outcomes[key]) || timer.async_wait(net::use_awaitable));
  }
}

TEST_CASE("a write cancelled at a random moment is either aborted and absent or successful and present once",
          "[cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  commit_race_state st;
  st.outcomes.resize(200);
  st.seed = std::random_device{}();
  {
    asyncdb::options opts = test::default_options();
    opts.on_open = sums_schema;
    asyncdb::database db{dir.file(), opts};
    test::run(ctx, cancel_writes_at_random(db, st), 60s);
  }

  SQLite::Database plain(dir.file(), SQLite::OPEN_READONLY);
  SQLite::Statement rows(plain, "SELECT count(*) FROM sums WHERE k = ?");
  int aborted = 0, succeeded = 0, other = 0, aborted_but_committed = 0, succeeded_but_not_once = 0;
  for (std::size_t key = 0; key < st.outcomes.size(); ++key) {
    rows.reset();
    rows.bind(1, static_cast<std::int64_t>(key));
    rows.executeStep();
    const int found = rows.getColumn(0).getInt();
    const std::optional<asyncdb::error_code>& o = st.outcomes[key];
    if (o && *o == net::error::operation_aborted) {
      ++aborted;
      if (found != 0) ++aborted_but_committed;
    } else if (o && !*o) {
      ++succeeded;
      if (found != 1) ++succeeded_but_not_once;
    } else {
      ++other;
    }
  }
  INFO("seed " << st.seed << "; of " << st.outcomes.size() << ": " << aborted << " aborted, " << succeeded
               << " succeeded, " << other << " other");
  CHECK(other == 0);
  CHECK(aborted_but_committed == 0);  // operation_aborted means nothing of it happened
  CHECK(succeeded_but_not_once == 0);
  CHECK(aborted > 0);  // the delays spanned both outcomes
  CHECK(succeeded > 0);
}

}  // namespace
