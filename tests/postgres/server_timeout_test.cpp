// Budgets on the server (issue 19): an operation's budget is also the server's statement_timeout for it, so
// that a client that dies, or a cancel request that is lost, leaves nothing running past the budget.
#include "pg_support.hpp"

#include <asio/bind_executor.hpp>
#include <asio/use_future.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdlib>
#include <future>
#include <string>
#include <vector>

extern char** environ;

using namespace std::chrono_literals;

namespace {
// What the server applies to the statement running now, in milliseconds (0: no limit), and who runs it.
struct server_timeout {
  std::int64_t ms = -1;
  int pid = 0;
};

server_timeout show_timeout(pqxx::connection& c) {
  pqxx::nontransaction t{c};
  const pqxx::row r =
      t.exec1("SELECT setting::bigint, pg_backend_pid() FROM pg_settings WHERE name = 'statement_timeout'");
  return {r[0].as<std::int64_t>(), r[1].as<int>()};
}

// Awaits show_timeout on `pg`, with a per-call budget when `budget` is not zero.
asio::awaitable<server_timeout> timeout_seen(asyncdb::postgres::database& pg, std::chrono::milliseconds budget) {
  if (budget.count() == 0) co_return co_await asyncdb::async_run(pg, show_timeout);
  co_return co_await asyncdb::async_run(pg, show_timeout, asyncdb::budget(budget));
}

// The margin asyncdb adds to a budget on the server (docs/postgres.md).
constexpr std::int64_t margin_ms = asyncdb::detail::pg::statement_timeout::margin.count();
}  // namespace

TEST_CASE(
    "a budgeted PostgreSQL operation runs under a statement_timeout of its budget, and the next unbudgeted one "
    "under the connection's own",
    "[postgres][budget]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  asio::io_context ctx;
  const server_timeout before = test::run(ctx, timeout_seen(pg, 0ms));
  const server_timeout budgeted = test::run(ctx, timeout_seen(pg, 2000ms));
  const server_timeout tighter = test::run(ctx, timeout_seen(pg, 700ms));
  const server_timeout after = test::run(ctx, timeout_seen(pg, 0ms));
  CHECK(budgeted.pid == before.pid);  // one connection throughout
  CHECK(after.pid == before.pid);
  // The budget, and not much more: the client's own cancel comes first, the server's is the backstop.
  CHECK(budgeted.ms >= 2000);
  CHECK(budgeted.ms <= 2000 + margin_ms);
  CHECK(tighter.ms >= 700);
  CHECK(tighter.ms <= 700 + margin_ms);
  CHECK(after.ms == before.ms);
}

TEST_CASE(
    "under a database-wide PostgreSQL budget a longer per-call budget raises the server's limit and the "
    "default comes back after it",
    "[postgres][budget]") {
  pgtest::schema s;
  asyncdb::postgres::options o = s.options(1, 0, false);
  o.operation_budget = 1500ms;
  asyncdb::postgres::database pg{o};
  asio::io_context ctx;
  const server_timeout by_default = test::run(ctx, timeout_seen(pg, 0ms));
  const server_timeout longer = test::run(ctx, timeout_seen(pg, 4000ms));
  const server_timeout again = test::run(ctx, timeout_seen(pg, 0ms));
  CHECK(by_default.ms >= 1500);
  CHECK(by_default.ms <= 1500 + margin_ms);
  // Never below the operation's own budget: the server must not stop it before its deadline.
  CHECK(longer.ms >= 4000);
  CHECK(longer.ms <= 4000 + margin_ms);
  CHECK(again.ms == by_default.ms);
}

