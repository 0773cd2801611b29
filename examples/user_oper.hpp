#pragma once
// The "existing synchronous DAO" the examples make awaitable. Plain SQLiteCpp code: it knows nothing
// about asyncdb or Asio and is never modified by them (the guide's app/db/user_oper.py).

#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct User {
  std::int64_t id;
  std::string name;
  std::string email;
  bool is_active;
};

struct UserCreate {
  std::string name;
  std::string email;
  bool is_active = true;
};

inline void create_schema(SQLite::Database& db) {
  db.exec(
      "CREATE TABLE IF NOT EXISTS users("
      " id INTEGER PRIMARY KEY,"
      " name TEXT NOT NULL UNIQUE,"
      " email TEXT NOT NULL,"
      " is_active INTEGER NOT NULL DEFAULT 1,"
      " created_at INTEGER NOT NULL DEFAULT (unixepoch()))");
}

// One UserOper per connection: its statements are prepared once, then reset and re-bound on every call.
// A call starts with tryReset(), not reset(): after a failed step (a UNIQUE violation, an interrupt) SQLite's
// reset reports that same failure once more, and reset() would throw it into the *next* call.
class UserOper {
 public:
  explicit UserOper(SQLite::Database& db)
      : db_{db},
        list_{db, "SELECT id, name, email, is_active FROM users ORDER BY id"},
        add_{db, "INSERT INTO users(name, email, is_active) VALUES (?, ?, ?)"},
        by_name_{db, "SELECT id, name, email, is_active FROM users WHERE name = ?"},
        by_id_{db, "SELECT id, name, email, is_active FROM users WHERE id = ?"},
        active_{db, "SELECT id, name, email, is_active FROM users WHERE is_active = 1 ORDER BY id"},
        page_{db, "SELECT id, name, email, is_active FROM users ORDER BY id LIMIT ? OFFSET ?"},
        count_by_activity_{db, "SELECT count(*) FROM users WHERE is_active = ?"} {}

  std::vector<User> list() { return all_rows(list_); }

  std::int64_t add(const UserCreate& u) {
    add_.tryReset();
    add_.bind(1, u.name);
    add_.bind(2, u.email);
    add_.bind(3, u.is_active ? 1 : 0);
    add_.exec();
    add_.reset();
    return db_.getLastInsertRowid();
  }

  std::optional<User> get_by_name(const std::string& name) {
    by_name_.tryReset();
    by_name_.bind(1, name);
    return first_row(by_name_);
  }

  std::optional<User> get_by_id(std::int64_t id) {
    by_id_.tryReset();
    by_id_.bind(1, id);
    return first_row(by_id_);
  }

  std::vector<User> get_active_users() { return all_rows(active_); }

  // One page of users in id order (the web service's GET /users/async?skip=&limit=).
  std::vector<User> list_page(std::int64_t skip, std::int64_t limit) {
    page_.tryReset();
    page_.bind(1, limit);
    page_.bind(2, skip);
    return all_rows(page_, /*reset_first=*/false);
  }

  // How many users are active (true) or inactive (false).
  std::int64_t count_by_activity(bool active) {
    count_by_activity_.tryReset();
    count_by_activity_.bind(1, active ? 1 : 0);
    count_by_activity_.executeStep();
    const std::int64_t n = count_by_activity_.getColumn(0).getInt64();
    count_by_activity_.reset();
    return n;
  }

 private:
  static User row(const SQLite::Statement& s) {
    return User{s.getColumn(0).getInt64(), s.getColumn(1).getString(), s.getColumn(2).getString(),
                s.getColumn(3).getInt() != 0};
  }

  // Every read ends with reset(): a statement left mid-result would pin the connection's read snapshot.
  static std::vector<User> all_rows(SQLite::Statement& s, bool reset_first = true) {
    if (reset_first) s.tryReset();
    std::vector<User> users;
    while (s.executeStep()) users.push_back(row(s));
    s.reset();
    return users;
  }

  static std::optional<User> first_row(SQLite::Statement& s) {
    std::optional<User> user;
    if (s.executeStep()) user = row(s);
    s.reset();
    return user;
  }

  SQLite::Database& db_;
  SQLite::Statement list_;
  SQLite::Statement add_;
  SQLite::Statement by_name_;
  SQLite::Statement by_id_;
  SQLite::Statement active_;
  SQLite::Statement page_;
  SQLite::Statement count_by_activity_;
};

// A free function in the legacy style (guide method 4): one query, statement prepared per call.
inline std::optional<User> get_user_by_name_sync(SQLite::Database& db, const std::string& name) {
  SQLite::Statement s{db, "SELECT id, name, email, is_active FROM users WHERE name = ?"};
  s.bind(1, name);
  if (!s.executeStep()) return std::nullopt;
  return User{s.getColumn(0).getInt64(), s.getColumn(1).getString(), s.getColumn(2).getString(),
              s.getColumn(3).getInt() != 0};
}
