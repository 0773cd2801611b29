#pragma once
// The sweep: W1's throughput and latency against the operations in flight and the readers, for S, the
// hand-rolled peer and asyncdb, written as JSON for scripts/bench-plot.sh.
#include <cstddef>
#include <iosfwd>
#include <vector>

#include "workloads.hpp"

namespace bench {

/// What the sweep covers; the defaults keep it to a few minutes on a 2-core machine.
struct sweep_plan {
  std::size_t ops = 20'000;  // lookups per point
  int runs = 3;              // measurements per point, the contenders interleaved; each figure is their median
  std::vector<std::size_t> in_flight = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  std::vector<std::size_t> readers = {1, 2, 4};  // asyncdb's readers, the peer's pool threads; S has neither
};

/// One measured point.
struct sweep_point {
  contender who = contender::s;
  std::size_t readers = 0;  // 0 for S
  std::size_t in_flight = 0;
  sample s;
};

/// Measures every point `plan.runs` times, the contenders interleaved, printing progress on stderr. S, which
/// runs one call at a time whatever the shape, is measured once per in-flight count and run.
std::vector<sweep_point> run_sweep(const bench_data& d, const sweep_plan& plan);

/// The points as JSON; `header` is the run's description, already formatted as JSON members.
void write_sweep_json(std::ostream& out, const std::string& header, const sweep_plan& plan,
                      const std::vector<sweep_point>& points);

}  // namespace bench
