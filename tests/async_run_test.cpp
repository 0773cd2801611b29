// async_run, the token-based primitive: where fn runs, where the caller resumes (coroutine, strand,
// second io_context, callback, use_future), read/write routing, and how fn's failures come back.
#include "support.hpp"

#include "net.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strand_type = net::strand<net::io_context::executor_type>;

// Thread ids recorded from many threads; read on the test thread once they are joined.
class thread_set {
 public:
  void add(std::thread::id id) {
    std::lock_guard lock(mutex_);
    ids_.insert(id);
  }
  std::set<std::thread::id> get() const {
    std::lock_guard lock(mutex_);
    return ids_;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::thread::id> ids_;
};

bool disjoint(const std::set<std::thread::id>& a, const std::set<std::thread::id>& b) {
  for (const auto& id : a) {
    if (b.count(id) != 0) return false;
  }
  return true;
}

bool subset(const std::set<std::thread::id>& a, const std::set<std::thread::id>& of) {
  for (const auto& id : a) {
    if (of.count(id) == 0) return false;
  }
  return true;
}

// Runs `ctx` on the calling thread plus `threads - 1` more until it runs out of work; returns the
// ids of the threads that ran it. Throws if the deadline passes first (a hang).
std::set<std::thread::id> run_ctx(net::io_context& ctx, std::size_t threads) {
  thread_set ids;
  std::vector<std::thread> pool;
  for (std::size_t i = 1; i < threads; ++i) {
    pool.emplace_back([&] {
      ids.add(std::this_thread::get_id());
      ctx.run_for(60s);
    });
  }
  ids.add(std::this_thread::get_id());
  ctx.run_for(60s);
  for (auto& t : pool) t.join();
  if (!ctx.stopped()) throw std::runtime_error("run_ctx: deadline passed with work left (hang)");
  return ids.get();
}

// Counts coroutine outcomes; keeps the first error's text for the report.
struct outcomes {
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  std::mutex mutex;
  std::string first_error;

  auto handler() {
    return [this](std::exception_ptr ep) {
      if (!ep) {
        ++ok;
        return;
      }
      ++failed;
      std::lock_guard lock(mutex);
      if (!first_error.empty()) return;
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        first_error = e.what();
      } catch (...) {
        first_error = "unknown exception";
      }
    };
  }
};

