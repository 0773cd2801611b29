// Sessions (session.hpp): one connection pinned across awaits, the writer held until the session ends,
// BEGIN IMMEDIATE, asynchronous opening, release without a free worker, rollback on scope exit, one
// snapshot per read session, move-only handles.
#include "net.hpp"

#include <sqlite3.h>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <type_traits>
#include <variant>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

// ------------------------------------------------------------------------------------------------

net::awaitable<void> api_block_sessions(asyncdb::database& db) {
  test::AsyncUsers users{db};
  UserCreate ann{"ann", "ann@x.org"};
  co_await users.call<&UserOper::add>(ann);
  {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    UserCreate bob{"bob", "bob@x.org"};
    co_await s.call<&UserOper::add>(bob);
    co_await s.run([](SQLite::Database& c) { c.exec("UPDATE users SET is_active = 0 WHERE name = 'ann'"); });
    co_await s.commit();
  }
  asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
  const std::string bob_name = "bob";
  const std::optional<test::User> bob = co_await r.call<&UserOper::get_by_name>(bob_name);
  REQUIRE(bob.has_value());
  CHECK(bob->email == "bob@x.org");
  const std::vector<test::User> active = co_await r.call<&UserOper::get_active_users>();
  REQUIRE(active.size() == 1);
  CHECK(active[0].name == "bob");
}

TEST_CASE("every session line of the API block compiles and runs", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  {
    asyncdb::database db{dir.file(), test::default_options()};
    test::run(ctx, api_block_sessions(db), 30s);
  }
  SQLite::Database check(dir.file(), SQLite::OPEN_READWRITE);
  CHECK(check.execAndGet("SELECT is_active FROM users WHERE name = 'ann'").getInt() == 0);
  CHECK(check.execAndGet("SELECT is_active FROM users WHERE name = 'bob'").getInt() == 1);
}

// ------------------------------------------------------------------------------------------------

struct where_t {
  std::thread::id thread;
  std::uintptr_t handle = 0;
};

struct one_connection_log {
  std::vector<where_t> seen;
  std::vector<std::thread::id> dao_threads;
  std::vector<int> order;  // written on the session's thread only; read after the ops completed
};

net::awaitable<void> use_one_session(asyncdb::database& db, bool read_only, one_connection_log& log) {
  asyncdb::AsyncDbSession s;
  if (read_only) {
    s = co_await asyncdb::async_db_session(db, asyncdb::read_only);
  } else {
    s = co_await asyncdb::async_db_session(db);
  }
  for (int i = 0; i < 4; ++i) {
    const where_t w = co_await s.run([](SQLite::Database& c) {
      return where_t{std::this_thread::get_id(), reinterpret_cast<std::uintptr_t>(c.getHandle())};
    });
    log.seen.push_back(w);
    const std::thread::id dao_thread = co_await s.call<&UserOper::where>();
    log.dao_threads.push_back(dao_thread);
  }
  // Started back to back from one coroutine (gather starts them in input order): run in that order.
  std::vector<net::awaitable<int>> batch;
  for (int i = 0; i < 8; ++i) {
    auto record = [&log, i](SQLite::Database&) {
      log.order.push_back(i);
      return i;
    };
    batch.push_back(s.run(record));
  }
  co_await asyncdb::gather(std::move(batch));
}

