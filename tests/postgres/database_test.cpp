// asyncdb::postgres::database: the SQLite names over libpqxx, against a real primary and replica.
#include "pg_support.hpp"

#include <algorithm>
#include <mutex>
#include <set>
#include <source_location>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;

namespace {
std::int64_t add_sync(pqxx::connection& c, std::string name) {
  pqxx::work w{c};
  const auto id =
      w.exec_params1("INSERT INTO users(name, email) VALUES ($1, 'f@x') RETURNING id", name)[0].as<std::int64_t>();
  w.commit();
  return id;
}
}  // namespace

TEST_CASE("each PostgreSQL connection builds its own DAO on its own thread on first use", "[postgres]") {
  pgtest::schema s;
  auto& log = pgtest::pg_dao_log();
  const auto before = log.constructions().size();
  const int alive_before = log.alive.load();
  {
    asyncdb::postgres::database pg{s.options(3, 0, false)};
    asio::io_context ctx;
    auto body = [&]() -> asio::awaitable<std::vector<int>> {
      AsyncPgUserOper users{pg};
      std::vector<asio::awaitable<int>> calls;
      for (int i = 0; i < 60; ++i) calls.push_back(users.call<&PgUserOper::backend_pid>());
      co_return co_await asyncdb::gather(std::move(calls));
    };
    const std::vector<int> pids = test::run(ctx, body());
    const std::set<int> distinct(pids.begin(), pids.end());
    CHECK(distinct.size() <= 3);
    const auto built = log.constructions();
    CHECK(built.size() - before == distinct.size());
    for (std::size_t i = before; i < built.size(); ++i) CHECK(built[i] != std::this_thread::get_id());
    CHECK(log.alive.load() - alive_before == static_cast<int>(distinct.size()));
  }
  CHECK(log.alive.load() == alive_before);  // destroyed with their connections
}

TEST_CASE("writes run in parallel on the primary's connections", "[postgres]") {
  pgtest::schema s;
  auto elapsed_with = [&](std::size_t writers) {
    asyncdb::postgres::database pg{s.options(writers, 0, false)};
    asio::io_context ctx;
    auto body = [&]() -> asio::awaitable<void> {
      AsyncPgUserOper users{pg};
      std::vector<asio::awaitable<int>> calls;
      for (int i = 0; i < 4; ++i) calls.push_back(users.call<&PgUserOper::sleep>(0.25));
      co_await asyncdb::gather(std::move(calls));
    };
    const auto start = std::chrono::steady_clock::now();
    test::run(ctx, body());
    return std::chrono::steady_clock::now() - start;
  };
  const auto one = elapsed_with(1);
  const auto four = elapsed_with(4);
  CHECK(four * 2 < one);  // 4 x 250 ms one after the other, or about 250 ms side by side
}

TEST_CASE("read-only operations run on the replica where writes fail with SQLSTATE 25006", "[postgres]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 2)};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    const auto v1 = co_await users.call<&PgUserOper::in_recovery>();
    CHECK(v1);
    auto on_primary = [](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      return t.exec1("SELECT pg_is_in_recovery()")[0].as<bool>();
    };
    const auto v2 = co_await asyncdb::async_run(pg, on_primary);
    CHECK_FALSE(v2);
    auto write = [](pqxx::connection& c) { return add_sync(c, "mallory"); };
    std::string state;
    try {
      co_await asyncdb::async_run(pg, asyncdb::read_only, write);
    } catch (const pqxx::sql_error& e) {
      state = e.sqlstate();
    }
    CHECK(state == "25006");
  };
  test::run(ctx, body());
  CHECK(pgtest::count_users(s) == 0);
}

TEST_CASE("without a replica read-only operations use read-only primary connections", "[postgres]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 1, false)};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    const auto v3 = co_await users.call<&PgUserOper::in_recovery>();
    CHECK_FALSE(v3);
    auto write = [](pqxx::connection& c) { return add_sync(c, "mallory"); };
    std::string state;
    try {
      co_await asyncdb::async_run(pg, asyncdb::read_only, write);
    } catch (const pqxx::sql_error& e) {
      state = e.sqlstate();
    }
    CHECK(state == "25006");
    const std::int64_t id = co_await asyncdb::async_run(pg, write);
    CHECK(id > 0);
  };
  test::run(ctx, body());
  CHECK(pgtest::count_users(s) == 1);
}

TEST_CASE("async_db_operation runs a function taking pqxx::connection on the primary", "[postgres]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<std::int64_t> {
    std::string name = "bob";
    co_return co_await asyncdb::async_db_operation<&add_sync>{}(pg, name);
  };
  CHECK(test::run(ctx, body()) > 0);
  CHECK(pgtest::count_users(s) == 1);
}

