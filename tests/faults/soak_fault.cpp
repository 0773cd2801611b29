// Case 7, soak: a mixed load (reads, writes, write and read sessions, operations cancelled by a timeout)
// with no idle moment, for ASYNCDB_FAULT_SOAK_SECONDS (60; 20 in CI's dev step). Resident memory, open file
// descriptors and stats().queued are sampled every second; after the warm-up they must stay flat.
#include "fault_support.hpp"
#include "items.hpp"
#include "process.hpp"

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <support.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <vector>

namespace {

using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

struct sample {
  double rss_mib = 0;
  std::size_t fds = 0;
  std::size_t queued = 0;
};

double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

struct load_counts {
  std::uint64_t ops = 0, cancelled = 0, failed = 0;
};

constexpr std::int64_t keys = 5000;  // writes replace rows among these, so the file stops growing
constexpr int workers = 32;

asio::awaitable<void> one_op(asyncdb::database& db, std::mt19937& rng, load_counts& counts) {
  const std::int64_t id = static_cast<std::int64_t>(rng() % keys);
  const unsigned pick = rng() % 100;
  auto put = [id](SQLite::Database& c) {
    SQLite::Statement s(c, "INSERT OR REPLACE INTO items(id, payload) VALUES(?, ?)");
    s.bind(1, id);
    s.bind(2, faults::payload_of(id));
    s.exec();
  };
  auto get = [id](SQLite::Database& c) {
    SQLite::Statement s(c, "SELECT length(payload) FROM items WHERE id = ?");
    s.bind(1, id);
    return s.executeStep() ? s.getColumn(0).getInt64() : std::int64_t{0};
  };
  if (pick < 65) {
    co_await asyncdb::async_run(db, asyncdb::read_only, get);
  } else if (pick < 85) {
    co_await asyncdb::async_run(db, put);
  } else if (pick < 90) {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
    co_await s.begin();
    co_await s.run(put);
    co_await s.run(get);
    co_await s.commit();
  } else if (pick < 95) {
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db, asyncdb::read_only);
    co_await s.run(get);
    co_await s.run(get);
  } else {  // a read or a write racing a timeout of a few hundred microseconds: some are cancelled
    asio::steady_timer timer{co_await asio::this_coro::executor, std::chrono::microseconds(rng() % 500)};
    if (pick < 98) {
      const auto r =
          co_await (asyncdb::async_run(db, asyncdb::read_only, get) || timer.async_wait(asio::use_awaitable));
      counts.cancelled += r.index();  // the timer won: the read was cancelled
    } else {
      const auto r = co_await (asyncdb::async_run(db, put) || timer.async_wait(asio::use_awaitable));
      counts.cancelled += r.index();
    }
  }
}

asio::awaitable<void> worker(asyncdb::database& db, unsigned seed, load_counts& counts, steady::time_point until) {
  std::mt19937 rng(seed);
  while (steady::now() < until) {
    try {
      co_await one_op(db, rng, counts);
    } catch (...) {
      ++counts.failed;
    }
    ++counts.ops;
  }
}

asio::awaitable<void> soak(asyncdb::database& db, std::chrono::seconds length, std::vector<sample>& samples,
                           load_counts& counts) {
  auto ex = co_await asio::this_coro::executor;
  const steady::time_point until = steady::now() + length;
  int running = workers;
  for (int i = 0; i < workers; ++i) {
    asio::co_spawn(ex, worker(db, static_cast<unsigned>(i + 1), counts, until),
                   [&running](std::exception_ptr) { --running; });
  }
  asio::steady_timer timer{ex};
  for (steady::time_point next = steady::now() + std::chrono::seconds(1); next <= until;
       next += std::chrono::seconds(1)) {
    timer.expires_at(next);
    co_await timer.async_wait(asio::use_awaitable);
    samples.push_back({rss_mib(), open_fds(), db.stats().queued});
  }
  auto all_stopped = [&] { return running == 0; };
  co_await test::poll_until(all_stopped, std::chrono::seconds(30));
}

template <class F>
auto max_of(const std::vector<sample>& s, std::size_t from, std::size_t to, F f) {
  decltype(f(s[0])) m{};
  for (std::size_t i = from; i < to; ++i) m = std::max(m, f(s[i]));
  return m;
}

}  // namespace

TEST_CASE("a mixed load keeps memory and descriptors and the queue flat", "[faults][soak]") {
  const std::chrono::seconds length{faults::env_or("ASYNCDB_FAULT_SOAK_SECONDS", 60)};
  REQUIRE(length.count() >= 6);
  faults::watchdog dog(length + std::chrono::seconds(60), "soak");
  test::temp_dir dir;
  const auto file = dir.file("soak.db");
  asyncdb::options o;
  o.on_open = [](SQLite::Database& c) {
    if (sqlite3_db_readonly(c.getHandle(), "main") == 0) faults::create_items(c);
  };
  asyncdb::database db{file, o};
  asio::io_context ctx;
  std::vector<sample> samples;
  load_counts counts;
  test::run(ctx, soak(db, length, samples, counts), length + std::chrono::seconds(60));

  // Warm-up: the first sixth (10 s of 60); the rest in thirds, the last compared with the first.
  const std::size_t warm = samples.size() / 6, third = (samples.size() - warm) / 3;
  REQUIRE(third >= 1);
  const std::size_t a = warm, b = warm + third, c = samples.size() - third;
  const double rss_first = max_of(samples, a, b, [](const sample& s) { return s.rss_mib; });
  const double rss_last = max_of(samples, c, samples.size(), [](const sample& s) { return s.rss_mib; });
  const std::size_t fds_first = max_of(samples, a, b, [](const sample& s) { return s.fds; });
  const std::size_t fds_last = max_of(samples, c, samples.size(), [](const sample& s) { return s.fds; });
  const std::size_t queued_max = max_of(samples, a, samples.size(), [](const sample& s) { return s.queued; });
  const asyncdb::stats end = db.stats();

  std::printf("soak %lld s: %llu operations (%llu cancelled by their timeout, %llu failed), %.0f/s\n",
              static_cast<long long>(length.count()), static_cast<unsigned long long>(counts.ops),
              static_cast<unsigned long long>(counts.cancelled), static_cast<unsigned long long>(counts.failed),
              static_cast<double>(counts.ops) / static_cast<double>(length.count()));
  std::printf("soak samples (s: RSS MiB / fds / queued):");
  for (std::size_t i = 0; i < samples.size(); ++i) {
    std::printf("%s %zu: %.1f/%zu/%zu", i % 6 == 0 ? "\n " : "", i + 1, samples[i].rss_mib, samples[i].fds,
                samples[i].queued);
  }
  std::printf(
      "\nsoak after warm-up: RSS max %.1f MiB in the first third, %.1f MiB in the last; fds %zu then %zu; queued "
      "at most %zu (%d workers)\n",
      rss_first, rss_last, fds_first, fds_last, queued_max, workers);
  std::fflush(stdout);
  // Flat: the last third's peak within 10% (plus 4 MiB) of the first third's; no descriptor more; the queue
  // never holds more than the workers can have in flight, and is empty at the end.
  CHECK(rss_last <= rss_first * 1.1 + 4.0);
  CHECK(fds_last <= fds_first);
  CHECK(queued_max <= static_cast<std::size_t>(workers));
  CHECK(end.queued == 0);
  CHECK(end.running == 0);
  CHECK(counts.failed == 0);
  CHECK(end.completed + end.failed + end.cancelled + end.rejected > counts.ops);  // session opens count too
}
