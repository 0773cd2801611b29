// Shutdown (database::close() and ~database): intake stops, what is queued runs (drained, not failed),
// open sessions are rolled back, later operations fail at once with errc::closed, close() is
// idempotent and refused from inside an operation, and the caller's io_context may die first or last.
#include "net.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

// Runs `ctx` on this thread, one handler at a time, until `done()`; fails the test past the deadline.
template <class Pred>
void run_until(net::io_context& ctx, Pred done, std::chrono::seconds deadline = 10s) {
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) FAIL("run_until: deadline passed");
    ctx.run_one_for(1ms);
  }
}

// Counts the coroutine frames alive: one lives in each frame that should be destroyed.
struct frame_count {
  std::atomic<int> alive{0};
};
class in_frame {
 public:
  explicit in_frame(frame_count& c) : c_(c) { ++c_.alive; }
  in_frame(const in_frame&) = delete;
  in_frame& operator=(const in_frame&) = delete;
  ~in_frame() { --c_.alive; }

 private:
  frame_count& c_;
};

// ------------------------------------------------------------------------------------------------

struct drain_state {
  test::gate g;
  std::atomic<bool> entered{false};
  std::atomic<bool> close_returned{false};
  std::atomic<int> probes_ran{0};
  test::completion blocker;
  test::completion queued[3];
  std::deque<test::completion> probes;
  bool queued_done_before_release = true;
  bool close_returned_before_release = true;
  asyncdb::error_code after_close_run;
  asyncdb::error_code after_close_read;
  asyncdb::error_code after_close_session;
  asyncdb::error_code after_close_read_session;
  asyncdb::error_code after_close_call;
};

void insert_named(asyncdb::database& db, const net::any_io_executor& ex, std::string name, test::completion& out) {
  auto insert = [name](SQLite::Database& c) {
    SQLite::Statement q(c, "INSERT INTO users(name, email) VALUES(?, 'd@x')");
    q.bind(1, name);
    q.exec();
  };
  asyncdb::async_run(db, insert, net::bind_executor(ex, test::record_into(out)));
}

net::awaitable<void> close_with_work_queued(asyncdb::database& db, drain_state& st, std::jthread& closer) {
  auto ex = co_await net::this_coro::executor;
  test::AsyncUsers users{db};
  auto block = [&st](SQLite::Database&) {
    st.entered = true;
    st.g.wait();
  };
  asyncdb::async_run(db, block, net::bind_executor(ex, test::record_into(st.blocker)));
  co_await test::until_set(st.entered);
  for (int i = 0; i < 3; ++i) insert_named(db, ex, "queued" + std::to_string(i), st.queued[i]);

  closer = std::jthread([&db, &st] {
    db.close();
    st.close_returned = true;
  });
  // Probe until a new operation is refused: from then on intake is closed, with the three still queued.
  auto probe = [&st](SQLite::Database&) { ++st.probes_ran; };
  auto refused = [&st] {
    for (const test::completion& p : st.probes) {
      if (p.done && p.error == asyncdb::errc::closed) return true;
    }
    return false;
  };
  net::steady_timer timer{ex};
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (!refused()) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("close() never stopped intake");
    test::completion& p = st.probes.emplace_back();
    asyncdb::async_run(db, probe, net::bind_executor(ex, test::record_into(p)));
    timer.expires_after(1ms);
    co_await timer.async_wait(net::use_awaitable);
  }
  st.queued_done_before_release = st.queued[0].done || st.queued[1].done || st.queued[2].done;
  st.close_returned_before_release = st.close_returned;

  st.g.open();
  auto all_done = [&st] {
    for (const test::completion& p : st.probes) {
      if (!p.done) return false;
    }
    return st.blocker.done && st.queued[0].done && st.queued[1].done && st.queued[2].done;
  };
  co_await test::poll_until(all_done);
  co_await test::until_set(st.close_returned);

  st.after_close_run = co_await test::error_of(asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); }));
  st.after_close_read = co_await test::error_of(users.call<&UserOper::count>());
  st.after_close_session = co_await test::error_of(asyncdb::async_db_session(db));
  st.after_close_read_session = co_await test::error_of(asyncdb::async_db_session(db, asyncdb::read_only));
  UserCreate u{"late", "l@x"};
  st.after_close_call = co_await test::error_of(users.call<&UserOper::add>(u));
  db.close();  // idempotent
}