TEST_CASE("a session's operations run in order on one connection and one thread", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  one_connection_log writer;
  one_connection_log reader;
  test::run(ctx, use_one_session(db, false, writer), 30s);
  test::run(ctx, use_one_session(db, true, reader), 30s);

  for (one_connection_log* log : {&writer, &reader}) {
    REQUIRE(log->seen.size() == 4);
    for (const where_t& w : log->seen) {
      CHECK(w.thread == log->seen.front().thread);
      CHECK(w.handle == log->seen.front().handle);
    }
    for (std::thread::id t : log->dao_threads) CHECK(t == log->seen.front().thread);
    CHECK(log->seen.front().thread != std::this_thread::get_id());
    CHECK(log->order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  }
  CHECK(writer.seen.front().handle != reader.seen.front().handle);
}

// ------------------------------------------------------------------------------------------------

struct writer_hold_state {
  std::atomic<int> sequence{0};
  std::atomic<bool> outside_ran{false};
  int outside_step = -1;
  std::int64_t outside_id = 0;
  bool outside_done = false;
  std::int64_t session_ids[2] = {0, 0};
  int last_session_step = -1;
  bool outside_ran_during_transaction = true;
  bool outside_ran_after_commit = true;
  bool outside_done_before_release = true;
  std::size_t queued_while_held = 0;
  std::int64_t committed_seen_by_reader = -1;
  int outside_rows_while_held = -1;
};

net::awaitable<void> outside_write(asyncdb::database& db, writer_hold_state& st) {
  auto insert = [&st](SQLite::Database& c) {
    st.outside_step = st.sequence++;
    st.outside_ran = true;
    c.exec("INSERT INTO users(name, email) VALUES('outside', 'o@x')");
    return c.getLastInsertRowid();
  };
  st.outside_id = co_await asyncdb::async_run(db, insert);
  st.outside_done = true;
}

net::awaitable<void> hold_the_writer(asyncdb::database& db, const std::filesystem::path& file, writer_hold_state& st) {
  test::AsyncUsers users{db};
  {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    UserCreate first{"s1", "s1@x"};
    st.session_ids[0] = co_await s.call<&UserOper::add>(first);

    net::co_spawn(co_await net::this_coro::executor, outside_write(db, st), net::detached);
    auto outside_queued = [&db] { return db.stats().queued == 1; };
    co_await test::poll_until(outside_queued);

    UserCreate second{"s2", "s2@x"};
    st.session_ids[1] = co_await s.call<&UserOper::add>(second);
    auto peek = [&st](SQLite::Database&) { return st.outside_ran.load(); };
    st.outside_ran_during_transaction = co_await s.run(peek);
    co_await s.commit();
    // Committed, but the session still holds the writer.
    st.outside_ran_after_commit = co_await s.run(peek);
    auto step = [&st](SQLite::Database&) { return st.sequence++; };
    st.last_session_step = co_await s.run(step);
    st.queued_while_held = db.stats().queued;
    st.outside_rows_while_held = test::rows_named(file, "outside");  // a separate connection sees no outside write
    // Reads are not held back by a write session: they run on the readers.
    st.committed_seen_by_reader = co_await users.call<&UserOper::count>();
    st.outside_done_before_release = st.outside_done;
  }
  co_await test::until_set(st.outside_ran);
  auto done = [&st] { return st.outside_done; };
  co_await test::poll_until(done);
}

TEST_CASE("a write session holds the writer: an outside write runs only after the session ends", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  writer_hold_state st;
  test::run(ctx, hold_the_writer(db, dir.file(), st), 30s);

  CHECK_FALSE(st.outside_ran_during_transaction);
  CHECK_FALSE(st.outside_ran_after_commit);
  CHECK_FALSE(st.outside_done_before_release);
  CHECK(st.queued_while_held == 1);
  CHECK(st.outside_rows_while_held == 0);
  CHECK(st.committed_seen_by_reader == 2);
  CHECK(st.outside_step > st.last_session_step);
  CHECK(st.outside_id > st.session_ids[0]);
  CHECK(st.outside_id > st.session_ids[1]);
  CHECK(test::rows_named(dir.file(), "outside") == 1);
}

// ------------------------------------------------------------------------------------------------

// A plain second connection (busy timeout 0) tries to take the write lock; returns SQLite's code.
int try_begin_immediate(SQLite::Database& other) {
  try {
    other.exec("BEGIN IMMEDIATE");
    other.exec("ROLLBACK");
    return SQLITE_OK;
  } catch (const SQLite::Exception& e) {
    return e.getErrorCode();
  }
}

struct lock_probe {
  int before_begin = -1;
  int after_deferred_begin = -1;
  int after_begin = -1;
  int after_rollback = -1;
};

net::awaitable<void> probe_write_lock(asyncdb::database& db, SQLite::Database& other, lock_probe& p) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  p.before_begin = try_begin_immediate(other);
  // Control: a deferred BEGIN takes no lock, so the probe below can tell the two apart.
  co_await s.run([](SQLite::Database& c) { c.exec("BEGIN"); });
  p.after_deferred_begin = try_begin_immediate(other);
  co_await s.run([](SQLite::Database& c) { c.exec("ROLLBACK"); });
  co_await s.begin();
  p.after_begin = try_begin_immediate(other);
  co_await s.rollback();
  p.after_rollback = try_begin_immediate(other);
}

