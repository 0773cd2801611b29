// The "Public API" block of the issue (asyncdb core, part 1), compiled and run as written, with the
// issue's own names; session lines belong to part 2 and are tested there. The types live in
// namespace `snippets` so they cannot clash with test:: in this one test binary; `using namespace
// snippets` lets the snippets name them exactly as the issue does.
#include "support.hpp"

#include "net.hpp"

#include <cstdint>
#include <future>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace snippets {

struct User {
  std::int64_t id;
  std::string name;
  std::string email;
  bool is_active;
};
struct UserCreate {
  std::string name;
  std::string email;
  bool is_active = true;
};

inline std::atomic<int> list_calls_on_readers{0};  // how often list() ran on a read-only connection

class UserOper {  // an existing synchronous DAO, not modified
 public:
  explicit UserOper(SQLite::Database& db)
      : db_(db),
        list_(db, "SELECT id, name, email, is_active FROM users ORDER BY id"),
        add_(db, "INSERT INTO users(name, email, is_active) VALUES(?, ?, ?)"),
        by_name_(db, "SELECT id, name, email, is_active FROM users WHERE name = ?"),
        active_(db, "SELECT id, name, email, is_active FROM users WHERE is_active = 1 ORDER BY id") {}
  std::vector<User> list() {
    if (sqlite3_db_readonly(db_.getHandle(), "main") == 1) ++list_calls_on_readers;
    return rows(list_);
  }
  std::int64_t add(const UserCreate& u) {
    add_.reset();
    add_.bind(1, u.name);
    add_.bind(2, u.email);
    add_.bind(3, u.is_active ? 1 : 0);
    add_.exec();
    return db_.getLastInsertRowid();
  }
  std::optional<User> get_by_name(const std::string& name) {
    by_name_.reset();
    by_name_.bind(1, name);
    std::optional<User> u;
    if (by_name_.executeStep()) u = row(by_name_);
    by_name_.reset();
    return u;
  }
  std::vector<User> get_active_users() { return rows(active_); }

 private:
  static User row(const SQLite::Statement& s) {
    return User{s.getColumn(0).getInt64(), s.getColumn(1).getString(), s.getColumn(2).getString(),
                s.getColumn(3).getInt() != 0};
  }
  static std::vector<User> rows(SQLite::Statement& s) {
    s.reset();
    std::vector<User> out;
    while (s.executeStep()) out.push_back(row(s));
    s.reset();
    return out;
  }

  SQLite::Database& db_;
  SQLite::Statement list_;
  SQLite::Statement add_;
  SQLite::Statement by_name_;
  SQLite::Statement active_;
};

std::optional<User> get_user_by_name_sync(SQLite::Database& db, const std::string& name) {
  SQLite::Statement s(db, "SELECT id, name, email, is_active FROM users WHERE name = ?");
  s.bind(1, name);
  if (!s.executeStep()) return std::nullopt;
  return User{s.getColumn(0).getInt64(), s.getColumn(1).getString(), s.getColumn(2).getString(),
              s.getColumn(3).getInt() != 0};
}

}  // namespace snippets

using namespace snippets;

// Declaring a DAO member or function read-only lets it run on the reader connections, in parallel.
template <>
inline constexpr bool asyncdb::is_read_only<&UserOper::list> = true;
// Declaring a write sends it straight to the writer: no trial run on a reader, and writes started
// together run in the order they were started, from the first call on.
template <>
inline constexpr bool asyncdb::is_write<&UserOper::add> = true;

namespace snippets {

// Method 4 of the guide: one function
inline constexpr asyncdb::async_db_operation<&get_user_by_name_sync> get_user_by_name{};

// Method 1: lift the whole class with the CRTP mixin
class AsyncUserOper : public asyncdb::to_async_db_oper<AsyncUserOper, UserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;        // AsyncUserOper(asyncdb::database&)
  auto list() { return call<&UserOper::list>(); }  // optional named one-liners
};

