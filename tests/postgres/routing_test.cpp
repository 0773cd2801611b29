// Routing on PostgreSQL with a replica that really lags (its replay paused): read-your-writes.
#include "pg_support.hpp"

using namespace std::chrono_literals;
using pgtest::AsyncPgUserOper;
using pgtest::PgUserOper;
using pgtest::UserCreate;

using pgtest::replay_paused;

TEST_CASE("with read_your_writes a read on a lagging replica waits for the caller's last write",
          "[postgres][routing]") {
  pgtest::schema s;
  pgtest::wait_for_replica();
  auto o = s.options(1, 1);
  o.read_your_writes = true;
  asyncdb::postgres::database pg{o};
  asyncdb::postgres::database stale{s.options(1, 1)};
  asio::io_context ctx;
  std::size_t stale_seen = 99;
  std::size_t fresh_seen = 0;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    AsyncPgUserOper stale_users{stale};
    replay_paused pause;
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    // The replica really lags: a database without read_your_writes reads it stale.
    const auto before = co_await stale_users.list();
    stale_seen = before.size();
    std::thread resumer([&] {
      std::this_thread::sleep_for(300ms);
      pause.resume();
    });
    const auto after = co_await users.list();  // waits for the replay
    fresh_seen = after.size();
    resumer.join();
  };
  test::run(ctx, body());
  CHECK(stale_seen == 0);
  CHECK(fresh_seen == 1);
}

TEST_CASE("with read_your_writes a replica that stays behind fails the read after replica_wait",
          "[postgres][routing]") {
  pgtest::schema s;
  pgtest::wait_for_replica();
  auto o = s.options(1, 1);
  o.read_your_writes = true;
  o.replica_wait = 300ms;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  std::string message;
  auto body = [&]() -> asio::awaitable<void> {
    AsyncPgUserOper users{pg};
    replay_paused pause;
    UserCreate ann{"ann", "a@x"};
    co_await users.call<&PgUserOper::add>(ann);
    try {
      co_await users.list();
    } catch (const std::runtime_error& e) {
      message = e.what();
    }
  };
  test::run(ctx, body());
  CHECK(message.find("has not replayed") != std::string::npos);
}