TEST_CASE("stats shows every PostgreSQL connection ready with its server process", "[postgres]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(2, 1)};
  const auto st = pg.stats();
  REQUIRE(st.connections.size() == 3);
  CHECK(std::count_if(st.connections.begin(), st.connections.end(), [](auto& c) { return c.primary; }) == 2);
  for (const auto& c : st.connections) {
    CHECK(c.status == asyncdb::postgres::connection_stats::state::ready);
    CHECK(c.backend_pid > 0);
    CHECK(c.connects == 1);
  }
  pg.close();
  for (const auto& c : pg.stats().connections) CHECK(c.status == asyncdb::postgres::connection_stats::state::closed);
}

TEST_CASE("a DAO's own exception reaches the co_await and the operation counts as failed", "[postgres]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    std::string state;
    try {
      co_await users.call<&PgUserOper::add>(ann);
    } catch (const pqxx::unique_violation& e) {
      state = e.sqlstate();
    }
    CHECK(state == "23505");
  };
  test::run(ctx, body());
  CHECK(pg.stats().failed == 1);
  CHECK(pg.stats().completed == 1);
}

TEST_CASE("on_open learns each PostgreSQL connection's role, and what it throws names the connection",
          "[postgres][on_open]") {
  pgtest::schema s;
  asyncdb::postgres::options o = s.options(2, 1, true);
  std::mutex mutex;
  std::vector<std::string> roles;
  o.on_open = [&, search_path = s.on_open()](pqxx::connection& c, const asyncdb::connection_role& role) {
    search_path(c);
    std::lock_guard lock(mutex);
    roles.push_back(role.name());
  };
  { asyncdb::postgres::database pg{o}; }
  std::sort(roles.begin(), roles.end());
  CHECK(roles == std::vector<std::string>{"reader 0 (replica 0)", "writer 0", "writer 1"});

  // A schema script run on every connection: the writers create the table, the replica's reader cannot.
  o.on_open = [search_path = s.on_open()](pqxx::connection& c) {
    search_path(c);
    pqxx::nontransaction t{c};
    t.exec("CREATE TABLE IF NOT EXISTS items(k bigint PRIMARY KEY)");
  };
  try {
    asyncdb::postgres::database pg{o};
    FAIL("the replica's reader ran CREATE TABLE");
  } catch (const pqxx::sql_error& e) {  // libpqxx's own error keeps its type and SQLSTATE
    CHECK(std::string(e.what()).find("asyncdb: on_open failed on reader 0 (replica 0): ") == 0);
    CHECK(e.sqlstate() == "25006");
  }
}

TEST_CASE("the operation observer names the backend that ran each operation and whether it committed",
          "[postgres][observer]") {
  pgtest::schema s;
  std::mutex mutex;
  std::vector<asyncdb::operation_record> records;
  std::vector<std::string> names;
  asyncdb::postgres::options o = s.options(1, 0, false);
  o.observer = [&](const asyncdb::operation_record& r) {
    std::lock_guard lock(mutex);
    records.push_back(r);
    names.emplace_back(r.name);
  };
  std::size_t seen_after_add = 0;
  int pid = 0;
  std::uint_least32_t lines[3] = {};
  {
    asyncdb::postgres::database pg{o};
    asio::io_context ctx;
    auto body = [&]() -> asio::awaitable<void> {
      AsyncPgUserOper users{pg};
      UserCreate u{"observed", "o@x", true};
      co_await users.call<&PgUserOper::add>(u);
      {
        std::lock_guard lock(mutex);
        seen_after_add = records.size();
      }
      pid = co_await users.call<&PgUserOper::backend_pid>();
      auto pid_of = [](PgUserOper& dao) { return dao.backend_pid(); };
      lines[0] = std::source_location::current().line() + 1;
      co_await users.run(pid_of);
      auto select_one = [](pqxx::connection& c) { return pqxx::nontransaction{c}.exec1("SELECT 1")[0].as<int>(); };
      lines[1] = std::source_location::current().line() + 1;
      co_await asyncdb::async_run(pg, select_one);
      lines[2] = std::source_location::current().line() + 1;
      asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
      co_await session.call<&PgUserOper::backend_pid>();
    };
    test::run(ctx, body());
  }
  CHECK(seen_after_add == 1);  // told before the caller resumed
  REQUIRE(records.size() == 5);
  // Where each was started: none for a call<> (its name names it), the line of a run(), an async_run(), and of the
  // session's open for the session's operation.
  CHECK(records[0].where.line() == 0);
  CHECK(records[2].where.line() == lines[0]);
  CHECK(records[3].where.line() == lines[1]);
  CHECK(records[4].in_session);
  CHECK(records[4].where.line() == lines[2]);
  for (std::size_t i = 2; i < 5; ++i)
    CHECK(std::string(records[i].where.file_name()) == std::source_location::current().file_name());
  INFO("names: " << names[0] << " | " << names[1]);
  CHECK(names[0].find("add") != std::string::npos);
  CHECK(records[0].connection.kind == asyncdb::connection_role::writer);
  CHECK(records[0].outcome == asyncdb::operation_outcome::succeeded);
  CHECK(records[0].committed);
  CHECK(records[0].running > 0ns);
  CHECK(records[0].backend_pid == pid);  // one writer: the same server process ran both
  CHECK(records[1].backend_pid == pid);
  CHECK(pid != 0);
}
