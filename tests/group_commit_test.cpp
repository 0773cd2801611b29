// Group commit on the writer (options::group_commit): independent writes queued together share one
// transaction, each in its own savepoint; each awaiter resumes only after the shared COMMIT; a failing
// write loses only its own changes; DAOs with their own transaction, sessions and cancellations keep
// their meaning.
//
// How a group is forced: one operation holds the writer at a gate, the writes to group are started one
// by one (each queued before the next starts, so their order is known), and the gate opens only once
// all of them wait in the queue; the writer then finds them together and takes them as one group.
// Every test checks stats().group_commits / grouped, so it proves the group really formed.
#include "net.hpp"

#include <sqlite3.h>
#include <future>
#include <thread>
#include <typeinfo>

#include "support.hpp"

namespace {

using namespace std::chrono_literals;

/// Options whose group never closes early on a slow machine (sanitizers): every queued write joins it.
asyncdb::options grouping_options() {
  asyncdb::options o = test::default_options();
  o.group_commit.max_duration = 30s;
  return o;
}

// The operation holding the writer at the gate, and how many of the operations started behind it finished.
struct held_writer {
  test::gate gate;
  std::atomic<bool> entered{false};
  std::size_t finished = 0;  // io_context thread only
  int unexpected = 0;        // operations whose coroutine let an exception escape
};

net::awaitable<void> hold(asyncdb::database& db, held_writer& w) {
  auto block = [&w](SQLite::Database&) {
    w.entered = true;
    w.gate.wait();
  };
  co_await asyncdb::async_run(db, block);
}

// Holds the writer, starts `ops` in order (each one queued before the next starts), releases the writer
// once all wait in its queue, and returns when every one of them (and the holder) has finished.
net::awaitable<void> run_as_group(asyncdb::database& db, held_writer& w, std::vector<net::awaitable<void>> ops) {
  auto ex = co_await net::this_coro::executor;
  auto count = [&w](std::exception_ptr e) {
    if (e) ++w.unexpected;
    ++w.finished;
  };
  net::co_spawn(ex, hold(db, w), count);
  co_await test::until_set(w.entered);
  const std::size_t n = ops.size();
  for (std::size_t i = 0; i < n; ++i) {
    net::co_spawn(ex, std::move(ops[i]), count);
    auto queued = [&db, i] { return db.stats().queued == i + 1; };
    co_await test::poll_until(queued);
  }
  w.gate.open();
  auto all_done = [&w, n] { return w.finished == n + 1; };
  co_await test::poll_until(all_done, 60s);
}

// The operations of one group, in the order run_as_group starts them (each is lazy: nothing runs here).
template <class... Ops>
std::vector<net::awaitable<void>> group_of(Ops... ops) {
  std::vector<net::awaitable<void>> group;
  (group.push_back(std::move(ops)), ...);
  return group;
}

// run_as_group on `ctx`, failing past `deadline`; returns db.stats() once the group and its holder finished.
asyncdb::stats run_group(net::io_context& ctx, asyncdb::database& db, held_writer& w,
                         std::vector<net::awaitable<void>> ops, std::chrono::seconds deadline = 60s) {
  test::run(ctx, run_as_group(db, w, std::move(ops)), deadline);
  return db.stats();
}

// What one operation's awaiter saw.
struct outcome {
  bool done = false;
  bool ok = false;
  std::string error;
  bool runtime_error_exactly = false;
  asyncdb::error_code code;
};

void record_failure(outcome& out, std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const asyncdb::system_error& s) {
    out.code = s.code();
    out.error = s.what();
  } catch (const std::runtime_error& r) {
    out.runtime_error_exactly = typeid(r) == typeid(std::runtime_error);
    out.error = r.what();
  } catch (const std::exception& x) {
    out.error = x.what();
  }
}

// Awaits `op` and records in `out` how it ended: ok once it returned (and, when `expected` is given,
// returned that), else why it failed; nothing escapes.
template <class T>
net::awaitable<void> record_outcome(net::awaitable<T> op, outcome& out,
                                    std::type_identity_t<std::optional<T>> expected = std::nullopt) {
  try {
    const T result = co_await std::move(op);
    out.ok = !expected || result == *expected;
  } catch (...) {
    record_failure(out, std::current_exception());
  }
  out.done = true;
}

net::awaitable<void> record_outcome(net::awaitable<void> op, outcome& out) {
  try {
    co_await std::move(op);
    out.ok = true;
  } catch (...) {
    record_failure(out, std::current_exception());
  }
  out.done = true;
}

void insert_user(SQLite::Database& c, const std::string& name) {
  SQLite::Statement q(c, "INSERT INTO users(name, email) VALUES(?, 'g@x')");
  q.bind(1, name);
  q.exec();
}

// Calls the DAO member `AddPair` (which adds `prefix`-a and `prefix`-b and returns 2) through
// async_db_operation; ok once it returned 2.
template <auto AddPair>
net::awaitable<void> add_pair_with(asyncdb::database& db, std::string prefix, outcome& out) {
  auto add = asyncdb::async_db_operation<AddPair>{}(db, prefix);
  co_await record_outcome(std::move(add), out, 2);
}

// A plain write through async_run: on the writer, groupable.
net::awaitable<void> insert_named(asyncdb::database& db, std::string name, outcome& out) {
  auto insert = [name](SQLite::Database& c) { insert_user(c, name); };
  co_await record_outcome(asyncdb::async_run(db, insert), out);
}

// Writes its row, then throws: inside a group only its own row must vanish.
net::awaitable<void> insert_then_throw(asyncdb::database& db, std::string name, outcome& out) {
  auto insert = [name](SQLite::Database& c) {
    insert_user(c, name);
    throw std::runtime_error("bad write refused by its DAO");
  };
  co_await record_outcome(asyncdb::async_run(db, insert), out);
}

}  // namespace