// Bounded meeting point: each caller arrives and waits for `n` arrivals, at most `timeout`.
// Returns false if the others never came (the operations did not run at the same time).
class rendezvous {
 public:
  explicit rendezvous(int n) : left_(n) {}
  bool arrive_and_wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (--left_ <= 0) {
      cv_.notify_all();
      return true;
    }
    return cv_.wait_for(lock, timeout, [&] { return left_ <= 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int left_;
};

bool read_only_connection(SQLite::Database& c) { return sqlite3_db_readonly(c.getHandle(), "main") == 1; }

// What a hopping coroutine saw: threads that ran fn, threads it resumed on, and rule breaks.
struct hop_log {
  thread_set dao_threads;
  thread_set resume_threads;
  std::atomic<int> dao_on_caller_executor{0};
  std::atomic<int> resumed_off_executor{0};
  std::atomic<int> hops{0};
};

// Alternates writes and reads; after each co_await checks it is back on a thread running `ctx`.
net::awaitable<void> hop(asyncdb::database& db, net::io_context& ctx, hop_log& log, int n) {
  for (int i = 0; i < n; ++i) {
    auto fn = [&ctx, &log](SQLite::Database&) {
      if (ctx.get_executor().running_in_this_thread()) ++log.dao_on_caller_executor;
      log.dao_threads.add(std::this_thread::get_id());
      return std::this_thread::get_id();
    };
    const std::thread::id ran_on =
        i % 2 == 0 ? co_await asyncdb::async_run(db, fn) : co_await asyncdb::async_run(db, asyncdb::read_only, fn);
    if (!ctx.get_executor().running_in_this_thread() || std::this_thread::get_id() == ran_on) {
      ++log.resumed_off_executor;
    }
    log.resume_threads.add(std::this_thread::get_id());
    ++log.hops;
  }
}

// On a strand: every resume must be inside the strand, and `shared` (a plain int touched by
// several coroutines of the same strand) is only safe if they are serialized (TSan checks).
net::awaitable<void> hop_on_strand(asyncdb::database& db, strand_type strand, int& shared, std::atomic<int>& off,
                                   int n) {
  for (int i = 0; i < n; ++i) {
    auto fn = [strand](SQLite::Database& c) {
      return !strand.running_in_this_thread() && c.execAndGet("SELECT 1").getInt() == 1;
    };
    const bool ran_off_strand = co_await asyncdb::async_run(db, asyncdb::read_only, fn);
    if (!ran_off_strand || !strand.running_in_this_thread()) ++off;
    ++shared;
  }
}

net::awaitable<void> hop_on_own_context(asyncdb::database& db, net::io_context& own, net::io_context& other,
                                        std::atomic<int>& wrong, int n) {
  for (int i = 0; i < n; ++i) {
    auto fn = [](SQLite::Database& c) { return c.execAndGet("SELECT 7").getInt(); };
    const int v = co_await asyncdb::async_run(db, fn);
    if (v != 7 || !own.get_executor().running_in_this_thread() || other.get_executor().running_in_this_thread()) {
      ++wrong;
    }
  }
}

// A result whose move and copy throw once it has been moved `moves_left` times on a database thread; on the
// caller's thread (`caller`) they never throw. Wherever asyncdb moves a result, what it throws must reach
// the co_await, not std::terminate.
struct fragile {
  static inline std::thread::id caller;
  int moves_left = 0;
  int value = 0;

  fragile() = default;
  fragile(int moves, int v) : moves_left(moves), value(v) {}
  fragile(fragile&& o) : moves_left(o.moves_left - 1), value(o.value) { check(o); }
  fragile(const fragile& o) : moves_left(o.moves_left - 1), value(o.value) { check(o); }
  fragile& operator=(fragile&& o) {
    check(o);
    moves_left = o.moves_left - 1;
    value = o.value;
    return *this;
  }
  fragile& operator=(const fragile& o) { return *this = fragile(o); }

 private:
  static void check(const fragile& from) {
    if (from.moves_left <= 0 && std::this_thread::get_id() != caller) {
      throw std::runtime_error("fragile: moved on a database thread");
    }
  }
};

// Each budget of moves either delivers the value or its own exception, on the coroutine's executor.
net::awaitable<void> await_fragile_results(asyncdb::database& db, int& delivered, int& refused) {
  for (int moves = 0; moves <= 16; ++moves) {
    auto fn = [moves](SQLite::Database&) { return fragile(moves, 42); };
    try {
      const fragile r = co_await asyncdb::async_run(db, fn);
      CHECK(r.value == 42);
      ++delivered;
    } catch (const std::runtime_error& e) {
      CHECK_THAT(e.what(), Catch::Matchers::Equals("fragile: moved on a database thread"));
      ++refused;
    }
  }
}

}  // namespace

TEST_CASE("async_run runs fn on a database thread and resumes on a thread of the caller's io_context",
          "[async_run][threads]") {
  const std::size_t loop_threads = GENERATE(1, 4);
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  hop_log log;
  outcomes done;
  for (int c = 0; c < 6; ++c) net::co_spawn(ctx, hop(db, ctx, log, 10), done.handler());

  const std::set<std::thread::id> loop = run_ctx(ctx, loop_threads);

  INFO(done.first_error);
  REQUIRE(done.ok == 6);
  CHECK(log.hops == 60);
  CHECK(log.dao_on_caller_executor == 0);
  CHECK(log.resumed_off_executor == 0);
  const auto dao = log.dao_threads.get();
  const auto resumed = log.resume_threads.get();
  CHECK(subset(resumed, loop));
  CHECK(disjoint(dao, loop));
  CHECK(dao.count(std::this_thread::get_id()) == 0);
  CHECK(dao.size() >= 2);  // the writer and at least one reader served the alternating hops
}

TEST_CASE("a coroutine on a strand resumes on that strand after every async_run", "[async_run][threads]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  strand_type s1 = net::make_strand(ctx);
  strand_type s2 = net::make_strand(ctx);
  int shared1 = 0;
  int shared2 = 0;
  std::atomic<int> off{0};
  outcomes done;
  for (int c = 0; c < 3; ++c) {
    net::co_spawn(s1, hop_on_strand(db, s1, shared1, off, 10), done.handler());
    net::co_spawn(s2, hop_on_strand(db, s2, shared2, off, 10), done.handler());
  }

  run_ctx(ctx, 4);

  INFO(done.first_error);
  REQUIRE(done.ok == 6);
  CHECK(off == 0);
  CHECK(shared1 == 30);
  CHECK(shared2 == 30);
}

TEST_CASE("coroutines of two io_contexts sharing one database each resume on their own io_context",
          "[async_run][threads]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context a;
  net::io_context b;
  std::atomic<int> wrong{0};
  outcomes done;
  for (int c = 0; c < 3; ++c) {
    net::co_spawn(a, hop_on_own_context(db, a, b, wrong, 10), done.handler());
    net::co_spawn(b, hop_on_own_context(db, b, a, wrong, 10), done.handler());
  }
  std::thread runs_a([&] { a.run_for(60s); });
  b.run_for(60s);
  runs_a.join();

  INFO(done.first_error);
  REQUIRE(done.ok == 6);
  CHECK(wrong == 0);
}

TEST_CASE("a callback bound to a strand completes on that strand, never on a database thread",
          "[async_run][threads][callback]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  strand_type strand = net::make_strand(ctx);
  int completed = 0;  // plain int: only the strand touches it
  std::atomic<int> wrong{0};
  thread_set callback_threads;
  constexpr int n = 40;

  // Started before anything runs the loop: each operation must keep ctx's work count up itself.
  for (int i = 0; i < n; ++i) {
    auto fn = [&ctx, i](SQLite::Database& c) {
      if (ctx.get_executor().running_in_this_thread()) throw std::logic_error("fn ran on the caller's executor");
      return std::make_pair(std::this_thread::get_id(), c.execAndGet("SELECT " + std::to_string(i)).getInt());
    };
    auto cb = [&, i](std::exception_ptr ep, std::pair<std::thread::id, int> r) {
      if (ep || r.second != i || r.first == std::this_thread::get_id() || !strand.running_in_this_thread()) ++wrong;
      callback_threads.add(std::this_thread::get_id());
      ++completed;
    };
    if (i % 2 == 0) {
      asyncdb::async_run(db, fn, net::bind_executor(strand, cb));
    } else {
      asyncdb::async_run(db, asyncdb::read_only, fn, net::bind_executor(strand, cb));
    }
  }

  const auto loop = run_ctx(ctx, 3);

  CHECK(completed == n);
  CHECK(wrong == 0);
  CHECK(subset(callback_threads.get(), loop));
}

TEST_CASE("use_future delivers fn's result and exception to a thread that runs no loop", "[async_run][future]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};

  auto fn = [](SQLite::Database& c) {
    return std::make_pair(std::this_thread::get_id(), c.execAndGet("SELECT 42").getInt());
  };
  std::future<std::pair<std::thread::id, int>> value = asyncdb::async_run(db, fn, net::use_future);
  REQUIRE(value.wait_for(30s) == std::future_status::ready);
  const auto [ran_on, answer] = value.get();
  CHECK(answer == 42);
  CHECK(ran_on != std::this_thread::get_id());

  auto throws = [](SQLite::Database&) -> int { throw std::runtime_error("boom from fn"); };
  std::future<int> failed = asyncdb::async_run(db, asyncdb::read_only, throws, net::use_future);
  REQUIRE(failed.wait_for(30s) == std::future_status::ready);
  CHECK_THROWS_MATCHES(failed.get(), std::runtime_error, Catch::Matchers::Message("boom from fn"));

  auto writes = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('fut', 'f@x')"); };
  std::future<void> wrote = asyncdb::async_run(db, writes, net::use_future);
  REQUIRE(wrote.wait_for(30s) == std::future_status::ready);
  wrote.get();
  CHECK(test::count_rows(dir.file(), "name = 'fut'") == 1);
}

TEST_CASE("async_run sends fn to the writer, and with read_only to a read-only connection", "[async_run][routing]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    auto insert = [](SQLite::Database& c) {
      c.exec("INSERT INTO users(name, email) VALUES('w', 'w@x')");
      return std::make_pair(std::this_thread::get_id(), read_only_connection(c));
    };
    auto probe = [](SQLite::Database& c) {
      return std::make_pair(std::this_thread::get_id(), read_only_connection(c));
    };
    const auto [writer, writer_ro] = co_await asyncdb::async_run(d, insert);  // a write succeeded: the writer
    CHECK_FALSE(writer_ro);
    for (int i = 0; i < 10; ++i) {
      const auto [w, w_ro] = co_await asyncdb::async_run(d, probe);
      CHECK(w == writer);
      CHECK_FALSE(w_ro);
      const auto [r, r_ro] = co_await asyncdb::async_run(d, asyncdb::read_only, probe);
      CHECK(r != writer);
      CHECK(r_ro);
    }
  };
  test::run(ctx, check(db));
}

