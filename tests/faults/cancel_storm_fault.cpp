// Case 5 of the fault suite: a cancellation storm. Thousands of operations of every kind (plain reads,
// writes that share group commits, slow writes, writes with a transaction and a COMMIT of their own, write
// sessions, sessions being opened) on an io_context run by four threads, each cancelled at a random moment:
// at once (queued), after a random delay (queued, running, inside a group, in its own COMMIT), or never.
// Afterwards every operation completed exactly once, each success is in the file, each operation_aborted
// left nothing, no transaction is open, the file is sound, and stats() adds up.
#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/use_future.hpp>

#include <sqlite3.h>

#include <cmath>
#include <deque>
#include <random>

#include "fault_support.hpp"
#include "support.hpp"

namespace {

using namespace std::chrono_literals;

enum class kind : int { read, write, slow_write, own_transaction, session_write, session_open, count };
const char* kind_name(kind k) {
  static const char* names[] = {"read",          "write",       "slow write", "own-transaction write",
                                "write session", "session open"};
  return names[static_cast<int>(k)];
}
enum class when : int { never, at_once, delayed };
enum outcome : int { none = -1, ok, aborted, other };

// Keys of an own-transaction write's second row: key + this.
constexpr std::int64_t second_row = 1'000'000;

// One operation of the storm. Everything about it runs on its strand: the initiation, the timer that
// emits its cancellation and its completion, as Asio requires of a cancellation signal and its slot.
struct storm_op {
  storm_op(asio::io_context& ctx, std::int64_t k, kind what, when w, std::chrono::microseconds d)
      : strand(asio::make_strand(ctx)), timer(strand), key(k), what(what), cancel_when(w), delay(d) {}
  asio::strand<asio::io_context::executor_type> strand;
  asio::cancellation_signal signal;
  asio::steady_timer timer;
  std::int64_t key;
  kind what;
  when cancel_when;
  std::chrono::microseconds delay;
  std::atomic<int> completions{0};
  std::atomic<int> result{none};
  std::atomic<bool> started{false};         // its database code began
  std::atomic<bool> reached_commit{false};  // an own-transaction write got to its COMMIT
  std::string error;                        // what an unexpected failure said
};

struct storm {
  asyncdb::database& db;
  std::atomic<std::uint64_t> submitted{0};  // asyncdb operations initiated (a session's each count)
  std::atomic<int> finished{0};
};

outcome classify(const std::exception_ptr& e, std::string& why) {
  if (!e) return ok;
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& s) {
    if (s.code() == asio::error::operation_aborted) return aborted;
    why = s.what();
  } catch (const std::exception& s) {
    why = s.what();
  } catch (...) {
    why = "a non-standard exception";
  }
  return other;
}

void finish(storm& s, storm_op& op, const std::exception_ptr& e) {
  op.result = classify(e, op.error);
  ++op.completions;
  op.timer.cancel();
  ++s.finished;
}

std::string insert_sql(std::int64_t k) { return "INSERT INTO t(k) VALUES(" + std::to_string(k) + ")"; }

// A write session: open, BEGIN, insert, COMMIT. Cancellation reaches whichever step is in flight; the
// coroutine then ends, and the session's end rolls back whatever it began.
asio::awaitable<void> session_write(storm& s, storm_op& op) {
  co_await asio::this_coro::throw_if_cancelled(false);  // so that every step it reaches is initiated
  ++s.submitted;
  asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(s.db);
  op.started = true;
  ++s.submitted;
  co_await session.begin();
  auto insert = [k = op.key](SQLite::Database& c) { c.exec(insert_sql(k)); };
  ++s.submitted;
  co_await session.run(insert);
  ++s.submitted;
  co_await session.commit();
}

// A session being opened (write or read by key parity), released at once.
asio::awaitable<void> session_open(storm& s, storm_op& op) {
  co_await asio::this_coro::throw_if_cancelled(false);
  ++s.submitted;
  if (op.key % 2 == 0) {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(s.db);
  } else {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(s.db, asyncdb::read_only);
  }
}

