// asyncdb::database: the connections it opens (one writer, `readers` read-only ones, WAL, busy
// handling, on_open order), the paths it refuses, and that no connection is ever shared by two threads.
#include "support.hpp"

#include "net.hpp"

#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

// One on_open call, as seen from inside it.
struct opened_connection {
  std::string role;  // connection_role::name()
  int read_only;     // sqlite3_db_readonly(handle, "main")
  std::thread::id thread;
  sqlite3* handle;
};

// Spins until `pred` holds or `timeout` passes; no sleeping, just yielding the core.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 30s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

void check_rejected(const std::filesystem::path& path) {
  try {
    asyncdb::database db{path, test::default_options(1)};
    FAIL("opened " << path);
  } catch (const asyncdb::system_error& e) {
    CHECK(e.code() == asyncdb::errc::memory_database);
    CHECK(e.code().category() == asyncdb::error_category());
  }
}

// Marks a connection busy for the duration of one operation; counts overlaps and which threads
// touched each connection. Everything here runs on database threads; the test reads it afterwards.
class connection_usage {
 public:
  void enter(sqlite3* handle) {
    slot& s = get(handle);
    if (s.in_use.exchange(true)) ++overlaps;
    std::lock_guard lock(mutex_);
    s.threads.insert(std::this_thread::get_id());
  }
  void leave(sqlite3* handle) { get(handle).in_use.store(false); }

  std::map<sqlite3*, std::set<std::thread::id>> threads_by_connection() {
    std::lock_guard lock(mutex_);
    std::map<sqlite3*, std::set<std::thread::id>> out;
    for (auto& [h, s] : slots_) out[h] = s.threads;
    return out;
  }

  std::atomic<int> overlaps{0};

 private:
  struct slot {
    std::atomic<bool> in_use{false};
    std::set<std::thread::id> threads;  // guarded by mutex_
  };
  slot& get(sqlite3* h) {
    std::lock_guard lock(mutex_);
    return slots_[h];  // std::map nodes never move
  }
  std::mutex mutex_;
  std::map<sqlite3*, slot> slots_;
};

net::awaitable<void> use_connections(asyncdb::database& db, connection_usage& usage, int worker, int n) {
  for (int i = 0; i < n; ++i) {
    auto write = [&usage, worker, i](SQLite::Database& c) {
      usage.enter(c.getHandle());
      SQLite::Statement insert(c, "INSERT INTO users(name, email) VALUES(?, 'u@x')");
      insert.bind(1, "w" + std::to_string(worker) + "-" + std::to_string(i));
      insert.exec();
      usage.leave(c.getHandle());
    };
    auto read = [&usage](SQLite::Database& c) {
      usage.enter(c.getHandle());
      const auto rows = c.execAndGet("SELECT count(*) FROM users").getInt64();
      usage.leave(c.getHandle());
      return rows;
    };
    if (i % 3 == 0) {
      co_await asyncdb::async_run(db, write);
    } else {
      co_await asyncdb::async_run(db, asyncdb::read_only, read);
    }
  }
}

}  // namespace