// ------------------------------------------------------------------------------------------------

TEST_CASE("a write that throws inside a group loses only its own changes and gets its own exception",
          "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome ok1, bad, ok2;
  asyncdb::stats after;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard{w.gate};
    after = run_group(
        ctx, db, w,
        group_of(insert_named(db, "ok1", ok1), insert_then_throw(db, "bad", bad), insert_named(db, "ok2", ok2)));
  }

  CHECK(w.unexpected == 0);
  INFO("ok1: " << ok1.error << " / ok2: " << ok2.error);
  CHECK(ok1.ok);
  CHECK(ok2.ok);
  CHECK_FALSE(bad.ok);
  CHECK(bad.runtime_error_exactly);
  CHECK(bad.error == "bad write refused by its DAO");
  CHECK(after.group_commits == 1);
  CHECK(after.grouped >= 2);    // ok1 and ok2 were committed by the shared transaction
  CHECK(after.completed == 3);  // the holder, ok1, ok2
  CHECK(after.failed == 1);
  CHECK(test::rows_named(dir.file(), "ok1") == 1);
  CHECK(test::rows_named(dir.file(), "ok2") == 1);
  CHECK(test::rows_named(dir.file(), "bad") == 0);
}

// ------------------------------------------------------------------------------------------------

namespace {

struct visibility {
  outcome write;
  std::int64_t seen_by_plain_connection = -1;
  std::int64_t seen_by_reader = -1;
};

// Right after its co_await returns, the write must be committed: visible to any other connection.
net::awaitable<void> insert_then_look(asyncdb::database& db, std::filesystem::path file, std::string name,
                                      visibility& v) {
  co_await insert_named(db, name, v.write);
  if (!v.write.ok) co_return;
  v.seen_by_plain_connection = test::rows_named(file, name);
  auto count = [name](SQLite::Database& c) {
    SQLite::Statement q(c, "SELECT count(*) FROM users WHERE name = ?");
    q.bind(1, name);
    q.executeStep();
    return q.getColumn(0).getInt64();
  };
  v.seen_by_reader = co_await asyncdb::async_run(db, asyncdb::read_only, count);
}

}  // namespace

TEST_CASE("every awaiter of a group resumes only after the shared commit, so its write is visible at once",
          "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  constexpr int n = 8;
  std::vector<visibility> seen(n);
  asyncdb::stats after;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard{w.gate};
    std::vector<net::awaitable<void>> ops;
    for (int i = 0; i < n; ++i) ops.push_back(insert_then_look(db, dir.file(), "v" + std::to_string(i), seen[i]));
    after = run_group(ctx, db, w, std::move(ops));
  }

  CHECK(w.unexpected == 0);
  CHECK(after.group_commits == 1);
  CHECK(after.grouped == n);
  for (int i = 0; i < n; ++i) {
    INFO("write " << i << ": " << seen[i].write.error);
    CHECK(seen[i].write.ok);
    CHECK(seen[i].seen_by_plain_connection == 1);
    CHECK(seen[i].seen_by_reader == 1);
  }
}

// ------------------------------------------------------------------------------------------------

namespace {

std::atomic<int> own_transaction_runs{0};

// A legacy DAO member that opens its own transaction: inside a group its BEGIN fails.
class own_transaction_dao {
 public:
  explicit own_transaction_dao(SQLite::Database& db) : db_(db) {}
  int add_pair(const std::string& prefix) {
    ++own_transaction_runs;
    SQLite::Transaction t(db_);
    insert_user(db_, prefix + "-a");
    insert_user(db_, prefix + "-b");
    t.commit();
    return 2;
  }

 private:
  SQLite::Database& db_;
};

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&own_transaction_dao::add_pair> = true;

TEST_CASE("a DAO member opening its own transaction inside a group reruns alone and is never grouped again",
          "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer first_round, second_round;
  outcome a1, pair1, a2, b1, b2, pair2, b3;
  int runs_after_first = -1;
  asyncdb::stats after_first, after_second;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard1{first_round.gate};
    test::open_at_exit guard2{second_round.gate};
    run_group(ctx, db, first_round,
              group_of(insert_named(db, "a1", a1), add_pair_with<&own_transaction_dao::add_pair>(db, "pair1", pair1),
                       insert_named(db, "a2", a2)));
    runs_after_first = own_transaction_runs.load();
    after_first = db.stats();

    // Now known to open its own transaction: it stops a group instead of joining it.
    after_second = run_group(
        ctx, db, second_round,
        group_of(insert_named(db, "b1", b1), insert_named(db, "b2", b2),
                 add_pair_with<&own_transaction_dao::add_pair>(db, "pair2", pair2), insert_named(db, "b3", b3)));
  }

  CHECK(first_round.unexpected == 0);
  CHECK(second_round.unexpected == 0);
  for (const outcome* o : {&a1, &pair1, &a2, &b1, &b2, &pair2, &b3}) {
    INFO(o->error);
    CHECK(o->ok);
  }
  CHECK(runs_after_first == 2);      // the grouped attempt whose BEGIN failed, then alone
  CHECK(own_transaction_runs == 3);  // once more in the second round: not grouped any more
  // Start order holds: the pair ends the group before it (a1 commits), runs alone, then a2 runs alone.
  CHECK(after_first.group_commits == 1);
  CHECK(after_first.grouped == 1);
  CHECK(after_second.group_commits == 2);  // b1 and b2; the pair stopped the group, b3 ran alone after it
  CHECK(after_second.grouped == 3);
  for (const char* name : {"a1", "a2", "pair1-a", "pair1-b", "b1", "b2", "b3", "pair2-a", "pair2-b"}) {
    INFO(name);
    CHECK(test::rows_named(dir.file(), name) == 1);
  }
}

