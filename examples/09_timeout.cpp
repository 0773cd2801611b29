// 09 — Timeouts (Python would write `await asyncio.wait_for(op, timeout)`).
//
// With asio::experimental::awaitable_operators, `op || timer.async_wait(use_awaitable)` completes with whichever
// finishes first and cancels the other through Asio per-operation cancellation. asyncdb honours it: a queued
// operation is dropped, a running statement is interrupted (sqlite3_interrupt), the co_await completes only
// once the connection is free again, and that connection is immediately usable.

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;
using std::chrono::steady_clock;

// Pure SQLite work that takes many seconds: a recursive CTE counting to a billion.
std::int64_t count_to_a_billion(SQLite::Database& c) {
  const char* sql =
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n";
  return c.execAndGet(sql).getInt64();
}

long long ms_since(steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - start).count();
}

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  AsyncUserOper users{db};
  UserCreate ann{"ann", "ann@example.org"};
  co_await users.add(ann);
  asio::steady_timer timer{co_await asio::this_coro::executor};

  timer.expires_after(2s);
  auto start = steady_clock::now();
  const std::variant<std::vector<User>, std::monostate> fast =
      co_await (users.list() || timer.async_wait(asio::use_awaitable));
  std::cout << "list() || 2 s timer: " << (fast.index() == 0 ? "list() won" : "the timer won") << " after "
            << ms_since(start) << " ms\n";

  timer.expires_after(50ms);
  start = steady_clock::now();
  const std::variant<std::int64_t, std::monostate> slow =
      co_await (asyncdb::async_run(db, asyncdb::read_only, count_to_a_billion, asio::use_awaitable) ||
                timer.async_wait(asio::use_awaitable));
  const long long slow_ms = ms_since(start);
  std::cout << "count_to_a_billion || 50 ms timer: " << (slow.index() == 1 ? "the timer won" : "the query won")
            << ", the query was interrupted and the co_await returned after " << slow_ms << " ms\n";

  // There is a single reader (options below), so this runs on the very connection that was interrupted.
  start = steady_clock::now();
  const std::vector<User> again = co_await users.list();
  std::cout << "the same reader answers list() right away: " << again.size() << " user(s) in " << ms_since(start)
            << " ms; stats: " << db.stats().cancelled << " operation(s) cancelled\n";

  if (fast.index() != 0 || slow.index() != 1 || slow_ms > 1000) throw std::runtime_error{"timeouts misbehaved"};
}

int main() {
  try {
    asio::io_context ctx;
    asyncdb::database db{demo::fresh_file("09_timeout.db"), {.readers = 1, .on_open = create_schema}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "09_timeout failed: " << e.what() << '\n';
    return 1;
  }
}
