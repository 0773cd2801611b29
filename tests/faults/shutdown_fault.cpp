// Case 8 of the fault suite: close() and the destructor under a watchdog. Each shape of shutdown finishes
// within the bound it documents (the grace, busy_timeout, plus a second), every operation completes exactly
// once, and what succeeded is in the file while what failed is not.
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/post.hpp>
#include <asio/use_future.hpp>

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <memory>

#include "fault_support.hpp"
#include "process.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

asyncdb::options shutdown_options(std::size_t readers = 2) {
  asyncdb::options o;
  o.readers = readers;
  o.on_open = [](SQLite::Database& c) { c.exec("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY)"); };
  return o;
}

// How each operation ended, recorded on whatever thread completes it and read on the test thread after.
enum outcome : int { none = -1, ok, closed, interrupted, busy, other };

const char* outcome_name(int o) {
  static const char* names[] = {"ok", "closed", "interrupted", "busy", "other"};
  return o >= 0 && o <= other ? names[o] : "none";
}

outcome classify(const std::exception_ptr& e) {
  if (!e) return ok;
  try {
    std::rethrow_exception(e);
  } catch (const SQLite::Exception& s) {
    const int rc = s.getErrorCode() & 0xff;
    return rc == SQLITE_INTERRUPT ? interrupted : rc == SQLITE_BUSY ? busy : other;
  } catch (const std::system_error& s) {
    return s.code() == asyncdb::errc::closed ? closed : other;
  } catch (...) {
    return other;
  }
}

struct tally {
  explicit tally(std::size_t n) : result(n), times(n) {
    for (auto& r : result) r = none;
  }
  std::vector<std::atomic<int>> result;
  std::vector<std::atomic<int>> times;  // completions per operation: exactly one each
  void record(std::size_t i, const std::exception_ptr& e) {
    result[i] = classify(e);
    ++times[i];
  }
  int count(outcome o) const {
    int n = 0;
    for (const auto& r : result) n += r == o ? 1 : 0;
    return n;
  }
  bool each_once() const {
    for (const auto& t : times) {
      if (t != 1) return false;
    }
    return true;
  }
  std::string summary() const {
    std::string s;
    for (int o = ok; o <= other; ++o) {
      if (const int n = count(static_cast<outcome>(o)); n > 0)
        s += " " + std::string(outcome_name(o)) + "=" + std::to_string(n);
    }
    return s;
  }
};

// Queues `n` writes of keys first..first+n-1, each completing on `ctx` into `t` at index key-first.
void queue_writes(asyncdb::database& db, asio::io_context& ctx, tally& t, std::size_t first, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    auto fn = [k = first + i](SQLite::Database& c) { c.exec("INSERT INTO t(k) VALUES(" + std::to_string(k) + ")"); };
    asyncdb::async_run(db, fn, asio::bind_executor(ctx, [&t, i](std::exception_ptr e) { t.record(i, e); }));
  }
}

// Keys in the file, read on a connection of its own once the database is closed.
std::set<std::int64_t> keys_in(const std::filesystem::path& file) {
  SQLite::Database c(file, SQLite::OPEN_READONLY);
  REQUIRE(c.execAndGet("PRAGMA integrity_check").getString() == "ok");
  std::set<std::int64_t> keys;
  SQLite::Statement q(c, "SELECT k FROM t");
  while (q.executeStep()) keys.insert(q.getColumn(0).getInt64());
  return keys;
}

// Every key whose write succeeded is in the file, and no other key of [first, first + n).
void check_file_matches(const std::filesystem::path& file, const tally& t, std::int64_t first) {
  const auto keys = keys_in(file);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < t.result.size(); ++i) {
    const bool present = keys.count(first + static_cast<std::int64_t>(i)) > 0;
    if (present != (t.result[i] == ok)) ++mismatches;
  }
  CHECK(mismatches == 0);
}

void check_stats_add_up(const asyncdb::stats& s, std::uint64_t submitted) {
  INFO("completed " << s.completed << " failed " << s.failed << " cancelled " << s.cancelled << " rejected "
                    << s.rejected);
  CHECK(s.completed + s.failed + s.cancelled + s.rejected == submitted);
  CHECK(s.queued == 0);
  CHECK(s.running == 0);
}

// Times `fn` (a close or a destruction) and prints it with the case's name.
template <class Fn>
std::chrono::milliseconds timed(const char* what, Fn&& fn) {
  const auto start = clock_type::now();
  fn();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
  std::printf("shutdown %s: close took %lld ms\n", what, static_cast<long long>(took.count()));
  std::fflush(stdout);
  return took;
}

