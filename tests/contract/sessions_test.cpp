// Sessions against both backends: a session's operations run in that session (one connection, its
// uncommitted writes its own), a read session survives a cancelled operation on its snapshot, and a read
// session honours read_your_writes like every other replica read.
#include "contract.hpp"

#include <vector>

namespace {
using namespace std::chrono_literals;

template <class B>
net::awaitable<contract::place> place_in(asyncdb::AsyncDbSession& s) {
  auto where = [](auto& c) { return contract::place{std::this_thread::get_id(), B::id_of(c)}; };
  co_return co_await B::in_session(s, where);
}

}  // namespace

TEMPLATE_TEST_CASE("a session's operations run on its one connection, its uncommitted writes seen only by itself",
                   "[contract][session]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::vector<contract::place> write_places;
  std::vector<contract::place> read_places;
  std::int64_t inside_before_commit = -1;
  std::int64_t outside_before_commit = -1;
  std::int64_t outside_after_commit = -1;
  auto body = [&]() -> net::awaitable<void> {
    auto insert = [](auto& c) { B::insert(c, "mine"); };
    auto count = [](auto& c) { return B::count(c); };
    {
      asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
      write_places.push_back(co_await place_in<B>(s));
      co_await s.begin();
      co_await B::in_session_transaction(s, insert);
      write_places.push_back(co_await place_in<B>(s));
      inside_before_commit = co_await B::in_session_transaction(s, count);
      outside_before_commit = b.rows("mine");
      write_places.push_back(co_await place_in<B>(s));
      co_await s.commit();
      outside_after_commit = b.rows("mine");
      write_places.push_back(co_await place_in<B>(s));
    }
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    for (int i = 0; i < 3; ++i) read_places.push_back(co_await place_in<B>(r));
  };
  test::run(ctx, body());
  CHECK(inside_before_commit == 1);
  CHECK(outside_before_commit == 0);
  CHECK(outside_after_commit == 1);
  for (const auto* places : {&write_places, &read_places}) {
    REQUIRE_FALSE(places->empty());
    for (const contract::place& p : *places) CHECK(p == places->front());
    CHECK(places->front().thread != std::this_thread::get_id());
  }
}

// ------------------------------------------------------------------------------------------------

// issue 17 defect 6 (PostgreSQL: the cancel leaves the REPEATABLE READ transaction failed, and every later
// operation of the session fails)
TEMPLATE_TEST_CASE("a read session survives a cancelled operation and its next operation sees the same snapshot",
                   "[contract][session][cancellation]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::int64_t at_open = -1;
  std::int64_t after_cancel = -1;
  std::int64_t outside = -1;
  std::atomic<std::int64_t> started{0};
  contract::outcome cancelled;
  net::cancellation_signal cancel;
  auto count = [](auto& c) { return B::count(c); };
  auto endless = [&started](auto& c) { B::read_endlessly(c, started); };
  auto body = [&]() -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    typename B::users users{db};
    typename B::user_create before{"before", "b@x"};
    co_await users.template call<&B::dao::add>(before);
    b.replica_caught_up();
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    at_open = co_await B::in_session_transaction(r, count);
    typename B::user_create after{"after", "a@x"};
    co_await users.template call<&B::dao::add>(after);  // committed after the snapshot was taken
    b.replica_caught_up();
    net::co_spawn(ex, B::in_session_transaction(r, endless),
                  net::bind_cancellation_slot(cancel.slot(), contract::record(cancelled)));
    co_await contract::until_stuck(b, started);
    cancel.emit(net::cancellation_type::terminal);
    co_await contract::until_done(cancelled);
    after_cancel = co_await B::in_session_transaction(r, count);
    outside = b.rows("%");
  };
  test::run(ctx, body());
  CHECK(test::code_of(cancelled.error) == net::error::operation_aborted);
  CHECK(at_open == 1);
  CHECK(after_cancel == 1);  // the same snapshot: "after" committed later
  CHECK(outside == 2);
}

// ------------------------------------------------------------------------------------------------

// issue 17 defect 9 (PostgreSQL: a read session takes its snapshot without waiting for the replica)
TEMPLATE_TEST_CASE("read_your_writes covers read sessions: one opened after a write sees it", "[contract][session]",
                   CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  b.replica_caught_up();
  auto& db = b.open({.readers = 1, .read_your_writes = true});
  net::io_context ctx;
  std::int64_t seen = -1;
  auto body = [&]() -> net::awaitable<void> {
    typename B::users users{db};
    auto lagging = b.lag_replica();
    typename B::user_create mine{"mine", "m@x"};
    co_await users.template call<&B::dao::add>(mine);
    // The replica replays again a little later, well within read_your_writes' wait (replica_wait, 5 s): a
    // session that waits for it sees the write; one that does not reads a snapshot without it.
    net::steady_timer later{co_await net::this_coro::executor, 300ms};
    later.async_wait([&lagging](const asyncdb::error_code& e) {
      if (!e) lagging->resume();  // not when the timer dies with the coroutine
    });
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    auto count = [](auto& c) { return B::count(c); };
    seen = co_await B::in_session_transaction(r, count);
  };
  test::run(ctx, body());
  CHECK(seen == 1);
}
