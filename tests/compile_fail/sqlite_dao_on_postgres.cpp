// expect: asyncdb: this DAO is constructed from SQLite::Database&, so its to_async_db_oper needs an asyncdb::database
// needs: libpqxx
// An SQLite DAO's wrapper given a PostgreSQL database: refused at compile time, naming the backend it needs.
#include <asyncdb/postgres.hpp>

#include "dao.hpp"

void use(asyncdb::database& sqlite, asyncdb::postgres::database& pg) {
#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
  compile_fail::AsyncUserOper users{sqlite};
  (void)pg;
#else
  compile_fail::AsyncUserOper users{pg};
  (void)sqlite;
#endif
  (void)users;
}
