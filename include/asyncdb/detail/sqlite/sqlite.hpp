#pragma once
// SQLite facts every connection relies on: what "clean" means between two leases, and the
// transaction-control statements of group commit.
#include <asyncdb/detail/config.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <sqlite3.h>

#include <exception>
#include <filesystem>
#include <string>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Resets every statement still stepping. A stepping statement keeps a reader's snapshot alive
// (blocking checkpoints and hiding newer commits) and counts as "active" for sqlite3_interrupt,
// so a late interrupt could outlive its operation; with none active, the next statement clears it.
inline void reset_statements(sqlite3* db) noexcept {
  for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s != nullptr; s = sqlite3_next_stmt(db, s)) {
    if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
  }
}

inline bool in_transaction(sqlite3* db) noexcept { return sqlite3_get_autocommit(db) == 0; }

// As rollback_if_open, for a caller that has just reset every statement: one walk, not two.
inline bool rollback_reset(sqlite3* db) noexcept {
  if (!in_transaction(db)) return false;
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return true;
}

// Returns whether a transaction was open (and is now rolled back).
inline bool rollback_if_open(sqlite3* db) noexcept {
  reset_statements(db);
  return rollback_reset(db);
}

// Whether a statement that failed with `rc` may have left its transaction unusable. After a corrupt page
// or an I/O error SQLite may keep the transaction open yet refuse every later statement of it, even
// after ROLLBACK TO succeeded, so a group commit must not go on in it (SQLite asks for a ROLLBACK).
inline bool poisons_transaction(int rc) noexcept {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return true;
    default:
      return false;
  }
}

// Whether `ep` is a write refused by a read-only connection.
inline bool is_read_only_error(const std::exception_ptr& ep) noexcept {
  if (!ep) return false;
  try {
    std::rethrow_exception(ep);
  } catch (const SQLite::Exception& e) {
    return (e.getErrorCode() & 0xff) == SQLITE_READONLY;
  } catch (...) {
    return false;
  }
}

// The transaction-control statements of group commit, run per operation: prepared once, not per use.
class control_statements {
 public:
  enum which : unsigned char { begin, savepoint, release, rollback_to, commit };

  control_statements() = default;
  control_statements(const control_statements&) = delete;
  control_statements& operator=(const control_statements&) = delete;
  ~control_statements() { finalize(); }

  // Throws SQLite::Exception when the statement fails.
  void run(sqlite3* db, which w) {
    static constexpr const char* sql[] = {"BEGIN IMMEDIATE", "SAVEPOINT asyncdb_op", "RELEASE asyncdb_op",
                                          "ROLLBACK TO asyncdb_op", "COMMIT"};
    sqlite3_stmt*& s = stmts_[w];
    int rc = s == nullptr ? sqlite3_prepare_v2(db, sql[w], -1, &s, nullptr) : SQLITE_OK;
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(s);
      sqlite3_reset(s);
    }
    if (rc != SQLITE_DONE && rc != SQLITE_OK) throw SQLite::Exception(db, rc);
  }

  // Before the connection closes: it cannot close with statements left.
  void finalize() noexcept {
    for (auto*& s : stmts_) sqlite3_finalize(std::exchange(s, nullptr));
  }

 private:
  sqlite3_stmt* stmts_[5] = {};
};

// Each connection to ":memory:", "" or a memory URI opens a database of its own, so a writer and
// its readers would silently disagree.
inline bool is_private_database(const std::filesystem::path& path) {
  const std::string s = path.string();
  return s.empty() || s == ":memory:" || s.rfind("file::memory:", 0) == 0 ||
         (s.rfind("file:", 0) == 0 && s.find("mode=memory") != std::string::npos);
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
