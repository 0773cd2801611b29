#pragma once
// What a lane needs of asyncdb::postgres::options, without the public header.
#include <asyncdb/detail/deadline.hpp>
#include <asyncdb/observer.hpp>
#include <asyncdb/options.hpp>

#include <pqxx/connection>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace asyncdb::detail::pg {

struct lane_settings {
  on_open_function<pqxx::connection> on_open;
  std::chrono::milliseconds reconnect_backoff{100};
  std::chrono::milliseconds max_reconnect_backoff{5000};
  bool refuse_swallowed_errors = true;
  bool read_your_writes = false;
  std::chrono::milliseconds replica_wait{5000};
  // The primary's WAL position after this database's last committed write (read_your_writes).
  std::atomic<std::uint64_t>* written_lsn = nullptr;
  // Connection hygiene (postgres::options): 0 turns each off; milliseconds::max() never comes (saturated).
  std::chrono::milliseconds max_lifetime{0};
  std::chrono::milliseconds idle_validation_after{0};
  std::chrono::milliseconds validation_timeout{5000};  // the bound on that round trip: connect_timeout's
  operation_observer observer;                         // postgres::options::observer
};

// "16/B374D848" as one number; 0 when it is not an LSN.
inline std::uint64_t parse_lsn(const char* text) noexcept {
  unsigned hi = 0, lo = 0;
  if (text == nullptr || std::sscanf(text, "%X/%X", &hi, &lo) != 2) return 0;
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

// Adds connect_timeout to a conninfo string or URI that sets none, so that no connect blocks for long.
inline std::string with_connect_timeout(std::string conninfo, std::chrono::seconds timeout) {
  if (timeout.count() <= 0 || conninfo.find("connect_timeout") != std::string::npos) return conninfo;
  const std::string kv = "connect_timeout=" + std::to_string(timeout.count());
  if (conninfo.rfind("postgres://", 0) == 0 || conninfo.rfind("postgresql://", 0) == 0) {
    return conninfo + (conninfo.find('?') == std::string::npos ? "?" : "&") + kv;
  }
  return conninfo + (conninfo.empty() ? "" : " ") + kv;
}

}  // namespace asyncdb::detail::pg