TEST_CASE(
    "a PostgreSQL operation that the server stops past its budget, before the client cancels, completes "
    "with deadline_exceeded",
    "[postgres][budget]") {
  pgtest::schema s;
  asyncdb::postgres::database pg{s.options(1, 0, false)};
  // The budget's timer runs on the handler's executor: an io_context nobody runs yet, so the client never
  // sends its cancel request and only the server's statement_timeout can end the sleep.
  asio::io_context stalled;
  std::exception_ptr outcome;
  bool completed = false;
  auto sleeper = [](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    t.exec("SELECT pg_sleep(60) /* asyncdb-backstop */");
    return 1;
  };
  auto record = [&](std::exception_ptr ep, int) {
    outcome = ep;
    completed = true;
  };
  asyncdb::async_run(pg, sleeper, asyncdb::budget(300ms, asio::bind_executor(stalled, record)));
  // Counted on the connection's thread before the completion is posted to `stalled`.
  auto ended = [&pg] {
    const asyncdb::postgres::stats st = pg.stats();
    return st.completed + st.failed + st.cancelled;
  };
  const auto start = std::chrono::steady_clock::now();
  while (ended() == 0 && std::chrono::steady_clock::now() < start + 20s) std::this_thread::sleep_for(5ms);
  REQUIRE(ended() == 1);
  // Stopped by the server, which waits for the budget and the margin.
  CHECK(std::chrono::steady_clock::now() - start >= 300ms + asyncdb::detail::pg::statement_timeout::margin);
  stalled.run();
  REQUIRE(completed);
  CHECK(test::code_of(outcome) == asyncdb::errc::deadline_exceeded);
  CHECK(pg.stats().cancelled == 1);
}

// The child process of the next test: starts a budgeted sleep on the server and waits for it, until killed.
TEST_CASE("child: a budgeted sleep on the server", "[.pg_orphan_child]") {
  const char* marker = std::getenv("ASYNCDB_PG_ORPHAN_MARKER");
  if (marker == nullptr) return;
  asyncdb::postgres::options o;
  o.primary = pgtest::primary();
  o.writers = 1;
  o.readers = 0;
  asyncdb::postgres::database pg{o};
  const std::string sql = std::string("SELECT pg_sleep(60) /* ") + marker + " */";
  auto sleeper = [&sql](pqxx::connection& c) {
    pqxx::nontransaction t{c};
    t.exec(sql);
    return 1;
  };
  std::future<int> done = asyncdb::async_run(pg, sleeper, asyncdb::budget(2s, asio::use_future));
  done.wait();
}

TEST_CASE(
    "a client process killed during a budgeted PostgreSQL statement leaves nothing running on the server "
    "past the budget",
    "[postgres][budget]") {
  const std::string marker = "asyncdb-orphan-" + std::to_string(::getpid());
  const std::string running = "SELECT count(*) > 0 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" +
                              marker + " */' AND pid <> pg_backend_pid()";
  pgtest::primary();  // skips without a server
  std::string self = "/proc/self/exe";
  std::string tag = "[pg_orphan_child]";
  std::vector<std::string> env_text{"ASYNCDB_PG_ORPHAN_MARKER=" + marker,
                                    "ASYNCDB_PG_PORT=" + std::to_string(pgtest::primary_port())};
  std::vector<char*> env;
  for (std::string& e : env_text) env.push_back(e.data());
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  env.push_back(nullptr);
  char* argv[] = {self.data(), tag.data(), nullptr};
  pid_t child = 0;
  REQUIRE(::posix_spawn(&child, self.c_str(), nullptr, nullptr, argv, env.data()) == 0);
  const bool started = pgtest::wait_for(running, 30s);
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(started);
  // Still running once its client is gone: nobody will cancel it but the server itself.
  const bool orphaned = pgtest::wait_for(running, 0s);
  // The budget (2 s) and the margin, and as much again for a slow machine; far short of the 60 s sleep.
  const bool ended = pgtest::wait_for("SELECT NOT (" + running + ")", 10s);
  const auto ended_after = std::chrono::steady_clock::now() - killed_at;
  pgtest::admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%" + marker +
                " */' AND pid <> pg_backend_pid()");
  CHECK(orphaned);
  CHECK(ended);
  CHECK(ended_after < 10s);
}
