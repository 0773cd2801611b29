// asyncdb::options beyond the basics other files cover: poll_before_sleep, and the names of the threads.
#include "support.hpp"

#include "net.hpp"

#include <pthread.h>

#include <future>
#include <string>
#include <system_error>
#include <vector>

namespace {

using namespace std::chrono_literals;

std::string this_thread_name() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return name;
}

net::awaitable<std::vector<std::string>> names_and_work(asyncdb::database& db) {
  test::AsyncUsers users{db};
  std::vector<net::awaitable<std::int64_t>> adds;
  for (int i = 0; i < 50; ++i) {
    test::UserCreate u{"p" + std::to_string(i), "p@x"};
    adds.push_back(users.call<&test::UserOper::add>(u));
  }
  const std::vector<std::int64_t> ids = co_await asyncdb::gather(std::move(adds));
  auto count = [](SQLite::Database& c) { return c.execAndGet("SELECT count(*) FROM users").getInt64(); };
  std::vector<net::awaitable<std::int64_t>> counts;
  for (int i = 0; i < 20; ++i) counts.push_back(asyncdb::async_run(db, asyncdb::read_only, count));
  const std::vector<std::int64_t> seen = co_await asyncdb::gather(std::move(counts));
  std::vector<std::string> out;
  out.push_back(std::to_string(ids.size()));
  for (std::int64_t c : seen) out.push_back(std::to_string(c));
  auto name = [](SQLite::Database&) { return this_thread_name(); };
  out.push_back(co_await asyncdb::async_run(db, name));
  out.push_back(co_await asyncdb::async_run(db, asyncdb::read_only, name));
  co_return out;
}

}  // namespace

TEST_CASE("with poll_before_sleep, connection threads serve every operation and close() still returns", "[options]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::options opts = test::default_options(2);
  opts.poll_before_sleep = 500us;
  asyncdb::database db{dir.file(), opts};
  const std::vector<std::string> out = test::run(ctx, names_and_work(db));
  REQUIRE(out.size() == 23);
  CHECK(out[0] == "50");
  for (std::size_t i = 1; i <= 20; ++i) CHECK(out[i] == "50");  // each read saw all 50 committed adds
  db.close();  // the lanes poll an empty queue now; closing must wake and join them (ctest's timeout guards a hang)
  auto late = [](SQLite::Database&) { return 1; };
  asyncdb::error_code after_close;
  try {
    std::future<int> f = asyncdb::async_run(db, late, net::use_future);
    f.get();
  } catch (const asyncdb::system_error& e) {
    after_close = e.code();
  }
  CHECK(after_close == asyncdb::errc::closed);
}

TEST_CASE("every duration option at its maximum means no bound: operations run and close() returns", "[options]") {
  // duration::max() is how users spell "no bound"; a deadline computed as now() + max() would be signed
  // overflow (UBSan in the asan build) and, wrapped, an instant expiry.
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::options opts = test::default_options(GENERATE(0u, 1u));
  opts.busy_timeout = std::chrono::milliseconds::max();
  opts.poll_before_sleep = std::chrono::microseconds::max();
  opts.group_commit.max_duration = std::chrono::microseconds::max();
  opts.close_grace = std::chrono::milliseconds::max();
  asyncdb::database db{dir.file(), opts};
  const std::vector<std::string> out = test::run(ctx, names_and_work(db));
  REQUIRE(out.size() == 23);
  for (std::size_t i = 0; i <= 20; ++i) CHECK(out[i] == "50");
  db.close();
}

TEST_CASE("the writer and reader threads are named asyncdb-writer and asyncdb-reader", "[options][threads]") {
  test::temp_dir dir;
  net::io_context ctx;
  asyncdb::database db{dir.file(), test::default_options(1)};
  const std::vector<std::string> out = test::run(ctx, names_and_work(db));
  REQUIRE(out.size() == 23);
  CHECK(out[21] == "asyncdb-writer");
  CHECK(out[22] == "asyncdb-reader");
}
