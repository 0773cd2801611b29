#pragma once
// What a lane needs of asyncdb::postgres::options, without the public header.
#include <pqxx/connection>

#include <chrono>
#include <functional>
#include <string>

namespace asyncdb::detail::pg {

struct lane_settings {
  std::function<void(pqxx::connection&)> on_open;
  std::chrono::milliseconds reconnect_backoff{100};
  std::chrono::milliseconds max_reconnect_backoff{5000};
  bool refuse_swallowed_errors = true;
};

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
