// asyncdb::postgres::database's shutdown (issue 12, rule 6): close() with work queued and running, and the
// callers' io_context destroyed first. max_queued is the conformance suite's (tests/contract).
#include "pg_support.hpp"

#include "faults/fault_support.hpp"

#include <deque>
#include <memory>

using namespace std::chrono_literals;

namespace {

// Starts an operation on a primary connection that waits at `g`; `entered` counts the ones that run.
void block_connection(asyncdb::postgres::database& pg, const asio::any_io_executor& ex, test::gate& g,
                      std::atomic<int>& entered, test::completion& out) {
  auto block = [&g, &entered](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    t.exec("SELECT 1");
    ++entered;
    g.wait();
  };
  asyncdb::async_run(pg, block, asio::bind_executor(ex, test::record_into(out)));
}

// Inserts a user named `name` on the primary; `calls` counts the completions it gets.
void insert_named(asyncdb::postgres::database& pg, const asio::any_io_executor& ex, std::string name,
                  test::completion& out, std::atomic<int>& calls) {
  auto insert = [name](pqxx::connection& c) {
    pqxx::work w{c};
    w.exec_params("INSERT INTO users(name, email) VALUES ($1, 'q@x')", name);
    w.commit();
  };
  auto record = [&out, &calls](std::exception_ptr e) {
    ++calls;
    out.error = test::code_of(e);
    out.done = true;
  };
  asyncdb::async_run(pg, insert, asio::bind_executor(ex, record));
}

template <class Pred>
void run_until(asio::io_context& ctx, Pred done, std::chrono::seconds deadline = 20s) {
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) FAIL("run_until: deadline passed");
    if (ctx.stopped()) ctx.restart();  // out of work between two operations
    ctx.run_one_for(1ms);
  }
}

std::int64_t rows_named(const pgtest::schema& s, const std::string& name) {
  return s.exec("SELECT count(*) FROM users WHERE name = '" + name + "'")[0][0].as<std::int64_t>();
}

}  // namespace

TEST_CASE("close() on PostgreSQL with operations queued and running completes each once and returns in bounded time",
          "[postgres][shutdown]") {
  constexpr int queued = 6;
  pgtest::schema s;
  std::optional<asyncdb::postgres::database> pg;
  pg.emplace(s.options(2, 1, false));
  asio::io_context ctx;
  test::gate g;
  test::open_at_exit guard{g};
  std::atomic<int> entered{0};
  test::completion blockers[2];
  for (auto& b : blockers) block_connection(*pg, ctx.get_executor(), g, entered, b);
  run_until(ctx, [&] { return entered == 2; });

  test::completion ops[queued];
  std::atomic<int> calls{0};
  for (int i = 0; i < queued; ++i) insert_named(*pg, ctx.get_executor(), "c" + std::to_string(i), ops[i], calls);
  // A read on the read-only connection, running at the same time.
  std::atomic<bool> read_started{false};
  auto slow_read = [&read_started](pqxx::connection& c) {
    read_started = true;
    pqxx::nontransaction t{c};
    return t.exec1("SELECT pg_sleep(0.3), 1")[1].as<int>();
  };
  test::completion read_done;
  asyncdb::async_run(*pg, asyncdb::read_only, slow_read,
                     asio::bind_executor(ctx, [&read_done](std::exception_ptr e, int) {
                       read_done.error = test::code_of(e);
                       read_done.done = true;
                     }));
  run_until(ctx, [&] { return read_started.load() && pg->stats().queued == queued; });

  std::atomic<bool> closed{false};
  std::thread closer;
  std::deque<test::completion> probes;
  std::atomic<int> probe_calls{0};
  {
    faults::watchdog dog{20s, "postgres close() with work in flight"};
    closer = std::thread([&] {
      pg->close();
      closed = true;
    });
    // Intake stops at once: probes sent while close() starts are either accepted (then they run like the
    // queued ones) or refused with errc::closed, while the connections are still held.
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    bool refused = false;
    while (!refused && std::chrono::steady_clock::now() < give_up) {
      test::completion& p = probes.emplace_back();
      insert_named(*pg, ctx.get_executor(), "late" + std::to_string(probes.size()), p, probe_calls);
      ctx.restart();
      ctx.run_for(2ms);
      refused = p.done && p.error == asyncdb::errc::closed;
    }
    CHECK(refused);
    CHECK_FALSE(closed.load());  // close() waits for what is running
    g.open();
    run_until(ctx, [&] { return closed.load(); });
    closer.join();
  }
  run_until(ctx, [&] {
    return calls == queued && probe_calls == static_cast<int>(probes.size()) && blockers[0].done && blockers[1].done &&
           read_done.done;
  });
  ctx.restart();
  ctx.run_for(50ms);
  CHECK(calls == queued);  // exactly once each
  CHECK_FALSE(blockers[0].error);
  CHECK_FALSE(blockers[1].error);
  CHECK_FALSE(read_done.error);
  for (int i = 0; i < queued; ++i) {
    const bool ok = !ops[i].error;
    CHECK((ok || ops[i].error == asyncdb::errc::closed));
    CHECK(rows_named(s, "c" + std::to_string(i)) == (ok ? 1 : 0));
  }
  CHECK(probe_calls == static_cast<int>(probes.size()));
  for (std::size_t i = 0; i < probes.size(); ++i) {
    CHECK(probes[i].done);
    const bool ok = !probes[i].error;
    CHECK((ok || probes[i].error == asyncdb::errc::closed));
    CHECK(rows_named(s, "late" + std::to_string(i + 1)) == (ok ? 1 : 0));
  }
  for (const auto& c : pg->stats().connections) CHECK(c.status == asyncdb::postgres::connection_stats::state::closed);
  pg.reset();
}

