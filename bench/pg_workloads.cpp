// The PostgreSQL measurements: each workload for S (direct calls on this thread), the peer and asyncdb.
// Every measurement opens its own connections and builds its DAOs (untimed), then times the workload alone.
#include "pg_workloads.hpp"

#include <asyncdb/postgres.hpp>

#include <asio/io_context.hpp>

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "contenders.hpp"
#include "loop.hpp"
#include "peer.hpp"
#include "pg_user_dao.hpp"
#include "process_meter.hpp"

namespace bench::pg {

namespace {

/// The DAO lifted as a user lifts it: lookups declared read-only (they run on the readers), add a write.
class AsyncPgUserDao : public asyncdb::to_async_db_oper<AsyncPgUserDao, PgUserDao> {
 public:
  using to_async_db_oper::to_async_db_oper;
  using read_only_members = asyncdb::members<&PgUserDao::get_by_name>;
  using write_members = asyncdb::members<&PgUserDao::add>;
  auto get_by_name(const std::string& name) const { return call<&PgUserDao::get_by_name>(name); }
  auto add(const UserCreate& u) const { return call<&PgUserDao::add>(u); }
};

/// A connection of S, the peer or the bookkeeping: the bench's schema first, as asyncdb's on_open does.
std::unique_ptr<pqxx::connection> connect(const std::string& conninfo) {
  auto c = std::make_unique<pqxx::connection>(conninfo);
  use_schema(*c);
  return c;
}

/// The peer: one connection, `threads` pool threads taking turns on it.
struct peer : basic_peer<pqxx::connection, PgUserDao> {
  explicit peer(const pg_data& d) : peer(connect(d.conninfo), d.p.peer_threads) {}
  int backend_pid() const { return backend_pid_; }

 private:
  peer(std::unique_ptr<pqxx::connection> c, std::size_t threads)
      : basic_peer(std::move(c), threads), backend_pid_(connection().backendpid()) {}
  int backend_pid_;
};

asyncdb::postgres::options asyncdb_options(const pg_data& d) {
  asyncdb::postgres::options o;
  o.primary = d.conninfo;
  o.writers = d.p.writers;
  o.readers = d.p.readers;
  o.on_open = &use_schema;
  return o;
}

/// CPU time and context switches of this process (every thread), and the CPU time of the server backends
/// serving its connections, read from /proc when the server runs on this machine (NaN otherwise: no local
/// `postgres` process has that pid).
class cpu_meter {
 public:
  explicit cpu_meter(std::vector<int> backends) : backends_(std::move(backends)) { server0_ = server_us(); }
  /// Per-operation figures for the `n` operations since construction.
  void stop(sample& out, std::size_t n) const {
    client_.stop(out, n);
    out.server_cpu_us = (server_us() - server0_) / static_cast<double>(n);
  }

