#pragma once
// Names one connection of a database, for on_open, the operation observer and error messages.
#include <asyncdb/detail/config.hpp>

#include <cstddef>
#include <string>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Which of a database's connections: the one on_open prepares, or the one an operation ran on.
struct connection_role {
  enum kind_type : unsigned char { writer, reader };

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