TEST_CASE("two read-only operations run at the same time on two readers", "[async_run][readers]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;  // one loop thread: both operations are in flight without blocking it
  rendezvous both(2);
  std::atomic<int> met{0};
  thread_set readers;
  std::mutex mutex;
  std::set<sqlite3*> handles;
  auto meet = [&](SQLite::Database& c) {
    {
      std::lock_guard lock(mutex);
      handles.insert(c.getHandle());
    }
    readers.add(std::this_thread::get_id());
    if (both.arrive_and_wait(10s)) ++met;  // only returns true if the other read is running too
  };
  auto one_read = [](asyncdb::database& d, decltype(meet)& f) -> net::awaitable<void> {
    co_await asyncdb::async_run(d, asyncdb::read_only, f);
  };
  outcomes done;
  net::co_spawn(ctx, one_read(db, meet), done.handler());
  net::co_spawn(ctx, one_read(db, meet), done.handler());
  run_ctx(ctx, 1);

  INFO(done.first_error);
  REQUIRE(done.ok == 2);
  CHECK(met == 2);
  CHECK(handles.size() == 2);
  CHECK(readers.get().size() == 2);
}

TEST_CASE("a read-only connection rejects a write with SQLITE_READONLY", "[async_run][readers][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto attempt = [](asyncdb::database& d) -> net::awaitable<void> {
    auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('ro', 'ro@x')"); };
    try {
      co_await asyncdb::async_run(d, asyncdb::read_only, insert);
      FAIL("the write on a reader succeeded");
    } catch (const SQLite::Exception& e) {
      CHECK(e.getErrorCode() == SQLITE_READONLY);
    }
  };
  test::run(ctx, attempt(db));
  CHECK(test::count_rows(dir.file()) == 0);
}