TEST_CASE("close() runs every queued operation, then refuses new ones at once with errc::closed", "[shutdown]") {
  test::temp_dir dir;
  net::io_context ctx;
  drain_state st;
  asyncdb::database db{dir.file(), test::default_options()};
  std::jthread closer;  // joined before the database is destroyed, after the guard opened the gate
  test::open_at_exit guard{st.g};
  test::run(ctx, close_with_work_queued(db, st, closer), 30s);
  closer.join();

  CHECK_FALSE(st.queued_done_before_release);
  CHECK_FALSE(st.close_returned_before_release);  // close() waits for what it drains
  CHECK_FALSE(st.blocker.error);
  int accepted_probes = 0;
  for (const test::completion& p : st.probes) {
    if (!p.error) ++accepted_probes;
    CHECK((!p.error || p.error == asyncdb::errc::closed));
  }
  CHECK(st.probes_ran == accepted_probes);
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(st.queued[i].error);
    CHECK(test::rows_named(dir.file(), "queued" + std::to_string(i)) == 1);
  }
  CHECK(st.after_close_run == asyncdb::errc::closed);
  CHECK(st.after_close_read == asyncdb::errc::closed);
  CHECK(st.after_close_session == asyncdb::errc::closed);
  CHECK(st.after_close_read_session == asyncdb::errc::closed);
  CHECK(st.after_close_call == asyncdb::errc::closed);
  CHECK(test::rows_named(dir.file(), "late") == 0);
  db.close();                       // and again, from the test thread
  CHECK(db.stats().rejected >= 6);  // the five above and at least one probe
}

// ------------------------------------------------------------------------------------------------

struct session_close_state {
  std::atomic<bool> holder_ready{false};
  bool waiter_started = false;
  bool holder_done = false;
  bool waiter_done = false;
  asyncdb::error_code waiter_error;
  asyncdb::error_code holder_next_use;
  int rows_after_close = -1;
};

net::awaitable<void> wait_for_session(asyncdb::database& db, session_close_state& st) {
  st.waiter_started = true;
  st.waiter_error = co_await test::error_of(asyncdb::async_db_session(db));
  st.waiter_done = true;
}

net::awaitable<void> close_under_open_session(asyncdb::database& db, const std::filesystem::path& file,
                                              session_close_state& st) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.begin();
  UserCreate u{"uncommitted", "u@x"};
  co_await s.call<&UserOper::add>(u);
  net::co_spawn(co_await net::this_coro::executor, wait_for_session(db, st), net::detached);
  auto waiting = [&] { return st.waiter_started && db.stats().queued == 1; };
  co_await test::poll_until(waiting);

  db.close();  // on the event loop's thread: nothing it waits for needs this thread
  st.rows_after_close = test::rows_named(file, "uncommitted");
  UserCreate next{"after", "a@x"};
  st.holder_next_use = co_await test::error_of(s.call<&UserOper::add>(next));
  auto waiter_done = [&st] { return st.waiter_done; };
  co_await test::poll_until(waiter_done);
  st.holder_done = true;
}

TEST_CASE("close() rolls back open sessions and fails sessions still waiting to open", "[shutdown][session]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  session_close_state st;
  test::run(ctx, close_under_open_session(db, dir.file(), st), 30s);

  CHECK(st.rows_after_close == 0);
  CHECK(st.holder_next_use == asyncdb::errc::closed);
  CHECK(st.waiter_error == asyncdb::errc::closed);
  CHECK(test::rows_named(dir.file(), "uncommitted") == 0);
  CHECK(test::rows_named(dir.file(), "after") == 0);
}

// ------------------------------------------------------------------------------------------------

struct inside_close_state {
  bool writer_logic_error = false;
  bool reader_logic_error = false;
  bool session_logic_error = false;
  std::int64_t id_after = 0;
};