// Waits until `pred()` holds, polling every millisecond, for at most `limit`; returns whether it held.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto give_up = clock_type::now() + limit;
  while (!pred()) {
    if (clock_type::now() > give_up) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Whether the database refuses new work with errc::closed, i.e. close() has begun; counts the probes in `sent`.
bool refuses_work(asyncdb::database& db, int& sent) {
  ++sent;
  auto probe = [](SQLite::Database&) {};
  auto f = asyncdb::async_run(db, asyncdb::read_only, probe, asio::use_future);
  try {
    f.get();
  } catch (const std::system_error& e) {
    return e.code() == asyncdb::errc::closed;
  }
  return false;
}

}  // namespace

TEST_CASE("shutdown of an idle database by close and by the destructor is prompt", "[faults][shutdown]") {
  faults::watchdog dog(10s, "idle shutdown");
  test::temp_dir dir;
  {
    asyncdb::database db(dir.file(), shutdown_options());
    CHECK(timed("idle close()", [&] { db.close(); }) < 1s);
    CHECK(timed("idle close() again", [&] { db.close(); }) < 1s);
  }
  auto db = std::make_unique<asyncdb::database>(dir.file(), shutdown_options());
  CHECK(timed("idle destructor", [&] { db.reset(); }) < 1s);
  CHECK(keys_in(dir.file()).empty());
}

TEST_CASE("close with ten thousand operations queued runs them all within the grace", "[faults][shutdown]") {
  const auto opts = shutdown_options();
  faults::watchdog dog(opts.close_grace + 20s, "close with 10000 queued");
  test::temp_dir dir;
  constexpr std::size_t n = 10000;
  tally t(n);
  asio::io_context ctx;
  asyncdb::stats s;
  {
    asyncdb::database db(dir.file(), opts);
    queue_writes(db, ctx, t, 0, n);
    CHECK(timed("10000 queued", [&] { db.close(); }) < opts.close_grace + 1s);
    s = db.stats();
  }
  ctx.run_for(30s);
  std::printf("shutdown 10000 queued: outcomes%s\n", t.summary().c_str());
  CHECK(t.each_once());
  CHECK(t.count(ok) + t.count(closed) == static_cast<int>(n));
  CHECK(t.count(ok) > 0);
  check_file_matches(dir.file(), t, 0);
  check_stats_add_up(s, n);
}

TEST_CASE("close interrupts a statement that never ends once the grace is over", "[faults][shutdown]") {
  const bool on_reader = GENERATE(false, true);
  auto opts = shutdown_options();
  opts.close_grace = 300ms;
  faults::watchdog dog(20s, "close with an endless statement");
  test::temp_dir dir;
  asio::io_context ctx;
  std::atomic<bool> started{false};
  std::atomic<int> endless_result{none};
  constexpr std::size_t queued = 100;
  tally t(queued);
  std::chrono::milliseconds took{};
  asyncdb::stats s;
  {
    asyncdb::database db(dir.file(), opts);
    auto record = asio::bind_executor(ctx, [&](std::exception_ptr e) { endless_result = classify(e); });
    if (on_reader) {
      auto endless = [&started](SQLite::Database& c) {
        started = true;
        c.execAndGet(faults::endless_count);
      };
      asyncdb::async_run(db, asyncdb::read_only, endless, record);
    } else {
      // Inside a transaction of its own, with a row written first: the interrupt must roll it back.
      auto endless = [&started](SQLite::Database& c) {
        c.exec("BEGIN");
        c.exec("INSERT INTO t(k) VALUES(-1)");
        started = true;
        c.execAndGet(faults::endless_count);
        c.exec("COMMIT");
      };
      asyncdb::async_run(db, endless, record);
    }
    REQUIRE(wait_until([&] { return started.load(); }));
    queue_writes(db, ctx, t, 0, queued);
    took = timed(on_reader ? "endless read" : "endless write", [&] { db.close(); });
    s = db.stats();
  }
  ctx.run_for(10s);
  std::printf("shutdown endless %s: it ended %s; queued writes:%s\n", on_reader ? "read" : "write",
              outcome_name(endless_result), t.summary().c_str());
  CHECK(took >= opts.close_grace);
  CHECK(took < opts.close_grace + 1s);
  CHECK(endless_result == interrupted);
  CHECK(t.each_once());
  if (!on_reader) CHECK(t.count(closed) == static_cast<int>(queued));  // all queued behind it on the writer
  check_file_matches(dir.file(), t, 0);
  CHECK(keys_in(dir.file()).count(-1) == 0);
  check_stats_add_up(s, queued + 1);
}