TEST_CASE("with no readers, read-only operations run on the writer", "[async_run][readers]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(0)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    auto insert = [](SQLite::Database& c) {
      c.exec("INSERT INTO users(name, email) VALUES('w', 'w@x')");
      return std::this_thread::get_id();
    };
    const std::thread::id writer = co_await asyncdb::async_run(d, insert);
    auto read = [](SQLite::Database& c) {
      return std::make_pair(std::this_thread::get_id(), c.execAndGet("SELECT count(*) FROM users").getInt());
    };
    const auto [ran_on, rows] = co_await asyncdb::async_run(d, asyncdb::read_only, read);
    CHECK(ran_on == writer);
    CHECK(rows == 1);
  };
  test::run(ctx, check(db));
}

TEST_CASE("an SQLite::Exception keeps its error code and message across the co_await", "[async_run][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('dup', 'd@x')"); };
    co_await asyncdb::async_run(d, insert);
    try {
      co_await asyncdb::async_run(d, insert);
      FAIL("the duplicate insert succeeded");
    } catch (const SQLite::Exception& e) {
      CHECK(e.getErrorCode() == SQLITE_CONSTRAINT);
      CHECK(e.getExtendedErrorCode() == SQLITE_CONSTRAINT_UNIQUE);
      CHECK_THAT(e.what(), Catch::Matchers::Contains("UNIQUE"));
    }
    auto bad_sql = [](SQLite::Database& c) { return c.execAndGet("SELEC 1").getInt(); };
    try {
      co_await asyncdb::async_run(d, asyncdb::read_only, bad_sql);
      FAIL("bad SQL succeeded");
    } catch (const SQLite::Exception& e) {
      CHECK(e.getErrorCode() == SQLITE_ERROR);
      CHECK_THAT(e.what(), Catch::Matchers::Contains("syntax error"));
    }
  };
  test::run(ctx, check(db));
}

