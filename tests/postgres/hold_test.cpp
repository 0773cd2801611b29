// Hold detection on PostgreSQL (issue 19): an operation holding a reader past postgres::options::hold_threshold
// is reported while it runs. A write session's hold, the same on both backends, is tests/contract/hold_test.cpp's.
#include "pg_support.hpp"

using namespace std::chrono_literals;

namespace {

int backend_pid(pqxx::connection& c) {
  pqxx::nontransaction t{c};
  return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
}

}  // namespace

TEST_CASE("a PostgreSQL operation holding a reader past hold_threshold is reported while it runs, with its name",
          "[postgres][hold]") {
  pgtest::schema s;
  asio::io_context ctx;
  test::hold_log log;
  asyncdb::postgres::options o = s.options(1, 1, false);
  o.hold_threshold = 100ms;
  o.on_hold = log.hook();
  asyncdb::postgres::database pg{o};
  // The operation waits until it has been reported: it can only end once the report came while it ran.
  auto held = [&log](pqxx::connection& c) {
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (log.size() == 0 && std::chrono::steady_clock::now() < give_up) {
      pqxx::nontransaction t{c};
      t.exec("SELECT pg_sleep(0.01)");
    }
    return backend_pid(c);
  };
  auto body = [&]() -> asio::awaitable<int> { co_return co_await asyncdb::async_run(pg, asyncdb::read_only, held); };
  const int pid = test::run(ctx, body());
  REQUIRE(log.size() == 1);
  CHECK(log.holds[0].what == asyncdb::writer_holder::kind::operation);
  CHECK(log.names[0] == "async_run");
  CHECK(log.holds[0].backend_pid == pid);
  CHECK(log.holds[0].connection.kind == asyncdb::connection_role::reader);
  CHECK(log.holds[0].queued_behind == 0);
}
