// 05 — Batch create (guide "批量操作": build a list of add() tasks, `await asyncio.gather(*tasks)`,
// then return the last len(users_data) rows of list()).
//
// asyncdb::gather takes a std::vector<asio::awaitable<T>>, runs them concurrently and returns their results
// in input order; if any fails it rethrows the first failure (in input order) once all have finished.
// Writes are serialised on the single writer connection, so concurrency here means "queued without waiting",
// never two writers fighting over SQLite's lock.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  AsyncUserOper users{db};

  UserCreate root{"root", "root@example.org"};
  co_await users.add(root);  // an existing row, so "the last N" means something

  std::vector<UserCreate> batch;
  for (int i = 1; i <= 5; ++i)
    batch.push_back(UserCreate{"user" + std::to_string(i), "user" + std::to_string(i) + "@example.org", i % 2 == 1});

  std::vector<asio::awaitable<std::int64_t>> tasks;
  for (const UserCreate& u : batch) tasks.push_back(users.add(u));  // nothing runs until gather awaits them
  const std::vector<std::int64_t> ids = co_await asyncdb::gather(std::move(tasks));

  std::cout << "gather(" << batch.size() << " adds) -> ids";
  for (std::int64_t id : ids) std::cout << ' ' << id;
  std::cout << '\n';

  const std::vector<User> all = co_await users.list();
  std::cout << "the last " << batch.size() << " of " << all.size() << " users:\n";
  for (auto it = all.end() - static_cast<std::ptrdiff_t>(batch.size()); it != all.end(); ++it)
    std::cout << "  " << it->id << "  " << it->name << "  " << it->email << (it->is_active ? "" : "  (inactive)")
              << '\n';
}

int main() {
  try {
    asio::io_context ctx;
    asyncdb::database db{demo::fresh_file("05_batch_create.db"), {.readers = 2, .on_open = create_schema}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "05_batch_create failed: " << e.what() << '\n';
    return 1;
  }
}