TEST_CASE("a result whose move or copy throws on the database thread fails at the co_await, never terminates",
          "[async_run][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  fragile::caller = std::this_thread::get_id();
  int delivered = 0, refused = 0;
  SECTION("resumed by the io_context's own executor") { test::run(ctx, await_fragile_results(db, delivered, refused)); }
  SECTION("resumed on a strand, whose completion is posted") {
    strand_type strand = net::make_strand(ctx);
    std::exception_ptr error;
    bool done = false;
    net::co_spawn(strand, await_fragile_results(db, delivered, refused), [&](std::exception_ptr e) {
      error = e;
      done = true;
    });
    ctx.run_for(60s);
    REQUIRE(done);
    if (error) std::rethrow_exception(error);
  }
  CHECK(refused > 0);    // the smallest budgets cannot survive the trip
  CHECK(delivered > 0);  // the largest do: the library moves a result a bounded number of times
  CHECK(delivered + refused == 17);
}

TEST_CASE("a callback receives fn's exception as its exception_ptr, and void fn completes with it alone",
          "[async_run][errors][callback]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  std::exception_ptr int_error;
  int int_value = -1;
  std::exception_ptr void_error;
  int calls = 0;
  auto fails = [](SQLite::Database&) -> int { throw std::out_of_range("no such row"); };
  asyncdb::async_run(db, fails, net::bind_executor(ctx, [&](std::exception_ptr ep, int v) {
                       ++calls;
                       int_error = ep;
                       int_value = v;
                     }));
  auto fails_void = [](SQLite::Database&) { throw std::length_error("too long"); };
  asyncdb::async_run(db, asyncdb::read_only, fails_void, net::bind_executor(ctx, [&](std::exception_ptr ep) {
                       ++calls;
                       void_error = ep;
                     }));
  run_ctx(ctx, 1);

  REQUIRE(calls == 2);
  CHECK(int_value == 0);  // a default R accompanies the error
  REQUIRE(int_error);
  CHECK_THROWS_MATCHES(std::rethrow_exception(int_error), std::out_of_range, Catch::Matchers::Message("no such row"));
  REQUIRE(void_error);
  CHECK_THROWS_MATCHES(std::rethrow_exception(void_error), std::length_error, Catch::Matchers::Message("too long"));
}

TEST_CASE("the caller's io_context and strand may be destroyed as soon as the completion has run",
          "[async_run][callback][lifetime]") {
  // The operation must let go of the handler and its executor (here a strand, whose last reference
  // unlinks it from the io_context's strand service) before or while completing, not later on the
  // database thread, where the io_context may already be gone. ASan/TSan see the late release.
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  int completed = 0;
  for (int i = 0; i < 200; ++i) {
    net::io_context ctx;
    strand_type strand = net::make_strand(ctx);
    auto fn = [](SQLite::Database&) { return 1; };
    asyncdb::async_run(db, fn, net::bind_executor(strand, [&completed](std::exception_ptr ep, int v) {
                         if (!ep && v == 1) ++completed;
                       }));
    ctx.run_for(60s);
  }  // strand, then io_context, destroyed right after each completion
  CHECK(completed == 200);
}

TEST_CASE("fn and everything it captured are destroyed before the caller's completion runs",
          "[async_run][callback][lifetime]") {
  // Asio's rule for asynchronous operations: temporary resources are released before the completion
  // handler is called. fn lives in the operation; if it died later, on the database thread, its
  // captures (here a strand of an io_context destroyed right after the completion) would outlive
  // what they refer to. `alive` sees a late release in any build; ASan/TSan also see the strand.
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  int completed = 0;
  int fn_alive_at_completion = 0;
  for (int i = 0; i < 200; ++i) {
    net::io_context ctx;
    strand_type strand = net::make_strand(ctx);
    auto token = std::make_shared<int>(i);
    std::weak_ptr<int> alive = token;
    auto fn = [strand, token = std::move(token)](SQLite::Database&) {
      return strand.running_in_this_thread() ? -1 : *token;
    };
    asyncdb::async_run(db, std::move(fn), net::bind_executor(strand, [&, i, alive](std::exception_ptr ep, int v) {
                         if (!alive.expired()) ++fn_alive_at_completion;
                         if (!ep && v == i) ++completed;
                       }));
    ctx.run_for(60s);
  }
  CHECK(completed == 200);
  CHECK(fn_alive_at_completion == 0);
}

