// 08 — Gradual migration (guide "渐进式迁移" and "向后兼容": existing synchronous code keeps working while
// new code moves to the async version one call at a time).
//
// The legacy code keeps its own SQLite::Database and a plain UserOper on the same file; new code uses
// AsyncUserOper. Both see each other's committed writes: asyncdb opens the file in WAL mode, and every
// asyncdb read is its own short transaction. The legacy calls here still block the calling thread while
// they run; that is exactly what migrating them to AsyncUserOper removes.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

asio::awaitable<void> main_coroutine(asyncdb::database& db, UserOper& legacy) {
  AsyncUserOper users{db};

  UserCreate old_style{"old_style", "old@example.org"};
  legacy.add(old_style);
  const std::string old_name = "old_style";
  const std::optional<User> seen_async = co_await users.get_by_name(old_name);
  std::cout << "sync add(old_style)  -> async get_by_name sees it: " << (seen_async ? "yes" : "no") << '\n';

  UserCreate new_style{"new_style", "new@example.org"};
  co_await users.add(new_style);
  const std::optional<User> seen_sync = legacy.get_by_name("new_style");
  std::cout << "async add(new_style) -> sync get_by_name sees it:  " << (seen_sync ? "yes" : "no") << '\n';

  const std::vector<User> from_async = co_await users.list();
  const std::vector<User> from_sync = legacy.list();
  std::cout << "list(): async sees " << from_async.size() << " users, sync sees " << from_sync.size() << '\n';
  if (!seen_async || !seen_sync || from_async.size() != 2 || from_sync.size() != 2)
    throw std::runtime_error{"the two connections disagree"};
}

int main() {
  try {
    const std::filesystem::path path = demo::fresh_file("08_gradual_migration.db");
    asio::io_context ctx;
    asyncdb::database db{path, {.readers = 2, .on_open = create_schema}};
    SQLite::Database legacy_db{path, SQLite::OPEN_READWRITE};  // the existing code's own connection
    legacy_db.setBusyTimeout(5000);
    UserOper legacy{legacy_db};
    asio::co_spawn(ctx, main_coroutine(db, legacy), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "08_gradual_migration failed: " << e.what() << '\n';
    return 1;
  }
}