// The runtime, as in the issue; "app.db" lives in the test's own folder.
asyncdb::options snippet_options() {
  asyncdb::options opts;
  opts.readers = 4;                         // read-only connections used in parallel
  opts.on_open = [](SQLite::Database& c) {  // once per connection, writer first
    if (!c.tableExists("users")) {
      c.exec(
          "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, email TEXT NOT NULL, "
          "is_active INTEGER NOT NULL DEFAULT 1)");
    }
  };
  return opts;
}

net::awaitable<void> methods(asyncdb::database& db) {
  AsyncUserOper users{db};
  UserCreate admin{"admin", "admin@x.org"};
  co_await users.call<&UserOper::add>(admin);

  // Method 4
  std::optional<User> u = co_await get_user_by_name(db, "admin");
  REQUIRE(u.has_value());
  CHECK(u->email == "admin@x.org");

  // Method 2
  std::vector<User> all = co_await asyncdb::async_db_operation<&UserOper::list>{}(db);
  REQUIRE(all.size() == 1);
  CHECK(all[0].name == "admin");

  // Method 1
  UserCreate ann{"ann", "ann@x.org"};
  std::int64_t id = co_await users.call<&UserOper::add>(ann);
  auto all_users = co_await users.list();
  auto n = co_await users.run([](UserOper& o) { return o.list().size(); });  // several DAO calls, one hop
  static_assert(std::is_same_v<decltype(all_users), std::vector<User>>);
  static_assert(std::is_same_v<decltype(n), std::size_t>);
  REQUIRE(all_users.size() == 2);
  CHECK(all_users[1].id == id);
  CHECK(all_users[1].name == "ann");
  CHECK(n == 2);
}

net::awaitable<void> gathers(asyncdb::database& db) {
  AsyncUserOper users{db};
  std::vector<net::awaitable<std::int64_t>> adds;
  for (const char* name : {"bob", "cid", "dee"}) {
    UserCreate c{name, std::string(name) + "@x.org", name[0] != 'c'};
    adds.push_back(users.call<&UserOper::add>(c));
  }
  std::vector<std::int64_t> ids = co_await asyncdb::gather(std::move(adds));
  REQUIRE(ids.size() == 3);
  CHECK(ids[0] < ids[1]);  // one writer, FIFO: the adds ran in input order
  CHECK(ids[1] < ids[2]);

  auto [all, active] =
      co_await asyncdb::gather(users.call<&UserOper::list>(), users.call<&UserOper::get_active_users>());
  REQUIRE(all.size() == 3);
  CHECK(all[1].id == ids[1]);
  REQUIRE(active.size() == 2);
  CHECK(active[0].name == "bob");
  CHECK(active[1].name == "dee");
}

std::size_t count_users(SQLite::Database& c) {
  return static_cast<std::size_t>(c.execAndGet("SELECT count(*) FROM users").getInt64());
}

net::awaitable<void> deferred_and_read_only(asyncdb::database& db) {
  // The deferred token: asio::experimental::deferred in Asio 1.22, boost::asio::deferred in Boost 1.81.
  auto fn = [](SQLite::Database& c) { return count_users(c); };
  auto op = asyncdb::async_run(db, fn, test::deferred);
  std::size_t on_writer = co_await std::move(op)(net::use_awaitable);
  std::size_t on_reader = co_await asyncdb::async_run(db, asyncdb::read_only, fn, net::use_awaitable);
  CHECK(on_writer == 1);
  CHECK(on_reader == 1);
}

}  // namespace snippets

TEST_CASE("the issue's API snippets for the runtime, methods 1, 2 and 4 compile and behave as written",
          "[api][snippets]") {
  test::temp_dir dir;
  list_calls_on_readers = 0;
  asyncdb::options opts = snippet_options();
  asyncdb::database db{dir.file("app.db"), opts};
  net::io_context ctx;
  test::run(ctx, methods(db));
  // list() is read-only: method 2 and users.list() ran it on a reader; users.run(...) is on the writer.
  CHECK(list_calls_on_readers == 2);
}

TEST_CASE("the issue's gather snippets compile and behave as written", "[api][snippets][gather]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file("app.db"), snippet_options()};
  net::io_context ctx;
  test::run(ctx, gathers(db));
}

