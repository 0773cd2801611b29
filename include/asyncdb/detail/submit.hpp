#pragma once
// What every backend's initiation shares: the completion signature, the one submission path, and the
// token test behind the g++ 12 refusals.
#include <asyncdb/detail/operation.hpp>
#include <asyncdb/error.hpp>

#include <exception>
#include <memory>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class R>
struct signature_of {
  using type = void(std::exception_ptr, R);
};
template <>
struct signature_of<void> {
  using type = void(std::exception_ptr);
};
template <class R>
using signature_t = typename signature_of<R>::type;

// The one submission path of the library: `op` was registered with its handler's context (attached),
// and is queued now; a refusal, or a cancellation that arrived meanwhile, completes it at once. A null
// queue is a session that has ended or was moved from. Refusals count in `rejected` only outside sessions.
inline void enqueue(const std::shared_ptr<operation_base>& op, bool attached, job_queue* queue, counters* stats,
                    bool count_rejection = true) {
  if (!attached) return;
  const error_code ec = op->admit(queue, stats);
  if (!ec) return;
  if (stats != nullptr && ec == net::error::operation_aborted) {
    stats->cancelled.fetch_add(1, std::memory_order_relaxed);
  } else if (stats != nullptr && count_rejection) {
    stats->rejected.fetch_add(1, std::memory_order_relaxed);
  }
  op->fail(ec);
}

template <class T>
inline constexpr bool is_use_awaitable = false;
template <class Executor>
inline constexpr bool is_use_awaitable<net::use_awaitable_t<Executor>> = true;

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
