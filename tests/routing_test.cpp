// Automatic read/write routing: a DAO member or function declared neither is_read_only nor is_write first
// runs on a reader; the first time it tries to write, what it did there is dropped and it runs again on
// the writer, where its kind goes directly from then on. stats().rerouted counts the moves.
//
// What is learned is process-wide (per DAO member or function), so every test below uses a DAO or a
// function of its own: no test may depend on which other test ran first.
#include "net.hpp"

#include <algorithm>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;

// Where and on what kind of connection each execution of one DAO body ran (database threads write here).
struct run_log {
  struct entry {
    std::thread::id thread;
    int read_only = -1;  // sqlite3_db_readonly(main): 1 on a reader, 0 on the writer
  };
  std::mutex mutex;
  std::vector<entry> entries;

  void record(SQLite::Database& db) {
    std::lock_guard lock(mutex);
    entries.push_back({std::this_thread::get_id(), sqlite3_db_readonly(db.getHandle(), "main")});
  }
  std::vector<entry> snapshot() {
    std::lock_guard lock(mutex);
    return entries;
  }
};

// The writer's thread: async_run without read_only always runs there.
net::awaitable<std::thread::id> writer_thread(asyncdb::database& db) {
  auto where = [](SQLite::Database&) { return std::this_thread::get_id(); };
  co_return co_await asyncdb::async_run(db, where);
}

net::awaitable<void> seed(asyncdb::database& db, int rows) {
  auto insert = [rows](SQLite::Database& c) {
    for (int i = 0; i < rows; ++i)
      c.exec("INSERT INTO users(name, email) VALUES('seed" + std::to_string(i) + "', 's@x')");
  };
  co_await asyncdb::async_run(db, insert);
}

void insert_user(SQLite::Database& c, const std::string& name) {
  SQLite::Statement q(c, "INSERT INTO users(name, email) VALUES(?, 'r@x')");
  q.bind(1, name);
  q.exec();
}

// A DAO whose add() logs where it ran, then inserts `name` (SQL prepared during the call). One
// instantiation per test, which may declare its add(): what routing learns is per member.
template <run_log& Log>
class logged_insert_dao {
 public:
  explicit logged_insert_dao(SQLite::Database& db) : db_(db) {}
  void add(const std::string& name) {
    Log.record(db_);
    insert_user(db_, name);
  }

 private:
  SQLite::Database& db_;
};

// The INSERT `Sql` is a member statement prepared when the DAO is built (as UserOper does); add() logs
// where it ran, inserts `name` and returns its id. One instantiation per test.
template <run_log& Log, const char* Sql>
class logged_prepared_insert_dao {
 public:
  explicit logged_prepared_insert_dao(SQLite::Database& db) : db_(db), insert_(db, Sql) {}
  std::int64_t add(const std::string& name) {
    Log.record(db_);
    insert_.reset();
    insert_.bind(1, name);
    insert_.exec();
    return db_.getLastInsertRowid();
  }

 private:
  SQLite::Database& db_;
  SQLite::Statement insert_;
};

// Checks the runs of one call that was tried on a reader, then moved to the writer.
void check_tried_then_moved(const std::vector<run_log::entry>& runs) {
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].read_only == 1);
  CHECK(runs[1].read_only == 0);
}

// Checks the runs of one call that ran once, directly on the writer, and that nothing was ever moved.
void check_ran_once_on_writer(const std::vector<run_log::entry>& runs, std::thread::id writer,
                              const asyncdb::database& db) {
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].thread == writer);
  CHECK(runs[0].read_only == 0);
  CHECK(db.stats().rerouted == 0);
}

// Checks the runs of two calls of one undeclared write: the first tried on a reader then moved to the
// writer, the second sent straight to the writer.
void check_moved_once_for_good(const std::vector<run_log::entry>& runs, std::thread::id writer) {
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].read_only == 1);
  CHECK(runs[1].read_only == 0);
  CHECK(runs[1].thread == writer);
  CHECK(runs[2].read_only == 0);
  CHECK(runs[2].thread == writer);
}

// Method 1 of the guide for any of the DAOs below.
template <class Dao>
class lifted : public asyncdb::to_async_db_oper<lifted<Dao>, Dao> {
  using base = asyncdb::to_async_db_oper<lifted<Dao>, Dao>;

