// Read sessions on PostgreSQL (the backend-specific detail of two promises both backends make): a failed or
// cancelled operation leaves the session's snapshot usable, and read_your_writes holds for the snapshot.
#include "pg_support.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/steady_timer.hpp>

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;

namespace {
int count_in(pqxx::transaction_base& t) { return t.exec1("SELECT count(*) FROM users")[0].as<int>(); }
}  // namespace

TEST_CASE("a PostgreSQL read session runs its next operation on the same snapshot after one failed or was cancelled",
          "[postgres][session][cancellation]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 1)};
  s.exec("INSERT INTO users(name, email) VALUES ('ann', 'a@x')");
  pgtest::wait_for_replica();
  const bool cancel = GENERATE(true, false);
  INFO("the failed operation was cancelled: " << cancel);
  asio::io_context ctx;
  std::error_code first_error;
  std::string sqlstate;
  int before = -1;
  int after = -1;
  int pid_before = 0;
  int pid_after = 0;
  auto body = [&]() -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg, asyncdb::read_only);
    auto count = [](pqxx::transaction_base& t) { return count_in(t); };
    auto pid = [](pqxx::transaction_base& t) { return t.exec1("SELECT pg_backend_pid()")[0].as<int>(); };
    before = co_await session.run(count);
    pid_before = co_await session.run(pid);
    // Committed and replayed after the snapshot: the session must not see it.
    s.exec("INSERT INTO users(name, email) VALUES ('bob', 'b@x')");
    pgtest::wait_for_replica();
    if (cancel) {
      auto sleeper = [](pqxx::transaction_base& t) { t.exec("SELECT pg_sleep(30)"); };
      asio::steady_timer timer{co_await asio::this_coro::executor, 300ms};
      try {
        co_await (session.run(sleeper) || timer.async_wait(asio::use_awaitable));
      } catch (const std::system_error& e) {
        first_error = e.code();
      }
    } else {
      auto bad = [](pqxx::transaction_base& t) { t.exec("SELECT * FROM no_such_table"); };
      try {
        co_await session.run(bad);
      } catch (const pqxx::sql_error& e) {
        sqlstate = e.sqlstate();
      }
    }
    after = co_await session.run(count);
    pid_after = co_await session.run(pid);
  };
  test::run(ctx, body(), 20s);
  if (!cancel) CHECK(sqlstate == "42P01");
  CHECK(before == 1);
  CHECK(after == 1);  // the same snapshot: bob, committed since, is not there
  CHECK(pid_after == pid_before);
}

TEST_CASE("with read_your_writes a PostgreSQL read session's snapshot includes the caller's last write",
          "[postgres][session][routing]") {
  pgtest::schema s;
  pgtest::wait_for_replica();
  auto o = s.options(1, 1);
  o.read_your_writes = true;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  int seen = -1;
  bool waited = false;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    pgtest::replay_paused pause;
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    // Resumes replay once the session's reader is seen polling the replica's replay position (the wait
    // read_your_writes makes); without that wait it resumes at the deadline, after the snapshot.
    std::thread resumer([&] {
      waited = pgtest::reader_waits_for_replay(5s);
      pause.resume();
    });
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg, asyncdb::read_only);
    auto count = [](pqxx::transaction_base& t) { return count_in(t); };
    seen = co_await session.run(count);
    resumer.join();
  };
  test::run(ctx, body(), 20s);
  CHECK(waited);
  CHECK(seen == 1);
}
