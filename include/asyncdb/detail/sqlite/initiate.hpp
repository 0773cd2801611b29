#pragma once
// What SQLite gives the core's initiation (detail/initiate.hpp): its queue choice, with route detection.
#include <asyncdb/detail/initiate.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/sqlite/engine.hpp>
#include <asyncdb/detail/sqlite/invoke.hpp>
#include <asyncdb/detail/sqlite/run_op.hpp>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

struct sqlite_backend {
  using hooks = sqlite_hooks;
  using engine_type = engine;

  // Chosen when the operation starts, not when its awaitable is made: what was learned meanwhile counts.
  static job_queue& pick(engine& e, route r, op_route& where) {
    switch (r) {
      case route::reader:
        return e.queue(true);
      case route::writer:
        return e.writer_queue();
      case route::detect:
        break;
    }
    if (!e.has_readers() || where.kind->writes.load(std::memory_order_relaxed)) return e.writer_queue();
    where.on_write = &e.writer_queue();
    return e.queue(true);
  }

  // An operation that moves from its arguments runs once: never a trial on a reader that the writer
  // would repeat.
  template <auto F, class Owner>
  static constexpr route route_of() noexcept {
    constexpr route declared = declared_route<F, Owner>();
    return consumes_arguments<F> && declared == route::detect ? route::writer : declared;
  }

  template <class Tag>
  static op_kind* kind() noexcept {
    return &kind_of<Tag>;
  }
};

// Nor in a group commit, which runs its members again alone when the shared transaction is lost:
// such an operation starts out as one that needs a transaction of its own.
template <auto F>
requires consumes_arguments<F>
inline op_kind kind_of<operation_tag<F>>{{false}, {true}};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
