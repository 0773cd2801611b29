#pragma once
// A minimal synchronous DAO shared by the compile-fail cases. Each case compiles twice: with
// -DASYNCDB_COMPILE_FAIL_CONTROL (the corrected code, which must compile) and without (the code asyncdb
// must refuse with a readable static_assert). See README.md.
#include <asyncdb/asyncdb.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdint>
#include <string>

namespace compile_fail {

struct UserCreate {
  std::string name;
  std::string email;
  bool is_active = true;
};

class UserOper {
 public:
  explicit UserOper(SQLite::Database& db) : db_(db), by_name_(db, "SELECT name FROM users WHERE name = ?") {}

  std::int64_t add(const UserCreate& u) {
    SQLite::Statement insert(db_, "INSERT INTO users(name, email) VALUES(?, ?)");
    insert.bind(1, u.name);
    insert.bind(2, u.email);
    insert.exec();
    return db_.getLastInsertRowid();
  }

  // The corrected forms: values.
  std::string name_value() { return name_; }
  std::int64_t row_count() { return db_.execAndGet("SELECT count(*) FROM users").getInt64(); }

  // Takes a pointer: asyncdb refuses to carry one across threads; a std::cref says who keeps it alive.
  std::int64_t count_matching(const UserCreate* u) { return u != nullptr ? row_count() : 0; }
  std::int64_t count_matching_ref(const UserCreate& u) { return u.name.empty() ? 0 : row_count(); }

  // An out-parameter: asyncdb refuses to fill a copy of it; std::ref(out) fills the caller's object.
  bool find(const std::string& name, UserCreate& out) {
    if (name != name_) return false;
    out.name = name_;
    return true;
  }

  // The refused forms: results bound to the connection or to the DAO object.
  SQLite::Statement& by_name_statement() { return by_name_; }
  const std::string& name_ref() { return name_; }

 private:
  SQLite::Database& db_;
  SQLite::Statement by_name_;
  std::string name_ = "dao";
};

class AsyncUserOper : public asyncdb::to_async_db_oper<AsyncUserOper, UserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
};

}  // namespace compile_fail