TEST_CASE("begin() opens the session's transaction with BEGIN IMMEDIATE", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  SQLite::Database other(dir.file(), SQLite::OPEN_READWRITE);  // busy timeout 0: fails at once
  lock_probe p;
  test::run(ctx, probe_write_lock(db, other, p), 30s);

  CHECK(p.before_begin == SQLITE_OK);
  CHECK(p.after_deferred_begin == SQLITE_OK);
  CHECK(p.after_begin == SQLITE_BUSY);
  CHECK(p.after_rollback == SQLITE_OK);
}

// ------------------------------------------------------------------------------------------------

struct open_wait_state {
  std::atomic<bool> held{false};
  std::atomic<bool> release_holder{false};
  bool waiter_started = false;
  bool waiter_opened = false;
  int ticks_while_pending = 0;
  int ticks_total = 0;
};

net::awaitable<void> first_holder(asyncdb::database& db, open_wait_state& st) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  st.held = true;
  co_await test::until_set(st.release_holder);
}

net::awaitable<void> second_opener(asyncdb::database& db, open_wait_state& st) {
  st.waiter_started = true;
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  st.waiter_opened = true;
  co_await s.run([](SQLite::Database& c) { c.exec("SELECT 1"); });
}

net::awaitable<void> open_while_busy(asyncdb::database& db, open_wait_state& st) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, first_holder(db, st), net::detached);
  co_await test::until_set(st.held);
  net::co_spawn(ex, second_opener(db, st), net::detached);
  auto pending = [&] { return st.waiter_started && db.stats().queued == 1; };
  co_await test::poll_until(pending);
  // The io_context has a single thread: these timer handlers only run if opening did not block it.
  net::steady_timer timer{ex};
  for (int i = 0; i < 5; ++i) {
    timer.expires_after(1ms);
    co_await timer.async_wait(net::use_awaitable);
    ++st.ticks_total;
    if (!st.waiter_opened) ++st.ticks_while_pending;
  }
  st.release_holder = true;
  auto opened = [&st] { return st.waiter_opened; };
  co_await test::poll_until(opened);
}

TEST_CASE("opening a session while the writer is held waits without blocking the event loop", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;  // run by this thread only
  asyncdb::database db{dir.file(), test::default_options()};
  open_wait_state st;
  test::run(ctx, open_while_busy(db, st), 30s);

  CHECK(st.ticks_total == 5);
  CHECK(st.ticks_while_pending == 5);
  CHECK(st.waiter_opened);
}

// ------------------------------------------------------------------------------------------------

struct pool_deadlock_state {
  std::atomic<bool> read_held{false};
  std::atomic<bool> release_read{false};
  int waiting_for_reader = 0;
  int finished = 0;
};

net::awaitable<void> hold_the_only_reader(asyncdb::database& db, pool_deadlock_state& st) {
  asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
  co_await r.call<&UserOper::count>();
  st.read_held = true;
  co_await test::until_set(st.release_read);
}  // released here, while the writer serves a session waiting for this very reader

net::awaitable<void> write_session_needing_a_read(asyncdb::database& db, int i, pool_deadlock_state& st) {
  test::AsyncUsers users{db};
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.begin();
  ++st.waiting_for_reader;
  co_await users.call<&UserOper::count>();  // on the single reader, while this session holds the writer
  UserCreate u{"w" + std::to_string(i), "w@x"};
  co_await s.call<&UserOper::add>(u);
  {
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    co_await r.call<&UserOper::list>();
  }
  co_await s.commit();
  ++st.finished;
}

net::awaitable<void> pool_deadlock_pattern(asyncdb::database& db, pool_deadlock_state& st, int writers) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, hold_the_only_reader(db, st), net::detached);
  co_await test::until_set(st.read_held);
  for (int i = 0; i < writers; ++i) net::co_spawn(ex, write_session_needing_a_read(db, i, st), net::detached);
  // Every connection is now taken: the reader by the read session, the writer by a session waiting
  // for a read; the other writers' sessions are queued.
  auto all_waiting = [&] {
    return st.waiting_for_reader == 1 && db.stats().queued == static_cast<std::size_t>(writers);
  };
  co_await test::poll_until(all_waiting);
  st.release_read = true;
  auto all_done = [&] { return st.finished == writers; };
  co_await test::poll_until(all_done, 20s);
}

