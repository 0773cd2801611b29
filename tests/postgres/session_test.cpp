// Sessions on PostgreSQL: one primary connection, begin/commit/rollback, rollback on scope exit, a DAO's
// own transaction refused inside the session's, and one snapshot for a read session.
#include "pg_support.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>

using namespace std::chrono_literals;
using pgtest::PgUserOper;
using pgtest::UserCreate;

namespace {
void insert(pqxx::transaction_base& t, const std::string& name) {
  t.exec_params("INSERT INTO users(name, email) VALUES ($1, 'e@x')", name);
}
}  // namespace

TEST_CASE("a PostgreSQL write session commits one transaction and rolls back an abandoned one", "[postgres][session]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(2, 0, false)};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    {
      asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
      co_await session.begin();
      auto add_ann = [](pqxx::transaction_base& t) { insert(t, "ann"); };
      co_await session.run(add_ann);
      co_await session.commit();
      co_await session.begin();
      auto add_bob = [](pqxx::transaction_base& t) { insert(t, "bob"); };
      co_await session.run(add_bob);
      // Inside the open transaction: bob is visible here, not elsewhere yet.
      auto count = [](pqxx::transaction_base& t) { return t.exec1("SELECT count(*) FROM users")[0].as<int>(); };
      const auto v1 = co_await session.run(count);
      CHECK(v1 == 2);
      CHECK(pgtest::count_users(s) == 1);
      // Leaves the scope with bob's transaction open.
    }
    // The session's end is asynchronous: another session on a one-connection... wait until the lane is free.
    auto no_bob = [&] { return pgtest::count_users(s) == 1 && pg.stats().connections[0].holder.empty(); };
    co_await test::poll_until(no_bob);
  };
  test::run(ctx, body());
  CHECK(pgtest::count_users(s) == 1);
  CHECK(s.exec("SELECT count(*) FROM users WHERE name = 'bob'")[0][0].as<int>() == 0);
}

TEST_CASE("a DAO opening its own transaction inside a PostgreSQL session transaction fails and never commits",
          "[postgres][session]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  std::string message;
  auto body = [&]() -> asio::awaitable<void> {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
    co_await session.begin();
    auto add_ann = [](pqxx::transaction_base& t) { insert(t, "ann"); };
    co_await session.run(add_ann);
    UserCreate bob{"bob", "b@x"};
    try {
      co_await session.call<&PgUserOper::add>(bob);  // opens its own pqxx::work
    } catch (const std::logic_error& e) {
      message = e.what();
    }
    co_await session.rollback();
    // Outside a transaction the same DAO call works and commits.
    co_await session.call<&PgUserOper::add>(bob);
  };
  test::run(ctx, body());
  CHECK(message.find("opened its own transaction inside the session's transaction") != std::string::npos);
  CHECK(s.exec("SELECT string_agg(name, ',') FROM users")[0][0].as<std::string>() == "bob");
}

TEST_CASE("a PostgreSQL write session holds one connection while other writes go on beside it", "[postgres][session]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(2, 0, false)};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
    auto pid = [](pqxx::connection& c) { return c.backendpid(); };
    const int first = co_await session.run(pid);
    const int again = co_await session.run(pid);
    CHECK(again == first);
    // A write outside the session completes while the session is held (on the other connection).
    pgtest::AsyncPgUserOper users{pg};
    UserCreate ann{"ann", "a@x"};
    const std::int64_t id = co_await users.call<&PgUserOper::add>(ann);
    CHECK(id > 0);
    const int other = co_await users.call<&PgUserOper::backend_pid>();
    CHECK(other != first);
  };
  test::run(ctx, body());
}

TEST_CASE("a PostgreSQL read session sees one snapshot on the replica", "[postgres][session]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 1)};
  s.exec("INSERT INTO users(name, email) VALUES ('ann', 'a@x')");
  pgtest::wait_for_replica();
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg, asyncdb::read_only);
    auto count = [](pqxx::transaction_base& t) { return t.exec1("SELECT count(*) FROM users")[0].as<int>(); };
    auto recovery = [](pqxx::transaction_base& t) { return t.exec1("SELECT pg_is_in_recovery()")[0].as<bool>(); };
    const auto v2 = co_await session.run(recovery);
    CHECK(v2);
    const auto v3 = co_await session.run(count);
    CHECK(v3 == 1);
    s.exec("INSERT INTO users(name, email) VALUES ('bob', 'b@x')");
    pgtest::wait_for_replica();
    const auto v4 = co_await session.run(count);
    CHECK(v4 == 1);  // the snapshot taken when the session opened
    std::string state;
    auto write = [](pqxx::transaction_base& t) { insert(t, "carl"); };
    try {
      co_await session.run(write);
    } catch (const pqxx::sql_error& e) {
      state = e.sqlstate();
    }
    CHECK(state == "25006");
  };
  test::run(ctx, body());
}

TEST_CASE("a cancelled statement in a PostgreSQL session transaction leaves only rollback allowed",
          "[postgres][session][cancellation]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  std::error_code cancelled;
  std::error_code after;
  auto body = [&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
    co_await session.begin();
    auto add_ann = [](pqxx::transaction_base& t) { insert(t, "ann"); };
    co_await session.run(add_ann);
    auto sleeper = [](pqxx::transaction_base& t) { t.exec("SELECT pg_sleep(30)"); };
    asio::steady_timer timer{co_await asio::this_coro::executor, 300ms};
    try {
      co_await (session.run(sleeper) || timer.async_wait(asio::use_awaitable));
    } catch (const std::system_error& e) {
      cancelled = e.code();
    }
    try {
      co_await session.run(add_ann);
    } catch (const std::system_error& e) {
      after = e.code();
    }
    co_await session.rollback();
    auto add_bob = [](pqxx::transaction_base& t) { insert(t, "bob"); };
    co_await session.begin();
    co_await session.run(add_bob);
    co_await session.commit();
  };
  test::run(ctx, body(), 20s);
  CHECK(after == asyncdb::errc::transaction_aborted);
  CHECK(s.exec("SELECT string_agg(name, ',') FROM users")[0][0].as<std::string>() == "bob");
  (void)cancelled;
}

TEST_CASE("a PostgreSQL session's run(fn(Dao&)) gets the connection's own DAO instance, the one call<> uses",
          "[postgres][session][dao]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};  // one primary connection: every call meets the same DAO
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    pgtest::AsyncPgUserOper users{pg};
    const std::uintptr_t outside = co_await users.call<&PgUserOper::address>();
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
    const UserCreate ann{"ann", "ann@x"};
    auto add_ann = [&ann](PgUserOper& o) {
      o.add(ann);
      return o.address();
    };
    const std::uintptr_t first = co_await session.run(add_ann);
    auto address = [](PgUserOper& o) { return o.address(); };
    const std::uintptr_t second = co_await session.run(address);
    const std::uintptr_t by_call = co_await session.call<&PgUserOper::address>();
    CHECK(first == outside);
    CHECK(second == outside);
    CHECK(by_call == outside);
  };
  test::run(ctx, body());
  CHECK(pgtest::count_users(s) == 1);
}
