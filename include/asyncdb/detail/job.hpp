#pragma once
#include <chrono>
#include <system_error>

namespace asyncdb::detail {

class lane;

// A unit of work a lane executes. Every job ends in exactly one of execute() or fail(): a queue
// that refuses or drops a job calls fail(), a lane that pops it calls execute().
class job {
 public:
  job() = default;
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  virtual ~job() = default;

  virtual void execute(lane& l) noexcept = 0;
  virtual void fail(std::error_code ec) noexcept = 0;

  std::chrono::steady_clock::time_point enqueued_at{};
};

}  // namespace asyncdb::detail
