// 00 — Quick start: a synchronous SQLiteCpp DAO, awaited from an Asio coroutine (the README's first program).
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>
#include <asyncdb/asyncdb.hpp>
#include <iostream>

struct NoteOper {  // the existing synchronous DAO: plain SQLiteCpp, unaware of asyncdb and Asio
  explicit NoteOper(SQLite::Database& connection) : db{connection} {}
  static void create_schema(SQLite::Database& c) { c.exec("CREATE TABLE IF NOT EXISTS notes(text TEXT)"); }
  void add(const std::string& text) {
    SQLite::Statement insert{db, "INSERT INTO notes(text) VALUES (?)"};
    insert.bind(1, text);
    insert.exec();
  }
  std::vector<std::string> list() {
    std::vector<std::string> all;
    for (SQLite::Statement s{db, "SELECT text FROM notes ORDER BY rowid"}; s.executeStep();)
      all.push_back(s.getColumn(0));
    return all;
  }
  SQLite::Database& db;
};

struct AsyncNoteOper : asyncdb::to_async_db_oper<AsyncNoteOper, NoteOper> {
  using to_async_db_oper::to_async_db_oper;
  using read_only_members = asyncdb::members<&NoteOper::list>;  // on the readers, in parallel
  using write_members = asyncdb::members<&NoteOper::add>;       // straight to the one writer
  auto add(const std::string& text) { return call<&NoteOper::add>(text); }
  auto list() { return call<&NoteOper::list>(); }
};

asio::awaitable<void> add_and_list(asyncdb::database& db) {
  AsyncNoteOper notes{db};
  const std::string text = "hello from a coroutine";
  co_await notes.add(text);  // runs on a database thread; the event loop goes on meanwhile
  const std::vector<std::string> all = co_await notes.list();
  for (const std::string& t : all) std::cout << t << '\n';
}

int main() {
  asio::io_context ctx;
  asyncdb::database db{"notes.db", {.on_open = NoteOper::create_schema}};  // on_open: once per connection
  std::future<void> done = asio::co_spawn(ctx, add_and_list(db), asio::use_future);
  ctx.run();
  done.get();  // rethrows what the coroutine threw
}
