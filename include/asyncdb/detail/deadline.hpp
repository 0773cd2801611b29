#pragma once
// Deadlines and waits made from user durations, for every backend. Users spell "no bound" duration::max(), so
// `now() + d` saturates instead of overflowing: signed overflow is undefined, and wrapped it is an instant expiry.
#include <asyncdb/detail/config.hpp>

#include <algorithm>
#include <chrono>
#include <ratio>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// `now + d`, or the clock's last instant when that is past it; `now` for a negative `d`. Compared in `d`'s own
// unit: converting max() to the clock's nanoseconds would overflow too.
template <class Rep, class Period>
std::chrono::steady_clock::time_point saturating_deadline(std::chrono::steady_clock::time_point now,
                                                          std::chrono::duration<Rep, Period> d) noexcept {
  using clock = std::chrono::steady_clock;
  static_assert(std::ratio_greater_equal_v<Period, clock::period>, "a duration finer than the clock's");
  using duration = std::chrono::duration<Rep, Period>;
  if (d <= duration::zero()) return now;
  if (d >= std::chrono::duration_cast<duration>(clock::time_point::max() - now)) return clock::time_point::max();
  return now + std::chrono::duration_cast<clock::duration>(d);
}

// A wait of `d` at most a century: condition_variable::wait_for adds it to now() in nanoseconds. A century is
// never enough.
template <class Rep, class Period>
std::chrono::duration<Rep, Period> capped_wait(std::chrono::duration<Rep, Period> d) noexcept {
  using duration = std::chrono::duration<Rep, Period>;
  return std::min(d, std::chrono::duration_cast<duration>(std::chrono::hours(24 * 365 * 100)));
}

// `2 * d`, or max() past it (a backoff that doubles up to a bound the user may set to max()).
template <class Rep, class Period>
std::chrono::duration<Rep, Period> saturating_double(std::chrono::duration<Rep, Period> d) noexcept {
  using duration = std::chrono::duration<Rep, Period>;
  return d > duration::max() / 2 ? duration::max() : d * 2;
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
