#pragma once
// The workloads of bench/WORKLOADS.md, each measurable for every contender.
#include <chrono>
#include <cstddef>
#include <filesystem>

#include "inputs.hpp"
#include "process_meter.hpp"
#include "sample.hpp"
#include "user_dao.hpp"

namespace bench {

/// options::poll_before_sleep for every asyncdb database of the run (`--poll-us`); 0, the default, as users get it.
inline std::chrono::microseconds asyncdb_poll{0};
/// options::readers for every asyncdb database of the workloads (`--readers`); 2, the default, as users get it.
inline std::size_t asyncdb_readers = 2;

/// The seeded file and the pre-generated inputs, identical for every contender and repetition.
struct bench_data : workload_inputs {
  std::filesystem::path db;
};

/// Creates the temp folder's database and the inputs (untimed).
bench_data prepare(const std::filesystem::path& folder, const sizes& n);

/// How a run of point reads is shaped: W1 and W1c1 as WORKLOADS.md defines them, or a point of the sweep.
struct read_shape {
  std::size_t in_flight = 64;
  std::size_t ops = 0;      // 0: n.w1_ops
  std::size_t readers = 0;  // asyncdb's options::readers, the peer's pool threads; 0: their defaults
  bool probe = false;       // the 1 ms loop-lag probe (L)
  bool latencies = false;   // per-operation latencies (p50, p99), always kept with 1 in flight
};

/// W1 (in_flight 64) and W1c1 (in_flight 1, with latencies and allocations), or a point of the sweep.
sample measure_point_reads(const bench_data& d, contender c, const read_shape& shape);
/// W2 (normal) and W2f (full); S is S-naive, s_bulk is S-bulk. Checks every row is present afterwards.
sample measure_batch_insert(const bench_data& d, contender c, durability dur, bool probe);
/// W3: list() and get_active_users() together, median seconds of n.w3_reps.
sample measure_stats(const bench_data& d, contender c);
/// W4: 90% get_by_name / 10% add, n.in_flight at a time.
sample measure_mixed(const bench_data& d, contender c);

}  // namespace bench
