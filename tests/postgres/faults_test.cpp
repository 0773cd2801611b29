// Faults on PostgreSQL: a connection killed on the server, a database refusing connections, a transaction
// left open, and libpqxx 6.4's lost write.
#include "pg_support.hpp"

#include <asio/steady_timer.hpp>

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;
using state = asyncdb::postgres::connection_stats::state;

namespace {
void admin(const std::string& sql) {
  pqxx::connection c{pgtest::primary()};
  pqxx::nontransaction t{c};
  t.exec(sql);
}

// A database of the test's own, so that refusing connections to it touches no other test.
class scratch_database {
 public:
  scratch_database() : name_("f" + std::to_string(::getpid())) {
    admin("DROP DATABASE IF EXISTS " + name_);
    admin("CREATE DATABASE " + name_);
  }
  ~scratch_database() {
    try {
      admin("ALTER DATABASE " + name_ + " WITH ALLOW_CONNECTIONS true");
      admin("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
    }
  }
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(pgtest::primary_port()) + " dbname=" + name_ + " user=postgres";
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
};
}  // namespace

TEST_CASE("a PostgreSQL connection killed on the server fails its operation and is replaced with new DAOs",
          "[postgres][faults]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  auto& log = pgtest::pg_dao_log();
  asio::io_context ctx;
  std::string error;
  int pid_before = 0;
  int pid_after = 0;
  std::size_t built_before = 0;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    pid_before = co_await users.call<&PgUserOper::backend_pid>();
    built_before = log.constructions().size();
    // Killed while a statement runs on it.
    std::thread killer([&] {
      std::this_thread::sleep_for(200ms);
      admin("SELECT pg_terminate_backend(" + std::to_string(pid_before) + ")");
    });
    try {
      co_await users.call<&PgUserOper::sleep>(20.0);
    } catch (const pqxx::broken_connection& e) {
      error = e.what();
    }
    killer.join();
    // The next operation runs on a new connection, with a new DAO, and its session state (on_open's
    // search_path) is there again.
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    pid_after = co_await users.call<&PgUserOper::backend_pid>();
  };
  test::run(ctx, body());
  CHECK_FALSE(error.empty());
  CHECK(pid_after != pid_before);
  CHECK(log.constructions().size() == built_before + 1);
  CHECK(pgtest::count_users(s) == 1);
  const auto st = pg.stats();
  CHECK(st.connections[0].connects == 2);
  CHECK(st.connections[0].status == state::ready);
}

TEST_CASE("while PostgreSQL refuses connections operations fail fast with the last connect error and then recover",
          "[postgres][faults]") {
  scratch_database sdb;
  asyncdb::postgres::options o;
  o.primary = sdb.conninfo();
  o.writers = 1;
  o.readers = 0;
  o.reconnect_backoff = 50ms;
  o.max_reconnect_backoff = 200ms;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  auto pid_of = [](pqxx::connection& c) {  // a round trip, unlike backendpid()
    pqxx::nontransaction t{c};
    return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
  };
  std::string first_error;
  std::string stats_error;
  state stats_state = state::ready;
  std::chrono::steady_clock::duration slowest_refusal{};
  int pid_after = 0;
  auto body = [&]() -> asio::awaitable<void> {
    const int pid = co_await asyncdb::async_run(pg, pid_of);
    admin("ALTER DATABASE " + sdb.name() + " WITH ALLOW_CONNECTIONS false");
    admin("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
    for (int i = 0; i < 5; ++i) {
      const auto start = std::chrono::steady_clock::now();
      try {
        co_await asyncdb::async_run(pg, pid_of);
      } catch (const pqxx::broken_connection& e) {
        if (first_error.empty()) first_error = e.what();
      }
      slowest_refusal = std::max(slowest_refusal, std::chrono::steady_clock::now() - start);
    }
    const auto st = pg.stats();
    stats_state = st.connections[0].status;
    stats_error = st.connections[0].last_error;
    admin("ALTER DATABASE " + sdb.name() + " WITH ALLOW_CONNECTIONS true");
    // Serves again once a reconnect is tried (after at most max_reconnect_backoff).
    asio::steady_timer timer{co_await asio::this_coro::executor};
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (pid_after == 0 && std::chrono::steady_clock::now() < give_up) {
      bool refused = false;
      try {
        pid_after = co_await asyncdb::async_run(pg, pid_of);
      } catch (const pqxx::broken_connection&) {
        refused = true;
      }
      if (refused) {
        timer.expires_after(20ms);
        co_await timer.async_wait(asio::use_awaitable);
      }
    }
  };
  test::run(ctx, body());
  CHECK_FALSE(first_error.empty());
  CHECK(stats_state == state::down);
  CHECK(stats_error.find("not currently accepting connections") != std::string::npos);
  CHECK(slowest_refusal < 5s);  // generous: one connect attempt at most, never a hang
  CHECK(pid_after != 0);
  CHECK(pg.stats().connections[0].status == state::ready);
}

TEST_CASE("a transaction a PostgreSQL DAO leaves open is rolled back before the connection serves again",
          "[postgres][faults]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  std::error_code code;
  bool in_txn_after = true;
  auto body = [&]() -> asio::awaitable<void> {
    auto leaves_open = [](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      t.exec("BEGIN");
      t.exec("INSERT INTO users(name, email) VALUES ('ann', 'a@x')");
      return 1;
    };
    try {
      co_await asyncdb::async_run(pg, leaves_open);
    } catch (const std::system_error& e) {
      code = e.code();
    }
    auto status = [](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      // now() is the transaction's start: inside a transaction left open it would not move.
      return t.exec1("SELECT now() = statement_timestamp()")[0].as<bool>();
    };
    in_txn_after = !(co_await asyncdb::async_run(pg, status));
  };
  test::run(ctx, body());
  CHECK(code == asyncdb::errc::transaction_left_open);
  CHECK_FALSE(in_txn_after);
  CHECK(pgtest::count_users(s) == 0);
}

TEST_CASE("libpqxx 6.4 loses a write when a DAO catches a failed statement and commits and asyncdb reports it",
          "[postgres][faults]") {
  pgtest::schema s;
  s.exec("INSERT INTO users(name, email) VALUES ('dup', 'd@x')");
  UserCreate carl{"carl", "c@x"};
  UserCreate dup{"dup", "d@x"};
  SECTION("by default the operation fails instead of reporting a success") {
    asyncdb::postgres::database pg{s.options(1, 0, false)};
    asio::io_context ctx;
    std::string message;
    auto body = [&]() -> asio::awaitable<void> {
      AsyncPgUserOper users{pg};
      try {
        co_await users.call<&PgUserOper::add_two_catching_the_second>(carl, dup);
      } catch (const std::runtime_error& e) {
        message = e.what();
      }
    };
    test::run(ctx, body());
    CHECK(message.find("the server rolled the whole transaction back") != std::string::npos);
  }
  SECTION("with refuse_swallowed_errors off libpqxx's silent loss shows") {
    auto o = s.options(1, 0, false);
    o.refuse_swallowed_errors = false;
    asyncdb::postgres::database pg{o};
    asio::io_context ctx;
    auto body = [&]() -> asio::awaitable<int> {
      AsyncPgUserOper users{pg};
      co_return co_await users.call<&PgUserOper::add_two_catching_the_second>(carl, dup);
    };
    CHECK(test::run(ctx, body()) == 1);  // "success"
  }
  // carl's insert is gone either way: the server turned the COMMIT into a ROLLBACK.
  CHECK(s.exec("SELECT count(*) FROM users WHERE name = 'carl'")[0][0].as<int>() == 0);
}
