// expect: asyncdb: the operation returns a reference
// A DAO member returning SQLite::Statement& would hand the caller a statement another thread owns.
#include "dao.hpp"

asio::awaitable<void> use(asyncdb::database& db) {
  compile_fail::AsyncUserOper users{db};
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  auto n = co_await users.call<&compile_fail::UserOper::row_count>();
#else
  auto& n = co_await users.call<&compile_fail::UserOper::by_name_statement>();
#endif
  (void)n;
}
