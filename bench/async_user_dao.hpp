#pragma once
// UserDao made awaitable through asyncdb's public API, as a user would: the whole class lifted with
// to_async_db_oper, its three reads declared read-only so they run on the reader connections.
#include <asyncdb/asyncdb.hpp>

#include "user_dao.hpp"
#include "workloads.hpp"

template <>
inline constexpr bool asyncdb::is_read_only<&bench::UserDao::get_by_name> = true;
template <>
inline constexpr bool asyncdb::is_read_only<&bench::UserDao::list> = true;
template <>
inline constexpr bool asyncdb::is_read_only<&bench::UserDao::get_active_users> = true;

namespace bench {

class AsyncUserDao : public asyncdb::to_async_db_oper<AsyncUserDao, UserDao> {
 public:
  using to_async_db_oper::to_async_db_oper;
  auto get_by_name(const std::string& name) const { return call<&UserDao::get_by_name>(name); }
  auto add(const UserCreate& u) const { return call<&UserDao::add>(u); }
  auto list() const { return call<&UserDao::list>(); }
  auto get_active_users() const { return call<&UserDao::get_active_users>(); }
};

/// `--readers` readers (2, the default), busy_timeout=5000 through asyncdb's own option, the pragmas on every
/// connection.
inline asyncdb::options asyncdb_options(durability d) {
  asyncdb::options o;
  o.readers = asyncdb_readers;
  o.poll_before_sleep = asyncdb_poll;
  o.busy_timeout = std::chrono::milliseconds(5000);
  o.on_open = [d](SQLite::Database& c) { apply_pragmas(c, d); };
  return o;
}

}  // namespace bench
