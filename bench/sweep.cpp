#include "sweep.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include "report.hpp"

namespace bench {

std::vector<sweep_point> run_sweep(const bench_data& d, const sweep_plan& plan) {
  std::vector<sweep_point> points;
  const auto measure = [&](contender c, std::size_t readers, std::size_t in_flight) {
    read_shape shape;
    shape.in_flight = in_flight;
    shape.ops = plan.ops;
    shape.readers = readers;
    shape.latencies = true;
    sweep_point p{c, readers, in_flight, measure_point_reads(d, c, shape)};
    std::cerr << "  sweep " << name_of(c) << " readers " << readers << " in flight " << in_flight << ": "
              << progress_value(p.s) << "\n";
    points.push_back(p);
  };
  for (const std::size_t k : plan.in_flight) {
    measure(contender::s, 0, k);
    for (const std::size_t r : plan.readers) {
      measure(contender::peer, r, k);
      measure(contender::asyncdb, r, k);
    }
  }
  return points;
}

namespace {
std::string number(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}
}  // namespace

void write_sweep_json(std::ostream& out, const std::string& header, const sweep_plan& plan,
                      const std::vector<sweep_point>& points) {
  out << "{\n" << header << ",\n  \"ops_per_point\": " << plan.ops << ",\n  \"points\": [";
  const char* sep = "\n";
  for (const sweep_point& p : points) {
    out << sep << "    {\"contender\": \"" << name_of(p.who) << "\", \"readers\": " << p.readers
        << ", \"in_flight\": " << p.in_flight << ", \"ops_per_s\": " << number(p.s.ops_per_s)
        << ", \"p50_us\": " << number(p.s.p50_us) << ", \"p99_us\": " << number(p.s.p99_us)
        << ", \"cpu_us_per_op\": " << number(p.s.client_cpu_us)
        << ", \"switches_per_op\": " << number(p.s.switches_per_op)
        << ", \"allocs_per_op\": " << number(p.s.allocs_per_op) << "}";
    sep = ",\n";
  }
  out << "\n  ]\n}\n";
}

}  // namespace bench
