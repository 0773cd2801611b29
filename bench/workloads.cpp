// The measurements: each workload for S (direct calls on this thread), the peer and asyncdb. Every
// measurement opens its own connections (untimed), warms them up (untimed), then times the workload alone.
#include "workloads.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "alloc_counter.hpp"
#include "async_user_dao.hpp"
#include "contenders.hpp"
#include "loop.hpp"
#include "peer.hpp"

namespace bench {

bench_data prepare(const std::filesystem::path& folder, const sizes& n) {
  bench_data d;
  static_cast<workload_inputs&>(d) = make_inputs(n);
  d.db = folder / "bench.db";
  create_and_seed(d.db, n.seed_rows);
  return d;
}

namespace {

/// The SQLite peer: one connection with the bench's pragmas, asio's default pool size.
struct peer : basic_peer<SQLite::Database, UserDao> {
  peer(const std::filesystem::path& path, durability d, std::size_t threads = default_pool_size())
      : basic_peer(std::make_unique<SQLite::Database>(open_connection(path, d)), threads) {}
};

double to_ms(clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double percentile_us(std::vector<clock::duration>& v, double q) {
  if (v.empty()) return NAN;
  const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return std::chrono::duration<double, std::micro>(v[k]).count();
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

std::int64_t added_rows(const bench_data& d, const char* like) {
  SQLite::Database db = open_connection(d.db, durability::normal);
  SQLite::Statement q{db, "SELECT count(*) FROM users WHERE id > ? AND name LIKE ?"};
  q.bind(1, d.n.seed_rows);
  q.bind(2, like);
  q.executeStep();
  return q.getColumn(0).getInt64();
}

// --- warm-ups: DAOs built and statements prepared on every connection before the clock starts -----------

int touch(UserDao&) { return 0; }
int touch_slowly(UserDao&) {
  // Long enough that both readers pick up some of them.
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}

asio::awaitable<int> warm_up_asyncdb(AsyncUserDao users) {
  std::vector<asio::awaitable<int>> touches;
  for (int i = 0; i < 8; ++i) touches.push_back(users.run(asyncdb::read_only, &touch_slowly));
  touches.push_back(users.run(&touch));
  co_await asyncdb::gather(std::move(touches));
  co_return 0;
}

asio::awaitable<int> warm_up_peer(peer* p) {
  std::vector<asio::awaitable<int>> touches;
  for (int i = 0; i < 8; ++i) touches.push_back(p->run(&touch));
  co_await when_all(std::move(touches));
  co_return 0;
}

// --- W3: list() and get_active_users() together ----------------------------------------------------------

using stats_result = std::tuple<std::vector<User>, std::vector<User>>;

void check_stats(const bench_data& d, const std::vector<User>& all, const std::vector<User>& active) {
  expect(static_cast<std::int64_t>(all.size()) == d.n.seed_rows, "W3: list() returns every row");
  expect(static_cast<std::int64_t>(active.size()) == d.n.seed_rows - d.n.seed_rows / 3,
         "W3: get_active_users() returns the active rows");
}

asio::awaitable<std::vector<double>> asyncdb_stats(AsyncUserDao users, const bench_data* d) {
  std::vector<double> times;
  for (std::size_t r = 0; r < d->n.w3_reps; ++r) {
    const auto t0 = clock::now();
    auto both = asyncdb::gather(users.list(), users.get_active_users());
    const stats_result result = co_await std::move(both);
    times.push_back(seconds_since(t0));
    check_stats(*d, std::get<0>(result), std::get<1>(result));
  }
  co_return times;
}

std::vector<User> list_all(UserDao& dao) { return dao.list(); }
std::vector<User> list_active(UserDao& dao) { return dao.get_active_users(); }

asio::awaitable<std::vector<double>> peer_stats(peer* p, const bench_data* d) {
  using namespace asio::experimental::awaitable_operators;
  std::vector<double> times;
  for (std::size_t r = 0; r < d->n.w3_reps; ++r) {
    const auto t0 = clock::now();
    auto both = p->run(&list_all) && p->run(&list_active);
    const stats_result result = co_await std::move(both);
    times.push_back(seconds_since(t0));
    check_stats(*d, std::get<0>(result), std::get<1>(result));
  }
  co_return times;
}

}  // namespace

sample measure_point_reads(const bench_data& d, contender c, const read_shape& shape) {
  const std::size_t n = shape.ops != 0 ? shape.ops : d.n.w1_ops;
  const std::size_t in_flight = shape.in_flight;
  const bool per_op = in_flight == 1;
  const bool timed_each = per_op || shape.latencies;
  std::vector<clock::duration> latencies;
  if (timed_each) latencies.reserve(n);
  std::size_t found = 0;
  double seconds = 0;
  sample out;
  std::uint64_t allocs = 0;

  if (c == contender::s) {
    SQLite::Database db = open_connection(d.db, durability::normal);
    UserDao dao{db};
    allocs = allocations();
    const process_meter meter;
    const auto t0 = clock::now();
    if (timed_each) {
      for (std::size_t i = 0; i < n; ++i) {
        const auto t = clock::now();
        const std::optional<User> u = dao.get_by_name(d.keys[i]);
        latencies.push_back(clock::now() - t);
        found += u.has_value() ? 1 : 0;
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) found += dao.get_by_name(d.keys[i]).has_value() ? 1 : 0;
    }
    seconds = seconds_since(t0);
    meter.stop(out, n);
    allocs = allocations() - allocs;
  } else if (c == contender::peer) {
    peer p{d.db, durability::normal, shape.readers != 0 ? shape.readers : default_pool_size()};
    asio::io_context ioc{1};
    run_on_loop(ioc, warm_up_peer(&p));
    peer_reads<peer> op{&p, &d.keys};
    allocs = allocations();
    const process_meter meter;
    const loop_result r = run_in_flight(ioc, op, n, in_flight, shape.probe, timed_each ? &latencies : nullptr);
    meter.stop(out, n);
    allocs = allocations() - allocs;
    seconds = r.seconds;
    found = op.found;
    if (shape.probe) out.lag_ms = to_ms(r.worst_lag);
  } else {
    asyncdb::options o = asyncdb_options(durability::normal);
    if (shape.readers != 0) o.readers = shape.readers;
    asyncdb::database db{d.db, std::move(o)};
    asio::io_context ioc{1};
    const AsyncUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users));
    asyncdb_reads<AsyncUserDao> op{users, &d.keys};
    allocs = allocations();
    const process_meter meter;
    const loop_result r = run_in_flight(ioc, op, n, in_flight, shape.probe, timed_each ? &latencies : nullptr);
    meter.stop(out, n);
    allocs = allocations() - allocs;
    seconds = r.seconds;
    found = op.found;
    if (shape.probe) out.lag_ms = to_ms(r.worst_lag);
  }
  expect(found == n, "W1: every key is found");

