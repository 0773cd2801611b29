// Connection hygiene on PostgreSQL: connections replaced past max_lifetime (between operations, never inside a
// session) and an idle connection whose server stopped answering replaced before it serves.
#include "pg_support.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>

#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;

TEST_CASE("PostgreSQL connections past max_lifetime are replaced under steady load with no failed operation",
          "[postgres][hygiene]") {
  pgtest::schema s;
  auto o = s.options(2, 0, false);
  o.max_lifetime = 200ms;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  AsyncPgUserOper users{pg};
  // Each of the two connections replaced at least twice: three connects each.
  auto replaced_twice = [&] {
    for (const auto& c : pg.stats().connections) {
      if (c.connects < 3) return false;
    }
    return true;
  };
  std::set<int> pids;
  int added = 0;
  int failed = 0;
  int streams = 4;  // more streams than connections: neither connection is ever idle for long
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  auto stream = [&](int n) -> asio::awaitable<void> {
    for (int i = 0; !replaced_twice() && std::chrono::steady_clock::now() < give_up; ++i) {
      try {
        UserCreate u{"s" + std::to_string(n) + "_" + std::to_string(i), "e@x"};
        co_await users.call<&PgUserOper::add>(u);
        ++added;
        pids.insert(co_await users.call<&PgUserOper::backend_pid>());
      } catch (...) {
        ++failed;
      }
    }
    --streams;
  };
  for (int n = 0; n < 4; ++n) asio::co_spawn(ctx, stream(n), asio::detached);
  ctx.run();
  CHECK(streams == 0);
  REQUIRE(replaced_twice());
  CHECK(failed == 0);
  CHECK(pg.stats().failed == 0);
  CHECK(pids.size() >= 4);  // two connections at start, and at least one replacement of each seen serving
  CHECK(pgtest::count_users(s) == added);
}

TEST_CASE("a PostgreSQL session spanning max_lifetime keeps its connection, replaced only after it ends",
          "[postgres][hygiene]") {
  pgtest::schema s;
  auto o = s.options(1, 0, false);
  o.max_lifetime = 200ms;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  AsyncPgUserOper users{pg};
  const int first = pg.stats().connections[0].backend_pid;
  std::vector<int> in_session;
  std::uint64_t connects_in_session = 0;
  int after = 0;
  auto body = [&]() -> asio::awaitable<void> {
    {
      asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
      co_await session.begin();
      // Five steps 100 ms apart: the session outlives the connection's lifetime (200 ms at most) twice over.
      for (int i = 0; i < 5; ++i) {
        auto pid = [](pqxx::transaction_base& t) { return t.conn().backendpid(); };
        in_session.push_back(co_await session.run(pid));
        auto add = [i](pqxx::transaction_base& t) {
          t.exec_params("INSERT INTO users(name, email) VALUES ($1, 'e@x')", "s" + std::to_string(i));
        };
        co_await session.run(add);
        asio::steady_timer pause(co_await asio::this_coro::executor, 100ms);
        co_await pause.async_wait(asio::use_awaitable);
      }
      co_await session.commit();
      connects_in_session = pg.stats().connections[0].connects;
    }
    after = co_await users.call<&PgUserOper::backend_pid>();
  };
  test::run(ctx, body());
  REQUIRE(in_session.size() == 5);
  for (int pid : in_session) CHECK(pid == first);
  CHECK(connects_in_session == 1);
  CHECK(pgtest::count_users(s) == 5);  // the session's transaction committed whole
  CHECK(after != first);
  CHECK(pg.stats().connections[0].connects == 2);
  CHECK(pg.stats().failed == 0);
}

TEST_CASE("an idle PostgreSQL connection whose server stopped answering is replaced before it serves",
          "[postgres][hygiene]") {
  pgtest::schema s;
  auto o = s.options(1, 0, false);
  o.idle_validation_after = 100ms;
  o.connect_timeout = 1s;  // bounds the round trip that finds the backend silent
  asyncdb::postgres::database pg{o};
  auto& log = pgtest::pg_dao_log();
  asio::io_context ctx;
  AsyncPgUserOper users{pg};
  auto first = [&]() -> asio::awaitable<int> { co_return co_await users.call<&PgUserOper::backend_pid>(); };
  const int pid = test::run(ctx, first());
  const std::size_t built_before = log.constructions().size();
  // A backend that is there and says nothing, as a host gone without closing or a dropped flow: the socket
  // stays open and no FATAL comes, so only a round trip can tell.
  REQUIRE(::kill(pid, SIGSTOP) == 0);
  // Without validation the next operation would wait for the backend forever: the watchdog resumes it after
  // 10 s, so that such a failure ends (on the old backend) instead of hanging the test.
  std::mutex m;
  std::condition_variable cv;
  bool finished = false;
  std::thread watchdog([&] {
    std::unique_lock lock(m);
    cv.wait_for(lock, 10s, [&] { return finished; });
    ::kill(pid, SIGCONT);
  });
  int pid_after = 0;
  auto next = [&]() -> asio::awaitable<void> {
    // Idle past idle_validation_after (a lower bound, not a guess): the next operation finds it silent.
    asio::steady_timer idle(co_await asio::this_coro::executor, 200ms);
    co_await idle.async_wait(asio::use_awaitable);
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    pid_after = co_await users.call<&PgUserOper::backend_pid>();
  };
  test::run(ctx, next());
  {
    std::lock_guard lock(m);
    finished = true;
  }
  cv.notify_all();
  watchdog.join();
  pgtest::admin("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
  CHECK(pid_after != pid);
  CHECK(pgtest::count_users(s) == 1);
  CHECK(log.constructions().size() == built_before + 1);  // the DAO rebuilt on the new connection
  const auto st = pg.stats();
  CHECK(st.failed == 0);
  CHECK(st.connections[0].connects == 2);
}
