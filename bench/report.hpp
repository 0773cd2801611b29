#pragma once
// The result table: one row per figure, medians per contender, ratios, targets; printed and as JSON.
#include <cmath>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace bench {

/// One figure of one workload, e.g. W1 throughput. NaN where a contender does not apply.
struct row {
  std::string id;    // "W1", "W1c1", ..., "L"
  std::string what;  // "point reads, 64 in flight"
  std::string unit;  // "ops/s", "s", "us", "ms", "allocs/op"
  bool higher_is_better = true;
  double s = NAN;       // S (S-naive for W2 and W2f)
  double s_bulk = NAN;  // W2 and W2f only
  double peer = NAN;
  double asyncdb = NAN;
  std::map<std::string, std::vector<double>> runs;  // contender name -> one value per run
  std::string target;                               // issue 4 section 4, empty if none
  double target_limit = NAN;                        // the value asyncdb must reach
  int target_met = -1;                              // -1: no target, 0: missed, 1: met

  double over_s() const { return asyncdb / s; }
  double over_peer() const { return asyncdb / peer; }
  /// -1 when there is no peer figure.
  int ahead_of_peer() const;
};

/// What the report says about the run itself.
struct run_info {
  std::string date;  // UTC, ISO 8601
  std::string host;
  unsigned cores = 0;
  std::string compiler;
  std::string sqlite;
  bool quick = false;
  int runs = 3;
  double wall_seconds = 0;
  double load_before = NAN;  // 1-minute load average: other processes make the figures noisy
  double load_after = NAN;
  double seed_seconds = 0;
  std::map<std::string, double> sizes;
};

void print_table(std::ostream& out, const run_info& info, const std::vector<row>& rows);
void write_json(std::ostream& out, const run_info& info, const std::vector<row>& rows);

}  // namespace bench
