#pragma once
// Names one connection of a database, for on_open, the operation observer and error messages.
#include <asyncdb/detail/config.hpp>

#include <cstddef>
#include <string>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Which of a database's connections: the one on_open prepares, or the one an operation ran on.
struct connection_role {
  /// Which kind of connection.
  enum kind_type : unsigned char {
    writer,  ///< SQLite's writer, or a PostgreSQL connection to the primary serving writes
    reader,  ///< a read-only connection (SQLite reader, read-only primary connection, or replica)
  };
  kind_type kind = writer;  ///< writer or reader
  std::size_t index = 0;    ///< 0-based among the database's connections of this kind
  int replica = -1;         ///< PostgreSQL: its server's index in options::replicas; -1 for the primary

  /// True for the writer (SQLite) or a writer on the primary (PostgreSQL).
  bool is_writer() const noexcept { return kind == writer; }

  /// "writer 0", "reader 1", "reader 0 (replica 1)": how errors name the connection.
  std::string name() const {
    std::string n = (kind == writer ? "writer " : "reader ") + std::to_string(index);
    return replica < 0 ? n : n + " (replica " + std::to_string(replica) + ")";
  }
};

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
