#pragma once
// The async face of UserOper (the guide's app/db/async_user_oper.py). Everything asyncdb needs to know
// about the legacy DAO lives here; user_oper.hpp stays untouched.

#include <asyncdb/asyncdb.hpp>

#include "user_oper.hpp"

// A free function used with async_db_operation declares its routing with a specialization.
template <>
inline constexpr bool asyncdb::is_read_only<&get_user_by_name_sync> = true;

// Guide method 1, `AsyncUserOper = to_async_db_oper(UserOper)`: every UserOper method is awaitable through
// call<&UserOper::method>(args...); the named one-liners are for convenience. Each call returns an
// awaitable of the Asio flavour asyncdb is built with (asyncdb::net::awaitable) that holds copies of its arguments.
class AsyncUserOper : public asyncdb::to_async_db_oper<AsyncUserOper, UserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;

  // Read-only members run on the reader connections, in parallel; write members go straight to the one
  // writer. A member in neither list tries a reader first and moves to the writer, for good, the first
  // time it writes.
  using read_only_members =
      asyncdb::members<&UserOper::list, &UserOper::get_by_name, &UserOper::get_by_id, &UserOper::get_active_users,
                       &UserOper::list_page, &UserOper::count_by_activity>;
  using write_members = asyncdb::members<&UserOper::add>;

  auto list() { return call<&UserOper::list>(); }
  auto add(const UserCreate& u) { return call<&UserOper::add>(u); }
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
  // g++ 12 frees twice a UserCreate temporary built inside a co_await, and the const& above would hide it from
  // asyncdb's own check: name the value first (`UserCreate ann{...}; co_await users.add(ann);`).
  void add(UserCreate&&) = delete;
#endif
  auto get_by_name(const std::string& name) { return call<&UserOper::get_by_name>(name); }
  auto get_active_users() { return call<&UserOper::get_active_users>(); }
  auto get_by_id(std::int64_t id) { return call<&UserOper::get_by_id>(id); }
  auto list_page(std::int64_t skip, std::int64_t limit) { return call<&UserOper::list_page>(skip, limit); }
  auto count_by_activity(bool active) { return call<&UserOper::count_by_activity>(active); }
};
