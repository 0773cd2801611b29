// A budget for a whole session (asyncdb::session_budget), against both backends: past it the open stops
// waiting, the running operation is cancelled, later ones fail at once, and nothing the session had not
// committed is in the database.
#include "contract.hpp"

#include <future>
#include <memory>

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

// A budgeted session of `ctx`'s (on a strand of it if `on_strand`) busy on the lane when `ctx` is destroyed: the
// lane then finishes the operation and ends the session, its opener's context gone.
template <class B>
void end_after_opener_destroyed(B& b, bool on_strand) {
  auto& db = b.open();
  test::gate g;
  test::open_at_exit opener{g};
  std::atomic<bool> started{false};
  auto ctx = std::make_unique<net::io_context>();
  if (on_strand) {
    net::co_spawn(net::make_strand(*ctx), budgeted_session_at_gate<B>(db, started, g), net::detached);
  } else {
    net::co_spawn(*ctx, budgeted_session_at_gate<B>(db, started, g), net::detached);
  }
  contract::run_until(*ctx, [&] { return started.load(); });
  ctx.reset();  // the frame, its AsyncDbSession and every executor copy of the user's go
  g.open();     // the lane finishes the operation, ends the session and drops the open
  net::io_context other;
  auto count = [](auto& c) { return B::count(c); };
  CHECK(test::run(other, B::write(db, count), 30s) >= 0);  // the writer is free again
}

}  // namespace

// The session's budget timer runs on the opener's executor; the lane ends the session on its own thread.
TEMPLATE_TEST_CASE("a budgeted session still served when its opener's io_context is destroyed ends cleanly",
                   "[contract][session][budget][io_context]", CONTRACT_BACKENDS) {
  TestType b;
  end_after_opener_destroyed(b, false);
}

// The open kept a copy of the opener's executor, here a strand's impl, which unlinks itself from its context's
// strand service when its last copy goes: that must not be on the lane, after the context.
TEMPLATE_TEST_CASE("a budgeted session on a strand still served when its io_context is destroyed ends cleanly",
                   "[contract][session][budget][io_context]", CONTRACT_BACKENDS) {
  TestType b;
  end_after_opener_destroyed(b, true);
}

namespace {

// The writer held at a gate, and a budgeted open queued behind it from a context that is then destroyed: the
// lane grants the open afterwards, on its own thread, with nothing of that context left to touch.
// `bind` makes the open's handler, bound to an executor of `ctx` (the context itself, or a strand of it).
template <class B, class Bind>
void grant_after_opener_destroyed(B& b, Bind bind) {
  auto& db = b.open();
  test::gate g;
  test::open_at_exit opener{g};
  std::atomic<bool> entered{false};
  auto block = [&entered, &g](auto&) {
    entered = true;
    g.wait();
  };
  std::future<void> blocker = B::write(db, block, net::use_future);
  net::io_context other;
  contract::run_until(other, [&] { return entered.load(); });
  bool called = false;
  auto ctx = std::make_unique<net::io_context>();
  asyncdb::async_db_session(db, asyncdb::session_budget(1h),
                            bind(*ctx, [&called](std::exception_ptr, asyncdb::AsyncDbSession) { called = true; }));
  ctx.reset();  // its services go; its registry drops the open's handler, the open stays queued
  g.open();     // the lane grants the open: its timer must not be armed on, nor its executor dropped into, `ctx`
  blocker.get();
  auto count = [](auto& c) { return B::count(c); };
  CHECK(test::run(other, B::write(db, count), 30s) >= 0);  // the lane ended the orphan session and serves again
  CHECK_FALSE(called);
}

}  // namespace

TEMPLATE_TEST_CASE("a budgeted open granted after its opener's io_context was destroyed arms nothing there",
                   "[contract][session][budget][io_context]", CONTRACT_BACKENDS) {
  TestType b;
  grant_after_opener_destroyed(
      b, [](net::io_context& ctx, auto handler) { return net::bind_executor(ctx.get_executor(), std::move(handler)); });
}

// A strand's impl unlinks itself from its context's strand service when its last copy goes: that copy must not
// be the open's, dropped on the lane after the context is gone.
TEMPLATE_TEST_CASE("a budgeted open on a strand granted after its io_context was destroyed drops no executor there",
                   "[contract][session][budget][io_context]", CONTRACT_BACKENDS) {
  TestType b;
  grant_after_opener_destroyed(b, [](net::io_context& ctx, auto handler) {
    return net::bind_executor(net::make_strand(ctx), std::move(handler));
  });
}

// The lane ends a budgeted session (stopping its timer) while the opener's context shuts down: stop() and the
// registry's shutdown meet on the registry's lock, in either order.
TEMPLATE_TEST_CASE("a budgeted session ending while its opener's io_context is destroyed ends cleanly",
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
  g.open();     // the lane finishes the operation, delivers it and waits for the session's next one or its end
  ctx.reset();  // meanwhile: the frame and its AsyncDbSession go, the session ends on the lane
  net::io_context other;
  auto count = [](auto& c) { return B::count(c); };
  CHECK(test::run(other, B::write(db, count), 30s) >= 0);
}