net::awaitable<void> close_from_inside(asyncdb::database& db, inside_close_state& st) {
  auto close_it = [&db](SQLite::Database&) { db.close(); };
  try {
    co_await asyncdb::async_run(db, close_it);
  } catch (const std::logic_error&) {
    st.writer_logic_error = true;
  }
  try {
    co_await asyncdb::async_run(db, asyncdb::read_only, close_it);
  } catch (const std::logic_error&) {
    st.reader_logic_error = true;
  }
  {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    try {
      co_await s.run(close_it);
    } catch (const std::logic_error&) {
      st.session_logic_error = true;
    }
  }
  test::AsyncUsers users{db};
  UserCreate u{"still-open", "s@x"};
  st.id_after = co_await users.call<&UserOper::add>(u);
}

TEST_CASE("close() called from inside an operation throws std::logic_error and closes nothing", "[shutdown]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options()};
  inside_close_state st;
  test::run(ctx, close_from_inside(db, st), 30s);

  CHECK(st.writer_logic_error);
  CHECK(st.reader_logic_error);
  CHECK(st.session_logic_error);
  CHECK(st.id_after > 0);
}

// ------------------------------------------------------------------------------------------------

struct in_flight_state {
  test::gate writer_gate;
  test::gate reader_gate;
  std::atomic<bool> writer_entered{false};
  std::atomic<bool> writer_left{false};
  std::atomic<bool> reader_entered{false};
  frame_count frames;
  int resumed_ok = 0;
  int resumed_closed = 0;
  int resumed_other = 0;
};

void tally(in_flight_state& st, const asyncdb::error_code& ec) {
  if (!ec) {
    ++st.resumed_ok;
  } else if (ec == asyncdb::errc::closed) {
    ++st.resumed_closed;
  } else {
    ++st.resumed_other;
  }
}

net::awaitable<void> await_blocked_write(asyncdb::database& db, in_flight_state& st) {
  in_frame counted{st.frames};
  auto block = [&st](SQLite::Database& c) {
    st.writer_entered = true;
    st.writer_gate.wait();
    c.exec("INSERT INTO users(name, email) VALUES('blocker', 'b@x')");
    st.writer_left = true;
  };
  tally(st, co_await test::error_of(asyncdb::async_run(db, block)));
}

net::awaitable<void> await_blocked_read(asyncdb::database& db, in_flight_state& st) {
  in_frame counted{st.frames};
  auto block = [&st](SQLite::Database& c) {
    st.reader_entered = true;
    st.reader_gate.wait();
    return c.execAndGet("SELECT count(*) FROM users").getInt64();
  };
  tally(st, co_await test::error_of(asyncdb::async_run(db, asyncdb::read_only, block)));
}

net::awaitable<void> await_queued_add(asyncdb::database& db, int i, in_flight_state& st) {
  in_frame counted{st.frames};
  test::AsyncUsers users{db};
  UserCreate u{"queued" + std::to_string(i), "q@x"};
  tally(st, co_await test::error_of(users.call<&UserOper::add>(u)));
}

net::awaitable<void> await_queued_session(asyncdb::database& db, in_flight_state& st) {
  in_frame counted{st.frames};
  asyncdb::error_code ec;
  try {
    // Either refused at open, or granted just before close and then ended by it.
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    UserCreate u{"from-session", "s@x"};
    co_await s.call<&UserOper::add>(u);
    co_await s.commit();
  } catch (const asyncdb::system_error& e) {
    ec = e.code();
  }
  tally(st, ec);
}

constexpr int queued_adds = 3;

void spawn_in_flight(net::io_context& ctx, asyncdb::database& db, in_flight_state& st) {
  net::co_spawn(ctx, await_blocked_write(db, st), net::detached);
  net::co_spawn(ctx, await_blocked_read(db, st), net::detached);
  for (int i = 0; i < queued_adds; ++i) net::co_spawn(ctx, await_queued_add(db, i, st), net::detached);
  net::co_spawn(ctx, await_queued_session(db, st), net::detached);
}

