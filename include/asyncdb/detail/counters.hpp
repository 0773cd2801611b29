#pragma once
#include <asyncdb/detail/config.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Shared (by shared_ptr) between a database and its sessions' queues, so that a session
// outliving its database never touches freed counters. Relaxed atomics: these are statistics,
// except `queued`, whose fetch_add is the admission check and needs no ordering with other data.
struct counters {
  std::atomic<std::size_t> queued{0};
  std::atomic<std::size_t> running{0};
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> cancelled{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::int64_t> queue_wait_ns{0};
  std::atomic<std::uint64_t> group_commits{0};
  std::atomic<std::uint64_t> grouped{0};
  std::atomic<std::uint64_t> rerouted{0};
  std::size_t max_queued = 0;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
