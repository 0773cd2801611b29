// The operation observer (options::observer): one record per operation, with its name, connection, times,
// outcome, commit and group commit, delivered on the connection's thread before the caller resumes.
#include "net.hpp"

#include <mutex>
#include <source_location>
#include <thread>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;
using test::UserCreate;
using test::UserOper;

// A record as the observer saw it, its name copied, and the thread it was told on.
struct seen_op {
  asyncdb::operation_record r;
  std::string name;
  std::thread::id thread;
};

// Collects the records an observer is told of, from any thread.
struct record_log {
  std::mutex mutex;
  std::vector<seen_op> ops;

  asyncdb::operation_observer observer() {
    return [this](const asyncdb::operation_record& r) {
      std::lock_guard lock(mutex);
      ops.push_back({r, std::string(r.name), std::this_thread::get_id()});
    };
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return ops.size();
  }
  std::vector<seen_op> all() {
    std::lock_guard lock(mutex);
    return ops;
  }
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// How many records each step had left by the time its co_await returned.
struct steps {
  std::size_t after_add = 0;
  std::size_t after_count = 0;
  std::size_t after_fail = 0;
};

net::awaitable<void> add_count_fail(asyncdb::database& db, record_log& log, steps& s) {
  test::AsyncUsers users{db};
  UserCreate u{"observed", "o@x"};
  co_await users.call<&UserOper::add>(u);
  s.after_add = log.size();
  co_await users.call<&UserOper::count>();
  s.after_count = log.size();
  try {
    co_await users.call<&UserOper::fail>(std::string("no"));
  } catch (const std::invalid_argument&) {
  }
  s.after_fail = log.size();
}

}  // namespace

TEST_CASE("the observer is told of each operation before its caller resumes, on the connection's thread",
          "[observer]") {
  test::temp_dir dir;
  net::io_context ctx;
  record_log log;
  steps s;
  asyncdb::options o = test::default_options(2);
  o.observer = log.observer();
  {
    asyncdb::database db{dir.file(), o};
    test::run(ctx, add_count_fail(db, log, s), 30s);
  }
  CHECK(s.after_add == 1);
  CHECK(s.after_count == 2);
  CHECK(s.after_fail == 3);
  const std::vector<seen_op> ops = log.all();
  REQUIRE(ops.size() == 3);

  const seen_op& add = ops[0];
  INFO("names: " << ops[0].name << " | " << ops[1].name << " | " << ops[2].name);
  CHECK(contains(add.name, "add"));
  CHECK(add.r.connection.kind == asyncdb::connection_role::writer);
  CHECK(add.r.outcome == asyncdb::operation_outcome::succeeded);
  CHECK(add.r.committed);
  CHECK(add.r.group_size == 0);  // alone in the queue: its own transaction
  CHECK(add.r.running > 0ns);
  CHECK(add.r.queued >= 0ns);
  CHECK(add.r.backend_pid == 0);
  CHECK_FALSE(add.r.in_session);

  const seen_op& count = ops[1];
  CHECK(contains(count.name, "count"));
  CHECK(count.r.connection.kind == asyncdb::connection_role::reader);
  CHECK(count.r.connection.index < 2);
  CHECK(count.r.outcome == asyncdb::operation_outcome::succeeded);
  CHECK_FALSE(count.r.committed);

  const seen_op& fail = ops[2];
  CHECK(contains(fail.name, "fail"));
  CHECK(fail.r.outcome == asyncdb::operation_outcome::failed);
  CHECK_FALSE(fail.r.committed);

  for (const seen_op& op : ops) CHECK(op.thread != std::this_thread::get_id());  // a lane's, not the caller's
}

// ------------------------------------------------------------------------------------------------

namespace {

// The lines of this file that started each operation.
struct started_at {
  std::uint_least32_t run = 0;
  std::uint_least32_t async_run = 0;
  std::uint_least32_t session = 0;
};

net::awaitable<void> run_call_and_session(asyncdb::database& db, started_at& at) {
  test::AsyncUsers users{db};
  auto count_users = [](UserOper& dao) { return dao.count(); };
  at.run = std::source_location::current().line() + 1;
  co_await users.run(count_users);
  auto select_one = [](SQLite::Database& c) { c.exec("SELECT 1"); };
  at.async_run = std::source_location::current().line() + 1;
  co_await asyncdb::async_run(db, select_one);
  co_await users.call<&UserOper::count>();
  at.session = std::source_location::current().line() + 1;
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.call<&UserOper::count>();
}

}  // namespace

TEST_CASE("the observer is told the source line of a run(), an async_run() and a session's operation", "[observer]") {
  test::temp_dir dir;
  net::io_context ctx;
  record_log log;
  started_at at;
  asyncdb::options o = test::default_options(1);
  o.observer = log.observer();
  {
    asyncdb::database db{dir.file(), o};
    test::run(ctx, run_call_and_session(db, at), 30s);
  }
  const std::vector<seen_op> ops = log.all();
  REQUIRE(ops.size() == 4);
  const std::string here = std::source_location::current().file_name();
  for (std::size_t i : {0u, 1u, 3u}) CHECK(ops[i].r.where.file_name() == here);
  CHECK(ops[0].r.where.line() == at.run);
  CHECK(ops[1].r.where.line() == at.async_run);
  CHECK(ops[2].r.where.line() == 0);  // a call<> outside a session: its name names it
  CHECK(contains(ops[2].name, "count"));
  CHECK(ops[3].r.in_session);
  CHECK(contains(ops[3].name, "count"));
  CHECK(ops[3].r.where.line() == at.session);  // where its session was opened
}

