#pragma once
// on_open's failures, named after the connection they happened on, for both backends.
#include <asyncdb/options.hpp>

#include <exception>
#include <stdexcept>
#include <string>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The backend's own error type `Error` keeps its type (callers catch SQLite::Exception or pqxx::sql_error),
// rebuilt by `rebuild(e, prefix)` with the connection's name in front; anything else is nested in a
// std::runtime_error that names it (std::rethrow_if_nested gives the original back).
template <class Error, class Connection, class Rebuild>
void run_on_open(const on_open_function<Connection>& on_open, Connection& c, const connection_role& role,
                 Rebuild rebuild) {
  if (!on_open) return;
  try {
    on_open(c, role);
  } catch (const Error& e) {
    throw rebuild(e, "asyncdb: on_open failed on " + role.name() + ": ");
  } catch (const std::exception& e) {
    std::throw_with_nested(std::runtime_error("asyncdb: on_open failed on " + role.name() + ": " + e.what()));
  } catch (...) {
    std::throw_with_nested(std::runtime_error("asyncdb: on_open failed on " + role.name()));
  }
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