// ------------------------------------------------------------------------------------------------

namespace {

net::awaitable<void> add_user(asyncdb::database& db, int i, outcome& out) {
  test::UserCreate u{"d" + std::to_string(i), "d@x"};
  auto add = asyncdb::async_db_operation<&test::UserOper::add>{}(db, u);
  co_await record_outcome(std::move(add), out);
}

}  // namespace

TEST_CASE("200 grouped adds with synchronous=FULL are all in the file once the database is closed", "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  constexpr int n = 200;
  std::vector<outcome> adds(n);
  std::int64_t synchronous = -1;
  asyncdb::stats after;
  {
    asyncdb::options opts = test::default_options();  // the default group bounds
    opts.on_open = [](SQLite::Database& c) {
      test::create_schema(c);
      c.exec("PRAGMA synchronous = FULL");
    };
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{w.gate};
    auto pragma = [](SQLite::Database& c) { return c.execAndGet("PRAGMA synchronous").getInt64(); };
    synchronous = test::run(ctx, asyncdb::async_run(db, pragma), 60s);
    std::vector<net::awaitable<void>> ops;
    for (int i = 0; i < n; ++i) ops.push_back(add_user(db, i, adds[i]));
    after = run_group(ctx, db, w, std::move(ops), 120s);
  }

  CHECK(synchronous == 2);  // FULL
  CHECK(w.unexpected == 0);
  int ok = 0;
  for (const outcome& o : adds) ok += o.ok ? 1 : 0;
  CHECK(ok == n);
  CHECK(after.group_commits > 0);
  CHECK(after.grouped > 0);
  CHECK(after.grouped <= static_cast<std::uint64_t>(n));
  CHECK(test::count_rows(dir.file()) == n);
  SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT count(DISTINCT name) FROM users").getInt() == n);
}

// ------------------------------------------------------------------------------------------------

TEST_CASE("with group commit disabled writes queued together each commit alone and all land", "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome x1, x2, x3;
  asyncdb::stats after;
  {
    asyncdb::options opts = grouping_options();
    opts.group_commit.enabled = false;
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{w.gate};
    after = run_group(ctx, db, w,
                      group_of(insert_named(db, "x1", x1), insert_named(db, "x2", x2), insert_named(db, "x3", x3)));
  }

  CHECK(w.unexpected == 0);
  CHECK(x1.ok);
  CHECK(x2.ok);
  CHECK(x3.ok);
  CHECK(after.group_commits == 0);
  CHECK(after.grouped == 0);
  CHECK(after.completed == 4);
  CHECK(test::count_rows(dir.file()) == 3);
}

TEST_CASE("max_duration at microseconds max, the natural no bound, lets a group hold every queued write",
          "[group_commit][options]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome m1, m2, m3;
  asyncdb::stats after;
  {
    asyncdb::options opts = test::default_options();
    opts.group_commit.max_duration = std::chrono::microseconds::max();
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{w.gate};
    after = run_group(ctx, db, w,
                      group_of(insert_named(db, "m1", m1), insert_named(db, "m2", m2), insert_named(db, "m3", m3)));
  }

  CHECK(w.unexpected == 0);
  CHECK((m1.ok && m2.ok && m3.ok));
  CHECK(after.group_commits == 1);
  CHECK(after.grouped == 3);
  CHECK(test::count_rows(dir.file()) == 3);
}

TEST_CASE("max_operations bounds a group: the writes waiting behind a full group form the next one", "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome y1, y2, y3, y4, y5;
  asyncdb::stats after;
  {
    asyncdb::options opts = grouping_options();
    opts.group_commit.max_operations = 2;
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{w.gate};
    after = run_group(ctx, db, w,
                      group_of(insert_named(db, "y1", y1), insert_named(db, "y2", y2), insert_named(db, "y3", y3),
                               insert_named(db, "y4", y4), insert_named(db, "y5", y5)));
  }

  CHECK(w.unexpected == 0);
  CHECK((y1.ok && y2.ok && y3.ok && y4.ok && y5.ok));
  CHECK(after.group_commits == 2);  // {y1, y2} and {y3, y4}; y5, alone in the queue by then, runs alone
  CHECK(after.grouped == 4);
  CHECK(test::count_rows(dir.file()) == 5);
}

// ------------------------------------------------------------------------------------------------

namespace {

struct session_record {
  bool done = false;
  std::string error;
  std::int64_t seen_inside = -1;        // its own row, inside its transaction
  std::int64_t plain_rows_inside = -1;  // rows of the plain writes, seen from inside its transaction
  std::int64_t seen_after_end = -1;     // its own row, after commit or rollback
};

// A write session that begins, inserts `name`, then commits or rolls back, while plain writes wait around it.
net::awaitable<void> session_write(asyncdb::database& db, std::string name, bool commit, session_record& r) {
  try {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    auto insert = [name](SQLite::Database& c) { insert_user(c, name); };
    co_await s.run(insert);
    auto mine = [name](SQLite::Database& c) {
      SQLite::Statement q(c, "SELECT count(*) FROM users WHERE name = ?");
      q.bind(1, name);
      q.executeStep();
      return q.getColumn(0).getInt64();
    };
    r.seen_inside = co_await s.run(mine);
    auto plain = [](SQLite::Database& c) {
      return c.execAndGet("SELECT count(*) FROM users WHERE name LIKE 'w%'").getInt64();
    };
    r.plain_rows_inside = co_await s.run(plain);
    if (commit) {
      co_await s.commit();
    } else {
      co_await s.rollback();
    }
    r.seen_after_end = co_await s.run(mine);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  r.done = true;
}

}  // namespace

TEST_CASE("write sessions are never grouped: their own BEGIN, COMMIT and ROLLBACK keep their meaning",
          "[group_commit][session]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome w1, w2, w3, w4, w5, w6;
  session_record rolled_back, committed;
  asyncdb::stats after;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard{w.gate};
    after = run_group(ctx, db, w,
                      group_of(insert_named(db, "w1", w1), insert_named(db, "w2", w2),
                               session_write(db, "session-rolled-back", false, rolled_back), insert_named(db, "w3", w3),
                               insert_named(db, "w4", w4), session_write(db, "session-committed", true, committed),
                               insert_named(db, "w5", w5), insert_named(db, "w6", w6)));
  }

