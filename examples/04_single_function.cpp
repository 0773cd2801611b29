// 04 — One free function made awaitable (guide method 4: `@async_db_operation def get_user_by_name_sync(db, name)`).
//
// Python decorated a single function that takes the session as its first argument. Here the legacy
// get_user_by_name_sync(SQLite::Database&, const std::string&) stays as it is, and one line declares its
// awaitable twin. asyncdb supplies the connection: a reader, because async_user_oper.hpp declares the
// function is_read_only. The legacy function can still be called synchronously wherever it was before.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"  // is_read_only<&get_user_by_name_sync>
#include "demo.hpp"

inline constexpr asyncdb::async_db_operation<&get_user_by_name_sync> get_user_by_name{};

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  // Seed through the token-based primitive: a function of the writer's SQLite::Database.
  co_await asyncdb::async_run(
      db, [](SQLite::Database& c) { c.exec("INSERT INTO users(name, email) VALUES ('admin', 'admin@example.org')"); },
      asio::use_awaitable);

  const std::string admin = "admin";
  const std::string ghost = "ghost";
  const std::optional<User> a = co_await get_user_by_name(db, admin);
  const std::optional<User> g = co_await get_user_by_name(db, ghost);
  std::cout << "get_user_by_name(db, \"admin\") -> " << (a ? a->name + " <" + a->email + ">" : "nullopt") << '\n';
  std::cout << "get_user_by_name(db, \"ghost\") -> " << (g ? g->name : "nullopt") << '\n';
  if (!a || g) throw std::runtime_error{"unexpected lookup result"};
}

int main() {
  try {
    asio::io_context ctx;
    asyncdb::database db{demo::fresh_file("04_single_function.db"), {.readers = 2, .on_open = create_schema}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "04_single_function failed: " << e.what() << '\n';
    return 1;
  }
}
