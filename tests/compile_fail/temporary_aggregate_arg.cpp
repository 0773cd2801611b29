// expect: g++ 12 destroys twice an aggregate temporary
// only: gcc<13
// g++ 12 destroys an aggregate temporary with non-trivial members created inside a co_await
// expression twice (a double free). asyncdb refuses it there; other compilers accept it.
#include "dao.hpp"

asio::awaitable<void> use(asyncdb::database& db) {
  compile_fail::AsyncUserOper users{db};
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  compile_fail::UserCreate ann{"ann", "ann@x.org"};
  co_await users.call<&compile_fail::UserOper::add>(ann);
#else
  co_await users.call<&compile_fail::UserOper::add>(compile_fail::UserCreate{"ann", "ann@x.org"});
#endif
}
