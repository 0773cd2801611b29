// asyncdb_pg_bench: the PostgreSQL workloads of bench/WORKLOADS.md (W1, W2, W4 and the loop lag L) for S,
// the hand-rolled peer and asyncdb, in one process against one primary; prints the table and writes it as
// JSON with --json. scripts/bench-pg.sh starts a throwaway server for it.
//
//   asyncdb_pg_bench --postgres CONNINFO [--quick] [--json FILE] [--runs N] [--only W1,W2,W4]
//                    [--contenders S,peer,asyncdb] [--writers N] [--readers N] [--peer-threads N] [--rtt-us N]
#include <malloc.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "pg_user_dao.hpp"
#include "pg_workloads.hpp"
#include "report.hpp"

namespace {

using namespace bench;

struct cli {
  std::string conninfo;
  bool quick = false;
  int runs = 3;
  std::string json;
  std::set<std::string> only;        // empty: every workload
  std::set<std::string> contenders;  // empty: every contender
  pg::pools pools;
  int rtt_us = 0;  // the simulated round trip, 0 for none
};

const char* usage =
    "usage: asyncdb_pg_bench --postgres CONNINFO [--quick] [--json FILE] [--runs N] [--only W1,W2,W4]\n"
    "                        [--contenders S,peer,asyncdb] [--writers N] [--readers N] [--peer-threads N]\n"
    "                        [--rtt-us N]\n"
    "  --postgres     the primary's libpq conninfo (default: $ASYNCDB_PG_PRIMARY); the run creates and drops\n"
    "                 the schema asyncdb_bench there\n"
    "  --quick        every operation count and the seed divided by 20 (a smoke run)\n"
    "  --json FILE    also write the table as JSON\n"
    "  --runs N       runs per measurement, the median is reported (default 3)\n"
    "  --only         run only these workloads (L is measured during W1, W2 and W4)\n"
    "  --contenders   run only these contenders\n"
    "  --writers N    asyncdb's primary connections (default 4)\n"
    "  --readers N    asyncdb's read-only connections to the primary (default 4; 0 sends reads to the writers)\n"
    "  --peer-threads N  the peer's pool threads sharing its one connection (default 4)\n"
    "  --rtt-us N     a simulated round trip: the DAO sleeps N us after each of its round trips, on the\n"
    "                 calling thread, for every contender; W1, W2 and W4 counts divided by 10 (default 0: off)\n";

cli parse(int argc, char** argv) {
  cli c;
  if (const char* env = std::getenv("ASYNCDB_PG_PRIMARY")) c.conninfo = env;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
      return argv[++i];
    };
    const auto count = [&](std::size_t least) {
      const int v = std::stoi(value());
      if (v < static_cast<int>(least)) throw std::invalid_argument(a + " must be at least " + std::to_string(least));
      return static_cast<std::size_t>(v);
    };
    if (a == "--postgres") {
      c.conninfo = value();
    } else if (a == "--quick") {
      c.quick = true;
    } else if (a == "--json") {
      c.json = value();
    } else if (a == "--runs") {
      c.runs = static_cast<int>(count(1));
    } else if (a == "--only") {
      c.only = split_list(value());
    } else if (a == "--contenders") {
      c.contenders = split_list(value());
    } else if (a == "--writers") {
      c.pools.writers = count(1);
    } else if (a == "--readers") {
      c.pools.readers = count(0);
    } else if (a == "--peer-threads") {
      c.pools.peer_threads = count(1);
    } else if (a == "--rtt-us") {
      c.rtt_us = static_cast<int>(count(0));
    } else if (a == "--help" || a == "-h") {
      std::cout << usage;
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown argument " + a);
    }
  }
  if (c.conninfo.empty()) throw std::invalid_argument("no server: pass --postgres CONNINFO or set ASYNCDB_PG_PRIMARY");
  return c;
}

struct workload {
  std::string id;
  std::function<sample(contender)> measure;
};

std::vector<row> build_rows(std::map<std::string, samples>& results, std::size_t in_flight) {
  std::vector<row> rows;
  const std::string k = std::to_string(in_flight);
  if (results.count("W1")) {
    row r = make_row("W1", "point reads, " + k + " in flight", "ops/s", true, results["W1"], &sample::ops_per_s);
    set_target(r, ">= 3x S", r.asyncdb, 3 * r.s, true);
    rows.push_back(r);
  }
  if (results.count("W2")) {
    rows.push_back(make_row("W2", "batch insert, gather", "ops/s", true, results["W2"], &sample::ops_per_s));
    rows.push_back(make_row("W2", "batch insert, gather, total", "s", false, results["W2"], &sample::seconds));
  }
  if (results.count("W4")) {
    row r =
        make_row("W4", "90% reads / 10% adds, " + k + " in flight", "ops/s", true, results["W4"], &sample::ops_per_s);
    set_target(r, ">= 3x S", r.asyncdb, 3 * r.s, true);
    rows.push_back(r);
  }
  for (const char* id : {"W1", "W2", "W4"}) {
    if (!results.count(id)) continue;
    rows.push_back(
        make_row(id, "client CPU per op (all threads)", "us/op", false, results[id], &sample::client_cpu_us));
    rows.push_back(make_row(id, "server CPU per op (backends)", "us/op", false, results[id], &sample::server_cpu_us));
    rows.push_back(
        make_row(id, "client context switches per op", "switches/op", false, results[id], &sample::switches_per_op));
    rows.push_back(make_row(id, "cores kept busy (client + server)", "cores", true, results[id], &sample::cores_busy));
  }
  for (const char* id : {"W1", "W2", "W4"}) {
    if (!results.count(id)) continue;
    row r = make_row("L", std::string("worst loop lag during ") + id, "ms", false, results[id], &sample::lag_ms);
    if (std::string(id) != "W2") set_target(r, "<= 1 ms", r.asyncdb, 1, false);
    rows.push_back(r);
  }
  return rows;
}