 public:
  using base::base;
};

// Learns the writer's thread, then calls Dao::add(name) once through lifted<Dao>; returns the writer's thread.
template <class Dao>
net::awaitable<std::thread::id> writer_then_add(asyncdb::database& db, std::string name) {
  const std::thread::id writer = co_await writer_thread(db);
  lifted<Dao> dao{db};
  co_await dao.template call<&Dao::add>(name);
  co_return writer;
}

// Calls Dao::add_quietly(name) once through lifted<Dao> and returns its answer.
template <class Dao>
net::awaitable<bool> add_quietly(asyncdb::database& db, std::string name) {
  lifted<Dao> dao{db};
  co_return co_await dao.template call<&Dao::add_quietly>(name);
}

}  // namespace

// ------------------------------------------------------------------------------------------------

namespace {

run_log pure_read_log;

class pure_read_dao {
 public:
  explicit pure_read_dao(SQLite::Database& db) : db_(db), count_(db, "SELECT count(*) FROM users") {}
  std::int64_t count() {
    pure_read_log.record(db_);
    count_.reset();
    count_.executeStep();
    return count_.getColumn(0).getInt64();
  }

 private:
  SQLite::Database& db_;
  SQLite::Statement count_;
};

struct pure_read_result {
  std::thread::id writer;
  std::vector<std::int64_t> counts;
};

net::awaitable<pure_read_result> read_three_times(asyncdb::database& db) {
  pure_read_result r;
  co_await seed(db, 2);
  r.writer = co_await writer_thread(db);
  lifted<pure_read_dao> dao{db};
  for (int i = 0; i < 3; ++i) r.counts.push_back(co_await dao.call<&pure_read_dao::count>());
  co_return r;
}

}  // namespace

TEST_CASE("an undeclared member that only reads runs on a reader and is never rerouted", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const pure_read_result r = test::run(ctx, read_three_times(db));

  CHECK(r.counts == std::vector<std::int64_t>{2, 2, 2});
  const auto runs = pure_read_log.snapshot();
  REQUIRE(runs.size() == 3);  // once per call: never replayed
  for (const auto& e : runs) {
    CHECK(e.thread != r.writer);
    CHECK(e.read_only == 1);
  }
  CHECK(db.stats().rerouted == 0);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log prepared_write_log;

// As UserOper does: the INSERT is a member statement prepared when the DAO is built.
constexpr char prepared_write_sql[] = "INSERT INTO users(name, email) VALUES(?, 'p@x')";
using prepared_write_dao = logged_prepared_insert_dao<prepared_write_log, prepared_write_sql>;

struct two_calls {
  std::thread::id writer;
  std::int64_t first_id = 0;
  std::uint64_t rerouted_after_first = 99;
  std::size_t runs_after_first = 0;
  std::int64_t second_id = 0;
};

net::awaitable<two_calls> add_twice(asyncdb::database& db) {
  two_calls r;
  r.writer = co_await writer_thread(db);
  lifted<prepared_write_dao> dao{db};
  const std::string first = "first";
  r.first_id = co_await dao.call<&prepared_write_dao::add>(first);
  r.rerouted_after_first = db.stats().rerouted;
  r.runs_after_first = prepared_write_log.snapshot().size();
  const std::string second = "second";
  r.second_id = co_await dao.call<&prepared_write_dao::add>(second);
  co_return r;
}

}  // namespace

