// 01 — A whole DAO class made awaitable (guide method 1: `AsyncUserOper = to_async_db_oper(UserOper)`).
//
// Python wrapped every method of the synchronous UserOper at once. Here AsyncUserOper (async_user_oper.hpp)
// derives from asyncdb::to_async_db_oper<AsyncUserOper, UserOper>, and UserOper itself is unchanged.
// asyncdb guarantees: writes run on the one writer connection, reads run on a reader (as AsyncUserOper
// declares them in read_only_members and write_members; a member in neither list is found out),
// the coroutine resumes on its own executor, and whatever the DAO throws is rethrown at the co_await.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  AsyncUserOper users{db};

  UserCreate ann{"ann", "ann@example.org"};
  UserCreate bob{"bob", "bob@example.org", false};
  const std::int64_t ann_id = co_await users.add(ann);
  const std::int64_t bob_id = co_await users.add(bob);
  std::cout << "added ann (id " << ann_id << ") and bob (id " << bob_id << ")\n";

  const std::vector<User> all = co_await users.list();
  std::cout << "list():\n";
  for (const User& u : all)
    std::cout << "  " << u.id << "  " << u.name << "  " << u.email << (u.is_active ? "" : "  (inactive)") << '\n';

  // Methods without a named one-liner are reachable through call<>.
  const std::optional<User> found = co_await users.call<&UserOper::get_by_id>(bob_id);
  std::cout << "call<&UserOper::get_by_id>(" << bob_id << ") -> " << (found ? found->name : "nobody") << '\n';

  // run() hands the connection's UserOper to a function, here to ask which thread it runs on.
  const std::string writer = co_await users.run([](UserOper&) { return demo::thread_name(); });
  const std::string reader = co_await users.run(asyncdb::read_only, [](UserOper&) { return demo::thread_name(); });
  std::cout << "writes ran on " << writer << ", reads on " << reader << ", the coroutine resumed on "
            << demo::thread_name() << '\n';

  // The DAO's own exception type arrives at the co_await: names are UNIQUE.
  try {
    co_await users.add(ann);
    throw std::runtime_error{"adding ann twice should have failed"};
  } catch (const SQLite::Exception& e) {
    std::cout << "adding ann twice threw SQLite::Exception: " << e.what() << " (code " << e.getErrorCode() << ")\n";
  }
}

int main() {
  try {
    demo::thread_name() = "main";
    asio::io_context ctx;
    const auto on_open = [](SQLite::Database& c) {  // once per connection, on its own thread, writer first
      demo::name_connection_thread();               // "writer", then "reader-1", "reader-2", ...
      create_schema(c);
    };
    asyncdb::database db{demo::fresh_file("01_whole_class.db"), {.readers = 4, .on_open = on_open}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "01_whole_class failed: " << e.what() << '\n';
    return 1;
  }
}
