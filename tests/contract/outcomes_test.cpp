// What an outcome means, against both backends: a success is committed, operation_aborted means nothing
// is in the database, a cancelled queued operation never runs, a write in a read session is refused
// rather than dropped, and a full queue refuses new work at once and loses none it accepted.
#include "contract.hpp"

#include <functional>
#include <string>
#include <vector>

namespace {
using namespace std::chrono_literals;
}  // namespace

TEMPLATE_TEST_CASE("a write reported done is committed: a connection of its own sees it at once",
                   "[contract][outcomes]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::int64_t seen_after_call = -1;
  std::int64_t seen_after_run = -1;
  auto body = [&]() -> net::awaitable<void> {
    typename B::users users{db};
    typename B::user_create ann{"ann", "ann@x"};
    co_await users.template call<&B::dao::add>(ann);
    seen_after_call = b.rows("ann");
    auto insert = [](auto& c) { B::insert(c, "bob"); };
    co_await B::write(db, insert);
    seen_after_run = b.rows("bob");
  };
  test::run(ctx, body());
  CHECK(seen_after_call == 1);
  CHECK(seen_after_run == 1);
}

// ------------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("operation_aborted means nothing of the operation is in the database",
                   "[contract][outcomes][cancellation]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  std::atomic<std::int64_t> started{0};
  std::atomic<int> queued_ran{0};
  contract::outcome running;
  contract::outcome queued;
  net::cancellation_signal running_cancel;
  net::cancellation_signal queued_cancel;
  auto endless = [&started](auto& c) { B::insert_endlessly(c, "running", started); };
  auto insert = [&queued_ran](auto& c) {
    ++queued_ran;
    B::insert(c, "queued");
  };
  auto body = [&]() -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    B::write(db, endless,
             net::bind_cancellation_slot(running_cancel.slot(), net::bind_executor(ex, contract::record(running))));
    co_await contract::until_stuck(b, started);
    B::write(db, insert,
             net::bind_cancellation_slot(queued_cancel.slot(), net::bind_executor(ex, contract::record(queued))));
    auto is_queued = [&db] { return db.stats().queued == 1; };
    co_await test::poll_until(is_queued);
    queued_cancel.emit(net::cancellation_type::terminal);
    co_await contract::until_done(queued);
    running_cancel.emit(net::cancellation_type::terminal);
    co_await contract::until_done(running);
  };
  test::run(ctx, body());
  CHECK(test::code_of(running.error) == net::error::operation_aborted);
  CHECK(test::code_of(queued.error) == net::error::operation_aborted);
  CHECK(b.rows("running%") == 0);
  CHECK(b.rows("queued") == 0);
  CHECK(queued_ran == 0);
}

// ------------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("a cancelled queued operation never runs and completes at once with operation_aborted",
                   "[contract][cancellation]", CONTRACT_BACKENDS) {
  using B = TestType;
  B b;
  auto& db = b.open();
  net::io_context ctx;
  test::gate g;
  test::open_at_exit opener{g};
  std::atomic<bool> blocking{false};
  std::atomic<int> ran{0};
  contract::outcome blocker;
  contract::outcome cancelled;
  net::cancellation_signal cancel;
  bool cancelled_while_blocked = false;
  auto block = [&](auto&) {
    blocking = true;
    g.wait();
  };
  auto counted = [&ran](auto& c) {
    ++ran;
    B::insert(c, "cancelled");
  };
  auto body = [&]() -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    B::write(db, block, net::bind_executor(ex, contract::record(blocker)));
    co_await test::until_set(blocking);
    B::write(db, counted,
             net::bind_cancellation_slot(cancel.slot(), net::bind_executor(ex, contract::record(cancelled))));
    cancel.emit(net::cancellation_type::terminal);
    co_await contract::until_done(cancelled);
    cancelled_while_blocked = !blocker.done;
    g.open();
    co_await contract::until_done(blocker);
    auto after = [](auto& c) { B::insert(c, "after"); };  // the writer has gone past the cancelled one
    co_await B::write(db, after);
  };
  test::run(ctx, body());
  CHECK(cancelled_while_blocked);
  CHECK(test::code_of(cancelled.error) == net::error::operation_aborted);
  CHECK(ran == 0);
  CHECK(b.rows("cancelled") == 0);
  CHECK(db.stats().queued == 0);
  CHECK(db.stats().cancelled == 1);
}