TEST_CASE("on_open runs once per connection on that connection's thread, the writer first", "[database][on_open]") {
  test::temp_dir dir;
  std::mutex mutex;
  std::vector<opened_connection> opened;
  asyncdb::options opts = test::default_options(3);
  opts.on_open = [&](SQLite::Database& c, const asyncdb::connection_role& role) {
    {
      std::lock_guard lock(mutex);
      opened.push_back(
          {role.name(), sqlite3_db_readonly(c.getHandle(), "main"), std::this_thread::get_id(), c.getHandle()});
    }
    test::create_schema(c);
  };
  asyncdb::database db{dir.file(), opts};

  std::vector<opened_connection> seen;
  {
    std::lock_guard lock(mutex);
    seen = opened;
  }
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].role == "writer 0");
  CHECK(seen[1].role == "reader 0");
  CHECK(seen[2].role == "reader 1");
  CHECK(seen[3].role == "reader 2");
  CHECK(seen[0].read_only == 0);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(seen[i].read_only == 1);
  std::set<std::thread::id> threads;
  std::set<sqlite3*> handles;
  for (const auto& o : seen) {
    threads.insert(o.thread);
    handles.insert(o.handle);
  }
  CHECK(threads.size() == 4);
  CHECK(handles.size() == 4);
  CHECK(threads.count(std::this_thread::get_id()) == 0);

  // The writer's on_open ran on the thread that serves writes, and no reader's did.
  net::io_context ctx;
  auto where = [](asyncdb::database& d) -> net::awaitable<std::thread::id> {
    auto insert = [](SQLite::Database& c) {
      c.exec("INSERT INTO users(name, email) VALUES('w', 'w@x')");
      return std::this_thread::get_id();
    };
    co_return co_await asyncdb::async_run(d, insert);
  };
  CHECK(test::run(ctx, where(db)) == seen[0].thread);
}

TEST_CASE("the writer switches the file to WAL, which every connection then uses", "[database][wal]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  {
    SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
    CHECK(plain.execAndGet("PRAGMA journal_mode").getString() == "wal");
  }
  net::io_context ctx;
  auto modes = [](asyncdb::database& d) -> net::awaitable<std::pair<std::string, std::string>> {
    auto mode = [](SQLite::Database& c) { return c.execAndGet("PRAGMA journal_mode").getString(); };
    std::string writer = co_await asyncdb::async_run(d, mode);
    std::string reader = co_await asyncdb::async_run(d, asyncdb::read_only, mode);
    co_return std::make_pair(writer, reader);
  };
  const auto [writer, reader] = test::run(ctx, modes(db));
  CHECK(writer == "wal");
  CHECK(reader == "wal");
}

TEST_CASE("a write waits for a lock another connection holds, then succeeds", "[database][busy]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};

  SQLite::Database other(dir.file(), SQLITE_OPEN_READWRITE);
  other.exec("BEGIN IMMEDIATE");  // another process's writer holds the write lock
  other.exec("INSERT INTO users(name, email) VALUES('other', 'o@x')");

  std::atomic<bool> about_to_write{false};
  auto write = [&about_to_write](SQLite::Database& c) {
    about_to_write = true;
    c.exec("INSERT INTO users(name, email) VALUES('mine', 'm@x')");  // meets the lock: must wait, not fail
    return c.getChanges();
  };
  // The completion runs on `loop`, joined before anything reads it (an exception object shared with a
  // thread still running would need libstdc++'s uninstrumented refcount to order, which TSan cannot see).
  net::io_context ctx;
  std::exception_ptr error;
  int changes = -1;
  std::atomic<bool> completed{false};
  asyncdb::async_run(db, write, net::bind_executor(ctx, [&](std::exception_ptr ep, int n) {
                       error = ep;
                       changes = n;
                       completed = true;
                     }));
  std::thread loop([&] { ctx.run_for(60s); });

  // Release only once the write is running; without a busy handler it would fail with SQLITE_BUSY.
  const bool running = eventually([&] { return db.stats().running == 1 && about_to_write; });
  const bool completed_under_lock = completed;  // cannot succeed while the lock is held
  other.exec("COMMIT");
  loop.join();

  CHECK(running);
  CHECK_FALSE(completed_under_lock);
  REQUIRE(completed);
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      FAIL("the write failed instead of waiting: " << e.what());
    }
  }
  CHECK(changes == 1);
  CHECK(test::count_rows(dir.file()) == 2);
}