TEST_CASE("releasing a session never needs a free worker (the FastAPI 3205 pool deadlock)", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(1)};
  pool_deadlock_state st;
  constexpr int writers = 8;
  test::run(ctx, pool_deadlock_pattern(db, st, writers), 30s);

  CHECK(st.finished == writers);
  SQLite::Database check(dir.file(), SQLite::OPEN_READWRITE);
  CHECK(check.execAndGet("SELECT count(*) FROM users").getInt() == writers);
}

// ------------------------------------------------------------------------------------------------

struct abandon_state {
  test::gate g;
  std::atomic<bool> entered{false};
  std::atomic<bool> left{false};
  int rows_inside_transaction = -1;
  bool destructor_returned_while_blocked = false;
  bool blocked_op_done = false;
  asyncdb::error_code blocked_op_error;
  int rows_seen_by_writer_after = -1;
};

net::awaitable<void> blocked_session_op(asyncdb::AsyncDbSession& s, abandon_state& st) {
  auto wait_at_gate = [&st](SQLite::Database& c) {
    st.rows_inside_transaction = c.execAndGet("SELECT count(*) FROM users WHERE name = 'abandoned'").getInt();
    st.entered = true;
    st.g.wait();
    st.left = true;
  };
  // `s` is not touched after this co_await: it is destroyed while the operation runs.
  st.blocked_op_error = co_await test::error_of(s.run(wait_at_gate));
  st.blocked_op_done = true;
}

net::awaitable<void> abandon_transaction(asyncdb::database& db, abandon_state& st) {
  {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    UserCreate u{"abandoned", "a@x"};
    co_await s.call<&UserOper::add>(u);
    net::co_spawn(co_await net::this_coro::executor, blocked_session_op(s, st), net::detached);
    co_await test::until_set(st.entered);
  }  // ~AsyncDbSession, with the writer blocked inside one of the session's operations
  st.destructor_returned_while_blocked = st.entered && !st.left;
  st.g.open();
  auto done = [&st] { return st.blocked_op_done; };
  co_await test::poll_until(done);
  // The writer takes new work only once the session's lane has rolled back.
  st.rows_seen_by_writer_after = co_await asyncdb::async_run(db, [](SQLite::Database& c) {
    return c.execAndGet("SELECT count(*) FROM users WHERE name = 'abandoned'").getInt();
  });
}

TEST_CASE("leaving a session's scope with an open transaction rolls back without blocking the caller", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  abandon_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  test::open_at_exit guard{st.g};
  test::run(ctx, abandon_transaction(db, st), 30s);

  CHECK(st.rows_inside_transaction == 1);
  CHECK(st.destructor_returned_while_blocked);
  CHECK(st.blocked_op_done);
  CHECK_FALSE(st.blocked_op_error);  // operations already started still complete
  CHECK(st.rows_seen_by_writer_after == 0);
  CHECK(test::rows_named(dir.file(), "abandoned") == 0);
}

// ------------------------------------------------------------------------------------------------

struct snapshot_state {
  std::int64_t first_read = -1;
  std::size_t listed = 0;
  std::int64_t outside_read = -1;
  std::int64_t second_read = -1;
  std::int64_t new_session_read = -1;
};

net::awaitable<void> read_one_snapshot(asyncdb::database& db, snapshot_state& st) {
  test::AsyncUsers users{db};
  UserCreate before{"before", "b@x"};
  co_await users.call<&UserOper::add>(before);
  {
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    UserCreate late{"late", "l@x"};
    co_await users.call<&UserOper::add>(late);  // committed after the read session opened
    st.first_read = co_await r.call<&UserOper::count>();
    st.listed = (co_await r.call<&UserOper::list>()).size();
    st.outside_read = co_await users.call<&UserOper::count>();  // the other reader
    st.second_read = co_await r.call<&UserOper::count>();
  }
  asyncdb::AsyncDbSession fresh = co_await asyncdb::async_db_session(db, asyncdb::read_only);
  st.new_session_read = co_await fresh.call<&UserOper::count>();
}

TEST_CASE("a read session's reads all see the snapshot taken when it opened", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  snapshot_state st;
  test::run(ctx, read_one_snapshot(db, st), 30s);

  CHECK(st.first_read == 1);
  CHECK(st.listed == 1);
  CHECK(st.second_read == 1);
  CHECK(st.outside_read == 2);
  CHECK(st.new_session_read == 2);
}

