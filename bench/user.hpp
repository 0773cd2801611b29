#pragma once
// The rows of the bench's users table, the same for the SQLite and the PostgreSQL DAO.
#include <cstdint>
#include <string>

namespace bench {

struct User {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  bool is_active = false;
  std::int64_t created_at = 0;
};

struct UserCreate {
  std::string name;
  std::string email;
  bool is_active = false;
  std::int64_t created_at = 0;
};

/// Seed row i's name: "user<i>".
inline std::string seed_name(std::int64_t i) { return "user" + std::to_string(i); }

}  // namespace bench