TEST_CASE("a write fails with SQLITE_BUSY once busy_timeout passes while another connection keeps the lock",
          "[database][busy]") {
  test::temp_dir dir;
  asyncdb::options opts = test::default_options(1);
  opts.busy_timeout = 50ms;
  asyncdb::database db{dir.file(), opts};

  SQLite::Database other(dir.file(), SQLITE_OPEN_READWRITE);
  other.exec("BEGIN IMMEDIATE");  // held until the write has given up

  auto write = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('mine', 'm@x')"); };
  net::io_context ctx;
  std::exception_ptr error;
  bool completed = false;
  asyncdb::async_run(db, write, net::bind_executor(ctx, [&](std::exception_ptr ep) {
                       error = ep;
                       completed = true;
                     }));
  ctx.run_for(60s);
  other.exec("ROLLBACK");

  REQUIRE(completed);
  REQUIRE(error);
  try {
    std::rethrow_exception(error);
  } catch (const SQLite::Exception& e) {
    CHECK(e.getErrorCode() == SQLITE_BUSY);
  }
  CHECK(test::count_rows(dir.file()) == 0);
}

TEST_CASE("a write after a WAL checkpoint that waited for a snapshot still waits its whole busy_timeout for a lock",
          "[database][busy][wal]") {
  // The checkpoint runs between operations and waits, through the busy handler, for another connection's
  // snapshot; that wait must not count against the next write's busy_timeout. The control runs without the
  // checkpoint policy. The other connection releases its lock half a busy_timeout after the write met it.
  const bool checkpoints = GENERATE(true, false);
  INFO("checkpoint policy " << (checkpoints ? "on" : "off"));
  constexpr auto busy_timeout = 1000ms;
  test::temp_dir dir;
  asyncdb::options opts = test::default_options(0);
  opts.busy_timeout = busy_timeout;
  opts.wal_checkpoint_bytes = checkpoints ? 1 : 0;  // due after every write
  asyncdb::database db{dir.file(), opts};

  SQLite::Database reader(dir.file(), SQLITE_OPEN_READONLY);
  reader.exec("BEGIN");
  CHECK(reader.execAndGet("SELECT count(*) FROM users").getInt() == 0);  // a snapshot older than w1
  SQLite::Database other(dir.file(), SQLITE_OPEN_READWRITE);
  sqlite3_busy_timeout(other.getHandle(), 30000);  // the checkpoint holds the write lock while it waits

  test::gate w1_gate, w2_gate;
  test::open_at_exit open_w1{w1_gate}, open_w2{w2_gate};
  std::atomic<bool> w1_started{false}, w2_started{false};
  auto w1 = [&](SQLite::Database& c) {
    w1_started = true;
    w1_gate.wait();
    c.exec("INSERT INTO users(name, email) VALUES('w1', 'w@x')");
  };
  auto w2 = [&](SQLite::Database& c) {
    w2_started = true;
    w2_gate.wait();
    c.exec("INSERT INTO users(name, email) VALUES('w2', 'w@x')");  // meets `other`'s lock
  };
  std::future<void> first = asyncdb::async_run(db, w1, net::use_future);
  REQUIRE(eventually([&] { return w1_started.load(); }));
  std::future<void> second = asyncdb::async_run(db, w2, net::use_future);  // queued before the checkpoint
  REQUIRE(db.stats().queued == 1);
  w1_gate.open();
  REQUIRE(first.wait_for(30s) == std::future_status::ready);
  first.get();
  other.exec("BEGIN IMMEDIATE");  // once the checkpoint (if any) has given up waiting for `reader`
  REQUIRE(eventually([&] { return w2_started.load(); }));
  w2_gate.open();
  std::this_thread::sleep_for(busy_timeout / 2);  // the scenario: the lock is held half a busy_timeout
  other.exec("ROLLBACK");
  REQUIRE(second.wait_for(30s) == std::future_status::ready);
  CHECK_NOTHROW(second.get());
  reader.exec("COMMIT");
  CHECK(test::count_rows(dir.file()) == 2);
}

TEST_CASE("in-memory paths are rejected with errc::memory_database", "[database][errors]") {
  check_rejected(":memory:");
  check_rejected("");
  check_rejected("file::memory:");
  check_rejected("file:shared?mode=memory&cache=shared");
}