TEST_CASE("destroying the io_context first, with operations queued and running, is safe", "[shutdown][io_context]") {
  test::temp_dir dir;
  in_flight_state st;
  std::optional<asyncdb::database> db;
  db.emplace(dir.file(), test::default_options());
  test::open_at_exit writer_guard{st.writer_gate};
  test::open_at_exit reader_guard{st.reader_gate};
  auto ctx = std::make_unique<net::io_context>();
  spawn_in_flight(*ctx, *db, st);
  run_until(*ctx, [&] { return st.writer_entered && st.reader_entered && db->stats().queued == queued_adds + 1; });
  REQUIRE(st.frames.alive == queued_adds + 3);

  st.reader_gate.open();  // its completion now races the io_context's destruction
  ctx.reset();
  CHECK(st.frames.alive == 0);  // every suspended coroutine was destroyed with its context
  CHECK(st.writer_entered);
  CHECK_FALSE(st.writer_left);  // the writer is still inside the DAO

  st.writer_gate.open();
  db.reset();  // drains the queue into handlers that no longer exist
  CHECK(st.writer_left);
  CHECK(st.resumed_ok + st.resumed_closed + st.resumed_other == 0);
  CHECK(test::rows_named(dir.file(), "blocker") == 1);
}

TEST_CASE("destroying the database with operations in flight, then running the io_context, delivers every result",
          "[shutdown][io_context]") {
  test::temp_dir dir;
  net::io_context ctx;  // outlives the database
  in_flight_state st;
  std::optional<asyncdb::database> db;
  db.emplace(dir.file(), test::default_options());
  test::open_at_exit writer_guard{st.writer_gate};
  test::open_at_exit reader_guard{st.reader_gate};
  spawn_in_flight(ctx, *db, st);
  run_until(ctx, [&] { return st.writer_entered && st.reader_entered && db->stats().queued == queued_adds + 1; });

  {
    std::jthread destroyer([&db] { db.reset(); });
    st.writer_gate.open();
    st.reader_gate.open();
  }  // joined: the database is gone, its completions wait in the io_context
  CHECK(st.resumed_ok + st.resumed_closed + st.resumed_other == 0);

  ctx.restart();
  ctx.run_for(10s);
  CHECK(ctx.stopped());  // no work left behind
  CHECK(st.frames.alive == 0);
  CHECK(st.resumed_other == 0);
  CHECK(st.resumed_ok == queued_adds + 2);  // the running and the queued operations all completed
  CHECK(st.resumed_closed == 1);            // the session waiting to open
  for (int i = 0; i < queued_adds; ++i) CHECK(test::rows_named(dir.file(), "queued" + std::to_string(i)) == 1);
  CHECK(test::rows_named(dir.file(), "from-session") == 0);
}

// ------------------------------------------------------------------------------------------------

struct parked_state {
  std::atomic<bool> ready{false};
  frame_count frames;
};

net::awaitable<void> park_in_session(asyncdb::database& db, parked_state& st) {
  in_frame counted{st.frames};
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.begin();
  UserCreate u{"parked", "p@x"};
  co_await s.call<&UserOper::add>(u);
  st.ready = true;
  net::steady_timer forever{co_await net::this_coro::executor, 1h};
  co_await forever.async_wait(net::use_awaitable);
}

net::awaitable<int> parked_rows_on_writer(asyncdb::database& db) {
  co_return co_await asyncdb::async_run(db, [](SQLite::Database& c) {
    return c.execAndGet("SELECT count(*) FROM users WHERE name = 'parked'").getInt();
  });
}

TEST_CASE("a session alive in a coroutine frame survives the database and the io_context dying in either order",
          "[shutdown][session][io_context]") {
  test::temp_dir dir;
  parked_state st;
  std::optional<asyncdb::database> db;
  db.emplace(dir.file(), test::default_options());
  auto ctx = std::make_unique<net::io_context>();
  net::co_spawn(*ctx, park_in_session(*db, st), net::detached);
  run_until(*ctx, [&] { return st.ready.load(); });
  REQUIRE(st.frames.alive == 1);

  SECTION("database first") {
    db.reset();   // ends the session: rolled back, connection closed, threads joined
    ctx.reset();  // then ~AsyncDbSession runs in the destroyed frame
    CHECK(st.frames.alive == 0);
  }
  SECTION("io_context first") {
    ctx.reset();  // ~AsyncDbSession runs while the database is alive: the writer is released
    CHECK(st.frames.alive == 0);
    net::io_context other;
    CHECK(test::run(other, parked_rows_on_writer(*db), 30s) == 0);
    db.reset();
  }
  CHECK(test::rows_named(dir.file(), "parked") == 0);
}