  CHECK(w.unexpected == 0);
  for (const outcome* o : {&w1, &w2, &w3, &w4, &w5, &w6}) {
    INFO(o->error);
    CHECK(o->ok);
  }
  INFO("rolled back session: " << rolled_back.error << " / committed session: " << committed.error);
  REQUIRE(rolled_back.done);
  REQUIRE(committed.done);
  CHECK(rolled_back.error.empty());
  CHECK(committed.error.empty());
  CHECK(rolled_back.seen_inside == 1);
  CHECK(rolled_back.plain_rows_inside == 2);  // w1, w2 committed before; w3, w4 wait behind the session
  CHECK(rolled_back.seen_after_end == 0);
  CHECK(committed.seen_inside == 1);
  CHECK(committed.plain_rows_inside == 4);
  CHECK(committed.seen_after_end == 1);
  CHECK(after.group_commits == 3);  // {w1, w2}, {w3, w4}, {w5, w6}: the sessions stopped the groups
  CHECK(after.grouped == 6);
  CHECK(test::rows_named(dir.file(), "session-rolled-back") == 0);
  CHECK(test::rows_named(dir.file(), "session-committed") == 1);
  CHECK(test::count_rows(dir.file(), "name LIKE 'w%'") == 6);
}

// ------------------------------------------------------------------------------------------------

namespace {

struct victim_state {
  test::gate gate;  // where the victim waits, inside the group, until the cancellation was emitted
  std::atomic<bool> entered{false};
  net::cancellation_signal signal;
  bool done = false;
  std::exception_ptr error;
  std::int64_t result = -1;
};

// Once the victim's code runs, cancels it through its signal, lets it go on, and waits until it completed.
template <class Victim>
net::awaitable<void> cancel_once_entered(Victim& v) {
  co_await test::until_set(v.entered);
  v.signal.emit(net::cancellation_type::terminal);
  v.gate.open();
  auto finished = [&v] { return v.done; };
  co_await test::poll_until(finished, 60s);
}

// Runs second in the group: writes its row, waits until the test has cancelled it, then runs a statement
// long enough for an interrupt to land (were it allowed: only the first of a group may be interrupted).
net::awaitable<void> cancelled_in_group(asyncdb::database& db, victim_state& v) {
  auto ex = co_await net::this_coro::executor;
  auto work = [&v](SQLite::Database& c) {
    insert_user(c, "victim");
    v.entered = true;
    v.gate.wait();
    return c
        .execAndGet(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT count(*) FROM n")
        .getInt64();
  };
  auto handler = [&v](std::exception_ptr e, std::int64_t r) {
    v.error = e;
    v.result = r;
    v.done = true;
  };
  asyncdb::async_run(db, work, net::bind_cancellation_slot(v.signal.slot(), net::bind_executor(ex, handler)));
  co_await cancel_once_entered(v);
}

}  // namespace

TEST_CASE("an operation cancelled while it runs inside a group never undoes the others' writes",
          "[group_commit][cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  victim_state victim;
  outcome first, last;
  asyncdb::stats after;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard{w.gate};
    test::open_at_exit victim_guard{victim.gate};
    after = run_group(
        ctx, db, w,
        group_of(insert_named(db, "first", first), cancelled_in_group(db, victim), insert_named(db, "last", last)));
  }

  CHECK(w.unexpected == 0);
  INFO("first: " << first.error << " / last: " << last.error);
  CHECK(first.ok);
  CHECK(last.ok);
  REQUIRE(victim.done);
  outcome victim_outcome;
  if (victim.error) record_failure(victim_outcome, victim.error);
  INFO("victim: " << victim_outcome.error);
  const bool victim_succeeded = !victim.error;
  if (victim_succeeded) {
    CHECK(victim.result == 200000);
  } else {
    CHECK(victim_outcome.code == net::error::operation_aborted);
  }
  CHECK(after.group_commits == 1);
  CHECK(test::rows_named(dir.file(), "first") == 1);
  CHECK(test::rows_named(dir.file(), "last") == 1);
  CHECK(test::rows_named(dir.file(), "victim") == (victim_succeeded ? 1 : 0));
}

// ------------------------------------------------------------------------------------------------

namespace {

struct first_victim_state {
  test::gate gate;
  std::atomic<bool> entered{false};
  net::cancellation_signal signal;
  bool done = false;
  std::exception_ptr error;
};

// Runs first in the group: writes its row, waits until cancelled, then starts a long write, which the
// interrupt stops (SQLite then rolls back the whole transaction, which holds nobody else's write yet).
net::awaitable<void> cancelled_first_in_group(asyncdb::database& db, first_victim_state& v) {
  auto ex = co_await net::this_coro::executor;
  auto work = [&v](SQLite::Database& c) {
    insert_user(c, "first-victim");
    v.entered = true;
    v.gate.wait();
    c.exec(
        "INSERT INTO users(name, email) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < "
        "3000000) SELECT 'bulk' || i, 'b@x' FROM n");
  };
  auto handler = [&v](std::exception_ptr e) {
    v.error = e;
    v.done = true;
  };
  asyncdb::async_run(db, work, net::bind_cancellation_slot(v.signal.slot(), net::bind_executor(ex, handler)));
  co_await cancel_once_entered(v);
}

}  // namespace