// ------------------------------------------------------------------------------------------------

// issue 17 defect 3 (SQLite with readers = 0: the write succeeds at its co_await, then the session's
// release rolls it back)
TEMPLATE_TEST_CASE("a write in a read session is refused, never silently dropped", "[contract][outcomes][session]",
                   CONTRACT_BACKENDS) {
  using B = TestType;
  std::size_t readers = 2;
  SECTION("with readers") { readers = 2; }
  SECTION("with no readers, the read session on the writer's connection") { readers = 0; }
  B b;
  auto& db = b.open({.readers = readers});
  net::io_context ctx;
  bool refused = false;
  auto body = [&]() -> net::awaitable<void> {
    {
      asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::read_only);
      auto insert = [](auto& c) { B::insert(c, "dropped"); };
      try {
        co_await B::in_session_transaction(s, insert);
      } catch (const std::exception&) {
        refused = true;
      }
    }
    // On the writer after the session's release, which (readers = 0) ran there too.
    auto after = [](auto& c) { B::insert(c, "after"); };
    co_await B::write(db, after);
  };
  test::run(ctx, body());
  INFO("readers " << readers);
  CHECK(refused);
  CHECK(b.rows("dropped") == 0);
}

// ------------------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("past max_queued new operations fail at once with queue_full and nothing accepted is lost",
                   "[contract][backpressure]", CONTRACT_BACKENDS) {
  using B = TestType;
  constexpr std::size_t bound = 4;
  constexpr std::size_t extra = 3;
  B b;
  auto& db = b.open({.max_queued = bound});
  net::io_context ctx;
  test::gate g;
  test::open_at_exit opener{g};
  std::atomic<bool> blocking{false};
  std::atomic<int> completions{0};
  contract::outcome blocker;
  std::vector<contract::outcome> writes(bound + extra);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < bound + extra; ++i) names.push_back("q" + std::to_string(i));
  std::vector<std::function<void(typename B::connection&)>> inserts;
  for (const std::string& n : names) inserts.emplace_back([&n](typename B::connection& c) { B::insert(c, n); });
  std::vector<bool> done_while_blocked(bound + extra);
  asyncdb::stats peak;
  asyncdb::error_code after_drain;
  auto block = [&](auto&) {
    blocking = true;
    g.wait();
  };
  auto body = [&]() -> net::awaitable<void> {
    auto ex = co_await net::this_coro::executor;
    B::write(db, block, net::bind_executor(ex, contract::record(blocker)));
    co_await test::until_set(blocking);
    for (std::size_t i = 0; i < bound + extra; ++i) {
      auto counted = [&out = writes[i], &completions](std::exception_ptr e) {
        ++completions;
        contract::record(out)(e);
      };
      B::write(db, inserts[i], net::bind_executor(ex, counted));
    }
    // The refusals complete on their own, while the writer is still held.
    auto refusals_in = [&] { return completions == static_cast<int>(extra); };
    co_await test::poll_until(refusals_in);
    for (std::size_t i = 0; i < bound + extra; ++i) done_while_blocked[i] = writes[i].done;
    peak = db.stats();
    g.open();
    for (const auto& w : writes) co_await contract::until_done(w);
    // The bound is on what waits, not on what ever ran: there is room again.
    auto one = [](auto& c) { B::insert(c, "after"); };
    after_drain = co_await test::error_of(B::write(db, one));
  };
  test::run(ctx, body());
  CHECK(peak.queued == bound);
  CHECK(peak.rejected == extra);
  for (std::size_t i = 0; i < bound + extra; ++i) {
    INFO(names[i]);
    if (i < bound) {  // accepted: ran once the writer was free, and is in the database
      CHECK_FALSE(done_while_blocked[i]);
      CHECK_FALSE(writes[i].error);
      CHECK(b.rows(names[i]) == 1);
    } else {  // refused at once, and nothing of it ran
      CHECK(done_while_blocked[i]);
      CHECK(test::code_of(writes[i].error) == asyncdb::errc::queue_full);
      CHECK(b.rows(names[i]) == 0);
    }
  }
  CHECK(completions == static_cast<int>(bound + extra));  // exactly once each
  CHECK_FALSE(after_drain);
}
