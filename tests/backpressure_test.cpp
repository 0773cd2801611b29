// Back-pressure (options::max_queued) beyond the conformance suite's case (tests/contract: past the bound new
// operations fail at once, nothing accepted is lost): the bound covers sessions, reads and awaited operations
// too, and a cancelled queued operation gives its place back at once.
#include "net.hpp"

#include <condition_variable>
#include <mutex>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

// Starts an operation on the writer that waits at `g`; `entered` is set once it runs.
void block_writer(asyncdb::database& db, const net::any_io_executor& ex, test::gate& g, std::atomic<bool>& entered,
                  test::completion& out) {
  auto block = [&g, &entered](SQLite::Database&) {
    entered = true;
    g.wait();
  };
  asyncdb::async_run(db, block, net::bind_executor(ex, test::record_into(out)));
}

// ------------------------------------------------------------------------------------------------

struct session_bound_state {
  test::gate g;
  std::atomic<bool> entered{false};
  test::completion blocker;
  test::completion queued[2];
  asyncdb::error_code session_error;
  asyncdb::error_code read_session_error;
  asyncdb::error_code awaited_add_error;
  std::int64_t read_while_full = -1;
};

net::awaitable<void> sessions_and_awaits_meet_the_bound(asyncdb::database& db, session_bound_state& st) {
  auto ex = co_await net::this_coro::executor;
  test::AsyncUsers users{db};
  block_writer(db, ex, st.g, st.entered, st.blocker);
  co_await test::until_set(st.entered);
  for (test::completion& out : st.queued) {
    asyncdb::async_run(
        db, [](SQLite::Database& c) { c.exec("SELECT 1"); }, net::bind_executor(ex, test::record_into(out)));
  }
  // The bound (2) is reached: opening a session or awaiting an operation fails at the co_await.
  st.session_error = co_await test::error_of(asyncdb::async_db_session(db));
  st.read_session_error = co_await test::error_of(asyncdb::async_db_session(db, asyncdb::read_only));
  UserCreate u{"refused", "r@x"};
  st.awaited_add_error = co_await test::error_of(users.call<&UserOper::add>(u));
  st.g.open();
  auto all_done = [&st] { return st.blocker.done && st.queued[0].done && st.queued[1].done; };
  co_await test::poll_until(all_done);
  st.read_while_full = co_await users.call<&UserOper::count>();
}

TEST_CASE("the bound covers every queue: sessions, reads and awaited operations get queue_full too", "[backpressure]") {
  test::temp_dir dir;
  net::io_context ctx;
  session_bound_state st;
  asyncdb::options opts = test::default_options();
  opts.max_queued = 2;
  asyncdb::database db{dir.file(), opts};
  test::open_at_exit guard{st.g};
  test::run(ctx, sessions_and_awaits_meet_the_bound(db, st), 30s);

  CHECK(st.session_error == asyncdb::errc::queue_full);
  CHECK(st.read_session_error == asyncdb::errc::queue_full);
  CHECK(st.awaited_add_error == asyncdb::errc::queue_full);
  CHECK_FALSE(st.queued[0].error);
  CHECK_FALSE(st.queued[1].error);
  CHECK(st.read_while_full == 0);
  CHECK(db.stats().rejected == 3);
}

// ------------------------------------------------------------------------------------------------

constexpr std::size_t small_bound = 8;
constexpr std::size_t timeouts = 3 * small_bound;  // far more than the bound: each must give its place back

struct timed_out_state {
  asyncdb::error_code timeout_errors[timeouts];
  std::size_t queued_after_timeouts = 99;
  std::size_t queued_with_one_live = 99;
  test::completion live;
  asyncdb::error_code read_error;
  std::int64_t read_count = -1;
  bool live_done_before_release = true;
};

// Awaits `aw` and stores how it ended: what `||` would otherwise swallow.
net::awaitable<void> store_error(net::awaitable<std::int64_t> aw, asyncdb::error_code& out) {
  try {
    co_await std::move(aw);
    out = {};
  } catch (const asyncdb::system_error& e) {
    out = e.code();
  }
}

// A write that cannot run (the writer is held) under a 1 ms timeout; returns how the write itself ended.
net::awaitable<asyncdb::error_code> timed_out_add(asyncdb::database& db, std::size_t i) {
  using namespace net::experimental::awaitable_operators;
  test::AsyncUsers users{db};
  UserCreate u{"timed-out" + std::to_string(i), "t@x"};
  net::awaitable<std::int64_t> add = users.call<&UserOper::add>(u);
  asyncdb::error_code add_error = make_error_code(std::errc::state_not_recoverable);  // "never completed"
  net::steady_timer timer{co_await net::this_coro::executor, 1ms};
  co_await (store_error(std::move(add), add_error) || timer.async_wait(net::use_awaitable));
  co_return add_error;
}

net::awaitable<void> time_out_writes_behind_a_session(asyncdb::database& db, timed_out_state& st) {
  auto ex = co_await net::this_coro::executor;
  test::AsyncUsers users{db};
  {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);  // holds the writer
    for (std::size_t i = 0; i < timeouts; ++i) st.timeout_errors[i] = co_await timed_out_add(db, i);
    st.queued_after_timeouts = db.stats().queued;
    auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('live', 'l@x')"); };
    asyncdb::async_run(db, insert, net::bind_executor(ex, test::record_into(st.live)));
    st.queued_with_one_live = db.stats().queued;
    try {
      st.read_count = co_await users.call<&UserOper::count>();  // a reader is idle
    } catch (const asyncdb::system_error& e) {
      st.read_error = e.code();
    }
    st.live_done_before_release = st.live.done;
  }
  auto live_done = [&st] { return st.live.done; };
  co_await test::poll_until(live_done);
}

TEST_CASE("an operation cancelled while queued gives its place in options.max_queued back at once",
          "[backpressure][cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::options opts = test::default_options();
  opts.max_queued = small_bound;
  asyncdb::database db{dir.file(), opts};
  timed_out_state st;
  test::run(ctx, time_out_writes_behind_a_session(db, st), 30s);

  for (std::size_t i = 0; i < timeouts; ++i) {
    INFO("timed-out write " << i);
    CHECK(st.timeout_errors[i] == net::error::operation_aborted);
  }
  CHECK(st.queued_after_timeouts == 0);  // only live operations count
  CHECK(st.queued_with_one_live == 1);
  CHECK_FALSE(st.read_error);
  CHECK(st.read_count == 0);
  CHECK_FALSE(st.live_done_before_release);
  CHECK_FALSE(st.live.error);
  CHECK(test::count_rows(dir.file(), "name = 'live'") == 1);
  CHECK(test::count_rows(dir.file(), "name LIKE 'timed-out%'") == 0);
}

}  // namespace