  out.seconds = seconds;
  out.ops_per_s = static_cast<double>(n) / seconds;
  out.us_per_op = seconds * 1e6 / static_cast<double>(n);
  out.allocs_per_op = static_cast<double>(allocs) / static_cast<double>(n);
  if (timed_each) {
    out.p50_us = percentile_us(latencies, 0.50);
    out.p99_us = percentile_us(latencies, 0.99);
  }
  return out;
}

sample measure_batch_insert(const bench_data& d, contender c, durability dur, bool probe) {
  const std::size_t n = d.n.w2_ops;
  double seconds = 0;
  sample out;
  std::uint64_t allocs = 0;

  if (c == contender::s || c == contender::s_bulk) {
    SQLite::Database db = open_connection(d.db, dur);
    UserDao dao{db};
    allocs = allocations();
    const process_meter meter;
    const auto t0 = clock::now();
    if (c == contender::s_bulk) {
      SQLite::Transaction txn{db};
      for (const UserCreate& u : d.new_users) dao.add(u);
      txn.commit();
    } else {
      for (const UserCreate& u : d.new_users) dao.add(u);
    }
    seconds = seconds_since(t0);
    meter.stop(out, n);
    allocs = allocations() - allocs;
  } else if (c == contender::peer) {
    peer p{d.db, dur};
    asio::io_context ioc{1};
    run_on_loop(ioc, warm_up_peer(&p));
    lag_probe lag(ioc);
    if (probe) lag.start();
    allocs = allocations();
    const process_meter meter;
    seconds = run_on_loop(ioc, peer_batch(&p, &d.new_users, &lag));
    meter.stop(out, n);
    allocs = allocations() - allocs;
    if (probe) out.lag_ms = to_ms(lag.worst());
  } else {
    asyncdb::database db{d.db, asyncdb_options(dur)};
    asio::io_context ioc{1};
    const AsyncUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users));
    lag_probe lag(ioc);
    if (probe) lag.start();
    allocs = allocations();
    const process_meter meter;
    seconds = run_on_loop(ioc, asyncdb_batch(users, &d.new_users, &lag));
    meter.stop(out, n);
    allocs = allocations() - allocs;
    if (probe) out.lag_ms = to_ms(lag.worst());
  }
  expect(added_rows(d, "new%") == static_cast<std::int64_t>(n), "W2: every added row is present afterwards");

  out.seconds = seconds;
  out.ops_per_s = static_cast<double>(n) / seconds;
  out.us_per_op = seconds * 1e6 / static_cast<double>(n);
  out.allocs_per_op = static_cast<double>(allocs) / static_cast<double>(n);
  return out;
}

