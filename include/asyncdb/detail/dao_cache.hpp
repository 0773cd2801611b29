#pragma once
#include <SQLiteCpp/Database.h>
#include <asyncdb/detail/config.hpp>

#include <atomic>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

inline std::size_t next_dao_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed);
}

// One process-wide index per DAO type, so a lane finds its instance with a vector lookup.
template <class Dao>
std::size_t dao_slot() noexcept {
  static const std::size_t slot = next_dao_slot();
  return slot;
}

// The DAO objects of one connection. Lives and dies on the connection's thread, and dies before
// the connection does, so prepared SQLite::Statement members are finalized before sqlite3_close.
class dao_cache {
 public:
  dao_cache() = default;
  dao_cache(const dao_cache&) = delete;
  dao_cache& operator=(const dao_cache&) = delete;
  ~dao_cache() { clear(); }

  template <class Dao>
  Dao& get(SQLite::Database& db) {
    static_assert(std::is_constructible_v<Dao, SQLite::Database&>,
                  "asyncdb: a DAO class must be constructible from SQLite::Database& "
                  "(asyncdb creates one per connection, on that connection's thread)");
    return emplace<Dao>(db);
  }

  // As get(), for any connection type the caller has checked `Dao` against (the PostgreSQL backend's).
  template <class Dao, class Connection>
  Dao& emplace(Connection& db) {
    const std::size_t slot = dao_slot<Dao>();
    if (slot >= slots_.size()) slots_.resize(slot + 1, nullptr);
    if (slots_[slot] == nullptr) {
      created_.reserve(created_.size() + 1);
      slots_[slot] = new Dao(db);
      created_.push_back({slot, [](void* p) noexcept { delete static_cast<Dao*>(p); }});
    }
    return *static_cast<Dao*>(slots_[slot]);
  }

  // Destroys in reverse order of creation, as members of one object would be.
  void clear() noexcept {
    for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
      it->destroy(slots_[it->slot]);
      slots_[it->slot] = nullptr;
    }
    created_.clear();
  }

 private:
  struct entry {
    std::size_t slot;
    void (*destroy)(void*) noexcept;
  };
  std::vector<void*> slots_;
  std::vector<entry> created_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
