// The smallest real consumer: one query through asyncdb on a file database, checked.
// Shared by the consumer projects beside it (find_package, add_subdirectory, include_path, makefile); it names
// Asio through asyncdb::net, so the flavour is whatever the build chose. With
// ASYNCDB_CONSUMER_POSTGRES (find_package COMPONENTS postgres) it also opens a PostgreSQL database on a port
// where no server listens, which must fail with pqxx::broken_connection: linked and running, no server needed.
#include <asyncdb/asyncdb.hpp>
#if defined(ASYNCDB_CONSUMER_POSTGRES)
#include <asyncdb/postgres.hpp>
#endif

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

#if defined(ASYNCDB_CONSUMER_POSTGRES)
// "broken_connection" when opening a database on a closed port fails as it must.
std::string open_without_server() {
  try {
    asyncdb::postgres::database pg{{.primary = "host=127.0.0.1 port=1 dbname=none connect_timeout=2", .writers = 1}};
    return "connected?";
  } catch (const pqxx::broken_connection&) {
    return "broken_connection";
  } catch (const std::exception& e) {
    return e.what();
  }
}
#endif

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

  std::cout << "consumer (" << flavour << "): SELECT 40+2 -> " << (answer ? std::to_string(*answer) : "nothing");
#if defined(ASYNCDB_CONSUMER_POSTGRES)
  const std::string pg = open_without_server();
  std::cout << "; postgres without a server -> " << pg << '\n';
  if (pg != "broken_connection") return 1;
#else
  std::cout << '\n';
#endif
  return answer == 42 ? 0 : 1;
}
