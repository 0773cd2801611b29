// expect: so its to_async_db_oper needs an asyncdb::postgres::database
// needs: libpqxx
// A libpqxx DAO's wrapper given an SQLite database: refused at compile time, naming the backend it needs.
#include <asyncdb/postgres.hpp>

#include "dao.hpp"

namespace compile_fail {
class PgUserOper {
 public:
  explicit PgUserOper(pqxx::connection& c) : c_(c) {}
  int pid() { return c_.backendpid(); }

 private:
  pqxx::connection& c_;
};
class AsyncPgUserOper : public asyncdb::to_async_db_oper<AsyncPgUserOper, PgUserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
};
}  // namespace compile_fail

void use(asyncdb::database& sqlite, asyncdb::postgres::database& pg) {
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  compile_fail::AsyncPgUserOper users{pg};
  (void)sqlite;
#else
  compile_fail::AsyncPgUserOper users{sqlite};
  (void)pg;
#endif
  (void)users;
}