// ------------------------------------------------------------------------------------------------

namespace {

struct grouped_state {
  test::gate gate;
  std::atomic<bool> entered{false};
  int finished = 0;
};

net::awaitable<void> hold_writer(asyncdb::database& db, grouped_state& st) {
  auto wait = [&st](SQLite::Database&) {
    st.entered = true;
    st.gate.wait();
  };
  co_await asyncdb::async_run(db, wait);
  ++st.finished;
}

net::awaitable<void> add_named(asyncdb::database& db, std::string name, grouped_state& st) {
  test::AsyncUsers users{db};
  UserCreate u{name, name + "@x"};
  co_await users.call<&UserOper::add>(u);
  ++st.finished;
}

net::awaitable<void> queue_four_behind_the_writer(asyncdb::database& db, grouped_state& st) {
  auto ex = co_await net::this_coro::executor;
  net::co_spawn(ex, hold_writer(db, st), net::detached);
  co_await test::until_set(st.entered);
  for (int i = 0; i < 4; ++i) net::co_spawn(ex, add_named(db, "g" + std::to_string(i), st), net::detached);
  auto four_queued = [&db] { return db.stats().queued == 4; };
  co_await test::poll_until(four_queued);
  st.gate.open();
  auto all_done = [&st] { return st.finished == 5; };
  co_await test::poll_until(all_done);
}

}  // namespace

TEST_CASE("the observer reports the size of a group commit and that each member committed with it", "[observer]") {
  test::temp_dir dir;
  net::io_context ctx;
  record_log log;
  grouped_state st;
  asyncdb::options o = test::default_options(0);
  o.group_commit.max_duration = 30s;
  o.observer = log.observer();
  {
    asyncdb::database db{dir.file(), o};
    test::open_at_exit guard{st.gate};
    test::run(ctx, queue_four_behind_the_writer(db, st), 30s);
  }
  const std::vector<seen_op> ops = log.all();
  REQUIRE(ops.size() == 5);
  CHECK(ops[0].r.group_size == 0);  // the one holding the writer ran alone
  for (std::size_t i = 1; i < ops.size(); ++i) {
    INFO("op " << i << ": " << ops[i].name);
    CHECK(contains(ops[i].name, "add"));
    CHECK(ops[i].r.group_size == 4);
    CHECK(ops[i].r.committed);
    CHECK(ops[i].r.outcome == asyncdb::operation_outcome::succeeded);
    CHECK(ops[i].r.queued > 0ns);
  }
  CHECK(test::count_rows(dir.file()) == 4);
}

// ------------------------------------------------------------------------------------------------

namespace {

net::awaitable<std::int64_t> add_one(asyncdb::database& db) {
  test::AsyncUsers users{db};
  UserCreate u{"thrown", "t@x"};
  co_return co_await users.call<&UserOper::add>(u);
}

}  // namespace

TEST_CASE("an observer that throws loses its record, not the operation's completion", "[observer]") {
  test::temp_dir dir;
  net::io_context ctx;
  std::atomic<int> told{0};
  asyncdb::options o = test::default_options(0);
  o.observer = [&told](const asyncdb::operation_record&) {
    ++told;
    throw std::runtime_error("observer failed");
  };
  std::int64_t id = 0;
  {
    asyncdb::database db{dir.file(), o};
    id = test::run(ctx, add_one(db), 30s);
  }
  CHECK(id == 1);
  CHECK(told == 1);
  CHECK(test::count_rows(dir.file()) == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

net::awaitable<void> cancel_a_running_operation(asyncdb::database& db, std::atomic<bool>& started) {
  using namespace net::experimental::awaitable_operators;
  auto endless = [&started](SQLite::Database& c) {
    started = true;
    c.execAndGet(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000000) SELECT count(*) FROM n");
  };
  co_await (asyncdb::async_run(db, endless) || test::timer_after_start(started));
}

}  // namespace

TEST_CASE("the observer reports an operation cancelled while running as aborted, nothing committed", "[observer]") {
  test::temp_dir dir;
  net::io_context ctx;
  record_log log;
  std::atomic<bool> started{false};
  asyncdb::options o = test::default_options(0);
  o.observer = log.observer();
  {
    asyncdb::database db{dir.file(), o};
    test::run(ctx, cancel_a_running_operation(db, started), 30s);
  }
  const std::vector<seen_op> ops = log.all();
  REQUIRE(ops.size() == 1);
  INFO("name = " << ops[0].name);
  CHECK(contains(ops[0].name, "async_run"));  // the existing name of a free async_run
  CHECK(ops[0].r.outcome == asyncdb::operation_outcome::aborted);
  CHECK_FALSE(ops[0].r.committed);
  CHECK(ops[0].r.running > 0ns);
}
