// expect: asyncdb: the operation returns a SQLite::Statement, Column, Database
// A function returning SQLite::Column would read a row of a statement after it left its connection's thread.
#include "dao.hpp"

#ifdef ASYNCDB_COMPILE_FAIL_CONTROL
inline std::string first_name(SQLite::Database& db) { return db.execAndGet("SELECT name FROM users").getString(); }
#else
inline SQLite::Column first_name(SQLite::Database& db) { return db.execAndGet("SELECT name FROM users"); }
#endif

constexpr asyncdb::async_db_operation<&first_name> get_first_name{};

asio::awaitable<void> use(asyncdb::database& db) {
  auto name = co_await get_first_name(db);
  (void)name;
}
