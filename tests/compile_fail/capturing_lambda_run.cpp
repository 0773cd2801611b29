// expect: g++ 12 destroys twice a capturing lambda
// only: gcc<13
// g++ 12 destroys a capturing lambda created inside a co_await expression twice. asyncdb refuses a
// capturing lambda temporary passed to run() there; other compilers accept it.
#include "dao.hpp"

asio::awaitable<void> use(asyncdb::database& db) {
  compile_fail::AsyncUserOper users{db};
  std::string who = "ann";
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  auto fn = [who](compile_fail::UserOper& o) { return o.row_count() + static_cast<std::int64_t>(who.size()); };
  co_await users.run(fn);
#else
  co_await users.run(
      [who](compile_fail::UserOper& o) { return o.row_count() + static_cast<std::int64_t>(who.size()); });
#endif
}
