#include "sweep.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <tuple>

#include "report.hpp"

namespace bench {

std::vector<sweep_point> run_sweep(const bench_data& d, const sweep_plan& plan) {
  std::vector<sweep_point> points;
  std::map<std::tuple<contender, std::size_t, std::size_t>, std::vector<sample>> runs;
  const auto measure = [&](contender c, std::size_t readers, std::size_t in_flight) {
    read_shape shape;
    shape.in_flight = in_flight;
    shape.ops = plan.ops;
    shape.readers = readers;
    shape.latencies = true;
    const sample s = measure_point_reads(d, c, shape);
    std::cerr << "  sweep " << name_of(c) << " readers " << readers << " in flight " << in_flight << ": "
              << progress_value(s) << "\n";
    runs[{c, readers, in_flight}].push_back(s);
  };
  for (int r = 0; r < plan.runs; ++r) {
    for (const std::size_t k : plan.in_flight) {
      measure(contender::s, 0, k);
      for (const std::size_t readers : plan.readers) {
        measure(contender::peer, readers, k);
        measure(contender::asyncdb, readers, k);
      }
    }
  }
  const auto median_of = [](const std::vector<sample>& list, double sample::*field) {
    std::vector<double> v;
    for (const sample& s : list) v.push_back(s.*field);
    return median(v);
  };
  for (const auto& [key, list] : runs) {
    sweep_point p{std::get<0>(key), std::get<1>(key), std::get<2>(key), {}};
    for (double sample::*field : {&sample::ops_per_s, &sample::p50_us, &sample::p99_us, &sample::client_cpu_us,
                                  &sample::switches_per_op, &sample::allocs_per_op}) {
      p.s.*field = median_of(list, field);
    }
    points.push_back(p);
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
  out << "{\n"
      << header << ",\n  \"ops_per_point\": " << plan.ops << ",\n  \"runs_per_point\": " << plan.runs
      << ",\n  \"points\": [";
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