sample measure_stats(const bench_data& d, contender c) {
  std::vector<double> times;
  sample out;
  std::optional<process_meter> meter;  // each branch opens it (start()) once its connections are warm
  std::uint64_t allocs = 0;
  const auto start = [&] {
    allocs = allocations();
    meter.emplace();
  };
  if (c == contender::s) {
    SQLite::Database db = open_connection(d.db, durability::normal);
    UserDao dao{db};
    start();
    for (std::size_t r = 0; r < d.n.w3_reps; ++r) {
      const auto t0 = clock::now();
      const std::vector<User> all = dao.list();
      const std::vector<User> active = dao.get_active_users();
      times.push_back(seconds_since(t0));
      check_stats(d, all, active);
    }
  } else if (c == contender::peer) {
    peer p{d.db, durability::normal};
    asio::io_context ioc{1};
    run_on_loop(ioc, warm_up_peer(&p));
    start();
    times = run_on_loop(ioc, peer_stats(&p, &d));
  } else {
    asyncdb::database db{d.db, asyncdb_options(durability::normal)};
    asio::io_context ioc{1};
    const AsyncUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users));
    start();
    times = run_on_loop(ioc, asyncdb_stats(users, &d));
  }
  meter->stop(out, d.n.w3_reps);  // per repetition: one list() and one get_active_users()
  out.allocs_per_op = static_cast<double>(allocations() - allocs) / static_cast<double>(d.n.w3_reps);
  out.seconds = median_of(times);
  return out;
}

sample measure_mixed(const bench_data& d, contender c) {
  const std::size_t n = d.n.w4_ops;
  std::size_t ok = 0;
  double seconds = 0;
  sample out;

  if (c == contender::s) {
    SQLite::Database db = open_connection(d.db, durability::normal);
    UserDao dao{db};
    const process_meter meter;
    const auto t0 = clock::now();
    for (const mixed_op& op : d.mixed) {
      if (op.add) {
        ok += dao.add(d.mixed_adds[op.index]) > 0 ? 1 : 0;
      } else {
        ok += dao.get_by_name(d.mixed_keys[op.index]).has_value() ? 1 : 0;
      }
    }
    seconds = seconds_since(t0);
    meter.stop(out, n);
  } else if (c == contender::peer) {
    peer p{d.db, durability::normal};
    asio::io_context ioc{1};
    run_on_loop(ioc, warm_up_peer(&p));
    peer_mixed<peer, bench_data> op{&p, &d};
    const process_meter meter;
    seconds = run_in_flight(ioc, op, n, d.n.in_flight, false).seconds;
    meter.stop(out, n);
    ok = op.ok;
  } else {
    asyncdb::database db{d.db, asyncdb_options(durability::normal)};
    asio::io_context ioc{1};
    const AsyncUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users));
    asyncdb_mixed<AsyncUserDao, bench_data> op{users, &d};
    const process_meter meter;
    seconds = run_in_flight(ioc, op, n, d.n.in_flight, false).seconds;
    meter.stop(out, n);
    ok = op.ok;
  }
  expect(ok == n, "W4: every read finds its row and every add returns an id");
  expect(added_rows(d, "mix%") == static_cast<std::int64_t>(d.mixed_adds.size()), "W4: every added row is present");

  out.seconds = seconds;
  out.ops_per_s = static_cast<double>(n) / seconds;
  out.us_per_op = seconds * 1e6 / static_cast<double>(n);
  return out;
}

}  // namespace bench
