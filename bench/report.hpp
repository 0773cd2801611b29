#pragma once
// The result table: one row per figure, medians per contender, ratios, targets; printed and as JSON.
#include <cmath>
#include <iosfwd>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "sample.hpp"

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
  std::string backend;      // "SQLite 3.40.1", "PostgreSQL 15.18, libpqxx 6.4.4"
  std::string contenders;   // one line on what S and the peer are
  std::string target_head;  // the head of the target column, "target (issue 4)"
  bool quick = false;
  int runs = 3;
  double wall_seconds = 0;
  double load_before = NAN;  // 1-minute load average: other processes make the figures noisy
  double load_after = NAN;
  double seed_seconds = 0;
  std::map<std::string, double> sizes;
};

/// The contender's name in the table and the JSON: "S", "S-bulk", "peer", "asyncdb".
const char* name_of(contender c);

/// Samples per contender, one per run.
using samples = std::map<contender, std::vector<sample>>;

/// The row of one figure: the median of `field` over each contender's runs, the runs kept for the JSON.
row make_row(const std::string& id, const std::string& what, const std::string& unit, bool higher_is_better,
             const samples& from, double sample::*field);
/// Sets the row's target: `value` must be at least (or at most) `limit`.
void set_target(row& r, const std::string& text, double value, double limit, bool at_least);

/// The median of `v`, NaN when empty.
double median(std::vector<double> v);
/// Now in UTC, ISO 8601.
std::string utc_now();
std::string host_name();
/// The 1-minute load average, NaN when unknown.
double load_average();
/// One sample as the progress lines on stderr show it.
std::string progress_value(const sample& s);
/// "a,b,,c" -> {a, b, c}.
std::set<std::string> split_list(const std::string& list);

void print_table(std::ostream& out, const run_info& info, const std::vector<row>& rows);
void write_json(std::ostream& out, const run_info& info, const std::vector<row>& rows);

}  // namespace bench
