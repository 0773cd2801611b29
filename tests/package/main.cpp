// The smallest real consumer: one query through asyncdb on a file database, checked.
// Shared by the find_package, add_subdirectory and include_path consumer projects, each built once per
// Asio flavour; it names Asio through asyncdb::net, so the flavour is whatever the build chose.
#include <asyncdb/asyncdb.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <chrono>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

namespace {

namespace net = asyncdb::net;
#if defined(ASYNCDB_USE_BOOST_ASIO)
constexpr const char* flavour = "Boost.Asio";
#else
constexpr const char* flavour = "standalone Asio";
#endif

net::awaitable<int> ask(asyncdb::database& db) {
  co_return co_await asyncdb::async_run(
      db, [](SQLite::Database& c) { return c.execAndGet("SELECT 40+2").getInt(); }, net::use_awaitable);
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
    net::io_context io;
    net::co_spawn(io, ask(db), [&](const std::exception_ptr& error, int value) {
      if (error) std::rethrow_exception(error);
      answer = value;
    });
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "consumer: " << e.what() << '\n';
  }
  fs::remove_all(dir);

  std::cout << "consumer (" << flavour << "): SELECT 40+2 -> " << (answer ? std::to_string(*answer) : "nothing")
            << '\n';
  return answer == 42 ? 0 : 1;
}