namespace {

using pgtest::UserCreate;

struct frames {
  std::atomic<int> alive{0};
  std::atomic<int> resumed{0};
};
struct in_frame {
  explicit in_frame(frames& f) : f_(f) { ++f_.alive; }
  in_frame(const in_frame&) = delete;
  in_frame& operator=(const in_frame&) = delete;
  ~in_frame() { --f_.alive; }
  frames& f_;
};

asio::awaitable<void> await_blocked(asyncdb::postgres::database& pg, test::gate& g, std::atomic<int>& entered,
                                    std::atomic<bool>& left, frames& f) {
  in_frame counted{f};
  auto block = [&](pqxx::connection& c) {
    ++entered;
    g.wait();
    pqxx::work w{c};
    w.exec("INSERT INTO users(name, email) VALUES ('blocker', 'b@x')");
    w.commit();
    left = true;
  };
  try {
    co_await asyncdb::async_run(pg, block);
  } catch (...) {
  }
  ++f.resumed;
}

asio::awaitable<void> await_queued(asyncdb::postgres::database& pg, int i, frames& f) {
  in_frame counted{f};
  pgtest::AsyncPgUserOper users{pg};
  UserCreate u{"queued" + std::to_string(i), "q@x"};
  try {
    co_await users.call<&pgtest::PgUserOper::add>(u);
  } catch (...) {
  }
  ++f.resumed;
}

}  // namespace

TEST_CASE("destroying the io_context before the PostgreSQL database with operations in flight is safe",
          "[postgres][shutdown][io_context]") {
  constexpr int queued = 4;
  pgtest::schema s;
  std::optional<asyncdb::postgres::database> pg;
  pg.emplace(s.options(1, 0, false));
  test::gate g;
  test::open_at_exit guard{g};
  std::atomic<int> entered{0};
  std::atomic<bool> left{false};
  frames f;
  auto ctx = std::make_unique<asio::io_context>();
  asio::co_spawn(*ctx, await_blocked(*pg, g, entered, left, f), asio::detached);
  for (int i = 0; i < queued; ++i) asio::co_spawn(*ctx, await_queued(*pg, i, f), asio::detached);
  run_until(*ctx, [&] { return entered == 1 && pg->stats().queued == queued; });
  REQUIRE(f.alive == queued + 1);

  faults::watchdog dog{20s, "postgres database outliving its io_context"};
  ctx.reset();
  CHECK(f.alive == 0);  // every suspended coroutine was destroyed with its context
  CHECK_FALSE(left.load());

  g.open();
  pg.reset();  // runs the queue into handlers whose io_context is gone
  CHECK(left.load());
  CHECK(f.resumed == 0);
  CHECK(rows_named(s, "blocker") == 1);
  for (int i = 0; i < queued; ++i) CHECK(rows_named(s, "queued" + std::to_string(i)) == 1);
}

