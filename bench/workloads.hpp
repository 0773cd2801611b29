#pragma once
// The workloads of bench/WORKLOADS.md, each measurable for every contender.
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "user_dao.hpp"

namespace bench {

/// options::poll_before_sleep for every asyncdb database of the run (`--poll-us`); 0, the default, as users get it.
inline std::chrono::microseconds asyncdb_poll{0};

/// Who runs the DAO calls. `s_bulk` exists for W2 and W2f only (all inserts in one transaction).
enum class contender { s, s_bulk, peer, asyncdb };

/// Operation counts. The defaults are WORKLOADS.md's; --quick divides every count by 20.
struct sizes {
  std::int64_t seed_rows = 100'000;
  std::size_t w1_ops = 200'000;  // W1 and W1c1
  std::size_t w2_ops = 10'000;   // W2 and W2f
  std::size_t w3_reps = 10;
  std::size_t w4_ops = 100'000;
  std::size_t in_flight = 64;  // W1 and W4
};

/// One W4 operation: a read of seed row keys[index], or the add of mixed_adds[index].
struct mixed_op {
  bool add = false;
  std::size_t index = 0;
};

/// The seeded file and the pre-generated inputs, identical for every contender and repetition.
struct bench_data {
  std::filesystem::path db;
  sizes n;
  std::vector<std::string> keys;        // W1: "user<k>", k pseudo-random in 1..seed_rows
  std::vector<UserCreate> new_users;    // W2: "new<i>"
  std::vector<mixed_op> mixed;          // W4: exactly 10% adds, in pseudo-random positions
  std::vector<std::string> mixed_keys;  // W4 reads
  std::vector<UserCreate> mixed_adds;   // W4 adds: "mix<i>"
};

/// Creates the temp folder's database and the inputs (untimed).
bench_data prepare(const std::filesystem::path& folder, const sizes& n);

/// One measurement; NaN where a field does not apply.
struct sample {
  double ops_per_s = NAN;
  double seconds = NAN;
  double p50_us = NAN;
  double p99_us = NAN;
  double us_per_op = NAN;
  double allocs_per_op = NAN;
  double lag_ms = NAN;
};

/// W1 (in_flight 64) and W1c1 (in_flight 1, with latencies and allocations); lag probed when `probe`.
sample measure_point_reads(const bench_data& d, contender c, std::size_t in_flight, bool probe);
/// W2 (normal) and W2f (full); S is S-naive, s_bulk is S-bulk. Checks every row is present afterwards.
sample measure_batch_insert(const bench_data& d, contender c, durability dur, bool probe);
/// W3: list() and get_active_users() together, median seconds of n.w3_reps.
sample measure_stats(const bench_data& d, contender c);
/// W4: 90% get_by_name / 10% add, n.in_flight at a time.
sample measure_mixed(const bench_data& d, contender c);

}  // namespace bench