TEST_CASE("close during a group commit lets the group commit and reports each write once", "[faults][shutdown]") {
  const auto opts = shutdown_options();
  faults::watchdog dog(opts.close_grace + 20s, "close during a group commit");
  test::temp_dir dir;
  asio::io_context ctx;
  test::gate first_gate, member_gate;
  std::atomic<bool> first_in{false}, member_in{false};
  constexpr std::size_t group = 500;
  tally t(group + 2);
  std::chrono::milliseconds took{};
  asyncdb::stats s;
  {
    asyncdb::database db(dir.file(), opts);
    test::open_at_exit release_first{first_gate}, release_member{member_gate};
    // The first write runs alone (nothing else is queued yet) and holds the writer while the group queues.
    auto first = [&](SQLite::Database& c) {
      first_in = true;
      first_gate.wait();
      c.exec("INSERT INTO t(k) VALUES(0)");
    };
    asyncdb::async_run(db, first, asio::bind_executor(ctx, [&t](std::exception_ptr e) { t.record(0, e); }));
    REQUIRE(wait_until([&] { return first_in.load(); }));
    auto member = [&](SQLite::Database& c) {
      member_in = true;
      member_gate.wait();
      c.exec("INSERT INTO t(k) VALUES(1)");
    };
    asyncdb::async_run(db, member, asio::bind_executor(ctx, [&t](std::exception_ptr e) { t.record(1, e); }));
    tally rest(group);
    for (std::size_t i = 0; i < group; ++i) {
      auto fn = [k = 2 + i](SQLite::Database& c) { c.exec("INSERT INTO t(k) VALUES(" + std::to_string(k) + ")"); };
      asyncdb::async_run(db, fn, asio::bind_executor(ctx, [&t, i](std::exception_ptr e) { t.record(2 + i, e); }));
    }
    first_gate.open();
    REQUIRE(wait_until([&] { return member_in.load(); }));  // the group's first member is inside its savepoint
    const auto start = clock_type::now();
    int probes = 0;
    std::thread closer([&] { db.close(); });
    CHECK(wait_until([&] { return refuses_work(db, probes); }));
    member_gate.open();
    closer.join();
    took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
    s = db.stats();
    check_stats_add_up(s, group + 2 + probes);
  }
  std::printf("shutdown during a group commit: close took %lld ms, %llu group commits\n",
              static_cast<long long>(took.count()), static_cast<unsigned long long>(s.group_commits));
  ctx.run_for(10s);
  std::printf("shutdown during a group commit: outcomes%s\n", t.summary().c_str());
  CHECK(took < opts.close_grace + 1s);
  CHECK(s.group_commits >= 1);
  CHECK(t.each_once());
  CHECK(t.count(ok) == static_cast<int>(group + 2));
  check_file_matches(dir.file(), t, 0);
}

TEST_CASE("close with an open session and sessions waiting to open rolls back and refuses", "[faults][shutdown]") {
  const auto opts = shutdown_options();
  faults::watchdog dog(20s, "close with sessions");
  test::temp_dir dir;
  asio::io_context ctx;
  std::atomic<bool> holding{false};
  std::atomic<int> after_close{none};
  constexpr std::size_t waiting = 4;
  tally waiters(waiting + 2);  // write sessions waiting for the writer, then two read sessions
  asio::steady_timer parked(ctx, 60s);
  std::chrono::milliseconds took{};
  {
    asyncdb::database db(dir.file(), opts);
    auto holder = [&]() -> asio::awaitable<void> {
      asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
      co_await s.begin();
      auto write = [](SQLite::Database& c) { c.exec("INSERT INTO t(k) VALUES(-5)"); };
      co_await s.run(write);
      holding = true;
      try {
        co_await parked.async_wait(asio::use_awaitable);  // until the test cancels it, after close()
      } catch (const std::system_error&) {
      }
      try {
        auto again = [](SQLite::Database& c) { c.exec("INSERT INTO t(k) VALUES(-6)"); };
        co_await s.run(again);
        after_close = ok;
      } catch (...) {
        after_close = classify(std::current_exception());
      }
    };
    asio::co_spawn(ctx, holder(), asio::detached);
    std::thread loop([&] { ctx.run_for(30s); });
    REQUIRE(wait_until([&] { return holding.load(); }));
    // Two read sessions hold both readers, so the later ones of each kind wait.
    for (std::size_t i = 0; i < waiting + 2; ++i) {
      auto done = asio::bind_executor(
          ctx, [&waiters, i](std::exception_ptr e, asyncdb::AsyncDbSession) { waiters.record(i, e); });
      if (i < waiting) {
        asyncdb::async_db_session(db, done);
      } else {
        asyncdb::async_db_session(db, asyncdb::read_only, done);
      }
    }
    took = timed("open and waiting sessions", [&] { db.close(); });
    asio::post(ctx, [&] { parked.cancel(); });
    loop.join();
  }
  std::printf("shutdown with sessions: waiting sessions:%s; the open session's next write: %s\n",
              waiters.summary().c_str(), outcome_name(after_close));
  CHECK(took < 1s);
  CHECK(waiters.each_once());
  CHECK(waiters.count(closed) >= static_cast<int>(waiting));  // the writer was never free for them
  CHECK(after_close == closed);
  const auto keys = keys_in(dir.file());
  CHECK(keys.count(-5) == 0);  // the open transaction was rolled back, never committed
  CHECK(keys.count(-6) == 0);
}

