// 07 — A request handler's "current user" dependency (guide "在FastAPI中使用": get_current_user_async_dependency
// looks the token's user up by id and raises HTTPException(403, "用户不存在") when there is none).
//
// get_current_user is an ordinary coroutine that awaits the DAO and throws an http_error the handler turns
// into a response. Three requests are handled concurrently: their lookups are queued at once and run on the
// readers, and every handler resumes on the io_context's thread, so handlers need no locks.

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <charconv>
#include <iostream>

#include "async_user_oper.hpp"
#include "demo.hpp"

struct http_error : std::runtime_error {
  int status;
  http_error(int s, const std::string& what) : std::runtime_error{what}, status{s} {}
};

// The dependency: a token "user:<id>" -> the User, or 401/403.
asio::awaitable<User> get_current_user(AsyncUserOper& users, std::string token) {
  std::int64_t id = 0;
  const char* digits = token.c_str() + 5;
  if (!token.starts_with("user:") || std::from_chars(digits, token.c_str() + token.size(), id).ec != std::errc{})
    throw http_error{401, "invalid token"};
  const std::optional<User> user = co_await users.call<&UserOper::get_by_id>(id);
  if (!user) throw http_error{403, "user does not exist (用户不存在)"};
  co_return *user;
}

// GET /me: the handler returns the response as a line of text.
asio::awaitable<std::string> get_me(AsyncUserOper& users, std::string token) {
  try {
    const User me = co_await get_current_user(users, token);
    co_return token + R"( -> 200 {"id": )" + std::to_string(me.id) + R"(, "name": ")" + me.name + R"("})";
  } catch (const http_error& e) {
    co_return token + " -> " + std::to_string(e.status) + " " + e.what();
  }
}

asio::awaitable<void> main_coroutine(asyncdb::database& db) {
  AsyncUserOper users{db};
  UserCreate alice{"alice", "alice@example.org"};
  UserCreate bob{"bob", "bob@example.org"};
  const std::int64_t alice_id = co_await users.add(alice);
  const std::int64_t bob_id = co_await users.add(bob);

  std::vector<asio::awaitable<std::string>> requests;
  requests.push_back(get_me(users, "user:" + std::to_string(alice_id)));
  requests.push_back(get_me(users, "user:999"));
  requests.push_back(get_me(users, "user:" + std::to_string(bob_id)));
  const std::vector<std::string> responses = co_await asyncdb::gather(std::move(requests));
  for (const std::string& response : responses) std::cout << response << '\n';
}

int main() {
  try {
    asio::io_context ctx;
    asyncdb::database db{demo::fresh_file("07_current_user.db"), {.readers = 4, .on_open = create_schema}};
    asio::co_spawn(ctx, main_coroutine(db), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "07_current_user failed: " << e.what() << '\n';
    return 1;
  }
}