TEST_CASE("the first operation of a group cancelled while it runs is interrupted and the others still commit",
          "[group_commit][cancellation]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  first_victim_state victim;
  outcome second, third;
  asyncdb::stats after;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard{w.gate};
    test::open_at_exit victim_guard{victim.gate};
    after = run_group(ctx, db, w,
                      group_of(cancelled_first_in_group(db, victim), insert_named(db, "second", second),
                               insert_named(db, "third", third)));
  }

  CHECK(w.unexpected == 0);
  INFO("second: " << second.error << " / third: " << third.error);
  CHECK(second.ok);
  CHECK(third.ok);
  REQUIRE(victim.done);
  outcome victim_outcome;
  if (victim.error) record_failure(victim_outcome, victim.error);
  CHECK(victim_outcome.code == net::error::operation_aborted);
  CHECK(after.cancelled == 1);
  CHECK(test::rows_named(dir.file(), "first-victim") == 0);
  CHECK(test::count_rows(dir.file(), "name LIKE 'bulk%'") == 0);
  CHECK(test::rows_named(dir.file(), "second") == 1);
  CHECK(test::rows_named(dir.file(), "third") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

void deferred_fk_schema(SQLite::Database& c) {
  test::create_schema(c);
  c.exec("PRAGMA foreign_keys = ON");
  if (!c.tableExists("notes")) {
    c.exec(
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL "
        "REFERENCES users(id) DEFERRABLE INITIALLY DEFERRED)");
  }
}

// Each statement succeeds: a deferred foreign key is only checked when the transaction commits.
net::awaitable<void> orphan_note(asyncdb::database& db, outcome& out) {
  auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO notes(user_id) VALUES(424242)"); };
  co_await record_outcome(asyncdb::async_run(db, insert), out);
}

bool is_constraint_error(const outcome& o) {
  return o.error.find("FOREIGN KEY") != std::string::npos || o.error.find("constraint") != std::string::npos;
}

}  // namespace

TEST_CASE("when the shared COMMIT fails every write of the group fails with its error and none lands",
          "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome before, orphan, behind, later;
  asyncdb::stats after;
  {
    asyncdb::options opts = grouping_options();
    opts.on_open = deferred_fk_schema;
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{w.gate};
    after = run_group(ctx, db, w,
                      group_of(insert_named(db, "before-orphan", before), orphan_note(db, orphan),
                               insert_named(db, "behind-orphan", behind)));
    // The writer is clean again: the failed transaction is not left open under the next write.
    test::run(ctx, insert_named(db, "later", later), 60s);
  }

  INFO("before: " << before.error << " / orphan: " << orphan.error << " / behind: " << behind.error);
  CHECK_FALSE(before.ok);
  CHECK_FALSE(orphan.ok);
  CHECK_FALSE(behind.ok);
  CHECK(is_constraint_error(before));
  CHECK(is_constraint_error(orphan));
  CHECK(is_constraint_error(behind));
  CHECK(after.group_commits == 0);
  CHECK(after.grouped == 0);
  CHECK(after.failed == 3);
  CHECK(later.ok);
  CHECK(test::rows_named(dir.file(), "before-orphan") == 0);
  CHECK(test::rows_named(dir.file(), "behind-orphan") == 0);
  CHECK(test::rows_named(dir.file(), "later") == 1);
  SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT count(*) FROM notes").getInt() == 0);
}

// ------------------------------------------------------------------------------------------------

namespace {

std::atomic<int> defensive_runs{0};

// Legacy code as often written: BEGIN inside the try, ROLLBACK in the catch, then rethrow. Alone it
// works; inside a group its BEGIN fails and its catch rolls back the shared transaction.
class defensive_transaction_dao {
 public:
  explicit defensive_transaction_dao(SQLite::Database& db) : db_(db) {}
  int add_pair(const std::string& prefix) {
    ++defensive_runs;
    try {
      db_.exec("BEGIN");
      insert_user(db_, prefix + "-a");
      insert_user(db_, prefix + "-b");
      db_.exec("COMMIT");
    } catch (...) {
      db_.exec("ROLLBACK");
      throw;
    }
    return 2;
  }

 private:
  SQLite::Database& db_;
};

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&defensive_transaction_dao::add_pair> = true;

TEST_CASE(
    "a DAO that rolls back after its own BEGIN failed inside a group still succeeds, and the writes it undid "
    "run again and land",
    "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer first_round, second_round;
  outcome d1, pair1, d2, e1, pair2, e2;
  asyncdb::stats after_first;
  int runs_after_first = -1;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard1{first_round.gate};
    test::open_at_exit guard2{second_round.gate};
    after_first = run_group(
        ctx, db, first_round,
        group_of(insert_named(db, "d1", d1), add_pair_with<&defensive_transaction_dao::add_pair>(db, "dpair1", pair1),
                 insert_named(db, "d2", d2)));
    runs_after_first = defensive_runs.load();

    run_group(
        ctx, db, second_round,
        group_of(insert_named(db, "e1", e1), add_pair_with<&defensive_transaction_dao::add_pair>(db, "dpair2", pair2),
                 insert_named(db, "e2", e2)));
  }