 private:
  double server_us() const {
    double ticks = 0;
    for (const int pid : backends_) {
      // A pid of a server elsewhere may name an unrelated process here.
      std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
      std::string name;
      if (!std::getline(comm, name) || name != "postgres") return NAN;
      std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const std::size_t paren = text.rfind(')');  // the command name may hold spaces
      if (paren == std::string::npos) return NAN;
      std::istringstream fields(text.substr(paren + 2));
      std::string skip;
      for (int i = 3; i <= 13; ++i) fields >> skip;  // state .. cmajflt
      double utime = 0, stime = 0;
      if (!(fields >> utime >> stime)) return NAN;
      ticks += utime + stime;
    }
    return ticks * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

  process_meter client_;  // constructed first: the window opens before the server's figures are read
  std::vector<int> backends_;
  double server0_ = 0;
};

std::vector<int> backends_of(const asyncdb::postgres::database& db) {
  std::vector<int> pids;
  for (const asyncdb::postgres::connection_stats& c : db.stats().connections) pids.push_back(c.backend_pid);
  return pids;
}

double to_ms(clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::int64_t added_rows(const pg_data& d, const char* like) {
  const auto c = connect(d.conninfo);
  pqxx::read_transaction t{*c};
  return t.exec_params1("SELECT count(*) FROM users WHERE id > $1 AND name LIKE $2", d.n.seed_rows, like)[0]
      .as<std::int64_t>();
}

// --- warm-ups: every connection's DAO built (its statements prepared) before the clock starts ------------

int touch_slowly(PgUserDao&) {
  // Long enough that every connection of a kind picks some up.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return 0;
}

asio::awaitable<int> warm_up_asyncdb(AsyncPgUserDao users, std::size_t connections) {
  std::vector<asio::awaitable<int>> touches;
  for (std::size_t i = 0; i < 4 * connections; ++i) {
    touches.push_back(users.run(asyncdb::read_only, &touch_slowly));
    touches.push_back(users.run(&touch_slowly));
  }
  co_await asyncdb::gather(std::move(touches));
  co_return 0;
}

sample throughput(std::size_t n, double seconds) {
  sample out;
  out.seconds = seconds;
  out.ops_per_s = static_cast<double>(n) / seconds;
  out.us_per_op = seconds * 1e6 / static_cast<double>(n);
  return out;
}

}  // namespace

pg_data prepare(const std::string& conninfo, const sizes& n, const pools& p) {
  pg_data d;
  static_cast<workload_inputs&>(d) = make_inputs(n);
  d.conninfo = conninfo;
  d.p = p;
  create_and_seed(conninfo, n.seed_rows);
  return d;
}

sample measure_point_reads(const pg_data& d, contender c, bool probe) {
  const std::size_t n = d.n.w1_ops;
  std::size_t found = 0;
  double seconds = 0;
  double lag_ms = NAN;
  sample cpu_out;

  if (c == contender::s) {
    const auto conn = connect(d.conninfo);
    PgUserDao dao{*conn};
    const cpu_meter cpu({conn->backendpid()});
    const auto t0 = clock::now();
    for (std::size_t i = 0; i < n; ++i) found += dao.get_by_name(d.keys[i]).has_value() ? 1 : 0;
    seconds = seconds_since(t0);
    cpu.stop(cpu_out, n);
  } else if (c == contender::peer) {
    peer p{d};
    asio::io_context ioc{1};
    peer_reads<peer> op{&p, &d.keys};
    const cpu_meter cpu({p.backend_pid()});
    const loop_result r = run_in_flight(ioc, op, n, d.n.in_flight, probe);
    cpu.stop(cpu_out, n);
    seconds = r.seconds;
    found = op.found;
    if (probe) lag_ms = to_ms(r.worst_lag);
  } else {
    asyncdb::postgres::database db{asyncdb_options(d)};
    asio::io_context ioc{1};
    const AsyncPgUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users, std::max(d.p.writers, d.p.readers)));
    asyncdb_reads<AsyncPgUserDao> op{users, &d.keys};
    const cpu_meter cpu(backends_of(db));
    const loop_result r = run_in_flight(ioc, op, n, d.n.in_flight, probe);
    cpu.stop(cpu_out, n);
    seconds = r.seconds;
    found = op.found;
    if (probe) lag_ms = to_ms(r.worst_lag);
  }
  expect(found == n, "W1: every key is found");
  sample out = throughput(n, seconds);
  out.client_cpu_us = cpu_out.client_cpu_us;
  out.server_cpu_us = cpu_out.server_cpu_us;
  out.cores_busy = (out.client_cpu_us + out.server_cpu_us) * out.ops_per_s / 1e6;
  out.lag_ms = lag_ms;
  return out;
}

sample measure_batch_insert(const pg_data& d, contender c, bool probe) {
  const std::size_t n = d.n.w2_ops;
  double seconds = 0;
  double lag_ms = NAN;
  sample cpu_out;

  if (c == contender::s) {
    const auto conn = connect(d.conninfo);
    PgUserDao dao{*conn};
    const cpu_meter cpu({conn->backendpid()});
    const auto t0 = clock::now();
    for (const UserCreate& u : d.new_users) dao.add(u);
    seconds = seconds_since(t0);
    cpu.stop(cpu_out, n);
  } else if (c == contender::peer) {
    peer p{d};
    asio::io_context ioc{1};
    lag_probe lag(ioc);
    if (probe) lag.start();
    const cpu_meter cpu({p.backend_pid()});
    seconds = run_on_loop(ioc, peer_batch(&p, &d.new_users, &lag));
    cpu.stop(cpu_out, n);
    if (probe) lag_ms = to_ms(lag.worst());
  } else {
    asyncdb::postgres::database db{asyncdb_options(d)};
    asio::io_context ioc{1};
    const AsyncPgUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users, std::max(d.p.writers, d.p.readers)));
    lag_probe lag(ioc);
    if (probe) lag.start();
    const cpu_meter cpu(backends_of(db));
    seconds = run_on_loop(ioc, asyncdb_batch(users, &d.new_users, &lag));
    cpu.stop(cpu_out, n);
    if (probe) lag_ms = to_ms(lag.worst());
  }
  expect(added_rows(d, "new%") == static_cast<std::int64_t>(n), "W2: every added row is present afterwards");
  sample out = throughput(n, seconds);
  out.client_cpu_us = cpu_out.client_cpu_us;
  out.server_cpu_us = cpu_out.server_cpu_us;
  out.cores_busy = (out.client_cpu_us + out.server_cpu_us) * out.ops_per_s / 1e6;
  out.lag_ms = lag_ms;
  return out;
}