TEST_CASE("an undeclared member writing through a prepared statement moves to the writer once, for good", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const two_calls r = test::run(ctx, add_twice(db));

  CHECK(r.first_id > 0);
  CHECK(r.second_id > r.first_id);
  CHECK(r.rerouted_after_first == 1);
  CHECK(r.runs_after_first == 2);  // tried on a reader, then on the writer
  const auto runs = prepared_write_log.snapshot();
  check_moved_once_for_good(runs, r.writer);  // the second call ran once
  CHECK(db.stats().rerouted == 1);
  CHECK(test::rows_named(dir.file(), "first") == 1);
  CHECK(test::rows_named(dir.file(), "second") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log read_then_write_log;

class read_then_write_dao {
 public:
  explicit read_then_write_dao(SQLite::Database& db) : db_(db) {}
  /// Adds `name` and returns how many users there are now.
  std::int64_t add_and_count(const std::string& name) {
    read_then_write_log.record(db_);
    const std::int64_t before = db_.execAndGet("SELECT count(*) FROM users").getInt64();
    insert_user(db_, name);
    return before + 1;
  }

 private:
  SQLite::Database& db_;
};

struct read_then_write_result {
  std::thread::id writer;
  std::int64_t count = 0;
};

net::awaitable<read_then_write_result> add_and_count(asyncdb::database& db) {
  read_then_write_result r;
  co_await seed(db, 2);
  r.writer = co_await writer_thread(db);
  const std::string name = "third";
  r.count = co_await asyncdb::async_db_operation<&read_then_write_dao::add_and_count>{}(db, name);
  co_return r;
}

}  // namespace

TEST_CASE("an undeclared member that reads then writes ends on the writer with the writer's result", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const read_then_write_result r = test::run(ctx, add_and_count(db));

  CHECK(r.count == 3);
  const auto runs = read_then_write_log.snapshot();
  check_tried_then_moved(runs);
  CHECK(runs[1].thread == r.writer);
  CHECK(db.stats().rerouted == 1);
  CHECK(test::rows_named(dir.file(), "third") == 1);
  CHECK(test::count_rows(dir.file()) == 3);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log swallowing_prepared_log;

// Legacy code that turns a failed INSERT into `false`: the SQLITE_READONLY never reaches asyncdb.
class swallowing_prepared_dao {
 public:
  explicit swallowing_prepared_dao(SQLite::Database& db)
      : db_(db), insert_(db, "INSERT INTO users(name, email) VALUES(?, 'q@x')") {}
  bool add_quietly(const std::string& name) {
    swallowing_prepared_log.record(db_);
    try {
      insert_.reset();
      insert_.bind(1, name);
      insert_.exec();
    } catch (const SQLite::Exception&) {
      return false;
    }
    return true;
  }

 private:
  SQLite::Database& db_;
  SQLite::Statement insert_;
};

}  // namespace

TEST_CASE("an undeclared member that swallows the exception of its prepared INSERT is still rerouted", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const bool added = test::run(ctx, add_quietly<swallowing_prepared_dao>(db, "quiet"));

  CHECK(added);  // the writer's answer, not the reader's `false`
  const auto runs = swallowing_prepared_log.snapshot();
  check_tried_then_moved(runs);
  CHECK(db.stats().rerouted == 1);
  CHECK(test::rows_named(dir.file(), "quiet") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log swallowing_exec_log;

// The INSERT is prepared during the call (db.exec), and its failure swallowed.
class swallowing_exec_dao {
 public:
  explicit swallowing_exec_dao(SQLite::Database& db) : db_(db) {}
  bool add_quietly(const std::string& name) {
    swallowing_exec_log.record(db_);
    try {
      db_.exec("INSERT INTO users(name, email) VALUES('" + name + "', 'e@x')");
    } catch (const SQLite::Exception&) {
      return false;
    }
    return true;
  }

 private:
  SQLite::Database& db_;
};

}  // namespace

TEST_CASE("an undeclared member that swallows the exception of db.exec(INSERT) is still rerouted", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const bool added = test::run(ctx, add_quietly<swallowing_exec_dao>(db, "exec-quiet"));

  CHECK(added);
  const auto runs = swallowing_exec_log.snapshot();
  check_tried_then_moved(runs);
  CHECK(db.stats().rerouted == 1);
  CHECK(test::rows_named(dir.file(), "exec-quiet") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log declared_write_log;

using declared_write_dao = logged_insert_dao<declared_write_log>;

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&declared_write_dao::add> = true;

TEST_CASE("a member declared is_write runs on the writer from its first call, once", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const std::thread::id writer = test::run(ctx, writer_then_add<declared_write_dao>(db, "declared"));

  const auto runs = declared_write_log.snapshot();
  check_ran_once_on_writer(runs, writer, db);
  CHECK(test::rows_named(dir.file(), "declared") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log lying_read_only_log;

// Declared read-only, but writes: a declaration is trusted, so this fails instead of moving.
using lying_read_only_dao = logged_insert_dao<lying_read_only_log>;

}  // namespace

template <>
inline constexpr bool asyncdb::is_read_only<&lying_read_only_dao::add> = true;

namespace {

struct refused {
  bool threw_sqlite = false;
  int code = 0;
  std::string what;
};

net::awaitable<refused> add_on_reader(asyncdb::database& db) {
  refused r;
  lifted<lying_read_only_dao> dao{db};
  const std::string name = "lying";
  try {
    co_await dao.call<&lying_read_only_dao::add>(name);
  } catch (const SQLite::Exception& e) {
    r.threw_sqlite = true;
    r.code = e.getErrorCode();
    r.what = e.what();
  }
  co_return r;
}

}  // namespace

TEST_CASE("a member declared is_read_only that writes fails with SQLITE_READONLY and is not rerouted", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const refused r = test::run(ctx, add_on_reader(db));

  INFO(r.what);
  CHECK(r.threw_sqlite);
  CHECK(r.code == SQLITE_READONLY);
  const auto runs = lying_read_only_log.snapshot();
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].read_only == 1);
  CHECK(db.stats().rerouted == 0);
  CHECK(test::rows_named(dir.file(), "lying") == 0);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log free_function_log;

// Method 4 of the guide: a free function, not declared.
std::int64_t insert_note(SQLite::Database& c, const std::string& name) {
  free_function_log.record(c);
  insert_user(c, name);
  return c.getLastInsertRowid();
}

inline constexpr asyncdb::async_db_operation<&insert_note> insert_note_async{};

struct free_function_result {
  std::thread::id writer;
  std::int64_t first = 0;
  std::uint64_t rerouted_after_first = 99;
  std::int64_t second = 0;
};

net::awaitable<free_function_result> insert_two_notes(asyncdb::database& db) {
  free_function_result r;
  r.writer = co_await writer_thread(db);
  const std::string a = "note-a";
  r.first = co_await insert_note_async(db, a);
  r.rerouted_after_first = db.stats().rerouted;
  const std::string b = "note-b";
  r.second = co_await insert_note_async(db, b);
  co_return r;
}

}  // namespace

TEST_CASE("async_db_operation of an undeclared free function that writes is rerouted once", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const free_function_result r = test::run(ctx, insert_two_notes(db));

  CHECK(r.first > 0);
  CHECK(r.second > r.first);
  CHECK(r.rerouted_after_first == 1);
  const auto runs = free_function_log.snapshot();
  check_moved_once_for_good(runs, r.writer);
  CHECK(db.stats().rerouted == 1);
  CHECK(test::rows_named(dir.file(), "note-a") == 1);
  CHECK(test::rows_named(dir.file(), "note-b") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log no_readers_log;

using no_readers_dao = logged_insert_dao<no_readers_log>;

}  // namespace

TEST_CASE("with no readers an undeclared write runs once, on the writer", "[routing]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(0)};
  const std::thread::id writer = test::run(ctx, writer_then_add<no_readers_dao>(db, "no-readers"));

  const auto runs = no_readers_log.snapshot();
  check_ran_once_on_writer(runs, writer, db);
  CHECK(test::rows_named(dir.file(), "no-readers") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log concurrent_log;

constexpr char concurrent_write_sql[] = "INSERT INTO users(name, email) VALUES(?, 'c@x')";
using concurrent_write_dao = logged_prepared_insert_dao<concurrent_log, concurrent_write_sql>;

constexpr int concurrent_calls = 100;

net::awaitable<std::vector<std::int64_t>> add_many_at_once(asyncdb::database& db) {
  lifted<concurrent_write_dao> dao{db};
  std::vector<net::awaitable<std::int64_t>> tasks;
  for (int i = 0; i < concurrent_calls; ++i) {
    const std::string name = "c" + std::to_string(i);
    tasks.push_back(dao.call<&concurrent_write_dao::add>(name));
  }
  co_return co_await asyncdb::gather(std::move(tasks));
}

}  // namespace

TEST_CASE("100 concurrent first calls of an undeclared write each land exactly once", "[routing][concurrency]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(2)};
  const std::vector<std::int64_t> ids = test::run(ctx, add_many_at_once(db));

  REQUIRE(ids.size() == concurrent_calls);
  CHECK(std::set<std::int64_t>(ids.begin(), ids.end()).size() == concurrent_calls);
  CHECK(*std::min_element(ids.begin(), ids.end()) > 0);
  const std::uint64_t rerouted = db.stats().rerouted;
  CHECK(rerouted >= 1);
  CHECK(rerouted <= concurrent_calls);
  // Every call ends with exactly one run on the writer; the only other runs are trial runs on a reader,
  // each of which was moved (a call may also be moved without a trial run once its kind is known).
  const auto runs = concurrent_log.snapshot();
  std::size_t on_writer = 0, on_reader = 0;
  for (const auto& e : runs) (e.read_only == 0 ? on_writer : on_reader) += 1;
  CHECK(on_writer == concurrent_calls);
  CHECK(on_reader >= 1);
  CHECK(on_reader <= rerouted);
  CHECK(test::count_rows(dir.file()) == concurrent_calls);
  SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT count(DISTINCT name) FROM users").getInt() == concurrent_calls);
  // Each row's id is the one its caller got back.
  SQLite::Statement q(plain, "SELECT id FROM users ORDER BY id");
  std::set<std::int64_t> stored;
  while (q.executeStep()) stored.insert(q.getColumn(0).getInt64());
  CHECK(stored == std::set<std::int64_t>(ids.begin(), ids.end()));
}

// ------------------------------------------------------------------------------------------------

namespace {

run_log closing_log;
test::gate* closing_gate = nullptr;
std::atomic<bool> closing_entered{false};

// Undeclared; its trial run on a reader waits at the test's gate, so the database closes meanwhile.
class closing_dao {
 public:
  explicit closing_dao(SQLite::Database& db) : db_(db) {}
  void add(const std::string& name) {
    closing_log.record(db_);
    if (sqlite3_db_readonly(db_.getHandle(), "main") == 1) {
      closing_entered = true;
      closing_gate->wait();
    }
    insert_user(db_, name);
  }

 private:
  SQLite::Database& db_;
};

struct closing_result {
  bool done = false;
  bool ok = false;
  std::string error;
  asyncdb::error_code probe;  // what a new operation got once close() had begun
};

net::awaitable<void> add_while_closing(asyncdb::database& db, closing_result& r) {
  lifted<closing_dao> dao{db};
  const std::string name = "moved-during-close";
  try {
    co_await dao.call<&closing_dao::add>(name);
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.done = true;
}

net::awaitable<void> probe_until_closed(asyncdb::database& db, closing_result& r) {
  net::steady_timer timer{co_await net::this_coro::executor};
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  auto probe = [](SQLite::Database& c) { c.exec("SELECT 1"); };
  while (std::chrono::steady_clock::now() < give_up) {
    try {
      co_await asyncdb::async_run(db, asyncdb::read_only, probe);
    } catch (const asyncdb::system_error& e) {
      r.probe = e.code();
      co_return;
    }
    timer.expires_after(1ms);
    co_await timer.async_wait(net::use_awaitable);
  }
}

net::awaitable<void> close_during_trial_run(asyncdb::database& db, test::gate& gate, std::thread& closer,
                                            closing_result& r) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, add_while_closing(db, r), net::detached);
  co_await test::until_set(closing_entered);
  closer = std::thread([&db] { db.close(); });
  co_await probe_until_closed(db, r);
  gate.open();
  auto finished = [&r] { return r.done; };
  co_await test::poll_until(finished, 30s);
}

}  // namespace

TEST_CASE("an undeclared write caught on a reader while the database closes still runs on the writer",
          "[routing][shutdown]") {
  test::temp_dir dir;
  net::io_context ctx;
  test::gate gate;
  closing_gate = &gate;
  closing_result r;
  std::thread closer;
  {
    asyncdb::database db{dir.file(), test::default_options(2)};
    test::open_at_exit guard{gate};
    try {
      test::run(ctx, close_during_trial_run(db, gate, closer, r), 60s);
    } catch (...) {
      gate.open();
      if (closer.joinable()) closer.join();
      throw;
    }
    if (closer.joinable()) closer.join();
  }
  closing_gate = nullptr;

  CHECK(r.probe == asyncdb::errc::closed);
  INFO(r.error);
  REQUIRE(r.done);
  CHECK(r.ok);
  const auto runs = closing_log.snapshot();
  check_tried_then_moved(runs);
  CHECK(test::rows_named(dir.file(), "moved-during-close") == 1);
}