// ------------------------------------------------------------------------------------------------

// Set by the test thread while it destroys an io_context. Relaxed on both sides: the hook below must
// not give the database threads an ordering with the destruction that the library does not provide,
// or TSan would stop seeing the library's own missing synchronisation.
std::atomic<bool> destroying_context{false};
std::thread::id destroying_thread;  // written before the database's threads start

// A read's result whose every move on a database thread takes a while (20 us), and lasts while an
// io_context is being destroyed until the destruction is over (20 ms at most). Delivering a completion moves
// the result into the operation, so an io_context destroyed at a random moment often finds a completion
// half-delivered, and the hook then holds that moment open while the context frees its services.
struct slow_moving_rows {
  std::vector<test::User> rows;

  slow_moving_rows() = default;
  explicit slow_moving_rows(std::vector<test::User> r) : rows(std::move(r)) {}
  slow_moving_rows(slow_moving_rows&& other) noexcept : rows(std::move(other.rows)) { take_a_while(); }
  slow_moving_rows& operator=(slow_moving_rows&& other) noexcept {
    rows = std::move(other.rows);
    take_a_while();
    return *this;
  }

 private:
  static void take_a_while() noexcept {
    if (std::this_thread::get_id() == destroying_thread) return;
    using clock = std::chrono::steady_clock;
    const auto moving_until = clock::now() + 20us;
    while (clock::now() < moving_until) std::this_thread::yield();
    const auto give_up = clock::now() + 20ms;
    while (destroying_context.load(std::memory_order_relaxed) && clock::now() < give_up) std::this_thread::yield();
  }
};

constexpr int coroutines_per_context = 64;
constexpr int seeded_users = 3;

net::awaitable<void> seed_users(asyncdb::database& db) {
  test::AsyncUsers users{db};
  for (int i = 0; i < seeded_users; ++i) {
    UserCreate u{"seeded" + std::to_string(i), "s@x"};
    co_await users.call<&UserOper::add>(u);
  }
}

// Reads until its io_context is destroyed under it.
net::awaitable<void> read_until_destroyed(asyncdb::database& db, std::uint64_t& reads) {
  test::AsyncUsers users{db};
  auto list = [](UserOper& o) { return slow_moving_rows(o.list()); };
  for (;;) {
    const slow_moving_rows r = co_await users.run(asyncdb::read_only, list);
    if (r.rows.size() == seeded_users) ++reads;
  }
}

// Waits until the operations of the io_contexts destroyed so far have run.
void wait_until_idle(asyncdb::database& db) {
  net::io_context ctx;
  auto idle = [&db] {
    const asyncdb::stats s = db.stats();
    return s.queued == 0 && s.running == 0;
  };
  test::run(ctx, test::poll_until(idle));
}

net::awaitable<std::pair<std::size_t, std::int64_t>> read_and_write(asyncdb::database& db) {
  test::AsyncUsers users{db};
  const std::vector<test::User> all = co_await users.call<&UserOper::list>();
  UserCreate u{"after-the-contexts", "a@x"};
  const std::int64_t id = co_await users.call<&UserOper::add>(u);
  co_return std::make_pair(all.size(), id);
}