sample measure_mixed(const pg_data& d, contender c, bool probe) {
  const std::size_t n = d.n.w4_ops;
  std::size_t ok = 0;
  double seconds = 0;
  double lag_ms = NAN;
  sample cpu_out;

  if (c == contender::s) {
    const auto conn = connect(d.conninfo);
    PgUserDao dao{*conn};
    const cpu_meter cpu({conn->backendpid()});
    const auto t0 = clock::now();
    for (const mixed_op& op : d.mixed) {
      if (op.add) {
        ok += dao.add(d.mixed_adds[op.index]) > 0 ? 1 : 0;
      } else {
        ok += dao.get_by_name(d.mixed_keys[op.index]).has_value() ? 1 : 0;
      }
    }
    seconds = seconds_since(t0);
    cpu.stop(cpu_out, n);
  } else if (c == contender::peer) {
    peer p{d};
    asio::io_context ioc{1};
    peer_mixed<peer, pg_data> op{&p, &d};
    const cpu_meter cpu({p.backend_pid()});
    const loop_result r = run_in_flight(ioc, op, n, d.n.in_flight, probe);
    cpu.stop(cpu_out, n);
    seconds = r.seconds;
    ok = op.ok;
    if (probe) lag_ms = to_ms(r.worst_lag);
  } else {
    asyncdb::postgres::database db{asyncdb_options(d)};
    asio::io_context ioc{1};
    const AsyncPgUserDao users{db};
    run_on_loop(ioc, warm_up_asyncdb(users, std::max(d.p.writers, d.p.readers)));
    asyncdb_mixed<AsyncPgUserDao, pg_data> op{users, &d};
    const cpu_meter cpu(backends_of(db));
    const loop_result r = run_in_flight(ioc, op, n, d.n.in_flight, probe);
    cpu.stop(cpu_out, n);
    seconds = r.seconds;
    ok = op.ok;
    if (probe) lag_ms = to_ms(r.worst_lag);
  }
  expect(ok == n, "W4: every read finds its row and every add returns an id");
  expect(added_rows(d, "mix%") == static_cast<std::int64_t>(d.mixed_adds.size()), "W4: every added row is present");
  sample out = throughput(n, seconds);
  out.client_cpu_us = cpu_out.client_cpu_us;
  out.server_cpu_us = cpu_out.server_cpu_us;
  out.cores_busy = (out.client_cpu_us + out.server_cpu_us) * out.ops_per_s / 1e6;
  out.lag_ms = lag_ms;
  return out;
}

}  // namespace bench::pg
