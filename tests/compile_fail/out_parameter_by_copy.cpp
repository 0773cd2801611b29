// expect: asyncdb: this argument goes to a non-const lvalue reference parameter (an out-parameter)
// asyncdb stores a copy of every argument; an out-parameter passed as a plain lvalue would be filled on
// that copy, and the caller's object would stay untouched without a word. std::ref says: fill mine.
#include <functional>

#include "dao.hpp"

asio::awaitable<void> use(asyncdb::database& db) {
  compile_fail::AsyncUserOper users{db};
  const std::string name = "dao";
  compile_fail::UserCreate out;
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  auto into = std::ref(out);
  co_await users.call<&compile_fail::UserOper::find>(name, into);
#else
  co_await users.call<&compile_fail::UserOper::find>(name, out);
#endif
}