namespace {

// The SQLSTATE of a pqxx::sql_error in `e`; empty for anything else (or nothing).
std::string sqlstate_of(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const pqxx::sql_error& s) {
    return s.sqlstate();
  } catch (...) {
    return {};
  }
}

struct outcome {
  std::atomic<bool> done{false};
  std::exception_ptr error;
};

}  // namespace

TEST_CASE("close() on PostgreSQL cancels what still runs past close_grace and fails what has not started",
          "[postgres][shutdown]") {
  pgtest::schema s;
  auto o = s.options(2, 0, false);
  o.close_grace = 300ms;
  std::optional<asyncdb::postgres::database> pg;
  pg.emplace(std::move(o));
  asio::io_context ctx;
  std::atomic<int> entered{0};

  // One statement that never ends, after a write of the same transaction.
  auto endless = [&entered](pqxx::connection& c) {
    pqxx::work w{c};
    w.exec("INSERT INTO users(name, email) VALUES ('endless', 'e@x')");
    ++entered;
    w.exec("SELECT pg_sleep(3600)");
    w.commit();
  };
  // Between two statements as the grace ends: the server ignores a cancel that finds its backend idle, so
  // close() repeats it until the operation ends, and the endless statement that follows is cancelled too.
  auto late = [&entered](pqxx::connection& c) {
    pqxx::work w{c};
    w.exec("INSERT INTO users(name, email) VALUES ('late', 'l@x')");
    ++entered;
    std::this_thread::sleep_for(600ms);  // on the client, past the 300 ms grace
    w.exec("SELECT pg_sleep(3600)");
    w.commit();
  };
  std::atomic<bool> queued_ran{false};
  auto queued = [&queued_ran](pqxx::connection& c) {
    queued_ran = true;
    pqxx::work w{c};
    w.exec("INSERT INTO users(name, email) VALUES ('queued', 'q@x')");
    w.commit();
  };
  outcome results[3];
  auto record = [](outcome& r) {
    return [&r](std::exception_ptr e) {
      r.error = e;
      r.done = true;
    };
  };
  asyncdb::async_run(*pg, endless, asio::bind_executor(ctx, record(results[0])));
  asyncdb::async_run(*pg, late, asio::bind_executor(ctx, record(results[1])));
  run_until(ctx, [&] { return entered == 2; });
  asyncdb::async_run(*pg, queued, asio::bind_executor(ctx, record(results[2])));
  run_until(ctx, [&] { return pg->stats().queued == 1; });

  std::atomic<bool> closed{false};
  const auto start = std::chrono::steady_clock::now();
  {
    faults::watchdog dog{30s, "postgres close() past its grace"};
    std::thread closer([&] {
      pg->close();
      closed = true;
    });
    run_until(
        ctx, [&] { return closed.load() && results[0].done && results[1].done && results[2].done; }, 25s);
    closer.join();
  }
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(took >= 300ms);                             // the grace was given
  CHECK(sqlstate_of(results[0].error) == "57014");  // query_canceled, from the server
  CHECK(sqlstate_of(results[1].error) == "57014");
  CHECK(test::code_of(results[2].error) == asyncdb::errc::closed);
  CHECK_FALSE(queued_ran.load());
  // Nothing of the cancelled transactions, nor of the refused one, was written.
  CHECK(rows_named(s, "endless") == 0);
  CHECK(rows_named(s, "late") == 0);
  CHECK(rows_named(s, "queued") == 0);
  const auto st = pg->stats();
  CHECK(st.failed == 3);
  CHECK(st.completed == 0);
}
