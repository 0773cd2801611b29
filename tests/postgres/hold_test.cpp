// Hold detection on PostgreSQL (issue 19): a session or operation holding a connection past
// postgres::options::hold_threshold is reported once, while it holds it, with the connection and the queue.
#include "pg_support.hpp"

#include <asio/steady_timer.hpp>

#include <future>

using namespace std::chrono_literals;

namespace {

int backend_pid(pqxx::connection& c) {
  pqxx::nontransaction t{c};
  return t.exec1("SELECT pg_backend_pid()")[0].as<int>();
}

asio::awaitable<void> quick_op(asyncdb::postgres::database& pg, int& done) {
  co_await asyncdb::async_run(pg, backend_pid);
  ++done;
}

struct slow_session_state {
  test::hold_log log;
  int writes_done = 0;
  int session_pid = 0;
  std::size_t reports_after_quick_ops = 99;
  std::size_t reports_while_held_longer = 99;
  asyncdb::postgres::stats while_held;
};

// A write session that awaits a slow timer (standing for an HTTP call) while it holds its connection.
asio::awaitable<void> pg_session_awaiting_a_slow_call(asyncdb::postgres::database& pg, slow_session_state& st,
                                                      std::chrono::milliseconds threshold) {
  auto ex = co_await asio::this_coro::executor;
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(pg);
  co_await s.begin();
  auto pid = [](pqxx::transaction_base& t) { return t.exec1("SELECT pg_backend_pid()")[0].as<int>(); };
  st.session_pid = co_await s.run(pid);
  asio::co_spawn(ex, quick_op(pg, st.writes_done), asio::detached);
  asio::co_spawn(ex, quick_op(pg, st.writes_done), asio::detached);
  auto two_queued = [&pg] { return pg.stats().queued == 2; };
  co_await test::poll_until(two_queued);
  auto reported = [&st] { return st.log.size() > 0; };
  co_await test::poll_until(reported);  // the slow call: still holding the connection when it is reported
  st.while_held = pg.stats();
  asio::steady_timer more{ex, threshold * 3};  // held three thresholds longer: still one report
  co_await more.async_wait(asio::use_awaitable);
  st.reports_while_held_longer = st.log.size();
  co_await s.commit();
}

asio::awaitable<void> pg_quick_then_slow(asyncdb::postgres::database& pg, slow_session_state& st,
                                         std::chrono::milliseconds threshold) {
  int quick_done = 0;
  for (int i = 0; i < 5; ++i) co_await quick_op(pg, quick_done);
  st.reports_after_quick_ops = st.log.size();
  co_await pg_session_awaiting_a_slow_call(pg, st, threshold);
  auto writes_done = [&st] { return st.writes_done == 2; };
  co_await test::poll_until(writes_done);
}

}  // namespace

TEST_CASE(
    "a PostgreSQL write session holding its connection past hold_threshold is reported once, with its "
    "backend and the writes behind it",
    "[postgres][hold]") {
  pgtest::schema s;
  asio::io_context ctx;
  slow_session_state st;
  constexpr auto threshold = 100ms;
  asyncdb::postgres::options o = s.options(1, 0, false);
  o.hold_threshold = threshold;
  o.on_hold = st.log.hook();
  {
    asyncdb::postgres::database pg{o};
    test::run(ctx, pg_quick_then_slow(pg, st, threshold), 30s);
  }
  CHECK(st.reports_after_quick_ops == 0);  // operations well under the threshold are not reported
  CHECK(st.reports_while_held_longer == 1);
  REQUIRE(st.log.holds.size() == 1);  // and not again when it ends
  const asyncdb::hold_record& h = st.log.holds[0];
  INFO("name = " << st.log.names[0]);
  CHECK(h.what == asyncdb::writer_holder::kind::session);
  CHECK(st.log.names[0].find("pg_session_awaiting_a_slow_call") != std::string::npos);
  CHECK(h.held_for >= threshold);
  CHECK(h.queued_behind == 2);
  CHECK(h.connection.is_writer());
  CHECK(h.backend_pid == st.session_pid);
  // stats() shows the hold too, as the longest current one.
  CHECK(st.while_held.writer.what == asyncdb::writer_holder::kind::session);
  CHECK(st.while_held.writer.held_for >= threshold);
  REQUIRE(st.while_held.connections.size() == 1);
  CHECK(st.while_held.connections[0].held_for >= threshold);
}

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
