// 03 — Sessions (guide method 3: `async with AsyncDbSession() as db:`).
//
// Python borrowed one connection for a block of work. asyncdb::async_db_session(db) gives a write session
// that holds the writer until it goes out of scope: several DAO calls share one transaction. Leaving the scope
// with a transaction still open rolls it back, exactly like an exception leaving `async with`.
// async_db_session(db, asyncdb::read_only) holds a reader instead: all its reads see one snapshot.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  {  // Committed: an insert and a raw UPDATE in one transaction.
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    UserCreate bob{"bob", "bob@example.org"};
    const std::int64_t id = co_await s.call<&UserOper::add>(bob);
    co_await s.run(
        [](SQLite::Database& c) { c.exec("UPDATE users SET email = 'bob@example.com' WHERE name = 'bob'"); });
    co_await s.commit();
    std::cout << "session 1: added bob (id " << id << "), changed his email, committed\n";
  }

  {  // Abandoned: the scope ends without commit(), so the insert is rolled back.
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    UserCreate eve{"eve", "eve@example.org"};
    const std::int64_t id = co_await s.call<&UserOper::add>(eve);
    std::cout << "session 2: added eve (id " << id << ") and left the scope without commit()\n";
  }
  // Even the writer's own connection no longer sees eve: the rollback ran before the writer took new work.
  const int eves = co_await asyncdb::async_run(
      db, [](SQLite::Database& c) { return c.execAndGet("SELECT count(*) FROM users WHERE name = 'eve'").getInt(); },
      asio::use_awaitable);
  std::cout << "on the writer afterwards: " << eves << " row(s) named eve\n";

  {  // Read session: both lookups run on the same reader and see the same snapshot.
    asyncdb::AsyncDbSession r = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    const std::string bob_name = "bob";
    const std::string eve_name = "eve";
    const std::optional<User> bob = co_await r.call<&UserOper::get_by_name>(bob_name);
    const std::optional<User> eve = co_await r.call<&UserOper::get_by_name>(eve_name);
    std::cout << "read session: bob " << (bob ? "is there, email " + bob->email : std::string{"is missing"}) << "; eve "
              << (eve ? "is there" : "is absent (rolled back)") << '\n';
    if (!bob || eve || eves != 0) throw std::runtime_error{"session 1 should be committed and session 2 rolled back"};
  }
}

int main() {
  try {
    asio::io_context ctx;
    asyncdb::database db{demo::fresh_file("03_session.db"), {.readers = 2, .on_open = create_schema}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "03_session failed: " << e.what() << '\n';
    return 1;
  }
}