TEST_CASE("close after the callers io_context was destroyed still runs and drops completions", "[faults][shutdown]") {
  const auto opts = shutdown_options();
  faults::watchdog dog(opts.close_grace + 20s, "close after the io_context died");
  test::temp_dir dir;
  constexpr std::size_t n = 2000;
  auto ctx = std::make_unique<asio::io_context>();
  tally t(n);
  std::chrono::milliseconds took{};
  asyncdb::stats s;
  {
    asyncdb::database db(dir.file(), opts);
    queue_writes(db, *ctx, t, 0, n);
    auto session_done = asio::bind_executor(*ctx, [](std::exception_ptr, asyncdb::AsyncDbSession) {});
    asyncdb::async_db_session(db, session_done);
    ctx.reset();  // its handlers are dropped, never run
    took = timed("io_context destroyed first", [&] { db.close(); });
    s = db.stats();
  }
  CHECK(took < opts.close_grace + 1s);
  for (const auto& c : t.times) CHECK(c == 0);  // no completion ran on a dead context
  const auto keys = keys_in(dir.file());
  std::printf("shutdown after the io_context died: %zu of %zu writes committed\n", keys.size(), n);
  CHECK(keys.size() <= s.completed);  // every committed write counted as completed; the session may be one more
  CHECK(s.completed <= keys.size() + 1);
  check_stats_add_up(s, n + 1);
}

TEST_CASE("close from another thread while the loop runs ends every caller with closed", "[faults][shutdown]") {
  const auto opts = shutdown_options();
  faults::watchdog dog(opts.close_grace + 20s, "close while the loop runs");
  test::temp_dir dir;
  asio::io_context ctx;
  constexpr int writers = 8;
  std::atomic<std::int64_t> next_key{0};
  std::atomic<int> oks{0}, ended_closed{0}, ended_other{0};
  std::mutex keys_mutex;
  std::set<std::int64_t> acknowledged;
  std::chrono::milliseconds took{};
  {
    asyncdb::database db(dir.file(), opts);
    auto writer = [&]() -> asio::awaitable<void> {
      for (;;) {
        const std::int64_t k = next_key++;
        auto fn = [k](SQLite::Database& c) { c.exec("INSERT INTO t(k) VALUES(" + std::to_string(k) + ")"); };
        try {
          co_await asyncdb::async_run(db, fn);
        } catch (...) {
          (classify(std::current_exception()) == closed ? ended_closed : ended_other)++;
          co_return;
        }
        ++oks;
        std::lock_guard lock(keys_mutex);
        acknowledged.insert(k);
      }
    };
    for (int i = 0; i < writers; ++i) asio::co_spawn(ctx, writer(), asio::detached);
    std::vector<std::thread> loop;
    for (int i = 0; i < 2; ++i) loop.emplace_back([&] { ctx.run_for(60s); });
    REQUIRE(wait_until([&] { return oks.load() >= 1000; }));
    took = timed("from another thread while the loop runs", [&] { db.close(); });
    for (auto& th : loop) th.join();  // run_for returns early: no work is left once every writer ended
  }
  std::printf("shutdown while the loop runs: %d writes acknowledged, %d writers ended with closed\n", oks.load(),
              ended_closed.load());
  CHECK(took < opts.close_grace + 1s);
  CHECK(ended_closed == writers);
  CHECK(ended_other == 0);
  const auto keys = keys_in(dir.file());
  std::lock_guard lock(keys_mutex);
  for (auto k : acknowledged) CHECK(keys.count(k) == 1);
}

