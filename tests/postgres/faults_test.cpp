// Faults on PostgreSQL: a connection killed on the server, a database refusing connections, a transaction
// left open, and libpqxx 6.4's lost write.
#include "pg_support.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <thread>

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;
using state = asyncdb::postgres::connection_stats::state;

using pgtest::admin;
using pgtest::scratch_database;
using pgtest::wait_for;

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
  asyncdb::postgres::database pg{sdb.options(1)};
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

namespace {
// Makes COMMIT itself slow on the server: a deferred constraint trigger on users sleeps (up to 30 s) when
// the transaction commits. It ignores cancel requests, counting each one it caught in the sequence
// cancels_seen (a sequence: its value is outside any transaction), so that a connection killed during
// that COMMIT is what ends it.
void make_commit_slow(const pgtest::schema& s) {
  s.exec("CREATE SEQUENCE cancels_seen");
  // The whole sleeping loop is inside the block that catches the cancel: PL/pgSQL checks for interrupts
  // before each statement, so a cancel landing between two pg_sleep calls is caught too.
  s.exec(
      "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
      "DECLARE give_up timestamptz := clock_timestamp() + interval '30 seconds'; BEGIN "
      "WHILE clock_timestamp() < give_up LOOP BEGIN "
      "WHILE clock_timestamp() < give_up LOOP PERFORM pg_sleep(0.1); END LOOP; "
      "EXCEPTION WHEN query_canceled THEN PERFORM nextval('" +
      s.name() + ".cancels_seen'); END; END LOOP; RETURN NULL; END $$");
  s.exec(
      "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON users DEFERRABLE INITIALLY DEFERRED "
      "FOR EACH ROW EXECUTE FUNCTION slow_commit()");
}

std::string test_what(const std::exception_ptr& ep) {
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("a PostgreSQL connection lost during COMMIT fails in doubt and never as cancelled", "[postgres][faults]") {
  pgtest::schema s;
  make_commit_slow(s);
  const bool cancel = GENERATE(false, true);  // the caller's cancellation requested during the COMMIT
  INFO("cancellation requested during the COMMIT: " << cancel);
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  auto pid_of = [](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
  };
  auto first_pid = [&]() -> asio::awaitable<int> { co_return co_await asyncdb::async_run(pg, pid_of); };
  const int pid = test::run(ctx, first_pid());
  auto commits_slowly = [](pqxx::connection& c) {
    pqxx::work w{c};
    w.exec("INSERT INTO users(name, email) VALUES ('ann', 'a@x')");
    w.commit();  // the trigger sleeps here, on the server
    return 1;
  };
  asio::cancellation_signal signal;
  std::exception_ptr outcome;
  bool done = false;
  // Completes on ctx, the thread that emits the cancellation.
  asyncdb::async_run(
      pg, commits_slowly,
      asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ctx, [&](std::exception_ptr e, int) {
                                     outcome = e;
                                     done = true;
                                   })));
  const std::string backend = std::to_string(pid);
  std::atomic<bool> killed{false};
  std::string killer_failed;
  std::thread killer([&] {
    try {
      if (!wait_for("SELECT count(*) = 1 FROM pg_stat_activity WHERE pid = " + backend +
                    " AND query = 'COMMIT' AND wait_event = 'PgSleep'")) {
        killer_failed = "the COMMIT never started sleeping";
        return;
      }
      if (cancel) {
        asio::post(ctx, [&] { signal.emit(asio::cancellation_type::terminal); });
        // The server received the cancel request (and the trigger ignored it) before the connection dies.
        if (!wait_for("SELECT is_called FROM " + s.name() + ".cancels_seen")) {
          killer_failed = "the cancel request never reached the server";
        }
      }
      admin("SELECT pg_terminate_backend(" + backend + ")");
      killed = true;
    } catch (const std::exception& e) {
      killer_failed = e.what();
    }
  });
  ctx.restart();
  ctx.run_for(20s);
  killer.join();
  INFO("killer: " << killer_failed);
  INFO("outcome: " << (outcome ? test_what(outcome) : std::string(done ? "success" : "none")));
  REQUIRE(killer_failed.empty());
  REQUIRE(killed);
  REQUIRE(done);
  REQUIRE(outcome);
  std::string message;
  bool in_doubt = false;
  try {
    std::rethrow_exception(outcome);
  } catch (const pqxx::in_doubt_error& e) {  // libpqxx's own, as the caller's DAO would see it
    in_doubt = true;
    message = e.what();
  } catch (const std::exception& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(in_doubt);
  CHECK(message.find("Connection lost while committing") != std::string::npos);
  const auto st = pg.stats();
  CHECK(st.failed == 1);
  CHECK(st.cancelled == 0);
  // The lane replaced the connection and serves the next operation.
  auto next = [&]() -> asio::awaitable<int> { co_return co_await asyncdb::async_run(pg, pid_of); };
  const int pid_after = test::run(ctx, next());
  CHECK(pid_after != pid);
  CHECK(pg.stats().connections[0].connects == 2);
  CHECK(pg.stats().connections[0].status == state::ready);
  // What the server did: the backend died inside the deferred trigger, before the commit record, so the
  // transaction was rolled back; "in doubt" is the client's view, which cannot tell.
  CHECK(pgtest::count_users(s) == 0);
}

TEST_CASE("an idle PostgreSQL connection killed on the server is replaced before it serves the next operation",
          "[postgres][faults]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  auto& log = pgtest::pg_dao_log();
  asio::io_context ctx;
  AsyncPgUserOper users{pg};
  auto first = [&]() -> asio::awaitable<int> { co_return co_await users.call<&PgUserOper::backend_pid>(); };
  const int pid = test::run(ctx, first());
  const std::size_t built_before = log.constructions().size();
  // Killed between operations, as a server restart kills every idle connection: nothing runs on it.
  admin("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  REQUIRE(wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = " + std::to_string(pid)));
  // The next operation was never in flight on the dead connection, so it must not fail with it.
  auto next = [&]() -> asio::awaitable<int> {
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    co_return co_await users.call<&PgUserOper::backend_pid>();
  };
  const int pid_after = test::run(ctx, next());
  CHECK(pid_after != pid);
  CHECK(pgtest::count_users(s) == 1);
  CHECK(log.constructions().size() == built_before + 1);
  const auto st = pg.stats();
  CHECK(st.failed == 0);
  CHECK(st.connections[0].connects == 2);
}

