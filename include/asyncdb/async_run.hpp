#pragma once
// The token-based primitive every other asyncdb operation is built on.
#include <asyncdb/database.hpp>
#include <asyncdb/detail/sqlite/initiate.hpp>
#include <asyncdb/routing.hpp>

#include <source_location>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Runs `fn(SQLite::Database&) -> R` on the writer connection.
/// Completion: void(std::exception_ptr, R), or void(std::exception_ptr) when R is void.
/// Resumes on the handler's associated executor (the coroutine's, for use_awaitable), never a database thread.
/// Thread-safe. Errors reach the handler: fn's own exception, errc::closed, errc::queue_full, operation_aborted.
template <class Fn, class Token = const net::use_awaitable_t<>&>
requires(!std::is_same_v<std::decay_t<Fn>, read_only_t>) auto async_run(
    database& db, Fn&& fn, Token&& token = net::use_awaitable,
    std::source_location where = std::source_location::current()) {
  return detail::async_run_on<detail::sqlite_backend>(detail::database_access::of(db), false, std::forward<Fn>(fn),
                                                      std::forward<Token>(token), where);
}

/// Runs `fn(SQLite::Database&) -> R` on a read-only connection (the writer when options::readers is 0).
/// Completion, executor, thread safety and errors as for the writer overload; writes fail with SQLITE_READONLY.
template <class Fn, class Token = const net::use_awaitable_t<>&>
auto async_run(database& db, read_only_t, Fn&& fn, Token&& token = net::use_awaitable,
               std::source_location where = std::source_location::current()) {
  return detail::async_run_on<detail::sqlite_backend>(detail::database_access::of(db), true, std::forward<Fn>(fn),
                                                      std::forward<Token>(token), where);
}

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
