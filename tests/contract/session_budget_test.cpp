// A budget for a whole session (asyncdb::session_budget), against both backends: past it the open stops
// waiting, the running operation is cancelled, later ones fail at once, and nothing the session had not
// committed is in the database.
#include "contract.hpp"

namespace {
using namespace std::chrono_literals;

template <class Database>
net::awaitable<void> open_within(Database& db, std::chrono::milliseconds budget) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::session_budget(budget));
}

}  // namespace

TEMPLATE_TEST_CASE("a session whose budget passes while it waits for the writer fails with deadline_exceeded",
                   "[contract][session][budget]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  contract::outcome waited;
  std::int64_t held_after = -1;
  auto body = [&]() -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    auto insert = [](auto& c) { B::insert(c, "held"); };
    asyncdb::AsyncDbSession holder = co_await asyncdb::async_db_session(db);
    co_await holder.begin();
    co_await B::in_session_transaction(holder, insert);
    // Held until the budgeted open has its answer: it can only be the budget's.
    net::co_spawn(ex, open_within(db, 100ms), contract::record(waited));
    co_await contract::until_done(waited);
    co_await holder.commit();
    held_after = b.rows("held");
  };
  test::run(ctx, body());
  CHECK(test::code_of(waited.error) == asyncdb::errc::deadline_exceeded);
  CHECK(held_after == 1);  // the writer's holder was not disturbed
}

TEMPLATE_TEST_CASE("a session whose budget passes mid-operation is cancelled and rolled back, later operations fail",
                   "[contract][session][budget]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::atomic<std::int64_t> started{0};
  std::exception_ptr running_error;
  std::exception_ptr later_error;
  std::int64_t mine = -1;
  std::int64_t after = -1;
  auto body = [&]() -> net::awaitable<void> {
    auto insert_mine = [](auto& c) { B::insert(c, "mine"); };
    auto endless = [&started](auto& c) { B::read_endlessly(c, started); };
    auto count = [](auto& c) { return B::count(c); };
    {
      // Long enough to open, begin and insert on a loaded machine; the endless statement then meets the deadline.
      asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::session_budget(2s));
      co_await s.begin();
      co_await B::in_session_transaction(s, insert_mine);
      try {
        co_await B::in_session_transaction(s, endless);
      } catch (...) {
        running_error = std::current_exception();
      }
      try {
        co_await B::in_session_transaction(s, count);
      } catch (...) {
        later_error = std::current_exception();
      }
    }
    // The next write session has the writer once the budgeted one is rolled back.
    auto insert_after = [](auto& c) { B::insert(c, "after"); };
    asyncdb::AsyncDbSession next = co_await asyncdb::async_db_session(db);
    co_await next.begin();
    co_await B::in_session_transaction(next, insert_after);
    co_await next.commit();
    mine = b.rows("mine");
    after = b.rows("after");
  };
  test::run(ctx, body());
  CHECK(started.load() != 0);  // the deadline met the statement running
  CHECK(test::code_of(running_error) == asyncdb::errc::deadline_exceeded);
  CHECK(test::code_of(later_error) == asyncdb::errc::deadline_exceeded);
  CHECK(mine == 0);  // the session's uncommitted insert is gone
  CHECK(after == 1);
}

TEMPLATE_TEST_CASE("a session idle past its budget ends: its writes rolled back, the writer free for the next write",
                   "[contract][session][budget]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::exception_ptr later_error;
  std::int64_t mine = -1;
  std::int64_t other = -1;
  auto body = [&]() -> net::awaitable<void> {
    auto insert_mine = [](auto& c) { B::insert(c, "mine"); };
    auto insert_other = [](auto& c) { B::insert(c, "other"); };
    auto count = [](auto& c) { return B::count(c); };
    // The session stays open, awaiting nothing of the database (an HTTP call, say), while it holds the writer.
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::session_budget(100ms));
    co_await s.begin();
    co_await B::in_session_transaction(s, insert_mine);
    // Queued behind the session: it runs only once the session's budget has ended the session.
    co_await B::write(db, insert_other);
    try {
      co_await B::in_session_transaction(s, count);
    } catch (...) {
      later_error = std::current_exception();
    }
    mine = b.rows("mine");
    other = b.rows("other");
  };
  test::run(ctx, body());
  CHECK(test::code_of(later_error) == asyncdb::errc::deadline_exceeded);
  CHECK(mine == 0);
  CHECK(other == 1);
}

TEMPLATE_TEST_CASE("a session that ends within its budget commits as any other and leaves no timer behind",
                   "[contract][session][budget]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::int64_t mine = -1;
  auto body = [&]() -> net::awaitable<void> {
    auto insert_mine = [](auto& c) { B::insert(c, "mine"); };
    {
      // test::run returns only once nothing is pending on ctx: a timer still waiting for this budget would hang it.
      asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::session_budget(1h));
      co_await s.begin();
      co_await B::in_session_transaction(s, insert_mine);
      co_await s.commit();
    }
    mine = b.rows("mine");
  };
  test::run(ctx, body());
  CHECK(mine == 1);
}

namespace {

template <class B>
net::awaitable<void> budgeted_session_at_gate(typename B::database& db, std::atomic<bool>& started, test::gate& g) {
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::session_budget(1h));
  auto wait_at_gate = [&started, &g](auto&) {
    test::gate& at = g;  // read before `started`: the frame holding this lambda goes once it is set
    started = true;
    at.wait();
  };
  co_await B::in_session(s, wait_at_gate);
}

}  // namespace

// The session's budget timer runs on the opener's executor; the lane ends the session on its own thread.
TEMPLATE_TEST_CASE("a budgeted session still served when its opener's io_context is destroyed ends cleanly",
                   "[contract][session][budget][io_context]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  test::gate g;
  test::open_at_exit opener{g};
  std::atomic<bool> started{false};
  auto ctx = std::make_unique<net::io_context>();
  net::co_spawn(*ctx, budgeted_session_at_gate<B>(db, started, g), net::detached);
  contract::run_until(*ctx, [&] { return started.load(); });
  ctx.reset();  // the frame and its AsyncDbSession go; the lane is still inside the session's operation
  g.open();     // the lane finishes the operation and ends the session, its opener's context gone
  net::io_context other;
  auto count = [](auto& c) { return B::count(c); };
  CHECK(test::run(other, B::write(db, count), 30s) >= 0);  // the writer is free again
}
