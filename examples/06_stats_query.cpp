// 06 — Concurrent queries (guide "复杂查询": `users, active = await asyncio.gather(list(), get_active_users())`).
//
// The variadic asyncdb::gather awaits awaitables of different types and returns a std::tuple in input order.
// Both methods are declared is_read_only, so with several readers the two queries really run at the same time,
// each on its own connection, while the coroutine waits without blocking its thread.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  AsyncUserOper users{db};

  std::vector<UserCreate> seed;
  for (int i = 1; i <= 10; ++i)
    seed.push_back(UserCreate{"user" + std::to_string(i), "user" + std::to_string(i) + "@example.org", i % 3 != 0});
  std::vector<asio::awaitable<std::int64_t>> adds;
  for (const UserCreate& u : seed) adds.push_back(users.add(u));
  co_await asyncdb::gather(std::move(adds));

  auto [all, active] = co_await asyncdb::gather(users.list(), users.get_active_users());

  std::cout << "user stats:\n"
            << "  total_users    " << all.size() << '\n'
            << "  active_users   " << active.size() << '\n'
            << "  inactive_users " << all.size() - active.size() << '\n';
  if (all.size() != 10 || active.size() != 7) throw std::runtime_error{"unexpected counts"};
}

int main() {
  try {
    asio::io_context ctx;
    asyncdb::database db{demo::fresh_file("06_stats_query.db"), {.readers = 4, .on_open = create_schema}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "06_stats_query failed: " << e.what() << '\n';
    return 1;
  }
}
