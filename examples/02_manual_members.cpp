// 02 — Hand-written async members (guide method 2: `@async_db_operation` on each method of a wrapper class).
//
// Python decorated the methods of AsyncUserOperManual one by one. Here each member returns
// asyncdb::async_db_operation<&UserOper::method>{}(db, args...): an asio::awaitable that runs the method on
// the connection's own UserOper (one per connection, built there on first use) and resumes the caller on its
// executor. Use this when you want only a few methods, or different names, rather than the whole class.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"  // for the is_read_only declarations; AsyncUserOper itself is not used here
#include "demo.hpp"

class AsyncUserOperManual {
 public:
  explicit AsyncUserOperManual(asyncdb::database& db) : db_{db} {}

  auto list() { return asyncdb::async_db_operation<&UserOper::list>{}(db_); }  // read-only: on a reader
  auto add(const UserCreate& u) { return asyncdb::async_db_operation<&UserOper::add>{}(db_, u); }  // the writer
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
  void add(UserCreate&&) = delete;  // g++ 12 double-frees temporaries in co_await: see async_user_oper.hpp
#endif

 private:
  asyncdb::database& db_;
};

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  AsyncUserOperManual users{db};

  UserCreate carol{"carol", "carol@example.org"};
  UserCreate dave{"dave", "dave@example.org"};
  const std::int64_t carol_id = co_await users.add(carol);
  const std::int64_t dave_id = co_await users.add(dave);
  std::cout << "add(carol) -> id " << carol_id << ", add(dave) -> id " << dave_id << '\n';

  const std::vector<User> all = co_await users.list();
  std::cout << "list() -> " << all.size() << " users:";
  for (const User& u : all) std::cout << ' ' << u.name;
  std::cout << "\nthe coroutine resumed on " << demo::thread_name() << " after each call\n";
}

int main() {
  try {
    demo::thread_name() = "main";
    asio::io_context ctx;
    const auto on_open = [](SQLite::Database& c) {  // once per connection, on its own thread, writer first
      demo::name_connection_thread();               // "writer", then "reader-1", "reader-2", ...
      create_schema(c);
    };
    asyncdb::database db{demo::fresh_file("02_manual_members.db"), {.readers = 2, .on_open = on_open}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "02_manual_members failed: " << e.what() << '\n';
    return 1;
  }
}
