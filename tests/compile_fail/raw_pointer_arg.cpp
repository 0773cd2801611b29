// expect: asyncdb: a raw pointer argument would cross to the database thread without an owner
// A raw pointer argument would be read on a database thread, perhaps after its pointee is gone; asyncdb
// refuses it and names the ways out: a value, or std::cref when the caller keeps the object alive.
#include <functional>

#include "dao.hpp"

asio::awaitable<void> use(asyncdb::database& db) {
  compile_fail::AsyncUserOper users{db};
  const compile_fail::UserCreate ann{"ann", "ann@x.org"};
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  auto ref = std::cref(ann);
  co_await users.call<&compile_fail::UserOper::count_matching_ref>(ref);
#else
  const compile_fail::UserCreate* p = &ann;
  co_await users.call<&compile_fail::UserOper::count_matching>(p);
#endif
}