  // The DAO works alone, so it must work with group commit on: as SQLite::Transaction does, it is
  // rerun alone, and learned as opening its own transaction.
  INFO("pair1: " << pair1.error << " / pair2: " << pair2.error);
  CHECK(pair1.ok);
  CHECK(pair2.ok);
  CHECK(test::rows_named(dir.file(), "dpair1-a") == (pair1.ok ? 1 : 0));
  CHECK(test::rows_named(dir.file(), "dpair2-a") == (pair2.ok ? 1 : 0));
  // d1's write was undone by the DAO's ROLLBACK of the shared transaction: it runs again, alone, and lands.
  INFO("d1: " << d1.error << " / d2: " << d2.error);
  CHECK(d1.ok);
  CHECK(test::rows_named(dir.file(), "d1") == 1);
  CHECK(d2.ok);
  CHECK(test::rows_named(dir.file(), "d2") == 1);
  // Second round: the kind is known, the others of the group are not touched.
  CHECK(e1.ok);
  CHECK(e2.ok);
  CHECK(runs_after_first == 2);
  CHECK(defensive_runs == 3);
  CHECK(after_first.grouped <= 2);
}

// ------------------------------------------------------------------------------------------------

namespace {

// Legacy code that answers every failure itself, its own transaction's included. Alone it works; inside
// a group its BEGIN fails ("cannot start a transaction within a transaction"), it catches that and
// returns false: nothing is thrown, so nothing tells asyncdb that it manages its own transaction. Two
// members with one body, because what asyncdb learns is per member and process-wide: one declared
// is_write, one left to routing; no other test calls them.
class catching_transaction_dao {
 public:
  explicit catching_transaction_dao(SQLite::Database& db) : db_(db) {}
  bool open_declared(const std::string& name) { return open(name); }
  bool open_undeclared(const std::string& name) { return open(name); }