TEST_CASE("a path in a missing folder throws SQLite::Exception naming the path", "[database][errors]") {
  test::temp_dir dir;
  const std::filesystem::path bad = dir.file("no-such-folder/app.db");
  try {
    asyncdb::database db{bad, test::default_options(1)};
    FAIL("opened a file in a missing folder");
  } catch (const SQLite::Exception& e) {
    CHECK_THAT(e.what(), Catch::Matchers::Contains(bad.string()));
    CHECK(e.getErrorCode() == SQLITE_CANTOPEN);
  }
  CHECK_FALSE(std::filesystem::exists(bad.parent_path()));
}

TEST_CASE("an on_open that throws makes the constructor throw it", "[database][on_open][errors]") {
  test::temp_dir dir;
  asyncdb::options opts = test::default_options(2);
  std::atomic<int> calls{0};
  opts.on_open = [&calls](SQLite::Database& c) {
    if (++calls == 2) throw std::invalid_argument("reader setup failed");  // the first reader
    test::create_schema(c);
  };
  CHECK_THROWS_MATCHES(asyncdb::database(dir.file(), opts), std::runtime_error,
                       Catch::Matchers::Message("asyncdb: on_open failed on reader 0: reader setup failed"));
  CHECK(calls == 2);  // the second reader was never opened
  // The exception the callback threw is nested inside, unchanged.
  calls = 0;
  try {
    asyncdb::database db(dir.file(), opts);
  } catch (const std::runtime_error& e) {
    CHECK_THROWS_AS(std::rethrow_if_nested(e), std::invalid_argument);
  }
}

TEST_CASE("a schema script in on_open fails on a reader naming it, and runs on the writer alone when told its role",
          "[database][on_open][errors]") {
  test::temp_dir dir;
  asyncdb::options opts;
  opts.readers = 2;
  // The writer creates the table; the first reader then fails with "table items already exists".
  opts.on_open = [](SQLite::Database& c) { c.exec("CREATE TABLE items(k INTEGER PRIMARY KEY)"); };
  try {
    asyncdb::database db(dir.file(), opts);
    FAIL("a reader ran CREATE TABLE");
  } catch (const SQLite::Exception& e) {  // SQLite's own error keeps its type and code
    CHECK(std::string(e.what()).find("asyncdb: on_open failed on reader 0: ") == 0);
    CHECK(e.getErrorCode() == SQLITE_ERROR);
    CHECK(std::string(e.what()).find("already exists") != std::string::npos);
  }
  opts.on_open = [](SQLite::Database& c, const asyncdb::connection_role& role) {
    if (role.is_writer()) c.exec("CREATE TABLE items(k INTEGER PRIMARY KEY)");
  };
  asyncdb::database db(dir.file("roles.db"), opts);
  net::io_context ctx;
  auto count = [](SQLite::Database& c) { return c.execAndGet("SELECT count(*) FROM items").getInt(); };
  CHECK(test::run(ctx, asyncdb::async_run(db, asyncdb::read_only, count)) == 0);
}

TEST_CASE("no connection is ever used by two threads at once", "[database][threads]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(3)};
  net::io_context ctx;
  connection_usage usage;
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  constexpr int workers = 12;
  constexpr int ops = 30;
  for (int w = 0; w < workers; ++w) {
    net::co_spawn(ctx, use_connections(db, usage, w, ops), [&](std::exception_ptr ep) { ++(ep ? failed : ok); });
  }
  test::run_on_threads(ctx, 3, 60s);

  REQUIRE(ok == workers);
  CHECK(failed == 0);
  CHECK(usage.overlaps == 0);
  const auto by_connection = usage.threads_by_connection();
  CHECK(by_connection.size() >= 2);  // the writer and at least one reader (how many readers served is up to timing)
  CHECK(by_connection.size() <= 4);
  for (const auto& [handle, threads] : by_connection) CHECK(threads.size() == 1);  // one owner thread each
  CHECK(test::count_rows(dir.file()) == workers * ((ops + 2) / 3));
}
