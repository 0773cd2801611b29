#include "report.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <ostream>
#include <sstream>
#include <string>

namespace bench {

int row::ahead_of_peer() const {
  if (std::isnan(peer) || std::isnan(asyncdb)) return -1;
  return (higher_is_better ? asyncdb > peer : asyncdb < peer) ? 1 : 0;
}

namespace {

std::string format(double v, const std::string& unit) {
  if (std::isnan(v)) return "-";
  char buf[64];
  if (unit == "ops/s") {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (unit == "s") {
    std::snprintf(buf, sizeof buf, "%.4f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  }
  return buf;
}

std::string ratio(double v) {
  if (std::isnan(v) || std::isinf(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", v);
  return buf;
}

std::string pad(const std::string& s, std::size_t width, bool right = false) {
  if (s.size() >= width) return s;
  const std::string fill(width - s.size(), ' ');
  return right ? fill + s : s + fill;
}

std::string json_number(double v) {
  if (std::isnan(v) || std::isinf(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

const char* verdict(int met) { return met < 0 ? "" : met > 0 ? "ok" : "MISS"; }

// The limit is shown where it depends on a measured figure (">= 1.2x S [112000]").
std::string target_text(const row& r) {
  if (r.target.find('S') == std::string::npos || std::isnan(r.target_limit)) return r.target;
  return r.target + " [" + format(r.target_limit, r.unit) + "]";
}

}  // namespace

const char* name_of(contender c) {
  switch (c) {
    case contender::s:
      return "S";
    case contender::s_bulk:
      return "S-bulk";
    case contender::peer:
      return "peer";
    case contender::asyncdb:
      return "asyncdb";
  }
  return "?";
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

row make_row(const std::string& id, const std::string& what, const std::string& unit, bool higher_is_better,
             const samples& from, double sample::*field) {
  row r;
  r.id = id;
  r.what = what;
  r.unit = unit;
  r.higher_is_better = higher_is_better;
  for (const auto& [c, list] : from) {
    std::vector<double> values;
    for (const sample& s : list) values.push_back(s.*field);
    if (std::all_of(values.begin(), values.end(), [](double v) { return std::isnan(v); })) continue;
    const double m = median(values);
    r.runs[name_of(c)] = values;
    switch (c) {
      case contender::s:
        r.s = m;
        break;
      case contender::s_bulk:
        r.s_bulk = m;
        break;
      case contender::peer:
        r.peer = m;
        break;
      case contender::asyncdb:
        r.asyncdb = m;
        break;
    }
  }
  return r;
}

void set_target(row& r, const std::string& text, double value, double limit, bool at_least) {
  r.target = text;
  r.target_limit = limit;
  if (std::isnan(value) || std::isnan(limit)) return;
  r.target_met = (at_least ? value >= limit : value <= limit) ? 1 : 0;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string progress_value(const sample& s) {
  std::ostringstream o;
  if (!std::isnan(s.ops_per_s)) o << static_cast<long long>(s.ops_per_s) << " ops/s";
  if (std::isnan(s.ops_per_s) && !std::isnan(s.seconds)) o << s.seconds << " s";
  if (!std::isnan(s.p50_us)) o << ", p50 " << s.p50_us << " us, p99 " << s.p99_us << " us";
  if (!std::isnan(s.allocs_per_op)) o << ", " << s.allocs_per_op << " allocs/op";
  if (!std::isnan(s.lag_ms)) o << ", lag " << s.lag_ms << " ms";
  if (!std::isnan(s.client_cpu_us)) o << ", CPU/op client " << s.client_cpu_us << " us";
  if (!std::isnan(s.server_cpu_us)) o << " server " << s.server_cpu_us << " us";
  if (!std::isnan(s.switches_per_op)) o << ", " << s.switches_per_op << " switches/op";
  return o.str();
}

double load_average() {
  double load[1] = {NAN};
  return getloadavg(load, 1) == 1 ? load[0] : NAN;
}

std::set<std::string> split_list(const std::string& list) {
  std::set<std::string> out;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.insert(item);
  }
  return out;
}

void print_table(std::ostream& out, const run_info& info, const std::vector<row>& rows) {
  out << "asyncdb bench, " << info.date << ", " << info.host << " (" << info.cores << " cores), " << info.compiler
      << ", " << info.backend << "\n"
      << (info.quick ? "QUICK sizes (1/20)" : "exact WORKLOADS.md sizes") << ", median of " << info.runs << " runs; "
      << info.contenders << "\n"
      << "1-minute load average before / after: " << format(info.load_before, "") << " / "
      << format(info.load_after, "") << " (anything well above 0 on " << info.cores << " cores means noisy figures)\n"
      << "ratios: value(asyncdb) / value(S or peer); 'better' says which direction wins\n\n";
  const std::size_t w[] = {5, 38, 11, 7, 11, 11, 11, 11, 8, 11, 30, 4};
  const char* heads[] = {"id",
                         "figure",
                         "unit",
                         "better",
                         "S",
                         "S-bulk",
                         "peer",
                         "asyncdb",
                         "async/S",
                         "async/peer",
                         info.target_head.c_str(),
                         ""};
  std::string line;
  for (std::size_t i = 0; i < std::size(heads); ++i) line += pad(heads[i], w[i], i >= 4 && i <= 9) + " ";
  out << line << "\n" << std::string(line.size(), '-') << "\n";
  for (const row& r : rows) {
    std::string peer_ratio = ratio(r.over_peer());
    if (r.ahead_of_peer() == 0) peer_ratio = "!" + peer_ratio;
    const std::string cells[] = {r.id,
                                 r.what,
                                 r.unit,
                                 r.higher_is_better ? "higher" : "lower",
                                 format(r.s, r.unit),
                                 format(r.s_bulk, r.unit),
                                 format(r.peer, r.unit),
                                 format(r.asyncdb, r.unit),
                                 ratio(r.over_s()),
                                 peer_ratio,
                                 target_text(r),
                                 verdict(r.target_met)};
    line.clear();
    for (std::size_t i = 0; i < std::size(cells); ++i) line += pad(cells[i], w[i], i >= 4 && i <= 9) + " ";
    out << line << "\n";
  }
  int targets = 0, met = 0, compared = 0, ahead = 0;
  for (const row& r : rows) {
    targets += r.target_met >= 0 ? 1 : 0;
    met += r.target_met > 0 ? 1 : 0;
    compared += r.ahead_of_peer() >= 0 ? 1 : 0;
    ahead += r.ahead_of_peer() > 0 ? 1 : 0;
  }
  out << "\ntargets met: " << met << " of " << targets << "; asyncdb ahead of the peer on " << ahead << " of "
      << compared << " figures ('!' marks the others). Wall time " << info.wall_seconds << " s (seeding "
      << info.seed_seconds << " s).\n";
}

void write_json(std::ostream& out, const run_info& info, const std::vector<row>& rows) {
  out << "{\n  \"date\": " << json_string(info.date) << ",\n  \"host\": " << json_string(info.host)
      << ",\n  \"cores\": " << info.cores << ",\n  \"compiler\": " << json_string(info.compiler)
      << ",\n  \"backend\": " << json_string(info.backend) << ",\n  \"quick\": " << (info.quick ? "true" : "false")
      << ",\n  \"runs\": " << info.runs << ",\n  \"wall_seconds\": " << json_number(info.wall_seconds)
      << ",\n  \"seed_seconds\": " << json_number(info.seed_seconds)
      << ",\n  \"load_before\": " << json_number(info.load_before)
      << ",\n  \"load_after\": " << json_number(info.load_after) << ",\n  \"sizes\": {";
  const char* sep = "";
  for (const auto& [k, v] : info.sizes) {
    out << sep << json_string(k) << ": " << json_number(v);
    sep = ", ";
  }
  out << "},\n  \"rows\": [";
  sep = "\n";
  for (const row& r : rows) {
    out << sep << "    {\"id\": " << json_string(r.id) << ", \"figure\": " << json_string(r.what)
        << ", \"unit\": " << json_string(r.unit)
        << ", \"better\": " << json_string(r.higher_is_better ? "higher" : "lower")
        << ",\n     \"S\": " << json_number(r.s) << ", \"S_bulk\": " << json_number(r.s_bulk)
        << ", \"peer\": " << json_number(r.peer) << ", \"asyncdb\": " << json_number(r.asyncdb)
        << ",\n     \"asyncdb_over_S\": " << json_number(r.over_s())
        << ", \"asyncdb_over_peer\": " << json_number(r.over_peer()) << ", \"ahead_of_peer\": "
        << (r.ahead_of_peer() < 0   ? "null"
            : r.ahead_of_peer() > 0 ? "true"
                                    : "false")
        << ",\n     \"target\": " << (r.target.empty() ? "null" : json_string(r.target))
        << ", \"target_limit\": " << json_number(r.target_limit) << ", \"target_met\": "
        << (r.target_met < 0   ? "null"
            : r.target_met > 0 ? "true"
                               : "false")
        << ",\n     \"runs\": {";
    const char* sep2 = "";
    for (const auto& [who, values] : r.runs) {
      out << sep2 << json_string(who) << ": [";
      const char* sep3 = "";
      for (const double v : values) {
        out << sep3 << json_number(v);
        sep3 = ", ";
      }
      out << "]";
      sep2 = ", ";
    }
    out << "}}";
    sep = ",\n";
  }
  out << "\n  ]\n}\n";
}

}  // namespace bench
