// What committed, decided from the server's state rather than from command tags: a write whose tag does not
// say so (a data-modifying CTE, a writing function, CALL) is never reported aborted and counts for
// read_your_writes, and a DAO that rolls back to a savepoint and commits is not reported as lost.
#include "pg_support.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/post.hpp>

#include <atomic>
#include <thread>

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;

namespace {
// A function and a procedure that write, whose callers' command tags are SELECT 1 and CALL.
void make_writers(const pgtest::schema& s) {
  s.exec(
      "CREATE FUNCTION add_user(n text) RETURNS int LANGUAGE sql AS "
      "$$ INSERT INTO users(name, email) VALUES (n, 'f@x') RETURNING 1 $$");
  s.exec("CREATE PROCEDURE add_user_p(n text) LANGUAGE sql AS $$ INSERT INTO users(name, email) VALUES (n, 'p@x') $$");
}

const char* const hidden_writes[] = {
    "WITH i AS (INSERT INTO users(name, email) VALUES ('ann', 'c@x') RETURNING id) SELECT id FROM i",
    "SELECT add_user('ann')",
    "CALL add_user_p('ann')",
};
}  // namespace

TEST_CASE("a cancelled PostgreSQL operation whose autocommit statement wrote is never reported aborted",
          "[postgres][cancellation]") {
  pgtest::schema s;
  make_writers(s);
  const std::string write = hidden_writes[GENERATE(0, 1, 2)];
  INFO(write);
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  auto writes_then_sleeps = [write](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    t.exec(write);
    t.exec("SELECT pg_sleep(30)");
    return 1;
  };
  asio::cancellation_signal signal;
  std::exception_ptr outcome;
  bool done = false;
  asyncdb::async_run(
      pg, writes_then_sleeps,
      asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ctx, [&](std::exception_ptr e, int) {
                                     outcome = e;
                                     done = true;
                                   })));
  // Cancelled once the write is committed and the sleep runs.
  std::atomic<bool> sleeping{false};
  std::thread watcher([&] {
    sleeping = pgtest::wait_for("SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'");
    asio::post(ctx, [&] { signal.emit(asio::cancellation_type::terminal); });
  });
  ctx.run_for(20s);
  watcher.join();
  REQUIRE(sleeping);
  REQUIRE(done);
  REQUIRE(outcome);
  std::error_code code;
  std::string sqlstate;
  try {
    std::rethrow_exception(outcome);
  } catch (const std::system_error& e) {
    code = e.code();
  } catch (const pqxx::sql_error& e) {
    sqlstate = e.sqlstate();
  }
  CHECK(code != asio::error::operation_aborted);
  CHECK(sqlstate == "57014");  // the server's own answer to the cancel
  CHECK(pgtest::count_users(s) == 1);
  CHECK(pg.stats().cancelled == 0);
}

TEST_CASE("with read_your_writes a write whose command tag does not say so counts as the caller's last write",
          "[postgres][routing]") {
  pgtest::schema s;
  make_writers(s);
  pgtest::wait_for_replica();
  const std::string write = hidden_writes[GENERATE(0, 1, 2)];
  INFO(write);
  auto o = s.options(1, 1);
  o.read_your_writes = true;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  std::size_t seen = 0;
  bool waited = false;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    pgtest::replay_paused pause;
    auto writes = [write](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      t.exec(write);
      return 1;
    };
    co_await asyncdb::async_run(pg, writes);
    // Resumes replay once the reader is seen waiting for it; at the deadline otherwise.
    std::thread resumer([&] {
      waited = pgtest::reader_waits_for_replay(5s);
      pause.resume();
    });
    const auto after = co_await users.list();
    seen = after.size();
    resumer.join();
  };
  test::run(ctx, body(), 20s);
  CHECK(waited);
  CHECK(seen == 1);
}

TEST_CASE("a PostgreSQL DAO that rolls back to a savepoint and commits is not reported as lost", "[postgres][faults]") {
  pgtest::schema s;
  s.exec("INSERT INTO users(name, email) VALUES ('dup', 'd@x')");
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  std::string error;
  auto skips_duplicate = [](pqxx::connection& c) {
    pqxx::work w{c};
    w.exec("INSERT INTO users(name, email) VALUES ('ann', 'a@x')");
    try {
      pqxx::subtransaction sub{w, "skip_dup"};
      sub.exec("INSERT INTO users(name, email) VALUES ('dup', 'd@x')");
      sub.commit();
    } catch (const pqxx::sql_error&) {
      // a duplicate is fine: the subtransaction rolled back to its savepoint, the transaction goes on
    }
    w.exec("INSERT INTO users(name, email) VALUES ('bob', 'b@x')");
    w.commit();
    return 1;
  };
  auto body = [&]() -> asio::awaitable<void> {
    try {
      co_await asyncdb::async_run(pg, skips_duplicate);
    } catch (const std::exception& e) {
      error = e.what();
    }
  };
  test::run(ctx, body());
  CHECK(error.empty());
  CHECK(pgtest::count_users(s) == 3);  // dup, ann, bob: the transaction committed
  CHECK(pg.stats().failed == 0);
}
