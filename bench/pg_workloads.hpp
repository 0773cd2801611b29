#pragma once
// The PostgreSQL workloads of bench/WORKLOADS.md (W1, W2, W4 and the loop lag L), each measurable for S,
// the peer and asyncdb against one primary.
#include <cstddef>
#include <string>

#include "inputs.hpp"
#include "sample.hpp"

namespace bench::pg {

/// The connection counts of the contenders (`--writers`, `--readers`, `--peer-threads`).
struct pools {
  std::size_t writers = 4;       // asyncdb's primary connections
  std::size_t readers = 4;       // asyncdb's read-only connections to the primary (no replica)
  std::size_t peer_threads = 4;  // the peer's pool, sharing its one connection
};

/// The seeded schema's conninfo and the pre-generated inputs, identical for every contender and repetition.
struct pg_data : workload_inputs {
  std::string conninfo;
  pools p;
};

/// Creates and seeds the bench's schema and the inputs (untimed).
pg_data prepare(const std::string& conninfo, const sizes& n, const pools& p);

/// W1: n.w1_ops lookups, n.in_flight at a time; the loop lag probed when `probe`.
sample measure_point_reads(const pg_data& d, contender c, bool probe);
/// W2: n.w2_ops adds started at once and awaited together; S makes them one by one. Checks every row.
sample measure_batch_insert(const pg_data& d, contender c, bool probe);
/// W4: 90% get_by_name / 10% add, n.in_flight at a time; the loop lag probed when `probe`.
sample measure_mixed(const pg_data& d, contender c, bool probe);

}  // namespace bench::pg
