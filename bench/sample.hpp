#pragma once
// What one measurement yields, and who made it; shared by the SQLite and the PostgreSQL bench.
#include <cmath>

namespace bench {

/// Who runs the DAO calls. `s_bulk` exists for SQLite's W2 and W2f only (all inserts in one transaction).
enum class contender { s, s_bulk, peer, asyncdb };

/// One measurement; NaN where a field does not apply.
struct sample {
  double ops_per_s = NAN;
  double seconds = NAN;
  double p50_us = NAN;
  double p99_us = NAN;
  double us_per_op = NAN;
  double allocs_per_op = NAN;
  double lag_ms = NAN;
  double client_cpu_us = NAN;    // the bench process's CPU (all threads) per operation
  double switches_per_op = NAN;  // the bench process's context switches (voluntary + involuntary) per operation
  double server_cpu_us = NAN;    // the server backends' CPU per operation (PostgreSQL on this machine only)
  double cores_busy = NAN;       // (client + server CPU) / wall time: how many cores the contender kept busy
};

}  // namespace bench