TEST_CASE("while one PostgreSQL writer cannot reconnect the others serve every operation and it comes back alone",
          "[postgres][faults]") {
  scratch_database sdb;
  asyncdb::postgres::database pg{sdb.options(2)};
  asio::io_context ctx;
  const int dead = pg.stats().connections[0].backend_pid;
  const int alive = pg.stats().connections[1].backend_pid;
  REQUIRE(dead != 0);
  REQUIRE(alive != 0);
  // The server refuses new connections (as at max_connections) and kills one of the two.
  admin("ALTER DATABASE " + sdb.name() + " WITH ALLOW_CONNECTIONS false");
  admin("SELECT pg_terminate_backend(" + std::to_string(dead) + ")");
  REQUIRE(wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = " + std::to_string(dead)));
  auto pid_of = [](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
  };
  int failed = 0;
  int served_elsewhere = 0;
  std::string first_error;
  auto body = [&]() -> asio::awaitable<void> {
    for (int i = 0; i < 20; ++i) {
      try {
        const int pid = co_await asyncdb::async_run(pg, pid_of);
        if (pid != alive) ++served_elsewhere;
      } catch (const std::exception& e) {
        if (first_error.empty()) first_error = e.what();
        ++failed;
      }
    }
  };
  test::run(ctx, body());
  CHECK(first_error.empty());
  CHECK(failed == 0);  // none refused by the connection that is down while another is up
  CHECK(served_elsewhere == 0);
  const auto st = pg.stats();
  CHECK(st.connections[0].status == state::down);
  CHECK(st.connections[1].status == state::ready);
  // Back without any operation asking for it: the lane that is down reconnects on its own backoff.
  admin("ALTER DATABASE " + sdb.name() + " WITH ALLOW_CONNECTIONS true");
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  while (pg.stats().connections[0].status != state::ready && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(pg.stats().connections[0].status == state::ready);
  CHECK(pg.stats().connections[0].connects == 2);
}
