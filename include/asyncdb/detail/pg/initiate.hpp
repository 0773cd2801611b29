#pragma once
// What PostgreSQL gives the core's initiation (detail/initiate.hpp), and what counts as a PostgreSQL operation.
#include <asyncdb/detail/initiate.hpp>
#include <asyncdb/detail/invoke.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/pg/engine.hpp>
#include <asyncdb/detail/pg/run_op.hpp>

#include <pqxx/connection>

#include <type_traits>

namespace asyncdb::detail::pg {

// A DAO of this backend: built from the connection, and not also from an SQLite one.
template <class Dao>
concept dao = std::is_constructible_v<Dao, pqxx::connection&> && !std::is_constructible_v<Dao, SQLite::Database&>;

template <class F>
inline constexpr bool takes_connection = false;
template <class R, class... A>
inline constexpr bool takes_connection<R (*)(pqxx::connection&, A...)> = true;

// A DAO member of this backend, or a function taking pqxx::connection& first.
template <auto F>
concept operation =
    (std::is_member_function_pointer_v<decltype(F)> && dao<member_class_t<F>>) || takes_connection<decltype(F)>;

// detail/invoke.hpp's connection for a free function: the lane's pqxx::connection.
inline pqxx::connection& native_connection(lane& l) noexcept { return l.conn().get(); }

// Read-only operations go to the readers; everything else (undeclared included) to the primary: a
// PostgreSQL connection cannot tell asyncdb that a statement would have written, it only refuses it.
struct backend {
  using hooks = pg::hooks;
  using engine_type = engine;

  static job_queue& pick(engine& e, route r, op_route&) noexcept { return e.queue(r == route::reader); }

  template <auto F, class Owner>
  static constexpr route route_of() noexcept {
    return declared_route<F, Owner>() == route::reader ? route::reader : route::writer;
  }

  // Nothing is learned by running: no route detection, no group commit.
  template <class Tag>
  static op_kind* kind() noexcept {
    return nullptr;
  }
};

}  // namespace asyncdb::detail::pg