TEST_CASE(
    "an io_context destroyed at any moment while completions are delivered to it is safe, and the database "
    "serves a new io_context afterwards",
    "[shutdown][io_context][race]") {
  constexpr int iterations = 200;
  test::temp_dir dir;
  destroying_thread = std::this_thread::get_id();
  asyncdb::database db{dir.file(), test::default_options()};
  {
    net::io_context ctx;
    test::run(ctx, seed_users(db));
  }
  const auto seed = std::random_device{}();
  INFO("random seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> run_for_us(50, 2000);
  std::uint64_t reads = 0;  // completed reads, counted on this thread, which runs the io_contexts

  for (int i = 0; i < iterations; ++i) {
    wait_until_idle(db);  // the readers then deliver into this iteration's context, not into a dead one's
    auto ctx = std::make_unique<net::io_context>();
    {
      // Half resume on a strand, half on the io_context itself: completions to both kinds of executor race.
      auto strand = net::make_strand(*ctx);
      for (int c = 0; c < coroutines_per_context; ++c) {
        if (c % 2 == 0) {
          net::co_spawn(*ctx, read_until_destroyed(db, reads), net::detached);
        } else {
          net::co_spawn(strand, read_until_destroyed(db, reads), net::detached);
        }
      }
    }
    ctx->run_for(std::chrono::microseconds(run_for_us(rng)));
    destroying_context.store(true, std::memory_order_relaxed);
    ctx.reset();  // the readers are still delivering into it
    destroying_context.store(false, std::memory_order_relaxed);
  }
  CHECK(reads > 0);

  net::io_context fresh;
  const auto [listed, id] = test::run(fresh, read_and_write(db), 30s);
  CHECK(listed == seeded_users);
  CHECK(id > 0);
  CHECK(test::rows_named(dir.file(), "after-the-contexts") == 1);
}

// ------------------------------------------------------------------------------------------------

// Not a coroutine: the named `fn` dies when this returns, so the operation's own copy of it ends up the
// database's last owner, released on the writer's thread once the call has run.
net::awaitable<int> async_run_owning_the_database(std::shared_ptr<asyncdb::database> db) {
  asyncdb::database& d = *db;
  auto fn = [keep = std::move(db)](SQLite::Database& c) {
    (void)keep;
    return c.execAndGet("SELECT 42").getInt();
  };
  return asyncdb::async_run(d, fn);
}

// As above, on a reader: released on a reader's thread.
net::awaitable<int> read_owning_the_database(std::shared_ptr<asyncdb::database> db) {
  asyncdb::database& d = *db;
  auto fn = [keep = std::move(db)](SQLite::Database& c) {
    (void)keep;
    return c.execAndGet("SELECT 42").getInt();
  };
  return asyncdb::async_run(d, asyncdb::read_only, fn);
}

// As above, on the writer through to_async_db_oper::run(fn).
net::awaitable<std::int64_t> dao_run_owning_the_database(std::shared_ptr<asyncdb::database> db) {
  test::AsyncUsers users{*db};
  auto fn = [keep = std::move(db)](UserOper& o) {
    (void)keep;
    return o.count() + 42;
  };
  return users.run(fn);
}

// Builds a UserOper on the writer and on a reader: their destruction tells that the connections closed.
net::awaitable<void> build_daos(asyncdb::database& db) {
  test::AsyncUsers users{db};
  co_await users.call<&UserOper::where>();
  co_await users.call<&UserOper::count>();
}

// How the child process reports; anything else is a crash.
enum child_exit : int { passed = 0, wrong_result = 10, never_closed = 11, threw = 12 };

// Runs the operation `owning_op(db)` returns, whose callable holds the database's only owner, then waits for
// the database to close by itself: its DAOs destroyed and the -wal file removed (the writer closes last).
template <class OwningOp>
int last_owner_scenario(const std::filesystem::path& file, OwningOp owning_op) {
  const int daos_before = test::user_dao_log().alive;
  auto db = std::make_shared<asyncdb::database>(file, test::default_options());
  net::io_context ctx;
  test::run(ctx, build_daos(*db));
  auto op = owning_op(std::move(db));
  if (test::run(ctx, std::move(op)) != 42) return wrong_result;
  const std::filesystem::path wal = file.string() + "-wal";
  auto closed = [&] { return test::user_dao_log().alive == daos_before && !std::filesystem::exists(wal); };
  try {
    test::run(ctx, test::poll_until(closed, 10s));
  } catch (const std::runtime_error&) {
    return never_closed;
  }
  return passed;
}

// Runs `scenario` in a child process, so that a crash there fails this test instead of ending the test
// binary; returns the child's wait status, or -1 if it had not ended after 60 s (it is then killed).
template <class Scenario>
int status_of_child(Scenario scenario) {
  int ends[2];
  REQUIRE(::pipe(ends) == 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(ends[0]);
    // Catch's handlers would report a crash of the child as the parent's own test run.
    for (int sig : {SIGABRT, SIGILL, SIGFPE, SIGTERM, SIGINT}) std::signal(sig, SIG_DFL);
    int code = threw;
    try {
      code = scenario();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
    }
    std::_Exit(code);  // never back into Catch: the parent reports
  }
  ::close(ends[1]);
  // The write end closes when the child ends, however it ends.
  pollfd end_of_child{ends[0], POLLIN, 0};
  const int ended = ::poll(&end_of_child, 1, 60'000);
  if (ended == 0) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(ends[0]);
  return ended == 0 ? -1 : status;
}

std::string describe_status(int status) {
  if (status == -1) return "the child hung and was killed";
  if (WIFSIGNALED(status)) {
    return "the child was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) +
           ")";
  }
  if (!WIFEXITED(status)) return "the child ended with wait status " + std::to_string(status);
  switch (WEXITSTATUS(status)) {
    case passed:
      return "the child passed";
    case wrong_result:
      return "the operation completed with a wrong result";
    case never_closed:
      return "the database did not close within 10 s";
    case threw:
      return "the child threw (see its stderr)";
  }
  return "the child exited with " + std::to_string(WEXITSTATUS(status));
}

TEST_CASE(
    "an operation holding the database's last owner completes, and the database then closes by itself "
    "instead of terminating the process",
    "[shutdown][lifetime]") {
  test::temp_dir dir;
  SECTION("through async_run on the writer") {
    const int status = status_of_child([&] { return last_owner_scenario(dir.file(), &async_run_owning_the_database); });
    INFO(describe_status(status));
    CHECK(status == 0);
  }
  SECTION("through async_run on a reader") {
    const int status = status_of_child([&] { return last_owner_scenario(dir.file(), &read_owning_the_database); });
    INFO(describe_status(status));
    CHECK(status == 0);
  }
  SECTION("through to_async_db_oper::run") {
    const int status = status_of_child([&] { return last_owner_scenario(dir.file(), &dao_run_owning_the_database); });
    INFO(describe_status(status));
    CHECK(status == 0);
  }
}

}  // namespace

TEST_CASE("close() with close_grace set to milliseconds max never cuts work short", "[shutdown]") {
  // "Never" must mean never: a grace that overflowed the timer's clock arithmetic would expire at once, and
  // the writes queued behind the blocker would fail with errc::closed instead of running.
  test::temp_dir dir;
  auto opts = test::default_options();
  opts.close_grace = std::chrono::milliseconds::max();
  asyncdb::database db{dir.file(), opts};
  net::io_context ctx;
  test::gate g;
  test::open_at_exit guard{g};
  std::atomic<bool> entered{false};
  auto block = [&g, &entered](SQLite::Database&) {
    entered = true;
    g.wait();
  };
  test::completion blocker;
  asyncdb::async_run(db, block, net::bind_executor(ctx, test::record_into(blocker)));
  run_until(ctx, [&] { return entered.load(); });
  test::completion queued[3];
  for (int i = 0; i < 3; ++i) insert_named(db, ctx.get_executor(), "g" + std::to_string(i), queued[i]);
  std::atomic<bool> closed{false};
  std::jthread closer([&] {
    db.close();
    closed = true;
  });
  std::this_thread::sleep_for(200ms);  // an expiry at once would have interrupted by now
  CHECK_FALSE(closed.load());
  g.open();
  run_until(ctx, [&] { return closed.load() && blocker.done && queued[0].done && queued[1].done && queued[2].done; });
  CHECK_FALSE(blocker.error);
  for (const auto& q : queued) CHECK_FALSE(q.error);
  CHECK(test::count_rows(dir.file(), "name LIKE 'g%'") == 3);
}
