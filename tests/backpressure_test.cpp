// Back-pressure (options::max_queued): past the bound, new operations fail at once with
// errc::queue_full; what was accepted still runs, nothing is lost, and stats() counts the refusals.
#include <asio/bind_executor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <condition_variable>
#include <mutex>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

// Starts an operation on the writer that waits at `g`; `entered` is set once it runs.
void block_writer(asyncdb::database& db, const asio::any_io_executor& ex, test::gate& g, std::atomic<bool>& entered,
                  test::completion& out) {
  auto block = [&g, &entered](SQLite::Database&) {
    entered = true;
    g.wait();
  };
  asyncdb::async_run(db, block, asio::bind_executor(ex, test::record_into(out)));
}

// ------------------------------------------------------------------------------------------------

constexpr std::size_t bound = 4;
constexpr std::size_t extra = 3;

struct overflow_state {
  test::gate g;
  std::atomic<bool> entered{false};
  test::completion blocker;
  test::completion ops[bound + extra];
  bool done_before_release[bound + extra] = {};
  std::size_t queued_at_peak = 0;
  std::uint64_t rejected_at_peak = 0;
  std::error_code after_drain;
};

asio::awaitable<void> overflow_the_queue(asyncdb::database& db, overflow_state& st) {
  auto ex = co_await asio::this_coro::executor;
  block_writer(db, ex, st.g, st.entered, st.blocker);
  co_await test::until_set(st.entered);

  for (std::size_t i = 0; i < bound + extra; ++i) {
    auto insert = [i](SQLite::Database& c) {
      SQLite::Statement q(c, "INSERT INTO users(name, email) VALUES(?, 'q@x')");
      q.bind(1, "q" + std::to_string(i));
      q.exec();
    };
    test::completion& out = st.ops[i];
    asyncdb::async_run(db, insert, asio::bind_executor(ex, test::record_into(out)));
  }
  // The refusals complete on their own, while the writer is still blocked.
  auto refusals_done = [&st] {
    std::size_t n = 0;
    for (const test::completion& c : st.ops) n += c.done ? 1 : 0;
    return n == extra;
  };
  co_await test::poll_until(refusals_done);
  for (std::size_t i = 0; i < bound + extra; ++i) st.done_before_release[i] = st.ops[i].done;
  st.queued_at_peak = db.stats().queued;
  st.rejected_at_peak = db.stats().rejected;

  st.g.open();
  auto all_done = [&st] {
    for (const test::completion& c : st.ops) {
      if (!c.done) return false;
    }
    return st.blocker.done;
  };
  co_await test::poll_until(all_done);
  // The bound is on what waits, not on what ever ran: there is room again.
  st.after_drain = co_await test::error_of(asyncdb::async_run(db, [](SQLite::Database& c) { c.exec("SELECT 1"); }));
}

TEST_CASE("past options.max_queued new operations fail at once with queue_full and nothing accepted is lost",
          "[backpressure]") {
  test::temp_dir dir;
  asio::io_context ctx;
  overflow_state st;
  asyncdb::options opts = test::default_options();
  opts.max_queued = bound;
  asyncdb::database db{dir.file(), opts};
  test::open_at_exit guard{st.g};
  test::run(ctx, overflow_the_queue(db, st), 30s);

  CHECK(st.queued_at_peak == bound);
  CHECK(st.rejected_at_peak == extra);
  CHECK(db.stats().rejected == extra);
  SQLite::Database check(dir.file(), SQLite::OPEN_READWRITE);
  for (std::size_t i = 0; i < bound + extra; ++i) {
    INFO("operation " << i);
    const int rows = check.execAndGet("SELECT count(*) FROM users WHERE name = 'q" + std::to_string(i) + "'").getInt();
    if (i < bound) {
      CHECK_FALSE(st.done_before_release[i]);
      CHECK_FALSE(st.ops[i].error);
      CHECK(rows == 1);
    } else {
      CHECK(st.done_before_release[i]);
      CHECK(st.ops[i].error == asyncdb::errc::queue_full);
      CHECK(rows == 0);
    }
  }
  CHECK_FALSE(st.blocker.error);
  CHECK_FALSE(st.after_drain);
}

// ------------------------------------------------------------------------------------------------

struct session_bound_state {
  test::gate g;
  std::atomic<bool> entered{false};
  test::completion blocker;
  test::completion queued[2];
  std::error_code session_error;
  std::error_code read_session_error;
  std::error_code awaited_add_error;
  std::int64_t read_while_full = -1;
};

asio::awaitable<void> sessions_and_awaits_meet_the_bound(asyncdb::database& db, session_bound_state& st) {
  auto ex = co_await asio::this_coro::executor;
  test::AsyncUsers users{db};
  block_writer(db, ex, st.g, st.entered, st.blocker);
  co_await test::until_set(st.entered);
  for (test::completion& out : st.queued) {
    asyncdb::async_run(
        db, [](SQLite::Database& c) { c.exec("SELECT 1"); }, asio::bind_executor(ex, test::record_into(out)));
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
  asio::io_context ctx;
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

}  // namespace