/// The wall time one simulated round trip really takes here: sleep_for overshoots by the timer slack.
double measured_round_trip_us() {
  constexpr int n = 1000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) pg::wait_round_trip();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / n;
}

std::string server_version(const std::string& conninfo) {
  pqxx::connection c{conninfo};
  pqxx::nontransaction t{c};
  return t.exec("SHOW server_version")[0][0].as<std::string>();
}

int run(const cli& args) {
  const auto wall0 = std::chrono::steady_clock::now();
  const double load_before = load_average();
  // As in asyncdb_bench: glibc's default trims the main thread's heap only, which would tax S alone.
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);

  // PostgreSQL's sizes (WORKLOADS.md): W1 half of SQLite's, since S pays three round trips per lookup.
  sizes n;
  n.w1_ops = 100'000;
  if (args.quick) {
    n.seed_rows /= 20;
    n.w1_ops /= 20;
    n.w2_ops /= 20;
    n.w4_ops /= 20;
  }
  // --rtt-us: S would wait 3 round trips per call, 80 s per W1 run at 200 us; a tenth is enough to compare.
  double rtt_measured_us = 0;
  if (args.rtt_us > 0) {
    pg::simulated_round_trip = std::chrono::microseconds(args.rtt_us);
    n.w1_ops /= 10;
    n.w2_ops /= 10;
    n.w4_ops /= 10;
    rtt_measured_us = measured_round_trip_us();
    std::cerr << "simulated round trip: sleep_for(" << args.rtt_us << " us) takes " << rtt_measured_us << " us here\n";
  }

  std::cerr << "seeding " << n.seed_rows << " rows in schema " << pg::schema << " ...\n";
  const auto seed0 = std::chrono::steady_clock::now();
  const pg::pg_data d = pg::prepare(args.conninfo, n, args.pools);
  const double seed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - seed0).count();

  const std::vector<workload> plan = {
      {"W1", [&](contender c) { return pg::measure_point_reads(d, c, c != contender::s); }},
      {"W2", [&](contender c) { return pg::measure_batch_insert(d, c, c != contender::s); }},
      {"W4", [&](contender c) { return pg::measure_mixed(d, c, c != contender::s); }},
  };
  const std::vector<contender> three = {contender::s, contender::peer, contender::asyncdb};

  std::map<std::string, samples> results;
  for (const workload& w : plan) {
    if (!args.only.empty() && args.only.count(w.id) == 0) continue;
    // Runs interleave the contenders, so a slow phase of the machine hits all of them alike.
    for (int r = 0; r < args.runs; ++r) {
      for (const contender c : three) {
        if (!args.contenders.empty() && args.contenders.count(name_of(c)) == 0) continue;
        pg::reset_to_seed(args.conninfo, n.seed_rows);
        const sample s = w.measure(c);
        results[w.id][c].push_back(s);
        std::cerr << "  " << w.id << " run " << r + 1 << "/" << args.runs << " " << name_of(c) << ": "
                  << progress_value(s) << "\n";
      }
    }
  }
  pg::drop_schema(args.conninfo);

  const std::vector<row> rows = build_rows(results, n.in_flight);
  run_info info;
  info.date = utc_now();
  info.host = host_name();
  info.cores = std::thread::hardware_concurrency();
#if defined(__clang__)
  info.compiler = "clang++ " __clang_version__;
#else
  info.compiler = "g++ " __VERSION__;
#endif
  info.backend = "PostgreSQL " + server_version(args.conninfo) + ", libpqxx " PQXX_VERSION;
  info.contenders = "S = synchronous on one connection, peer = " + std::to_string(args.pools.peer_threads) +
                    " threads + one mutex-guarded connection, asyncdb = " + std::to_string(args.pools.writers) +
                    " writers + " + std::to_string(args.pools.readers) + " read-only connections to the primary";
  if (args.rtt_us > 0) {
    info.contenders += "\nSIMULATED ROUND TRIP (--rtt-us " + std::to_string(args.rtt_us) +
                       "): the DAO sleeps after each of its 3 round trips per call (one sleep takes " +
                       std::to_string(static_cast<int>(rtt_measured_us + 0.5)) + " us here); W1, W2, W4 counts / 10";
  }
  info.target_head = "target (issue 12)";
  info.quick = args.quick;
  info.runs = args.runs;
  info.seed_seconds = seed_seconds;
  info.sizes = {{"seed_rows", static_cast<double>(n.seed_rows)},
                {"w1_ops", static_cast<double>(n.w1_ops)},
                {"w2_ops", static_cast<double>(n.w2_ops)},
                {"w4_ops", static_cast<double>(n.w4_ops)},
                {"in_flight", static_cast<double>(n.in_flight)},
                {"writers", static_cast<double>(args.pools.writers)},
                {"readers", static_cast<double>(args.pools.readers)},
                {"rtt_us", static_cast<double>(args.rtt_us)},
                {"rtt_sleep_us", rtt_measured_us}};
  info.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  info.load_before = load_before;
  info.load_after = load_average();

  std::cout << "\n";
  print_table(std::cout, info, rows);
  if (!args.json.empty()) {
    std::ofstream out(args.json);
    if (!out) throw std::runtime_error("cannot write " + args.json);
    write_json(out, info, rows);
    std::cout << "JSON written to " << args.json << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::invalid_argument& e) {
    std::cerr << "asyncdb_pg_bench: " << e.what() << "\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "asyncdb_pg_bench: " << e.what() << "\n";
    return 1;
  }
}
