#pragma once
// Read/write routing: which connection an operation runs on.
#include <asyncdb/detail/config.hpp>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Tag that sends an operation or session to a read-only connection.
struct read_only_t {
  explicit read_only_t() = default;
};

/// The tag value: `async_run(db, asyncdb::read_only, fn)`, `async_db_session(db, asyncdb::read_only)`.
inline constexpr read_only_t read_only{};

/// Specialize as true for a DAO member or function that only reads: it runs on the readers, in parallel.
template <auto Operation>
inline constexpr bool is_read_only = false;

/// Specialize as true for a DAO member or function that writes: it goes straight to the writer.
/// Undeclared operations first try a reader and move to the writer, for good, the first time they write.
template <auto Operation>
inline constexpr bool is_write = false;

/// A list of DAO members, for routing declared inside a to_async_db_oper class, where every translation
/// unit that sees the class sees it: `using read_only_members = asyncdb::members<&Dao::list>;` and
/// `using write_members = asyncdb::members<&Dao::add>;` (public).
template <auto... Members>
struct members {};

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
