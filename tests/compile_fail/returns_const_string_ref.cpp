// expect: asyncdb: the operation returns a reference
// A DAO member returning const std::string& would dangle once the result crosses threads.
#include "dao.hpp"

asio::awaitable<void> use(asyncdb::database& db) {
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  std::string name = co_await asyncdb::async_db_operation<&compile_fail::UserOper::name_value>{}(db);
#else
  std::string name = co_await asyncdb::async_db_operation<&compile_fail::UserOper::name_ref>{}(db);
#endif
  (void)name;
}
