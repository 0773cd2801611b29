// asyncdb::gather: every awaitable runs concurrently, results come back in input order, the
// caller resumes on its own executor, and a failure is rethrown (the first in input order) only
// once every sibling has finished.
#include "support.hpp"

#include "net.hpp"

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;

class AsyncUsers : public asyncdb::to_async_db_oper<AsyncUsers, test::UserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
  auto add(const test::UserCreate& u) { return call<&test::UserOper::add>(u); }
};

// A counter database threads bump and wait on, each wait bounded so a broken rule fails instead of hanging.
class gate {
 public:
  void bump() {
    {
      std::lock_guard lock(mutex_);
      ++count_;
    }
    cv_.notify_all();
  }
  bool wait_for(int at_least, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return count_ >= at_least; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int count_ = 0;
};

// Input position 0: waits on a reader until both failing siblings have thrown, then writes a row.
net::awaitable<int> slow_sibling(asyncdb::database& db, gate& g, std::atomic<bool>& finished) {
  auto wait = [&g](SQLite::Database&) {
    if (!g.wait_for(2)) throw std::runtime_error("the failing siblings never ran");
  };
  co_await asyncdb::async_run(db, asyncdb::read_only, wait);
  auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('slow', 's@x')"); };
  co_await asyncdb::async_run(db, insert);
  finished = true;
  co_return 0;
}

net::awaitable<void> slow_void_sibling(asyncdb::database& db, gate& g, std::atomic<bool>& finished) {
  co_await slow_sibling(db, g, finished);
}

// Fails second in time but first in input order: waits for the later sibling's failure, then throws.
auto fails_late(gate& g) {
  return [&g](SQLite::Database&) -> int {
    if (!g.wait_for(1)) throw std::runtime_error("the other sibling never failed");
    g.bump();
    throw std::invalid_argument("first in input order");
  };
}

// Fails first in time, last in input order.
auto fails_early(gate& g) {
  return [&g](SQLite::Database&) -> int {
    g.bump();
    throw std::runtime_error("first in time");
  };
}

// Awaits `all` (a gather of fails_late, then fails_early, in input order) and checks that it rethrew
// fails_late's std::invalid_argument, the first failure in input order.
template <class T>
net::awaitable<void> check_rethrows_first_in_input_order(net::awaitable<T> all) {
  try {
    co_await std::move(all);
    FAIL("gather did not throw");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()) == "first in input order");
  } catch (const std::exception& e) {
    FAIL("wrong failure rethrown: " << e.what());
  }
}

}  // namespace

TEST_CASE("gather of a vector returns each result at its input position, whatever the completion order", "[gather]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    constexpr int n = 8;
    gate others_done;
    std::vector<net::awaitable<int>> tasks;
    auto last = [&others_done](SQLite::Database&) { return others_done.wait_for(n - 1) ? 0 : -1; };
    tasks.push_back(asyncdb::async_run(d, asyncdb::read_only, last));  // finishes after all the others
    for (int i = 1; i < n; ++i) {
      auto quick = [&others_done, i](SQLite::Database&) {
        others_done.bump();
        return i;
      };
      tasks.push_back(asyncdb::async_run(d, quick));
    }
    const std::vector<int> results = co_await asyncdb::gather(std::move(tasks));
    REQUIRE(results.size() == n);
    for (int i = 0; i < n; ++i) CHECK(results[static_cast<std::size_t>(i)] == i);
  };
  test::run(ctx, check(db));
}

TEST_CASE("gather of adds returns the id of each add at its input position", "[gather]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  std::vector<std::int64_t> ids;
  auto adds = [](asyncdb::database& d) -> net::awaitable<std::vector<std::int64_t>> {
    AsyncUsers users{d};
    std::vector<net::awaitable<std::int64_t>> tasks;
    for (int i = 0; i < 20; ++i) {
      test::UserCreate u{"user" + std::to_string(i), "u@x"};
      tasks.push_back(users.add(u));  // arguments are copied: u may go now
    }
    co_return co_await asyncdb::gather(std::move(tasks));
  };
  ids = test::run(ctx, adds(db));
  REQUIRE(ids.size() == 20);
  SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
  SQLite::Statement by_name(plain, "SELECT id FROM users WHERE name = ?");
  for (std::size_t i = 0; i < ids.size(); ++i) {
    by_name.reset();
    by_name.bind(1, "user" + std::to_string(i));
    REQUIRE(by_name.executeStep());
    CHECK(by_name.getColumn(0).getInt64() == ids[i]);
  }
}

TEST_CASE("gather of an empty vector completes with no results", "[gather]") {
  net::io_context ctx;
  auto check = []() -> net::awaitable<void> {
    std::vector<net::awaitable<int>> no_values;
    const std::vector<int> none = co_await asyncdb::gather(std::move(no_values));
    CHECK(none.empty());
    std::vector<net::awaitable<void>> no_work;
    co_await asyncdb::gather(std::move(no_work));
  };
  test::run(ctx, check());
}

namespace {

struct start_record {
  int started = 0;
  int started_when_probe_ran = -1;
};

// Counts its start; the first child also posts a probe, which records how many children had started by the
// time the loop got to run it.
net::awaitable<int> counted_child(int i, start_record& r) {
  ++r.started;
  if (i == 0) {
    auto probe = [&r] { r.started_when_probe_ran = r.started; };
    net::post(co_await net::this_coro::executor, probe);
  }
  co_return i;
}

}  // namespace

