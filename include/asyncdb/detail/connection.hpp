#pragma once
// Connection hygiene shared by every lane: what "clean" means between two leases.
#include <SQLiteCpp/Database.h>
#include <sqlite3.h>

#include <filesystem>
#include <string>

namespace asyncdb::detail {

// Resets every statement still stepping. A stepping statement keeps a reader's snapshot alive
// (blocking checkpoints and hiding newer commits) and counts as "active" for sqlite3_interrupt,
// so a late interrupt could outlive its operation; with none active, the next statement clears it.
inline void reset_statements(sqlite3* db) noexcept {
  for (sqlite3_stmt* s = sqlite3_next_stmt(db, nullptr); s != nullptr; s = sqlite3_next_stmt(db, s)) {
    if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
  }
}

inline bool in_transaction(sqlite3* db) noexcept { return sqlite3_get_autocommit(db) == 0; }

// Returns whether a transaction was open (and is now rolled back).
inline bool rollback_if_open(sqlite3* db) noexcept {
  reset_statements(db);
  if (!in_transaction(db)) return false;
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return true;
}

// Each connection to ":memory:", "" or a memory URI opens a database of its own, so a writer and
// its readers would silently disagree.
inline bool is_private_database(const std::filesystem::path& path) {
  const std::string s = path.string();
  return s.empty() || s == ":memory:" || s.rfind("file::memory:", 0) == 0 ||
         (s.rfind("file:", 0) == 0 && s.find("mode=memory") != std::string::npos);
}

}  // namespace asyncdb::detail
