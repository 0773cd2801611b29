#pragma once
// The database's operation observer (asyncdb::options::observer): every operation into the metrics, and the slow ones
// into a log line on stderr.

#include <asyncdb/observer.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>

#include "metrics.hpp"

namespace users_service {

/// One line for an operation: its name, times, outcome and, where known, the source line that started it (a run() or
/// the session it ran in; a call<&Dao::member> is named by its member).
inline std::string describe_operation(const asyncdb::operation_record& r) {
  const auto ms = [](std::chrono::nanoseconds d) {
    return std::to_string(std::chrono::duration<double, std::milli>(d).count());
  };
  std::string line = "slow db operation: " + std::string{r.name} + ' ' + ms(r.queued + r.running) + " ms (queued " +
                     ms(r.queued) + " ms, ran " + ms(r.running) + " ms) " + metrics::outcome_name(r.outcome);
  if (r.where.line() != 0) line += std::string{" at "} + r.where.file_name() + ':' + std::to_string(r.where.line());
  return line;
}

/// The observer: records every operation in `m` and logs those that took `slow` or longer, queue wait included (none
/// logged without `slow`). It runs on a database thread: the log is one write of a whole line, nothing waits for it.
inline asyncdb::operation_observer observe_operations(metrics& m, std::optional<std::chrono::milliseconds> slow) {
  return [&m, slow](const asyncdb::operation_record& r) {
    m.record_operation(r);
    if (slow && r.queued + r.running >= *slow) {
      const std::string line = describe_operation(r) + '\n';
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  };
}

}  // namespace users_service
