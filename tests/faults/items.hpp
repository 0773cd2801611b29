#pragma once
// The DAO of the fault suite, shared by the test process and the child program: each add writes one
// row in two tables (an item and its check row), so a half-done write is visible as one without the other.
#include <SQLiteCpp/SQLiteCpp.h>
#include <asyncdb/asyncdb.hpp>

#include <climits>
#include <cstdint>
#include <filesystem>
#include <string>

namespace faults {

inline void create_items(SQLite::Database& db) {
  db.exec(
      "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, payload TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS checks(id INTEGER PRIMARY KEY, length INTEGER NOT NULL)");
}

/// The payload of item `id`: its length and every byte follow from the id, so a torn row shows.
inline std::string payload_of(std::int64_t id) {
  std::string p(static_cast<std::size_t>(40 + id % 200), 'a');
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>('a' + (id + static_cast<std::int64_t>(i)) % 26);
  return p;
}

class ItemOper {
 public:
  explicit ItemOper(SQLite::Database& db)
      : db_(db),
        item_(db, "INSERT INTO items(id, payload) VALUES(?, ?)"),
        check_(db, "INSERT INTO checks(id, length) VALUES(?, ?)") {}

  /// Writes item `id` and its check row; the two land together or not at all. The savepoint is the
  /// DAO's own: a write alone runs in autocommit mode, one transaction per statement, and a full disk
  /// between the two statements would otherwise leave the item without its check row.
  void add(std::int64_t id) {
    const std::string p = payload_of(id);
    db_.exec("SAVEPOINT item_add");
    try {
      item_.reset();
      item_.bind(1, id);
      item_.bind(2, p);
      item_.exec();
      check_.reset();
      check_.bind(1, id);
      check_.bind(2, static_cast<std::int64_t>(p.size()));
      check_.exec();
      db_.exec("RELEASE item_add");
    } catch (...) {
      item_.reset();
      check_.reset();
      sqlite3_exec(db_.getHandle(), "ROLLBACK TO item_add; RELEASE item_add", nullptr, nullptr, nullptr);
      throw;
    }
  }
  std::int64_t count() { return db_.execAndGet("SELECT count(*) FROM items").getInt64(); }

 private:
  SQLite::Database& db_;
  SQLite::Statement item_;
  SQLite::Statement check_;
};

class AsyncItems : public asyncdb::to_async_db_oper<AsyncItems, ItemOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
  using read_only_members = asyncdb::members<&ItemOper::count>;
  using write_members = asyncdb::members<&ItemOper::add>;
  auto add(std::int64_t id) { return call<&ItemOper::add>(id); }
  auto count() { return call<&ItemOper::count>(); }
};

/// What a reopened file holds: integrity_check's verdict, the rows, and the rows that are not whole
/// (an item without its check row or the reverse, or a payload that is not the id's).
struct file_check {
  std::string integrity;
  std::int64_t items = 0;
  std::int64_t torn = 0;
};

/// Checks the whole file's integrity, and the rows with ids in [first, last) for being whole.
inline file_check check_file(const std::filesystem::path& file, std::int64_t first = INT64_MIN,
                             std::int64_t last = INT64_MAX) {
  SQLite::Database c(file, SQLite::OPEN_READWRITE);  // read-write: recovers a WAL left by a killed process
  file_check r;
  r.integrity = c.execAndGet("PRAGMA integrity_check").getString();
  r.items = c.execAndGet("SELECT count(*) FROM items").getInt64();
  SQLite::Statement torn(c,
                         "SELECT (SELECT count(*) FROM items i LEFT JOIN checks k USING(id) WHERE i.id >= ?1 AND "
                         "i.id < ?2 AND (k.id IS NULL OR k.length != length(i.payload))) + (SELECT count(*) FROM "
                         "checks k LEFT JOIN items i USING(id) WHERE k.id >= ?1 AND k.id < ?2 AND i.id IS NULL)");
  torn.bind(1, first);
  torn.bind(2, last);
  torn.executeStep();
  r.torn = torn.getColumn(0).getInt64();
  SQLite::Statement rows(c, "SELECT id, payload FROM items WHERE id >= ? AND id < ?");
  rows.bind(1, first);
  rows.bind(2, last);
  while (rows.executeStep()) {
    if (rows.getColumn(1).getString() != payload_of(rows.getColumn(0).getInt64())) ++r.torn;
  }
  return r;
}

}  // namespace faults
