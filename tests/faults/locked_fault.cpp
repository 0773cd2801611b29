// Case 3, locked by another process: a child process holds BEGIN IMMEDIATE (one row written, not
// committed). Writes wait at most busy_timeout and fail with SQLITE_BUSY at their co_await, reads go
// on meanwhile, a cancelled waiting write completes at once, stats() shows the wait, and once the other
// process commits, queued writes proceed and see its row.
#include "fault_support.hpp"
#include "items.hpp"
#include "process.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <support.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

long long ms(clock_type::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }

asyncdb::options lock_options(milliseconds busy_timeout) {
  asyncdb::options o;
  o.busy_timeout = busy_timeout;
  o.on_open = [](SQLite::Database& c) {
    if (sqlite3_db_readonly(c.getHandle(), "main") == 0) faults::create_items(c);
  };
  return o;
}

// A database file with items 1..10, and a child process holding its write lock.
struct locked_file {
  test::temp_dir dir;
  std::filesystem::path file = dir.file("locked.db");
  std::optional<faults::child_process> other;

  locked_file() {
    {
      SQLite::Database c(file, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      c.exec("PRAGMA journal_mode=WAL");
      faults::create_items(c);
      for (int id = 1; id <= 10; ++id) c.exec("INSERT INTO items VALUES(" + std::to_string(id) + ", 'x')");
    }
    other.emplace(std::vector<std::string>{ASYNCDB_FAULT_CHILD, "lock", file.string()});
    const auto l = other->read_line();
    REQUIRE(l == std::optional<std::string>("locked"));
  }
};

// How one write ended: its SQLite error code (0 for success) and how long its co_await took.
struct write_outcome {
  int code = -1;
  long long elapsed_ms = 0;
};

asio::awaitable<void> add_timed(faults::AsyncItems items, std::int64_t id, write_outcome& out) {
  const auto t0 = clock_type::now();
  try {
    co_await items.add(id);
    out.code = 0;
  } catch (const SQLite::Exception& e) {
    out.code = e.getErrorCode();
  }
  out.elapsed_ms = ms(clock_type::now() - t0);
}

asio::awaitable<void> writes_and_reads(asyncdb::database& db, std::size_t writes, std::vector<write_outcome>& out,
                                       std::size_t& reads, asyncdb::stats& seen_waiting) {
  auto ex = co_await asio::this_coro::executor;
  out.assign(writes, {});
  std::atomic<std::size_t> done{0};
  for (std::size_t i = 0; i < writes; ++i) {
    asio::co_spawn(ex, add_timed(faults::AsyncItems{db}, static_cast<std::int64_t>(100 + i), out[i]),
                   [&done](std::exception_ptr) { ++done; });
  }
  faults::AsyncItems items{db};
  asio::steady_timer timer{ex};
  while (done < writes) {
    const std::int64_t n = co_await items.count();  // a read: served by a reader meanwhile
    if (n == 10) ++reads;
    const asyncdb::stats s = db.stats();
    if (s.writer.what == asyncdb::writer_holder::kind::operation && s.writer.held_for > seen_waiting.writer.held_for)
      seen_waiting = s;
    timer.expires_after(milliseconds(5));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

}  // namespace

TEST_CASE("a write waiting on another process's lock fails with SQLITE_BUSY after busy_timeout", "[faults][locked]") {
  faults::watchdog dog(std::chrono::seconds(30), "locked single write");
  locked_file f;
  const milliseconds busy{300};
  asyncdb::database db{f.file, lock_options(busy)};
  asio::io_context ctx;
  std::vector<write_outcome> out;
  std::size_t reads = 0;
  asyncdb::stats waiting;
  test::run(ctx, writes_and_reads(db, 1, out, reads, waiting));
  REQUIRE(out[0].code == SQLITE_BUSY);
  CHECK(out[0].elapsed_ms >= busy.count());
  CHECK(out[0].elapsed_ms <= busy.count() + 1000);
  CHECK(reads >= 10);  // reads were served all along, every 5 ms
  CHECK(waiting.writer.name.find("ItemOper::add") != std::string::npos);
  CHECK(waiting.running >= 1);
  CHECK(ms(waiting.writer.held_for) >= busy.count() / 2);
  std::printf("locked single write: SQLITE_BUSY after %lld ms (busy_timeout %lld ms), %zu reads served meanwhile\n",
              out[0].elapsed_ms, static_cast<long long>(busy.count()), reads);
}

TEST_CASE("each write of a queued group waits at most busy_timeout for another process's lock", "[faults][locked]") {
  faults::watchdog dog(std::chrono::seconds(30), "locked group");
  locked_file f;
  const milliseconds busy{300};
  asyncdb::database db{f.file, lock_options(busy)};
  asio::io_context ctx;
  std::vector<write_outcome> out;
  std::size_t reads = 0;
  asyncdb::stats waiting;
  test::run(ctx, writes_and_reads(db, 8, out, reads, waiting));
  long long slowest = 0;
  for (const write_outcome& o : out) {
    CHECK(o.code == SQLITE_BUSY);
    CHECK(o.elapsed_ms <= busy.count() + 1000);
    slowest = std::max(slowest, o.elapsed_ms);
  }
  CHECK(reads >= 10);
  CHECK(waiting.queued + waiting.running >= 2);  // the group waited together, visibly
  std::printf(
      "locked group of 8 writes: every one SQLITE_BUSY, slowest after %lld ms (busy_timeout %lld ms), %zu "
      "reads served meanwhile\n",
      slowest, static_cast<long long>(busy.count()), reads);
}

TEST_CASE("cancelling a write that waits on another process's lock completes within 100 ms", "[faults][locked]") {
  faults::watchdog dog(std::chrono::seconds(30), "locked cancel");
  locked_file f;
  asyncdb::database db{f.file, lock_options(milliseconds(10'000))};
  asio::io_context ctx;
  asio::cancellation_signal signal;
  std::atomic<bool> done{false};
  std::error_code code;
  clock_type::time_point emitted, completed;
  auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO items VALUES(500, 'cancelled')"); };
  asyncdb::async_run(db, insert, asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e) {
                       completed = clock_type::now();
                       code = test::code_of(e);
                       done = true;
                     }));
  auto waiting = [&] { return db.stats().writer.held_for > milliseconds(100); };
  auto cancel_when_waiting = [&]() -> asio::awaitable<void> {
    co_await test::poll_until(waiting);
    emitted = clock_type::now();
    signal.emit(asio::cancellation_type::terminal);
    co_await test::until_set(done);
  };
  test::run(ctx, cancel_when_waiting());
  REQUIRE(code == asio::error::operation_aborted);
  const long long latency = std::chrono::duration_cast<std::chrono::microseconds>(completed - emitted).count();
  CHECK(latency <= 100'000);
  f.other->send("commit");
  REQUIRE(f.other->read_line() == std::optional<std::string>("committed"));
  SQLite::Database c(f.file, SQLite::OPEN_READONLY);
  CHECK(c.execAndGet("SELECT count(*) FROM items WHERE id = 500").getInt() == 0);  // nothing of it landed
  CHECK(c.execAndGet("SELECT count(*) FROM items WHERE id = -1").getInt() == 1);
  std::printf("locked cancel: a write waiting on the lock completed as operation_aborted %lld us after the cancel\n",
              latency);
}

TEST_CASE("queued writes proceed once the other process commits and see its row", "[faults][locked]") {
  faults::watchdog dog(std::chrono::seconds(30), "locked then committed");
  locked_file f;
  asyncdb::database db{f.file, lock_options(milliseconds(10'000))};
  asio::io_context ctx;
  constexpr int writes = 5;
  std::vector<int> saw_other(writes, -1);
  std::atomic<int> done{0};
  for (int i = 0; i < writes; ++i) {
    auto add_and_look = [i](SQLite::Database& c) {
      c.exec("INSERT INTO items VALUES(" + std::to_string(200 + i) + ", 'after the lock')");
      return c.execAndGet("SELECT count(*) FROM items WHERE id = -1").getInt();
    };
    asyncdb::async_run(db, add_and_look, [&, i](std::exception_ptr e, int seen) {
      saw_other[i] = e ? -2 : seen;
      ++done;
    });
  }
  asyncdb::stats waiting;
  auto commit_then_wait = [&]() -> asio::awaitable<void> {
    auto held = [&] { return db.stats().writer.held_for > milliseconds(200); };
    co_await test::poll_until(held);
    waiting = db.stats();
    f.other->send("commit");
    auto all_done = [&] { return done == writes; };
    co_await test::poll_until(all_done);
  };
  test::run(ctx, commit_then_wait());
  CHECK(waiting.queued + waiting.running == writes);
  CHECK(waiting.writer.what == asyncdb::writer_holder::kind::operation);
  for (int i = 0; i < writes; ++i) CHECK(saw_other[i] == 1);
  SQLite::Database c(f.file, SQLite::OPEN_READONLY);
  CHECK(c.execAndGet("SELECT count(*) FROM items WHERE id = -1 OR id BETWEEN 200 AND 204").getInt() == writes + 1);
}