// On the op's strand: initiates it, then arranges its cancellation.
void launch(storm& s, storm_op& op) {
  auto done = asio::bind_cancellation_slot(
      op.signal.slot(), asio::bind_executor(op.strand, [&s, &op](std::exception_ptr e) { finish(s, op, e); }));
  const std::int64_t k = op.key;
  switch (op.what) {
    case kind::read: {
      auto fn = [&op, k](SQLite::Database& c) {
        op.started = true;
        return c.execAndGet("SELECT count(*) FROM t WHERE k <= " + std::to_string(k)).getInt64();
      };
      ++s.submitted;
      asyncdb::async_run(
          s.db, asyncdb::read_only, fn,
          asio::bind_cancellation_slot(
              op.signal.slot(),
              asio::bind_executor(op.strand, [&s, &op](std::exception_ptr e, std::int64_t) { finish(s, op, e); })));
      break;
    }
    case kind::write: {
      auto fn = [&op, k](SQLite::Database& c) {
        op.started = true;
        c.exec(insert_sql(k));
      };
      ++s.submitted;
      asyncdb::async_run(s.db, fn, done);
      break;
    }
    case kind::slow_write: {
      // Writes, then computes for a while: long enough for a cancellation to land while it runs.
      auto fn = [&op, k](SQLite::Database& c) {
        op.started = true;
        c.exec(insert_sql(k));
        c.execAndGet(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
            "SELECT count(*) FROM n");
      };
      ++s.submitted;
      asyncdb::async_run(s.db, fn, done);
      break;
    }
    case kind::own_transaction: {
      auto fn = [&op, k](SQLite::Database& c) {
        op.started = true;
        c.exec("BEGIN IMMEDIATE");
        c.exec(insert_sql(k));
        c.exec(insert_sql(k + second_row));
        op.reached_commit = true;
        c.exec("COMMIT");
      };
      ++s.submitted;
      asyncdb::async_run(s.db, fn, done);
      break;
    }
    case kind::session_write:
      asio::co_spawn(op.strand, session_write(s, op), done);
      break;
    case kind::session_open:
      asio::co_spawn(op.strand, session_open(s, op), done);
      break;
    case kind::count:
      break;
  }
  if (op.cancel_when == when::at_once) {
    op.signal.emit(asio::cancellation_type::terminal);
  } else if (op.cancel_when == when::delayed) {
    op.timer.expires_after(op.delay);
    op.timer.async_wait(asio::bind_executor(op.strand, [&op](std::error_code ec) {
      if (!ec) op.signal.emit(asio::cancellation_type::terminal);
    }));
  }
}

struct storm_figures {
  int ops = 0;
  int by_kind[static_cast<int>(kind::count)][3] = {};  // [kind][ok, aborted, other]
  int aborted_queued = 0, aborted_running = 0, aborted_at_commit = 0;
  std::uint64_t group_commits = 0, grouped = 0;
  double seconds = 0;
};

}  // namespace