TEST_CASE("a callback without an associated executor completes off the database threads", "[async_run][callback]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  std::promise<std::pair<std::thread::id, std::thread::id>> where;  // (fn's thread, the callback's thread)
  auto fn = [](SQLite::Database&) { return std::this_thread::get_id(); };
  asyncdb::async_run(db, fn, [&where](std::exception_ptr ep, std::thread::id ran_on) {
    if (ep) {
      where.set_exception(ep);
    } else {
      where.set_value({ran_on, std::this_thread::get_id()});
    }
  });
  auto f = where.get_future();
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  const auto [ran_on, completed_on] = f.get();
  CHECK(ran_on != std::this_thread::get_id());
  CHECK(completed_on != ran_on);
}

TEST_CASE("an operation that fails inside a transaction has it rolled back before the writer serves anyone else",
          "[async_run][errors][transactions]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    auto fails_mid_transaction = [](SQLite::Database& c) {
      c.exec("BEGIN");
      c.exec("INSERT INTO users(name, email) VALUES('ghost', 'g@x')");
      throw std::runtime_error("failed after the insert");
    };
    CHECK_THROWS_MATCHES(co_await asyncdb::async_run(d, fails_mid_transaction), std::runtime_error,
                         Catch::Matchers::Message("failed after the insert"));
    auto next = [](SQLite::Database& c) {
      return std::make_pair(sqlite3_get_autocommit(c.getHandle()),
                            c.execAndGet("SELECT count(*) FROM users WHERE name = 'ghost'").getInt());
    };
    const auto [autocommit, ghosts] = co_await asyncdb::async_run(d, next);
    CHECK(autocommit == 1);
    CHECK(ghosts == 0);
  };
  test::run(ctx, check(db));
  CHECK(test::count_rows(dir.file(), "name = 'ghost'") == 0);
}

TEST_CASE("a read transaction left open by a failed operation is closed before the reader serves anyone else",
          "[async_run][errors][transactions][readers]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};  // one reader: the next read gets the same one
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    auto fails_mid_read = [](SQLite::Database& c) {
      c.exec("BEGIN");
      c.execAndGet("SELECT count(*) FROM users");
      throw std::runtime_error("failed inside a read transaction");
    };
    CHECK_THROWS_AS(co_await asyncdb::async_run(d, asyncdb::read_only, fails_mid_read), std::runtime_error);
    auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('new', 'n@x')"); };
    co_await asyncdb::async_run(d, insert);
    auto next = [](SQLite::Database& c) {
      return std::make_pair(sqlite3_get_autocommit(c.getHandle()), c.execAndGet("SELECT count(*) FROM users").getInt());
    };
    const auto [autocommit, rows] = co_await asyncdb::async_run(d, asyncdb::read_only, next);
    CHECK(autocommit == 1);
    CHECK(rows == 1);  // a stale snapshot from the failed read would still see 0
  };
  test::run(ctx, check(db));
}

TEST_CASE(
    "an operation that returns inside an open transaction fails with transaction_left_open and its write is "
    "rolled back",
    "[async_run][errors][transactions]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    auto leaves_open = [](SQLite::Database& c) {
      c.exec("BEGIN IMMEDIATE");
      c.exec("INSERT INTO users(name, email) VALUES('open', 'o@x')");
      return 5;
    };
    try {
      co_await asyncdb::async_run(d, leaves_open);
      FAIL("no error for a transaction left open");
    } catch (const asyncdb::system_error& e) {
      CHECK(e.code() == asyncdb::errc::transaction_left_open);
    }
    auto next = [](SQLite::Database& c) {
      return std::make_pair(sqlite3_get_autocommit(c.getHandle()),
                            c.execAndGet("SELECT count(*) FROM users WHERE name = 'open'").getInt());
    };
    const auto [autocommit, rows] = co_await asyncdb::async_run(d, next);
    CHECK(autocommit == 1);
    CHECK(rows == 0);
  };
  test::run(ctx, check(db));
  CHECK(test::count_rows(dir.file(), "name = 'open'") == 0);
}