 private:
  bool open(const std::string& name) {
    try {
      SQLite::Transaction t(db_);
      insert_user(db_, name);
      t.commit();
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

  SQLite::Database& db_;
};

// Calls the DAO member `Open` through async_db_operation; ok once it returned true.
template <auto Open>
net::awaitable<void> open_with(asyncdb::database& db, std::string name, outcome& out) {
  auto open = asyncdb::async_db_operation<Open>{}(db, name);
  co_await record_outcome(std::move(open), out, true);
}

// One plain write, then `n` calls of `Open`, all queued together behind the held writer.
template <auto Open>
asyncdb::stats catching_round(net::io_context& ctx, asyncdb::database& db, held_writer& w, const std::string& prefix,
                              outcome& plain, std::vector<outcome>& calls) {
  std::vector<net::awaitable<void>> ops;
  ops.push_back(insert_named(db, prefix + "-plain", plain));
  for (std::size_t i = 0; i < calls.size(); ++i)
    ops.push_back(open_with<Open>(db, prefix + std::to_string(i), calls[i]));
  return run_group(ctx, db, w, std::move(ops));
}

int count_ok(const std::vector<outcome>& calls) {
  int ok = 0;
  for (const outcome& o : calls) ok += o.ok ? 1 : 0;
  return ok;
}

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&catching_transaction_dao::open_declared> = true;

TEST_CASE("a DAO that catches the failure of its own BEGIN inside a group still writes and every call returns true",
          "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  constexpr std::size_t n = 50;
  held_writer declared_round, undeclared_round;
  outcome declared_plain, undeclared_plain;
  std::vector<outcome> declared(n), undeclared(n);
  asyncdb::stats after_declared, after_undeclared;
  {
    asyncdb::database db{dir.file(), grouping_options()};
    test::open_at_exit guard1{declared_round.gate};
    test::open_at_exit guard2{undeclared_round.gate};
    after_declared = catching_round<&catching_transaction_dao::open_declared>(ctx, db, declared_round, "declared",
                                                                              declared_plain, declared);
    // Undeclared: each call first runs on a reader, is caught writing there, and moves to the writer.
    after_undeclared = catching_round<&catching_transaction_dao::open_undeclared>(
        ctx, db, undeclared_round, "undeclared", undeclared_plain, undeclared);
  }

  CHECK(declared_round.unexpected == 0);
  CHECK(undeclared_round.unexpected == 0);
  INFO("plain writes: " << declared_plain.error << " / " << undeclared_plain.error);
  CHECK(declared_plain.ok);
  CHECK(undeclared_plain.ok);
  // Alone each call returns true and writes its row, so it must with group commit on too.
  CHECK(count_ok(declared) == static_cast<int>(n));
  CHECK(test::count_rows(dir.file(), "name LIKE 'declared%' AND name != 'declared-plain'") == n);
  CHECK(count_ok(undeclared) == static_cast<int>(n));
  CHECK(test::count_rows(dir.file(), "name LIKE 'undeclared%' AND name != 'undeclared-plain'") == n);
  // Their own transactions committed them, not the shared one: only the plain write of each round was grouped.
  CHECK(after_declared.grouped <= 1);
  CHECK(after_undeclared.grouped - after_declared.grouped <= 1);
  CHECK(test::rows_named(dir.file(), "declared-plain") == 1);
  CHECK(test::rows_named(dir.file(), "undeclared-plain") == 1);
}

// ------------------------------------------------------------------------------------------------

namespace {

void ledger_schema(SQLite::Database& c) {
  test::create_schema(c);
  if (!c.tableExists("accounts")) c.exec("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)");
}

// Two declared writes: one with a transaction of its own, one plain UPDATE that changes nothing (returns 0)
// when the account does not exist yet. No other test uses open_account, so this test uses it first.
class ledger_dao {
 public:
  explicit ledger_dao(SQLite::Database& db) : db_(db) {}
  int open_account(std::int64_t id) {
    SQLite::Transaction t(db_);
    SQLite::Statement q(db_, "INSERT INTO accounts(id, balance) VALUES(?, 0)");
    q.bind(1, id);
    q.exec();
    t.commit();
    return 1;
  }
  int deposit(std::int64_t id, std::int64_t amount) {
    SQLite::Statement q(db_, "UPDATE accounts SET balance = balance + ? WHERE id = ?");
    q.bind(1, amount);
    q.bind(2, id);
    return q.exec();
  }

 private:
  SQLite::Database& db_;
};

// Ok once it returned 1: the account was opened, or the deposit found it.
template <auto Member, class... Args>
net::awaitable<void> ledger_call(asyncdb::database& db, outcome& out, Args... args) {
  auto call = asyncdb::async_db_operation<Member>{}(db, args...);
  co_await record_outcome(std::move(call), out, 1);
}

std::int64_t balance_of(const std::filesystem::path& file, std::int64_t id) {
  SQLite::Database plain(file, SQLite::OPEN_READONLY);
  SQLite::Statement q(plain, "SELECT balance FROM accounts WHERE id = ?");
  q.bind(1, id);
  return q.executeStep() ? q.getColumn(0).getInt64() : -1;
}

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&ledger_dao::open_account> = true;
template <>
inline constexpr bool asyncdb::is_write<&ledger_dao::deposit> = true;

TEST_CASE(
    "declared writes take effect in the order they were started even when the first opens its own transaction "
    "inside a group",
    "[group_commit]") {
  test::temp_dir dir;
  net::io_context ctx;
  held_writer w;
  outcome opened, deposited;
  {
    asyncdb::options opts = grouping_options();
    opts.on_open = ledger_schema;
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{w.gate};
    const std::int64_t id = 1, amount = 10;
    run_group(ctx, db, w,
              group_of(ledger_call<&ledger_dao::open_account>(db, opened, id),
                       ledger_call<&ledger_dao::deposit>(db, deposited, id, amount)));
  }

  CHECK(w.unexpected == 0);
  INFO("open_account: " << opened.error << " / deposit: " << deposited.error);
  CHECK(opened.ok);
  CHECK(deposited.ok);  // the deposit, started after open_account, found the account
  CHECK(balance_of(dir.file(), 1) == 10);
}

// ------------------------------------------------------------------------------------------------

namespace {

// SQLite's primary error code at a write's co_await (SQLITE_OK when it succeeded, -1 for another exception).
net::awaitable<void> insert_recording_code(asyncdb::database& db, std::string name, int& code) {
  auto insert = [name](SQLite::Database& c) { insert_user(c, name); };
  try {
    co_await asyncdb::async_run(db, insert);
    code = SQLITE_OK;
  } catch (const SQLite::Exception& e) {
    code = e.getErrorCode() & 0xff;
  } catch (...) {
    code = -1;
  }
}

// Four writes queued together behind a held writer while another connection (another process, as far as
// SQLite's locking goes) holds the write lock; returns how long they took, from their start to the last
// one's failure.
std::chrono::steady_clock::duration writes_behind_foreign_lock(const std::filesystem::path& file, bool group_commit,
                                                               std::vector<int>& codes) {
  net::io_context ctx;
  held_writer w;
  asyncdb::options opts = grouping_options();
  opts.busy_timeout = 300ms;
  opts.group_commit.enabled = group_commit;
  asyncdb::database db{file, opts};
  test::open_at_exit guard{w.gate};
  SQLite::Database other(file, SQLite::OPEN_READWRITE);
  other.exec("BEGIN IMMEDIATE");
  struct release_at_exit {  // before the database closes, even when the test fails half-way
    SQLite::Database& c;
    ~release_at_exit() { c.exec("ROLLBACK"); }
  } release{other};
  std::vector<net::awaitable<void>> ops;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    ops.push_back(insert_recording_code(db, "locked" + std::to_string(i), codes[i]));
  }
  const auto start = std::chrono::steady_clock::now();
  run_group(ctx, db, w, std::move(ops));
  return std::chrono::steady_clock::now() - start;
}

}  // namespace

TEST_CASE("with another process holding the lock group commit makes no write wait busy_timeout twice",
          "[group_commit]") {
  test::temp_dir dir;
  std::vector<int> codes_off(4, -2), codes_on(4, -2);
  const auto off = writes_behind_foreign_lock(dir.file("off.db"), false, codes_off);
  const auto on = writes_behind_foreign_lock(dir.file("on.db"), true, codes_on);

  using ms = std::chrono::milliseconds;
  INFO("group commit off: " << std::chrono::duration_cast<ms>(off).count()
                            << " ms, on: " << std::chrono::duration_cast<ms>(on).count() << " ms");
  for (std::size_t i = 0; i < codes_on.size(); ++i) {
    INFO("write " << i);
    CHECK(codes_off[i] == SQLITE_BUSY);
    CHECK(codes_on[i] == SQLITE_BUSY);
  }
  // Each write waits at most busy_timeout for the other process's lock, with or without group commit.
  CHECK(std::chrono::duration<double>(on).count() <= 1.3 * std::chrono::duration<double>(off).count());
  CHECK(test::count_rows(dir.file("on.db")) == 0);
}

// ------------------------------------------------------------------------------------------------

namespace {

// The second write of a group runs a statement that never ends: its recursive CTE goes on while
// keep_going() says 1, which it does until `give_up`, set only to end a test that failed instead of
// hanging it (the statement is asyncdb's to stop, by the cancellation).
struct endless_write_state {
  held_writer w;
  std::atomic<bool> stepping{false};  // keep_going() was called: the endless statement is running
  std::atomic<bool> give_up{false};
  net::cancellation_signal signal;
  bool first_done = false;
  std::exception_ptr first_error;
  std::int64_t first_id = -1;
  bool victim_done = false;
  asyncdb::error_code victim_code;
  bool first_in_time = false;
  bool victim_in_time = false;
};

void keep_going(sqlite3_context* ctx, int, sqlite3_value**) {
  auto* st = static_cast<endless_write_state*>(sqlite3_user_data(ctx));
  st->stepping = true;
  sqlite3_result_int(ctx, st->give_up ? 0 : 1);
}

// A write statement (so SQLite answers its interruption by rolling back the whole transaction) that
// never inserts anything and never ends.
constexpr const char* endless_insert =
    "INSERT INTO users(name, email) SELECT 'endless' || i, 'e@x' FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
    "SELECT i + 1 FROM n WHERE keep_going()) SELECT i FROM n) WHERE i < 0";

// As test::poll_until, but reports a passed deadline instead of throwing, so the test can still unblock a hang.
template <class Pred>
net::awaitable<bool> done_within(Pred& done, std::chrono::milliseconds deadline) {
  net::steady_timer timer{co_await net::this_coro::executor};
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) co_return false;
    timer.expires_after(1ms);
    co_await timer.async_wait(net::use_awaitable);
  }
  co_return true;
}

// Queues a plain write and the endless one behind the held writer, releases it, cancels the endless write
// once its statement runs (second in the group), and waits (5 s at most) for both to complete.
net::awaitable<void> cancel_endless_second(asyncdb::database& db, endless_write_state& st) {
  auto ex = co_await net::this_coro::executor;
  endless_write_state* s = &st;  // handlers hold pointers, never the frame's references
  auto count = [s](std::exception_ptr e) {
    if (e) ++s->w.unexpected;
    ++s->w.finished;
  };
  net::co_spawn(ex, hold(db, st.w), count);
  co_await test::until_set(st.w.entered);

  auto first = [](SQLite::Database& c) {
    insert_user(c, "first");
    return c.getLastInsertRowid();
  };
  auto first_done = [s](std::exception_ptr e, std::int64_t id) {
    s->first_error = e;
    s->first_id = id;
    s->first_done = true;
  };
  asyncdb::async_run(db, first, net::bind_executor(ex, first_done));
  auto one_queued = [&db] { return db.stats().queued == 1; };
  co_await test::poll_until(one_queued);

  auto endless = [](SQLite::Database& c) {
    insert_user(c, "victim");
    c.exec(endless_insert);
  };
  auto victim_done = [s](std::exception_ptr e) {
    s->victim_code = test::code_of(e);
    s->victim_done = true;
  };
  asyncdb::async_run(db, endless, net::bind_cancellation_slot(st.signal.slot(), net::bind_executor(ex, victim_done)));
  auto two_queued = [&db] { return db.stats().queued == 2; };
  co_await test::poll_until(two_queued);

  st.w.gate.open();
  co_await test::until_set(st.stepping);
  st.signal.emit(net::cancellation_type::terminal);
  auto both_done = [s] { return s->first_done && s->victim_done; };
  co_await done_within(both_done, 5s);
  st.first_in_time = st.first_done;
  st.victim_in_time = st.victim_done;
}

std::int64_t id_named(const std::filesystem::path& file, const std::string& name) {
  SQLite::Database plain(file, SQLite::OPEN_READONLY);
  SQLite::Statement q(plain, "SELECT id FROM users WHERE name = ?");
  q.bind(1, name);
  return q.executeStep() ? q.getColumn(0).getInt64() : -1;
}

}  // namespace

TEST_CASE("a never-ending write second in a group can be cancelled and the first still lands and close() returns",
          "[group_commit][cancellation]") {
  test::temp_dir dir;
  endless_write_state st;  // outlives the database: its connections call keep_going()
  net::io_context ctx;
  bool scenario_done = false;
  std::exception_ptr scenario_error;
  bool closed_in_time = false;
  {
    asyncdb::options opts = grouping_options();
    endless_write_state* s = &st;
    opts.on_open = [s](SQLite::Database& c) {
      test::create_schema(c);
      c.createFunction("keep_going", 0, false, s, &keep_going);
    };
    asyncdb::database db{dir.file(), opts};
    test::open_at_exit guard{st.w.gate};
    struct give_up_at_exit {  // before the database joins its threads, even when the test fails half-way
      std::atomic<bool>& give_up;
      ~give_up_at_exit() { give_up = true; }
    } unblock{st.give_up};

    net::co_spawn(ctx, cancel_endless_second(db, st), [&](std::exception_ptr e) {
      scenario_error = e;
      scenario_done = true;
      ctx.stop();  // operations a failing library never completed keep the context busy
    });
    ctx.run_for(60s);

    std::promise<void> closed;
    std::future<void> closing = closed.get_future();
    std::thread closer([&db, &closed] {
      db.close();
      closed.set_value();
    });
    closed_in_time = closing.wait_for(5s) == std::future_status::ready;
    st.give_up = true;  // a write still running ends now, so that close() returns and the test fails, not hangs
    closer.join();
    ctx.restart();
    ctx.run_for(10s);  // completions that came too late
  }

  REQUIRE(scenario_done);
  if (scenario_error) std::rethrow_exception(scenario_error);
  CHECK(st.w.unexpected == 0);
  CHECK(st.victim_in_time);
  CHECK(st.victim_code == net::error::operation_aborted);
  CHECK(st.first_in_time);
  outcome first;
  if (st.first_error) record_failure(first, st.first_error);
  INFO("first: " << first.error);
  CHECK_FALSE(st.first_error);
  CHECK(closed_in_time);
  CHECK(test::rows_named(dir.file(), "victim") == 0);  // its first statement ran inside the shared transaction
  CHECK(test::rows_named(dir.file(), "first") == 1);
  CHECK(st.first_id == id_named(dir.file(), "first"));  // the first write's own result, from its final run
}