TEST_CASE("a cancellation storm leaves every outcome exact and the database clean", "[faults][cancel]") {
  const int total = static_cast<int>(faults::env_number("ASYNCDB_FAULT_STORM_OPS", 10000));
  const int wave = 50;  // operations in flight at once: enough for groups, few enough to reach running ones
  faults::watchdog dog(std::chrono::seconds(120 + total / 50), "cancellation storm");
  faults::scratch_dir dir;
  const std::uint32_t seed =
      static_cast<std::uint32_t>(faults::env_number("ASYNCDB_FAULT_SEED", std::random_device{}()));
  std::printf("cancel storm: %d operations, seed %u (ASYNCDB_FAULT_SEED to repeat)\n", total, seed);
  std::mt19937 rng(seed);

  asyncdb::options o;
  o.readers = 2;
  // NORMAL: no fsync per commit (durability is case 1's subject); a commit then takes microseconds, as long
  // as a statement, so cancellations land as often on running operations as on queued ones.
  o.on_open = [](SQLite::Database& c) {
    c.exec("PRAGMA synchronous=NORMAL");
    c.exec("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY)");
  };
  asio::io_context ctx;
  auto work = asio::make_work_guard(ctx);
  std::deque<storm_op> ops;
  storm_figures fig;
  asyncdb::stats st;
  std::uint64_t submitted = 0;
  const auto start = std::chrono::steady_clock::now();
  {
    asyncdb::database db(dir.file(), o);
    storm s{db};
    std::vector<std::thread> loop;
    for (int i = 0; i < 4; ++i) loop.emplace_back([&] { ctx.run_for(std::chrono::seconds(120 + total / 50)); });
    std::discrete_distribution<int> pick_kind({20, 30, 15, 10, 15, 10});
    std::discrete_distribution<int> pick_when({15, 15, 70});
    // Log-uniform from 20 us to 80 ms: as many cancellations land on queued operations as on running ones
    // and on ones that have just completed, whatever this machine's speed.
    std::uniform_real_distribution<double> pick_delay(std::log(20.0), std::log(80000.0));
    for (int launched = 0; launched < total;) {
      const int n = std::min(wave, total - launched);
      for (int i = 0; i < n; ++i, ++launched) {
        ops.emplace_back(ctx, launched, static_cast<kind>(pick_kind(rng)), static_cast<when>(pick_when(rng)),
                         std::chrono::microseconds(static_cast<long>(std::exp(pick_delay(rng)))));
        storm_op& op = ops.back();
        asio::post(op.strand, [&s, &op] { launch(s, op); });
      }
      // The next wave starts once this one has completed: a hang fails here, not in CI's timeout.
      auto wave_done = [&] { return s.finished.load() >= launched; };
      const auto give_up = std::chrono::steady_clock::now() + 60s;
      while (!wave_done() && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(1ms);
      REQUIRE(wave_done());
    }
    // No transaction open on any connection: the writer, and (several times over) the readers.
    auto autocommit = [](SQLite::Database& c) { return sqlite3_get_autocommit(c.getHandle()) != 0; };
    CHECK(asyncdb::async_run(db, autocommit, asio::use_future).get());
    for (int i = 0; i < 8; ++i) CHECK(asyncdb::async_run(db, asyncdb::read_only, autocommit, asio::use_future).get());
    st = db.stats();
    submitted = s.submitted.load() + 9;
    db.close();
    work.reset();
    for (auto& t : loop) t.join();
  }
  fig.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  SQLite::Database check(dir.file(), SQLite::OPEN_READONLY);
  CHECK(check.execAndGet("PRAGMA integrity_check").getString() == "ok");
  std::set<std::int64_t> keys;
  {
    SQLite::Statement q(check, "SELECT k FROM t");
    while (q.executeStep()) keys.insert(q.getColumn(0).getInt64());
  }
  int not_once = 0, wrong_rows = 0, unexpected = 0;
  for (const storm_op& op : ops) {
    ++fig.ops;
    if (op.completions != 1) ++not_once;
    const int r = op.result;
    if (r >= 0) ++fig.by_kind[static_cast<int>(op.what)][r];
    if (r == other) {
      ++unexpected;
      UNSCOPED_INFO(kind_name(op.what) << " " << op.key << " failed: " << op.error);
    }
    if (r == aborted) {
      if (op.reached_commit) {
        ++fig.aborted_at_commit;
      } else if (op.started) {
        ++fig.aborted_running;
      } else {
        ++fig.aborted_queued;
      }
    }
    const bool writes = op.what == kind::write || op.what == kind::slow_write || op.what == kind::own_transaction ||
                        op.what == kind::session_write;
    const bool present = keys.count(op.key) > 0;
    if (writes && present != (r == ok)) ++wrong_rows;
    if (!writes && present) ++wrong_rows;
    if (op.what == kind::own_transaction && keys.count(op.key + second_row) != (present ? 1u : 0u)) ++wrong_rows;
  }
  fig.group_commits = st.group_commits;
  fig.grouped = st.grouped;

  std::printf(
      "cancel storm: %d ops in %.1f s; aborted while queued %d, while running %d, at their own COMMIT %d; "
      "%llu group commits carried %llu writes\n",
      fig.ops, fig.seconds, fig.aborted_queued, fig.aborted_running, fig.aborted_at_commit,
      static_cast<unsigned long long>(fig.group_commits), static_cast<unsigned long long>(fig.grouped));
  for (int k = 0; k < static_cast<int>(kind::count); ++k) {
    std::printf("cancel storm:   %-22s ok %5d  aborted %5d  other %d\n", kind_name(static_cast<kind>(k)),
                fig.by_kind[k][ok], fig.by_kind[k][aborted], fig.by_kind[k][other]);
  }
  std::printf("cancel storm: stats completed %llu failed %llu cancelled %llu rejected %llu, submitted %llu\n",
              static_cast<unsigned long long>(st.completed), static_cast<unsigned long long>(st.failed),
              static_cast<unsigned long long>(st.cancelled), static_cast<unsigned long long>(st.rejected),
              static_cast<unsigned long long>(submitted));
  std::fflush(stdout);

  CHECK(not_once == 0);
  CHECK(unexpected == 0);
  CHECK(wrong_rows == 0);
  CHECK(st.completed + st.failed + st.cancelled + st.rejected == submitted);
  CHECK(st.queued == 0);
  CHECK(st.running == 0);
  // The storm reached operations in each state, else it proves less than it claims.
  CHECK(fig.aborted_queued > 0);
  CHECK(fig.aborted_running > 0);
  CHECK(fig.group_commits > 0);
}
