#pragma once
// GET /metrics: Prometheus text exposition 0.0.4 of db.stats() and of the HTTP requests served.

#include <asyncdb/stats.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>

namespace users_service {

// A label value with Prometheus' three escapes (backslash, quote, newline).
inline std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Requests by route and status, and the time spent answering them by route. Thread-safe.
class http_metrics {
 public:
  void record(const std::string& route, int status, std::chrono::steady_clock::duration took) {
    const std::lock_guard lock{mutex_};
    ++requests_[{route, status}];
    auto& [sum, count] = durations_[route];
    sum += std::chrono::duration<double>(took).count();
    ++count;
  }

  void render(std::ostream& out) const {
    const std::lock_guard lock{mutex_};
    out << "# HELP users_service_http_requests_total HTTP requests answered, by route and status.\n"
           "# TYPE users_service_http_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out << "users_service_http_requests_total{route=\"" << label(key.first) << "\",status=\"" << key.second << "\"} "
          << n << '\n';
    out << "# HELP users_service_http_request_duration_seconds Time from a request's arrival to its response.\n"
           "# TYPE users_service_http_request_duration_seconds summary\n";
    for (const auto& [route, d] : durations_) {
      out << "users_service_http_request_duration_seconds_sum{route=\"" << label(route) << "\"} " << d.first << '\n';
      out << "users_service_http_request_duration_seconds_count{route=\"" << label(route) << "\"} " << d.second << '\n';
    }
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::uint64_t> requests_;
  std::map<std::string, std::pair<double, std::uint64_t>> durations_;
};

inline void render_db_stats(std::ostream& out, const asyncdb::stats& s) {
  auto metric = [&out](const char* name, const char* type, const char* help, auto value) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n'
        << name << ' ' << value << '\n';
  };
  auto seconds = [](std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); };
  metric("asyncdb_operations_queued", "gauge", "Operations accepted and not started yet.", s.queued);
  metric("asyncdb_operations_running", "gauge", "Operations executing on a connection now.", s.running);
  metric("asyncdb_operations_completed_total", "counter", "Operations finished without an exception.", s.completed);
  metric("asyncdb_operations_failed_total", "counter", "Operations finished with an exception.", s.failed);
  metric("asyncdb_operations_cancelled_total", "counter", "Operations cancelled while queued or running.", s.cancelled);
  metric("asyncdb_operations_rejected_total", "counter", "Operations refused at once (queue full or closed).",
         s.rejected);
  metric("asyncdb_queue_wait_seconds_total", "counter", "Total time started operations spent queued.",
         seconds(s.queue_wait));
  metric("asyncdb_group_commits_total", "counter", "Shared transactions committed by the writer.", s.group_commits);
  metric("asyncdb_grouped_operations_total", "counter", "Writes committed by a shared transaction.", s.grouped);
  metric("asyncdb_rerouted_operations_total", "counter", "Undeclared operations moved from a reader to the writer.",
         s.rerouted);
  const char* kind = s.writer.what == asyncdb::writer_holder::kind::operation ? "operation"
                     : s.writer.what == asyncdb::writer_holder::kind::session ? "session"
                                                                              : "none";
  out << "# HELP asyncdb_writer_held_seconds How long the current holder has held the writer connection.\n"
         "# TYPE asyncdb_writer_held_seconds gauge\n"
      << "asyncdb_writer_held_seconds{holder=\"" << kind << "\",name=\"" << label(s.writer.name) << "\"} "
      << seconds(s.writer.held_for) << '\n';
}

}  // namespace users_service
