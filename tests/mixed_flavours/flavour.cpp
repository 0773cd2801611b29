// Compiled twice into one program, once per Asio flavour (tests/CMakeLists.txt): each copy runs one query
// through its own asyncdb and reports the name its asyncdb::database has for the linker.
#include <asyncdb/asyncdb.hpp>

#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <typeinfo>

#if defined(ASYNCDB_USE_BOOST_ASIO)
#define FLAVOUR_RUN run_boost_asio
#else
#define FLAVOUR_RUN run_standalone_asio
#endif

namespace {
namespace net = asyncdb::net;

net::awaitable<int> ask(asyncdb::database& db) {
  auto fn = [](SQLite::Database& c) { return c.execAndGet("SELECT 40+2").getInt(); };
  co_return co_await asyncdb::async_run(db, fn, net::use_awaitable);
}
}  // namespace

/// Runs SELECT 40+2 through this flavour's asyncdb on `file`; returns "<answer> <mangled name of database>".
std::string FLAVOUR_RUN(const std::filesystem::path& file) {
  std::optional<int> answer;
  std::exception_ptr error;
  {
    asyncdb::database db{file};
    net::io_context io;
    net::co_spawn(io, ask(db), [&](std::exception_ptr e, int value) {
      error = e;
      answer = value;
    });
    io.run();
  }
  if (error) std::rethrow_exception(error);
  return std::to_string(answer.value_or(0)) + " " + typeid(asyncdb::database).name();
}
