// 09 — Timeouts (Python would write `await asyncio.wait_for(op, timeout)`).
//
// A time budget bounds an operation from the co_await to its completion, queue wait included: a database-wide
// default (options::operation_budget), or one per call, `asyncdb::budget(50ms)` as the completion token of
// async_run and async_db_session, or `asyncdb::within(50ms, awaitable)` around a DAO call. Past it, a queued
// operation is dropped, a running statement is interrupted (sqlite3_interrupt), and the co_await throws
// asyncdb::errc::deadline_exceeded once the connection is free again; that connection is immediately usable.
// Nothing of an operation that failed that way is in the database; one that had already committed succeeds.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asyncdb/budget.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

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

  auto start = steady_clock::now();
  const std::vector<User> fast = co_await asyncdb::within(2s, users.list());
  std::cout << "within(2s, list()): " << fast.size() << " user(s) after " << ms_since(start) << " ms\n";

  start = steady_clock::now();
  bool timed_out = false;
  try {
    co_await asyncdb::async_run(db, asyncdb::read_only, count_to_a_billion, asyncdb::budget(50ms));
  } catch (const asyncdb::system_error& e) {
    timed_out = e.code() == asyncdb::errc::deadline_exceeded;
  }
  const long long slow_ms = ms_since(start);
  std::cout << "count_to_a_billion with budget(50ms): " << (timed_out ? "deadline_exceeded" : "finished")
            << ", the query was interrupted and the co_await returned after " << slow_ms << " ms\n";

  // There is a single reader (options below), so this runs on the very connection that was interrupted.
  start = steady_clock::now();
  const std::vector<User> again = co_await users.list();
  std::cout << "the same reader answers list() right away: " << again.size() << " user(s) in " << ms_since(start)
            << " ms; stats: " << db.stats().cancelled << " operation(s) cancelled\n";

  if (fast.size() != 1 || !timed_out || slow_ms > 1000) throw std::runtime_error{"timeouts misbehaved"};
}

int main() {
  try {
    asio::io_context ctx;
    // Every operation gets 5 s unless it was given its own budget.
    asyncdb::database db{demo::fresh_file("09_timeout.db"),
                         {.readers = 1, .on_open = create_schema, .operation_budget = 5s}};
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