namespace {

// A child process that holds the write lock (BEGIN IMMEDIATE and one row written) until told to end by a
// byte on its pipe (or the pipe's end); it reports "locked" by writing one byte. fork() happens before the
// test starts any thread, and the child only calls SQLite and async-signal-safe functions.
class lock_holder {
 public:
  explicit lock_holder(const std::filesystem::path& file) {
    int up[2], down[2];
    REQUIRE(::pipe(up) == 0);
    REQUIRE(::pipe(down) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(up[0]);
      ::close(down[1]);
      sqlite3* db = nullptr;
      char ok = 'L';
      if (sqlite3_open(file.c_str(), &db) != SQLITE_OK ||
          sqlite3_exec(db,
                       "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY); "
                       "BEGIN IMMEDIATE; INSERT INTO t(k) VALUES(-100)",
                       nullptr, nullptr, nullptr) != SQLITE_OK) {
        ok = 'E';
      }
      [[maybe_unused]] auto w = ::write(up[1], &ok, 1);
      char c = 0;
      [[maybe_unused]] auto r = ::read(down[0], &c, 1);
      ::_exit(0);  // the transaction dies with the process, uncommitted
    }
    ::close(up[1]);
    ::close(down[0]);
    to_child_ = down[1];
    char c = 0;
    REQUIRE(::read(up[0], &c, 1) == 1);
    ::close(up[0]);
    REQUIRE(c == 'L');
  }
  lock_holder(const lock_holder&) = delete;
  lock_holder& operator=(const lock_holder&) = delete;
  ~lock_holder() { release(); }
  void release() {
    if (pid_ <= 0) return;
    ::close(to_child_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
};

}  // namespace

TEST_CASE("close while another process holds the write lock is bounded by busy_timeout and the grace",
          "[faults][shutdown]") {
  // Writes queued behind one lock share one busy_timeout (they fail together once it is over), so close()
  // takes about busy_timeout however many there are. With a grace shorter than that, the grace cuts it short.
  const bool many = GENERATE(false, true);
  test::temp_dir dir;
  { asyncdb::database create(dir.file(), shutdown_options()); }
  lock_holder other(dir.file());  // before any thread of this test
  auto opts = shutdown_options();
  opts.busy_timeout = many ? 2000ms : 400ms;
  opts.close_grace = many ? 100ms : 5000ms;
  const std::size_t n = many ? 50 : 2;
  faults::watchdog dog(30s, "close while another process holds the lock");
  asio::io_context ctx;
  tally t(n);
  std::chrono::milliseconds took{};
  asyncdb::stats s;
  {
    asyncdb::database db(dir.file(), opts);
    queue_writes(db, ctx, t, 0, n);
    took = timed(many ? "50 writes behind another process's lock" : "2 writes behind another process's lock",
                 [&] { db.close(); });
    s = db.stats();
  }
  other.release();
  ctx.run_for(10s);
  std::printf("shutdown behind another process's lock: %zu writes:%s\n", n, t.summary().c_str());
  CHECK(took < (many ? opts.close_grace : opts.busy_timeout) + 1s);
  if (many) CHECK(took < opts.busy_timeout);
  CHECK(t.each_once());
  CHECK(t.count(ok) == 0);
  CHECK(t.count(busy) + t.count(closed) + t.count(interrupted) == static_cast<int>(n));
  const auto keys = keys_in(dir.file());
  CHECK(keys.empty());  // neither ours (all failed) nor the other process's uncommitted row
  check_stats_add_up(s, n);
}

TEST_CASE("a database destroyed on its own thread finishes its queued work even when main returns at once",
          "[faults][shutdown][lifetime]") {
  // The last owner dies inside an operation, so the database closes on a thread of its own; main returns
  // as soon as its io_context runs out of work. Exiting must wait for that close, or the write queued before
  // never lands (and static destructors run under the database's threads).
  test::temp_dir dir;
  const auto file = dir.file();
  faults::watchdog dog(240s, "orphan child");
  faults::child_process c({ASYNCDB_FAULT_CHILD, "orphan", file.string()});
  const std::vector<std::string> lines = c.rest();
  const int status = c.wait();
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "read-ok owners 1");
  CHECK(lines[1] == "main-returns");
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(std::filesystem::exists(file.string() + "-wal"));  // the writer closed (and checkpointed) cleanly
  SQLite::Database check(file, SQLite::OPEN_READONLY);
  CHECK(check.execAndGet("SELECT count(*) FROM items WHERE id = 7").getInt() == 1);
}