TEST_CASE("the issue's async_run snippets work with a callback, deferred and the read_only overload",
          "[api][snippets][async_run]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file("app.db"), snippet_options()};
  net::io_context ctx;

  // asyncdb::async_run(db, fn, token): fn(SQLite::Database&) -> R on the writer, void(std::exception_ptr, R).
  auto fn = [](SQLite::Database& c) {
    c.exec("INSERT INTO users(name, email) VALUES('cb', 'cb@x.org')");
    return count_users(c);
  };
  std::optional<std::size_t> written;
  asyncdb::async_run(db, fn, net::bind_executor(ctx, [&](std::exception_ptr ep, std::size_t rows) {
                       if (!ep) written = rows;
                     }));
  // asyncdb::async_run(db, asyncdb::read_only, fn, token): on a reader.
  auto read = [](SQLite::Database& c) { return sqlite3_db_readonly(c.getHandle(), "main"); };
  std::optional<int> reader_flag;
  asyncdb::async_run(db, asyncdb::read_only, read, net::bind_executor(ctx, [&](std::exception_ptr ep, int ro) {
                       if (!ep) reader_flag = ro;
                     }));
  // void(std::exception_ptr) when R is void: a handler taking the exception_ptr alone.
  auto nothing = [](SQLite::Database& c) { c.exec("UPDATE users SET is_active = 0 WHERE name = 'cb'"); };
  static_assert(std::is_same_v<decltype(asyncdb::async_run(db, nothing)), net::awaitable<void>>);
  static_assert(std::is_same_v<decltype(asyncdb::async_run(db, fn)), net::awaitable<std::size_t>>);
  bool void_done = false;
  asyncdb::async_run(db, nothing, net::bind_executor(ctx, [&](std::exception_ptr ep) { void_done = !ep; }));
  ctx.run_for(std::chrono::seconds(60));

  REQUIRE(written.has_value());
  CHECK(*written == 1);
  REQUIRE(reader_flag.has_value());
  CHECK(*reader_flag == 1);
  CHECK(void_done);

  ctx.restart();
  test::run(ctx, deferred_and_read_only(db));

  SQLite::Database plain(dir.file("app.db"), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT is_active FROM users WHERE name = 'cb'").getInt() == 0);
}

TEST_CASE("the issue's async_run snippet works with use_future", "[api][snippets][async_run][future]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file("app.db"), snippet_options()};
  auto fn = [](SQLite::Database& c) { return count_users(c); };
  std::future<std::size_t> rows = asyncdb::async_run(db, fn, net::use_future);
  REQUIRE(rows.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK(rows.get() == 0);
  auto nothing = [](SQLite::Database& c) { c.exec("DELETE FROM users"); };
  std::future<void> done = asyncdb::async_run(db, asyncdb::read_only, nothing, net::use_future);
  REQUIRE(done.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  CHECK_THROWS_AS(done.get(), SQLite::Exception);  // a reader refuses the write
}

namespace snippets {

// docs/reference.md, "g++ 12: name your values before co_await": its snippet, as written there.
net::awaitable<bool> named_before_co_await(asyncdb::database& db, std::size_t limit) {
  AsyncUserOper users{db};
  UserCreate ann{"ann", "ann@example.org"};
  co_await users.call<&UserOper::add>(ann);
  auto fn = [limit](UserOper& o) { return o.list().size() > limit; };
  const bool more = co_await users.run(fn);
  co_return more;
}

}  // namespace snippets

TEST_CASE("the reference's g++ 12 snippet: a named value and a named capturing lambda, awaited", "[api][snippets]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file("app.db"), snippet_options()};
  net::io_context ctx;
  const std::size_t limit = GENERATE(std::size_t{0}, std::size_t{1});
  const bool more = test::run(ctx, named_before_co_await(db, limit));
  CHECK(more == (limit == 0));  // the lambda saw its captured limit and the one user just added
  db.close();
  SQLite::Database plain(dir.file("app.db"), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT email FROM users WHERE name = 'ann'").getString() == "ann@example.org");
}
