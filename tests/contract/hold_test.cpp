// Hold detection (options::hold_threshold, on_hold): a write session holding the writer past the threshold
// is reported once, while it still holds it, with where it was opened, the connection and the writes queued
// behind it; stats() shows the same hold meanwhile. Operations well under the threshold are never reported.
#include "contract.hpp"

#include <cstdint>
#include <source_location>
#include <string>
#include <type_traits>

namespace {
using namespace std::chrono_literals;

struct held_session_state {
  test::hold_log log;
  int writes_done = 0;
  std::int64_t session_connection = 0;
  std::size_t reports_after_quick_ops = 99;
  std::size_t reports_while_held_longer = 99;
  std::uint_least32_t open_line = 0;
  asyncdb::writer_holder holder_while_held;
  std::size_t connections_while_held = 0;  // PostgreSQL's stats().connections
  std::chrono::nanoseconds connection_held_for{0};
};

template <class B>
net::awaitable<void> quick_write(typename B::database& db, int& done) {
  auto count = [](auto& c) { B::count(c); };
  co_await B::write(db, count);
  ++done;
}

// A write session that awaits a slow timer (standing for an HTTP call) while it holds the writer.
template <class B>
net::awaitable<void> session_awaiting_a_slow_call(typename B::database& db, held_session_state& st,
                                                  std::chrono::milliseconds threshold) {
  auto ex = co_await net::this_coro::executor;
  st.open_line = std::source_location::current().line() + 1;
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  auto id = [](auto& c) { return B::id_of(c); };
  st.session_connection = co_await B::in_session(s, id);
  co_await s.begin();
  auto insert = [](auto& c) { B::insert(c, "held"); };
  co_await B::in_session_transaction(s, insert);
  net::co_spawn(ex, quick_write<B>(db, st.writes_done), net::detached);
  net::co_spawn(ex, quick_write<B>(db, st.writes_done), net::detached);
  auto two_queued = [&db] { return db.stats().queued == 2; };
  co_await test::poll_until(two_queued);
  auto reported = [&st] { return st.log.size() > 0; };
  co_await test::poll_until(reported);  // the slow call: still holding the writer when it is reported
  const auto while_held = db.stats();
  st.holder_while_held = while_held.writer;
  if constexpr (std::is_same_v<B, contract::postgres_backend>) {
    st.connections_while_held = while_held.connections.size();
    if (!while_held.connections.empty()) st.connection_held_for = while_held.connections[0].held_for;
  }
  net::steady_timer more{ex, threshold * 3};  // held three thresholds longer: still one report
  co_await more.async_wait(net::use_awaitable);
  st.reports_while_held_longer = st.log.size();
  co_await s.commit();
}

template <class B>
net::awaitable<void> quick_then_slow(typename B::database& db, held_session_state& st,
                                     std::chrono::milliseconds threshold) {
  int quick_done = 0;
  for (int i = 0; i < 5; ++i) co_await quick_write<B>(db, quick_done);
  st.reports_after_quick_ops = st.log.size();
  co_await session_awaiting_a_slow_call<B>(db, st, threshold);
  auto writes_done = [&st] { return st.writes_done == 2; };
  co_await test::poll_until(writes_done);
}

}  // namespace

TEMPLATE_TEST_CASE("a write session holding the writer past hold_threshold is reported once, with the writes behind it",
                   "[contract][hold]", CONTRACT_BACKENDS) {
  using B = TestType;
  constexpr bool server = std::is_same_v<B, contract::postgres_backend>;
  constexpr auto threshold = 100ms;
  B b;
  held_session_state st;
  {
    contract::config c;
    c.readers = 0;
    c.hold_threshold = threshold;
    c.on_hold = st.log.hook();
    auto& db = b.open(c);
    net::io_context ctx;
    test::run(ctx, quick_then_slow<B>(db, st, threshold), 30s);
  }
  CHECK(st.reports_after_quick_ops == 0);  // operations well under the threshold are not reported
  CHECK(st.reports_while_held_longer == 1);
  REQUIRE(st.log.holds.size() == 1);  // and not again when it ends
  const asyncdb::hold_record& h = st.log.holds[0];
  INFO("name = " << st.log.names[0]);
  CHECK(h.what == asyncdb::writer_holder::kind::session);
  CHECK(st.log.names[0].find("session_awaiting_a_slow_call") != std::string::npos);
  CHECK(h.where.line() == st.open_line);  // the line that opened the session
  CHECK(std::string(h.where.file_name()) == std::source_location::current().file_name());
  CHECK(h.held_for >= threshold);
  CHECK(h.queued_behind == 2);
  CHECK(h.connection.is_writer());
  CHECK(h.backend_pid == (server ? st.session_connection : 0));  // the server process, on PostgreSQL
  // stats() shows the hold too, as the writer's current holder (and, on PostgreSQL, its connection's).
  CHECK(st.holder_while_held.what == asyncdb::writer_holder::kind::session);
  CHECK(st.holder_while_held.held_for >= threshold);
  if constexpr (server) {
    REQUIRE(st.connections_while_held == 1);
    CHECK(st.connection_held_for >= threshold);
  }
  CHECK(b.rows("held") == 1);
}
