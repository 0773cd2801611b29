// The smallest real consumer: one query through asyncdb on a file database, checked.
// Shared by the find_package, add_subdirectory and include_path consumer projects.
#include <asyncdb/asyncdb.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

namespace {

asio::awaitable<int> ask(asyncdb::database& db) {
  co_return co_await asyncdb::async_run(
      db, [](SQLite::Database& c) { return c.execAndGet("SELECT 40+2").getInt(); }, asio::use_awaitable);
}

}  // namespace

int main() {
  namespace fs = std::filesystem;
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  const fs::path dir = fs::temp_directory_path() / ("asyncdb-consumer-" + std::to_string(stamp));
  fs::create_directories(dir);

  std::optional<int> answer;
  try {
    asyncdb::database db{dir / "consumer.db"};
    asio::io_context io;
    asio::co_spawn(io, ask(db), [&](const std::exception_ptr& error, int value) {
      if (error) std::rethrow_exception(error);
      answer = value;
    });
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "consumer: " << e.what() << '\n';
  }
  fs::remove_all(dir);

  std::cout << "consumer: SELECT 40+2 -> " << (answer ? std::to_string(*answer) : "nothing") << '\n';
  return answer == 42 ? 0 : 1;
}