// A reader that finds more work queued may hold a finished read's completion back for a few more (to
// wake the event loop once per burst): it must still reach its caller while the next read on that
// reader waits, in the DAO's own code, for that very caller.
TEST_CASE("a read's completion reaches its caller while the next read on its reader waits for that caller",
          "[async_run][readers]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  struct state {
    std::atomic<bool> second_queued{false}, first_resumed{false};
    bool saw_first_resumed = false;
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::now() + 10s;
  } st;
  auto first = [&st](SQLite::Database&) {
    while (!st.second_queued && std::chrono::steady_clock::now() < st.deadline) std::this_thread::yield();
  };
  auto second = [&st](SQLite::Database&) {
    while (!st.first_resumed && std::chrono::steady_clock::now() < st.deadline) std::this_thread::yield();
    return st.first_resumed.load();
  };
  auto run_first = [](asyncdb::database& d, decltype(first)& f, state& s) -> net::awaitable<void> {
    co_await asyncdb::async_run(d, asyncdb::read_only, f);
    s.first_resumed = true;
  };
  auto run_second = [](asyncdb::database& d, decltype(second)& f, state& s) -> net::awaitable<void> {
    s.saw_first_resumed = co_await asyncdb::async_run(d, asyncdb::read_only, f);
  };
  auto mark_queued = [](state& s) -> net::awaitable<void> {
    s.second_queued = true;  // the two coroutines spawned before this one have queued their reads
    co_return;
  };
  outcomes done;
  net::co_spawn(ctx, run_first(db, first, st), done.handler());
  net::co_spawn(ctx, run_second(db, second, st), done.handler());
  net::co_spawn(ctx, mark_queued(st), done.handler());
  run_ctx(ctx, 1);

  INFO(done.first_error);
  REQUIRE(done.ok == 3);
  CHECK(st.saw_first_resumed);
}

// ------------------------------------------------------------------------------------------------
// Allocations. Every call of the global operator new in this test program, on any thread, is counted
// here. (Asio's own recycled memory, coroutine frames among it, comes from aligned_alloc and is not.)

namespace {

std::atomic<std::uint64_t> operator_news{0};

// `n` operations one after another on the writer; `news` is set to the calls of operator new meanwhile.
net::awaitable<int> one_at_a_time(asyncdb::database& db, int n, std::uint64_t* news) {
  auto one = [](SQLite::Database&) { return 1; };
  const std::uint64_t before = operator_news.load();
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += co_await asyncdb::async_run(db, one);
  *news = operator_news.load() - before;
  co_return sum;
}

net::awaitable<int> warm_then_count(asyncdb::database& db, std::uint64_t* news) {
  // Two coroutines at once, so two operations are alive together at least once: from then on two blocks are
  // cached, all one coroutine needs (the writer may still hold the previous operation as the next starts).
  std::uint64_t ignored[2] = {};
  auto warm = asyncdb::gather(one_at_a_time(db, 4, &ignored[0]), one_at_a_time(db, 4, &ignored[1]));
  const auto [a, b] = co_await std::move(warm);
  auto counted = one_at_a_time(db, 64, news);
  const int c = co_await std::move(counted);
  co_return a + b + c;
}

}  // namespace

// Every form that pairs with free(), so that ASan sees malloc and free on both sides (the aligned forms stay
// the runtime's, a pair of their own).
void* operator new(std::size_t n) {
  operator_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  operator_news.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return ::operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

TEST_CASE("once warm, an async_run on an io_context calls operator new nowhere in the process",
          "[async_run][allocations]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  std::uint64_t news = 0;
  CHECK(test::run(ctx, warm_then_count(db, &news)) == 72);
  CHECK(news == 0);
}
