// Cancellation on PostgreSQL: the server is told (a cancel request from the canceller thread) and no late
// cancel hits the next query. That a cancelled write leaves nothing is the conformance suite's (tests/contract).
#include "pg_support.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>

#include <random>

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;

namespace {
// Whether the primary still runs a pg_sleep for the test's connections.
bool server_still_sleeping(const std::string& marker) {
  pqxx::connection c{pgtest::primary()};
  pqxx::nontransaction t{c};
  return t.exec1("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" + marker +
                 "%' AND pid <> pg_backend_pid()")[0]
             .as<int>() > 0;
}
}  // namespace

TEST_CASE("a timed-out PostgreSQL operation is cancelled on the server and completes with operation_aborted",
          "[postgres][cancellation]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  std::error_code code;
  const auto start = std::chrono::steady_clock::now();
  auto body = [&]() -> asio::awaitable<void> {
    auto sleeper = [](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      t.exec("SELECT pg_sleep(30) /* asyncdb-cancel-1 */");
      return 1;
    };
    asio::steady_timer timer{co_await asio::this_coro::executor, 300ms};
    try {
      co_await (asyncdb::async_run(pg, sleeper) || timer.async_wait(asio::use_awaitable));
    } catch (const std::system_error& e) {
      code = e.code();
    }
  };
  test::run(ctx, body());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // The || returns once the timer fires, but the sleeper's completion is part of the run: the whole run
  // taking seconds, not 30, shows the server stopped the statement.
  CHECK(elapsed < 10s);
  CHECK_FALSE(server_still_sleeping("asyncdb-cancel-1"));
  CHECK(pg.stats().cancelled == 1);
  // The connection serves the next operation.
  auto one = [](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    return t.exec1("SELECT 1")[0].as<int>();
  };
  auto next = [&]() -> asio::awaitable<int> { co_return co_await asyncdb::async_run(pg, one); };
  CHECK(test::run(ctx, next()) == 1);
  (void)code;
}

namespace {
// A write that inserts a row, then sleeps on the server inside its transaction: only a cancel ends it.
int budget_insert_then_sleep(pqxx::connection& c) {
  pqxx::work w{c};
  w.exec("INSERT INTO users(name, email) VALUES ('budget', 'b@x')");
  w.exec("SELECT pg_sleep(30) /* asyncdb-budget-1 */");
  w.commit();
  return 1;
}

asio::awaitable<void> budget_running_write(asyncdb::postgres::database& pg, std::error_code& code, int& next) {
  try {
    co_await asyncdb::async_run(pg, budget_insert_then_sleep);
  } catch (const std::system_error& e) {
    code = e.code();
  }
  auto one = [](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    return t.exec1("SELECT 1")[0].as<int>();
  };
  next = co_await asyncdb::async_run(pg, one);
}
}  // namespace

TEST_CASE("a PostgreSQL write past the default budget is cancelled on the server: deadline_exceeded, nothing written",
          "[postgres][cancellation][budget]") {
  pgtest::schema s;
  asyncdb::postgres::options o = s.options(1, 0, false);
  o.operation_budget = 300ms;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  std::error_code code;
  int next = 0;
  const auto start = std::chrono::steady_clock::now();
  test::run(ctx, budget_running_write(pg, code, next));
  CHECK(code == asyncdb::errc::deadline_exceeded);
  CHECK(std::chrono::steady_clock::now() - start < 10s);  // not the 30 s of the sleep
  CHECK_FALSE(server_still_sleeping("asyncdb-budget-1"));
  CHECK(pgtest::count_users(s) == 0);
  CHECK(next == 1);
}

TEST_CASE("a cancel racing the end of an operation never hits the next one on that connection",
          "[postgres][cancellation]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  constexpr int rounds = 300;
  int next_failed = 0;
  int aborted = 0;
  auto body = [&]() -> asio::awaitable<void> {
    std::mt19937 rng{12345};
    std::uniform_int_distribution<int> delay_us{0, 3000};
    auto short_query = [](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      t.exec("SELECT pg_sleep(0.002)");
      return 1;
    };
    // Long enough (15 ms) for a cancel request still in flight when the first ended (one takes about
    // 10 ms) to land in it.
    auto next_query = [](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      return t.exec1("SELECT 1 FROM pg_sleep(0.015)")[0].as<int>();
    };
    auto ex = co_await asio::this_coro::executor;
    for (int i = 0; i < rounds; ++i) {
      asio::cancellation_signal signal;
      asio::steady_timer timer{ex, std::chrono::microseconds(delay_us(rng))};
      std::exception_ptr first;
      bool first_done = false;
      // Completes on this coroutine's executor, the thread that emits the cancellation.
      asyncdb::async_run(
          pg, short_query,
          asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ex, [&](std::exception_ptr e, int) {
                                         first = e;
                                         first_done = true;
                                       })));
      co_await timer.async_wait(asio::use_awaitable);
      if (!first_done) signal.emit(asio::cancellation_type::terminal);
      auto is_done = [&] { return first_done; };
      co_await test::poll_until(is_done);
      if (first && test::code_of(first) == asio::error::operation_aborted) ++aborted;
      try {
        co_await asyncdb::async_run(pg, next_query);
      } catch (const std::exception&) {
        ++next_failed;
      }
    }
  };
  test::run(ctx, body(), 120s);
  CHECK(next_failed == 0);
  INFO("aborted " << aborted << " of " << rounds);
  CHECK(aborted > 0);  // the race was really run: some cancels landed
}