// ------------------------------------------------------------------------------------------------

static_assert(std::is_nothrow_move_constructible_v<asyncdb::AsyncDbSession>);
static_assert(std::is_nothrow_move_assignable_v<asyncdb::AsyncDbSession>);
static_assert(!std::is_copy_constructible_v<asyncdb::AsyncDbSession>);
static_assert(!std::is_copy_assignable_v<asyncdb::AsyncDbSession>);

struct move_state {
  asyncdb::error_code moved_from;
  asyncdb::error_code moved_from_begin;
  asyncdb::error_code default_constructed;
  asyncdb::error_code released;
  bool moved_from_is_false = false;
  std::int64_t moved_to_id = 0;
  std::int64_t assigned_to_count = -1;
};

net::awaitable<void> move_sessions(asyncdb::database& db, move_state& st) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  asyncdb::AsyncDbSession moved = std::move(s);
  st.moved_from_is_false = !s;  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
  st.moved_from = co_await test::error_of(s.run([](SQLite::Database& c) { c.exec("SELECT 1"); }));  // NOLINT
  st.moved_from_begin = co_await test::error_of(s.begin());                                         // NOLINT
  co_await moved.begin();
  UserCreate u{"moved", "m@x"};
  st.moved_to_id = co_await moved.call<&UserOper::add>(u);
  co_await moved.commit();

  asyncdb::AsyncDbSession assigned;
  st.default_constructed = co_await test::error_of(assigned.run([](SQLite::Database& c) { c.exec("SELECT 1"); }));
  assigned = std::move(moved);
  st.assigned_to_count =
      co_await assigned.run([](SQLite::Database& c) { return c.execAndGet("SELECT count(*) FROM users").getInt64(); });
  assigned.release();
  st.released = co_await test::error_of(assigned.run([](SQLite::Database& c) { c.exec("SELECT 1"); }));
}

TEST_CASE("a session is movable, not copyable, and a moved-from session fails with session_ended", "[session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  move_state st;
  test::run(ctx, move_sessions(db, st), 30s);

  CHECK(st.moved_from_is_false);
  CHECK(st.moved_from == asyncdb::errc::session_ended);
  CHECK(st.moved_from_begin == asyncdb::errc::session_ended);
  CHECK(st.moved_to_id > 0);
  CHECK(st.default_constructed == asyncdb::errc::session_ended);
  CHECK(st.assigned_to_count == 1);
  CHECK(st.released == asyncdb::errc::session_ended);
  CHECK(test::rows_named(dir.file(), "moved") == 1);
}

// ------------------------------------------------------------------------------------------------

struct read_session_state {
  asyncdb::error_code begin_error;
  asyncdb::error_code commit_error;
  asyncdb::error_code rollback_error;
  int write_error = SQLITE_OK;
  int dao_write_error = SQLITE_OK;
  std::int64_t count_after = -1;
  std::int64_t count_after_release = -1;
};