TEST_CASE("gather of many awaitables starts them in chunks, so other handlers on the loop run in between", "[gather]") {
  net::io_context ctx;
  start_record r;
  constexpr int n = 2000;
  auto check = [&r]() -> net::awaitable<void> {
    std::vector<net::awaitable<int>> children;
    for (int i = 0; i < n; ++i) children.push_back(counted_child(i, r));
    const std::vector<int> results = co_await asyncdb::gather(std::move(children));
    REQUIRE(results.size() == static_cast<std::size_t>(n));
    CHECK(results.back() == n - 1);
  };
  test::run(ctx, check());
  CHECK(r.started == n);
  CHECK(r.started_when_probe_ran > 0);
  CHECK(r.started_when_probe_ran < n);  // the probe did not wait for all 2,000 starts
}

TEST_CASE("gather of void awaitables returns once every one of them has finished", "[gather]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d, const std::filesystem::path& file) -> net::awaitable<void> {
    std::vector<net::awaitable<void>> writes;
    for (int i = 0; i < 10; ++i) {
      auto insert = [i](SQLite::Database& c) {
        c.exec("INSERT INTO users(name, email) VALUES('v" + std::to_string(i) + "', 'v@x')");
      };
      writes.push_back(asyncdb::async_run(d, insert));
    }
    co_await asyncdb::gather(std::move(writes));
    CHECK(test::count_rows(file) == 10);  // checked before anything else runs
  };
  test::run(ctx, check(db, dir.file()));
}

TEST_CASE("variadic gather returns a tuple for structured bindings, void results as std::monostate", "[gather]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    for (const char* name : {"ann", "bob", "cid"}) {
      test::UserCreate u{name, "x@x", name[0] != 'b'};
      co_await users.add(u);
    }
    auto [all, active] =
        co_await asyncdb::gather(users.call<&test::UserOper::list>(), users.call<&test::UserOper::get_active_users>());
    static_assert(std::is_same_v<decltype(all), std::vector<test::User>>);
    REQUIRE(all.size() == 3);
    CHECK(all[1].name == "bob");
    REQUIRE(active.size() == 2);
    CHECK(active[0].name == "ann");
    CHECK(active[1].name == "cid");

    auto insert = [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES('dan', 'd@x')"); };
    auto [nothing, n] = co_await asyncdb::gather(asyncdb::async_run(d, insert), users.call<&test::UserOper::count>());
    static_assert(std::is_same_v<decltype(nothing), std::monostate>);
    CHECK((n == 3 || n == 4));  // the two ran concurrently
  };
  test::run(ctx, check(db));
}

TEST_CASE("gather of a vector waits for every sibling, then rethrows the first failure in input order",
          "[gather][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d, const std::filesystem::path& file) -> net::awaitable<void> {
    gate g;
    std::atomic<bool> slow_finished{false};
    std::vector<net::awaitable<int>> tasks;
    tasks.push_back(slow_sibling(d, g, slow_finished));
    auto late = fails_late(g);
    auto early = fails_early(g);
    tasks.push_back(asyncdb::async_run(d, asyncdb::read_only, late));
    tasks.push_back(asyncdb::async_run(d, early));
    auto all = asyncdb::gather(std::move(tasks));
    co_await check_rethrows_first_in_input_order(std::move(all));
    CHECK(slow_finished);
    CHECK(test::count_rows(file, "name = 'slow'") == 1);
  };
  test::run(ctx, check(db, dir.file()));
}

TEST_CASE("variadic gather waits for every sibling, then rethrows the first failure in argument order",
          "[gather][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d, const std::filesystem::path& file) -> net::awaitable<void> {
    gate g;
    std::atomic<bool> slow_finished{false};
    auto late = fails_late(g);
    auto early = fails_early(g);
    auto all = asyncdb::gather(slow_void_sibling(d, g, slow_finished), asyncdb::async_run(d, asyncdb::read_only, late),
                               asyncdb::async_run(d, early));
    co_await check_rethrows_first_in_input_order(std::move(all));
    CHECK(slow_finished);
    CHECK(test::count_rows(file, "name = 'slow'") == 1);
  };
  test::run(ctx, check(db, dir.file()));
}

TEST_CASE("gather resumes the caller on its own strand of a multi-threaded loop", "[gather][threads]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  using strand_type = net::strand<net::io_context::executor_type>;
  std::atomic<int> wrong{0};
  std::atomic<int> ok{0};
  auto body = [](asyncdb::database& d, strand_type s, std::atomic<int>& bad) -> net::awaitable<void> {
    for (int round = 0; round < 5; ++round) {
      std::vector<net::awaitable<std::thread::id>> tasks;
      auto where = [](SQLite::Database&) { return std::this_thread::get_id(); };
      for (int i = 0; i < 4; ++i) tasks.push_back(asyncdb::async_run(d, asyncdb::read_only, where));
      const auto threads = co_await asyncdb::gather(std::move(tasks));
      if (!s.running_in_this_thread()) ++bad;
      for (const auto& t : threads) {
        if (t == std::this_thread::get_id()) ++bad;
      }
      auto [a, b] = co_await asyncdb::gather(asyncdb::async_run(d, where), asyncdb::async_run(d, where));
      if (!s.running_in_this_thread() || a != b) ++bad;  // both writes ran on the one writer
    }
  };
  for (int c = 0; c < 3; ++c) {
    strand_type s = net::make_strand(ctx);
    net::co_spawn(s, body(db, s, wrong), [&](std::exception_ptr ep) { ++(ep ? wrong : ok); });
  }
  test::run_on_threads(ctx, 3, 60s);
  CHECK(ok == 3);
  CHECK(wrong == 0);
}
