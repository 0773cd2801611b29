#pragma once
// The synchronous DAO every contender runs, and the database of bench/WORKLOADS.md: its schema,
// its pragmas and its seed rows. Plain SQLiteCpp, unaware of asyncdb and Asio.
#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "user.hpp"

namespace bench {

/// synchronous=NORMAL for every workload but W2f, which runs with synchronous=FULL.
enum class durability { normal, full };

/// The open flags of every contender's connection: one thread uses it at a time (the peer's mutex, asyncdb's
/// lanes, S's only thread), so SQLite's own per-connection mutex is left out everywhere alike.
inline constexpr int read_write_flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;

/// journal_mode=WAL and synchronous; busy_timeout is set separately, because asyncdb sets it itself
/// (options::busy_timeout) and `PRAGMA busy_timeout` would replace its cancellable busy handler.
inline void apply_pragmas(SQLite::Database& db, durability d) {
  db.exec("PRAGMA journal_mode=WAL");
  db.exec(d == durability::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
}

/// A connection for S, the peer and the bench's own bookkeeping: busy_timeout=5000 and the pragmas.
inline SQLite::Database open_connection(const std::filesystem::path& path, durability d) {
  SQLite::Database db{path, read_write_flags};
  db.setBusyTimeout(5000);
  apply_pragmas(db, d);
  return db;
}

/// Creates the users table and loads `rows` users (ids 1..rows) in one transaction, then checkpoints.
inline void create_and_seed(const std::filesystem::path& path, std::int64_t rows) {
  SQLite::Database db = open_connection(path, durability::normal);
  db.exec(
      "CREATE TABLE users("
      " id INTEGER PRIMARY KEY,"
      " name TEXT NOT NULL UNIQUE,"
      " email TEXT NOT NULL,"
      " is_active INTEGER NOT NULL,"
      " created_at INTEGER NOT NULL)");
  SQLite::Transaction txn{db};
  SQLite::Statement insert{db, "INSERT INTO users(id, name, email, is_active, created_at) VALUES (?, ?, ?, ?, ?)"};
  for (std::int64_t i = 1; i <= rows; ++i) {
    const std::string name = seed_name(i);
    insert.bind(1, i);
    insert.bind(2, name);
    insert.bind(3, name + "@example.com");
    insert.bind(4, i % 3 != 0 ? 1 : 0);
    insert.bind(5, i);
    insert.exec();
    insert.reset();
  }
  txn.commit();
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

/// Brings the file back to its seeded state between two measurements (untimed): drops the rows a write
/// workload added and folds the WAL back into the database, so every measurement starts alike.
inline void reset_to_seed(const std::filesystem::path& path, std::int64_t rows) {
  SQLite::Database db = open_connection(path, durability::normal);
  SQLite::Statement drop{db, "DELETE FROM users WHERE id > ?"};
  drop.bind(1, rows);
  drop.exec();
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

/// The DAO: statements prepared once per connection, reset and re-bound on every call.
class UserDao {
 public:
  explicit UserDao(SQLite::Database& db)
      : db_{db},
        by_name_{db, "SELECT id, name, email, is_active, created_at FROM users WHERE name = ?"},
        add_{db, "INSERT INTO users(name, email, is_active, created_at) VALUES (?, ?, ?, ?)"},
        list_{db, "SELECT id, name, email, is_active, created_at FROM users ORDER BY id"},
        active_{db, "SELECT id, name, email, is_active, created_at FROM users WHERE is_active = 1 ORDER BY id"} {}

  std::optional<User> get_by_name(const std::string& name) {
    by_name_.reset();
    by_name_.bind(1, name);
    std::optional<User> user;
    if (by_name_.executeStep()) user = row(by_name_);
    by_name_.reset();
    return user;
  }

  std::int64_t add(const UserCreate& u) {
    add_.reset();
    add_.bind(1, u.name);
    add_.bind(2, u.email);
    add_.bind(3, u.is_active ? 1 : 0);
    add_.bind(4, u.created_at);
    add_.exec();
    add_.reset();
    return db_.getLastInsertRowid();
  }

  std::vector<User> list() { return all_rows(list_); }

  std::vector<User> get_active_users() { return all_rows(active_); }

 private:
  static User row(const SQLite::Statement& s) {
    return User{s.getColumn(0).getInt64(), s.getColumn(1).getString(), s.getColumn(2).getString(),
                s.getColumn(3).getInt() != 0, s.getColumn(4).getInt64()};
  }

  static std::vector<User> all_rows(SQLite::Statement& s) {
    s.reset();
    std::vector<User> users;
    while (s.executeStep()) users.push_back(row(s));
    s.reset();
    return users;
  }

  SQLite::Database& db_;
  SQLite::Statement by_name_;
  SQLite::Statement add_;
  SQLite::Statement list_;
  SQLite::Statement active_;
};

}  // namespace bench