net::awaitable<void> misuse_read_session(asyncdb::database& db, read_session_state& st) {
  test::AsyncUsers users{db};
  UserCreate first{"first", "f@x"};
  co_await users.call<&UserOper::add>(first);  // the DAO, its INSERT prepared, exists on the writer from here on
  {
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    st.begin_error = co_await test::error_of(r.begin());
    st.commit_error = co_await test::error_of(r.commit());
    st.rollback_error = co_await test::error_of(r.rollback());
    try {
      co_await r.run([](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('x', 'x@x')"); });
    } catch (const SQLite::Exception& e) {
      st.write_error = e.getErrorCode();
    }
    UserCreate y{"y", "y@x"};
    try {
      co_await r.call<&UserOper::add>(y);
    } catch (const SQLite::Exception& e) {
      st.dao_write_error = e.getErrorCode();
    }
    st.count_after = co_await r.call<&UserOper::count>();
  }
  UserCreate last{"last", "l@x"};
  co_await users.call<&UserOper::add>(last);  // the connection writes again once the read session is over
  st.count_after_release = co_await users.call<&UserOper::count>();
}

TEST_CASE(
    "a read session refuses writes with SQLITE_READONLY, on a reader or on the writer, and begin, commit and "
    "rollback with read_only_session",
    "[session]") {
  const std::size_t readers = GENERATE(2u, 0u);  // with no readers the read session runs on the writer
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(readers)};
  read_session_state st;
  test::run(ctx, misuse_read_session(db, st), 30s);

  CHECK(st.begin_error == asyncdb::errc::read_only_session);
  CHECK(st.commit_error == asyncdb::errc::read_only_session);
  CHECK(st.rollback_error == asyncdb::errc::read_only_session);
  CHECK(st.write_error == SQLITE_READONLY);
  CHECK(st.dao_write_error == SQLITE_READONLY);
  CHECK(st.count_after == 1);
  CHECK(st.count_after_release == 2);
  CHECK(test::count_rows(dir.file()) == 2);
}

// ------------------------------------------------------------------------------------------------

// A read that runs for minutes unless interrupted.
constexpr const char* endless_read =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n";

struct cancelled_read_state {
  std::atomic<bool> started{false};
  std::size_t winner = 99;
  asyncdb::error_code cancelled_error;
  asyncdb::error_code next_error;
  std::int64_t next_count = -1;
  asyncdb::error_code list_error;
  std::vector<std::string> listed;
  std::int64_t outside_count = -1;
};

// Awaits `aw` and stores the code of the asyncdb::system_error it threw (none if it completed), then rethrows:
// shows what `||` swallows.
net::awaitable<std::int64_t> ended_with(net::awaitable<std::int64_t> aw, asyncdb::error_code& out) {
  try {
    const std::int64_t v = co_await std::move(aw);
    out = {};
    co_return v;
  } catch (const asyncdb::system_error& e) {
    out = e.code();
    throw;
  }
}

net::awaitable<void> time_out_a_read_in_a_read_session(asyncdb::database& db, cancelled_read_state& st) {
  using namespace net::experimental::awaitable_operators;
  test::AsyncUsers users{db};
  UserCreate before{"before", "b@x"};
  co_await users.call<&UserOper::add>(before);
  asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
  UserCreate after{"after", "a@x"};
  co_await users.call<&UserOper::add>(after);  // committed once the session's snapshot was taken

  auto endless = [&st](SQLite::Database& c) {
    st.started = true;
    return c.execAndGet(endless_read).getInt64();
  };
  const std::variant<std::int64_t, std::monostate> v =
      co_await (ended_with(r.run(endless), st.cancelled_error) || test::timer_after_start(st.started));
  st.winner = v.index();

  try {
    st.next_count = co_await r.call<&UserOper::count>();
  } catch (const asyncdb::system_error& e) {
    st.next_error = e.code();
  }
  try {
    const std::vector<test::User> rows = co_await r.call<&UserOper::list>();
    for (const test::User& u : rows) st.listed.push_back(u.name);
  } catch (const asyncdb::system_error& e) {
    st.list_error = e.code();
  }
  st.outside_count = co_await users.call<&UserOper::count>();
}

TEST_CASE("a read session whose running read timed out still serves its next reads from the snapshot it opened with",
          "[session][cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  cancelled_read_state st;
  test::run(ctx, time_out_a_read_in_a_read_session(db, st), 30s);

  CHECK(st.winner == 1);
  CHECK(st.cancelled_error == net::error::operation_aborted);
  CHECK_FALSE(st.next_error);
  CHECK(st.next_count == 1);  // "after" was committed after the session opened
  CHECK_FALSE(st.list_error);
  CHECK(st.listed == std::vector<std::string>{"before"});
  CHECK(st.outside_count == 2);
}

}  // namespace

TEST_CASE("a session's run(fn(Dao&)) gets the connection's own DAO instance, the one call<> uses", "[session][dao]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(0)};  // no readers: every operation on the writer
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    test::AsyncUsers users{d};
    const std::uintptr_t outside = co_await users.call<&UserOper::address>();
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(d);
    co_await s.begin();
    const UserCreate ann{"ann", "ann@x"};
    const std::uintptr_t first = co_await s.run([&ann](UserOper& o) {
      o.add(ann);
      return o.address();
    });
    const std::uintptr_t second = co_await s.run([](UserOper& o) { return o.address(); });
    const std::uintptr_t by_call = co_await s.call<&UserOper::address>();
    co_await s.commit();
    CHECK(first == outside);
    CHECK(second == outside);
    CHECK(by_call == outside);
  };
  test::run(ctx, check(db));
  CHECK(test::rows_named(dir.file(), "ann") == 1);
}
