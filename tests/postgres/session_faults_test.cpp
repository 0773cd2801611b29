// A PostgreSQL session whose connection dies: its operations fail (with the server's words), never run on
// another connection, and never continue silently on a new backend that lost the session's state.
#include "pg_support.hpp"

using namespace std::chrono_literals;
using state = asyncdb::postgres::connection_stats::state;

namespace {
int session_pid(pqxx::connection& c) {
  pqxx::nontransaction t{c};
  return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
}

// Each later operation of `session`, and its error message ("" when it ran).
asio::awaitable<std::vector<std::string>> three_more(asyncdb::AsyncDbSession& session) {
  std::vector<std::string> errors;
  for (int i = 0; i < 3; ++i) {
    std::string error;
    try {
      auto pid = [](pqxx::connection& c) { return session_pid(c); };
      co_await session.run(pid);
    } catch (const pqxx::broken_connection& e) {
      error = e.what();
    } catch (const std::exception& e) {
      error = std::string("other: ") + e.what();
    }
    errors.push_back(error);
  }
  co_return errors;
}
}  // namespace

TEST_CASE("a PostgreSQL session whose connection dies never has its operations run on another connection",
          "[postgres][session][faults]") {
  pgtest::scratch_database sdb;
  asyncdb::postgres::database pg{sdb.options(2)};
  asio::io_context ctx;
  int pid = 0;
  std::vector<std::string> errors;
  auto body = [&]() -> asio::awaitable<void> {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
    auto first = [](pqxx::connection& c) { return session_pid(c); };
    pid = co_await session.run(first);
    // The server refuses new connections and ends the session's: its lane cannot reconnect while the other
    // writer is up.
    pgtest::admin("ALTER DATABASE " + sdb.name() + " WITH ALLOW_CONNECTIONS false");
    pgtest::admin("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
    REQUIRE(pgtest::wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = " + std::to_string(pid)));
    errors = co_await three_more(session);
  };
  test::run(ctx, body(), 20s);
  REQUIRE(errors.size() == 3);
  for (const std::string& e : errors) {
    INFO(e);
    CHECK(e.find("session") != std::string::npos);  // a broken_connection naming the session, never a result
  }
  CHECK(errors[0].find("terminat") != std::string::npos);  // the server's own words
}

TEST_CASE("a PostgreSQL session whose connection dies outside a transaction fails instead of going on on a new backend",
          "[postgres][session][faults]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  std::vector<std::string> errors;
  int after_session = 0;
  int pid = 0;
  auto body = [&]() -> asio::awaitable<void> {
    {
      asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
      // Session state a new backend would not have.
      auto temp = [](pqxx::connection& c) {
        pqxx::nontransaction t{c};
        t.exec("CREATE TEMP TABLE scratch(x int)");
        return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
      };
      pid = co_await session.run(temp);
      pgtest::admin("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
      REQUIRE(pgtest::wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = " + std::to_string(pid)));
      errors = co_await three_more(session);
    }
    // Outside the session the database serves again, on a new connection.
    auto next = [](pqxx::connection& c) { return session_pid(c); };
    after_session = co_await asyncdb::async_run(pg, next);
  };
  test::run(ctx, body(), 20s);
  REQUIRE(errors.size() == 3);
  for (const std::string& e : errors) {
    INFO(e);
    CHECK(e.find("session") != std::string::npos);
  }
  CHECK(after_session != 0);
  CHECK(after_session != pid);
  CHECK(pg.stats().connections[0].status == state::ready);
}
