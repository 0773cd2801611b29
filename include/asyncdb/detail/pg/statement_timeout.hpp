#pragma once
// An operation's budget on the server: its statements run under a statement_timeout of the budget plus a
// margin, so that a client that dies, or a cancel request that is lost, does not leave them running. The
// client's own cancel (at the deadline) normally comes first; the server's is the backstop.
#include <asyncdb/detail/pg/connection.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>

namespace asyncdb::detail::pg {

// What one lane knows of its connection's statement_timeout, and the rule that picks the value an operation
// runs under. Round trips: none for operations without a budget while asyncdb has set nothing; for budgeted
// ones, one the first time on a connection (to learn the connection's own value), then a SET only when the
// value in place is outside the operation's window (below what is left of its budget plus the margin, or
// above its whole budget plus the margin). Operations of one budget (the database's default) share one SET
// per connection. On the lane's thread only.
class statement_timeout {
 public:
  // Long enough for the client's cancel request (a timer, a connection and a fork on the server) to win.
  static constexpr std::chrono::milliseconds margin{500};

  // A new connection: nothing is known of it.
  void reset() noexcept { *this = statement_timeout(); }

  // Before an operation runs on `c`. Best effort: a SET that fails (a failed transaction, a lost connection)
  // leaves the operation to fail on its own, and the value unknown.
  void prepare(connection& c, std::chrono::steady_clock::time_point deadline,
               std::chrono::nanoseconds budget) noexcept {
    if (deadline == std::chrono::steady_clock::time_point::max()) {
      // The connection's own value (server, role, on_open) again, once asyncdb has changed it.
      if (own_ >= 0 && current_ != own_) set(c, own_);
      return;
    }
    if (own_ < 0) {
      own_ = c.integer("SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'");
      if (own_ < 0) return;
      current_ = own_;
    }
    const auto left = std::max(deadline - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration{});
    std::int64_t low = ms(left) + margin.count();
    std::int64_t high = std::max(low, ms(budget) + margin.count());
    // A tighter limit of the connection's own is its owner's choice: asyncdb never raises it. The server
    // takes at most INT_MAX ms.
    const std::int64_t cap = own_ > 0 ? std::min(own_, longest) : longest;
    low = std::min(low, cap);
    high = std::min(high, cap);
    if (current_ > 0 && current_ >= low && current_ <= high) return;
    set(c, high);
  }

 private:
  static constexpr std::int64_t longest = std::numeric_limits<std::int32_t>::max();

  static std::int64_t ms(std::chrono::nanoseconds d) noexcept {
    return std::chrono::ceil<std::chrono::milliseconds>(d).count();
  }

  // Inside a transaction block (a session's) the SET is undone if the block, or a savepoint the lane rolls
  // back to, is rolled back: the value is then unknown, and set again before the next operation that cares.
  void set(connection& c, std::int64_t value) noexcept {
    const bool in_block = c.in_transaction();
    char sql[64];
    std::snprintf(sql, sizeof sql, "SET statement_timeout = %lld", static_cast<long long>(value));
    current_ = c.exec_own(sql) && !in_block ? value : -1;
  }

  std::int64_t own_ = -1;      // the connection's value before asyncdb set any (ms, 0: none); -1 unknown
  std::int64_t current_ = -1;  // the value in place now; -1 unknown
};

}  // namespace asyncdb::detail::pg
