#pragma once
// SQLite's side of detail/invoke.hpp: a free function's connection is the lane's SQLite::Database.
#include <asyncdb/detail/invoke.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

inline SQLite::Database& native_connection(lane& l) noexcept { return l.conn().database(); }

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
