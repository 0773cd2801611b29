// to_async_db_oper (method 1 of the guide): a whole synchronous DAO class made awaitable. Serialized
// concurrent writes, read/write routing, one UserOper per connection, copied arguments, failures.
#include "support.hpp"

#include "net.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;

class AsyncUsers : public asyncdb::to_async_db_oper<AsyncUsers, test::UserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
  auto list() { return call<&test::UserOper::list>(); }
  auto add(const test::UserCreate& u) { return call<&test::UserOper::add>(u); }
};

net::awaitable<std::thread::id> writer_thread(asyncdb::database& db) {
  auto insert = [](SQLite::Database& c) {
    c.exec("INSERT INTO users(name, email) VALUES('known-write', 'k@x')");  // only the writer can do this
    return std::this_thread::get_id();
  };
  co_return co_await asyncdb::async_run(db, insert);
}

struct adds_log {
  std::atomic<int> ok{0};
  std::atomic<int> wrong_executor{0};
  std::atomic<int> failed{0};
  std::mutex mutex;
  std::string first_error;
};

net::awaitable<void> add_one(AsyncUsers users, net::io_context& ctx, int i, adds_log& log) {
  test::UserCreate u{"user-" + std::to_string(i), "u" + std::to_string(i) + "@x", i % 2 == 0};
  const std::int64_t id = co_await users.call<&test::UserOper::add>(u);
  if (!ctx.get_executor().running_in_this_thread()) ++log.wrong_executor;
  if (id > 0) ++log.ok;
}

}  // namespace

TEST_CASE("2,000 concurrent adds from as many coroutines on a multi-threaded loop all land without SQLITE_BUSY",
          "[to_async_db_oper][concurrency]") {
  test::temp_dir dir;
  asyncdb::options opts = test::default_options(2);
  opts.on_open = [](SQLite::Database& c) {
    test::create_schema(c);
    c.exec("PRAGMA synchronous = NORMAL");  // WAL's usual setting: no fsync per commit, so 2,000 commits stay fast
  };
  asyncdb::database db{dir.file(), opts};
  AsyncUsers users{db};
  net::io_context ctx;
  adds_log log;
  constexpr int n = 2000;
  for (int i = 0; i < n; ++i) {
    net::co_spawn(ctx, add_one(users, ctx, i, log), [&log](std::exception_ptr ep) {
      if (!ep) return;
      ++log.failed;
      std::lock_guard lock(log.mutex);
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        if (log.first_error.empty()) log.first_error = e.what();
      }
    });
  }
  std::vector<std::thread> loop;
  for (int t = 0; t < 3; ++t) loop.emplace_back([&] { ctx.run_for(120s); });
  for (auto& t : loop) t.join();

  INFO(log.first_error);
  CHECK(log.failed == 0);
  CHECK(log.ok == n);
  CHECK(log.wrong_executor == 0);
  CHECK(test::count_rows(dir.file()) == n);
  CHECK(test::count_rows(dir.file(), "is_active = 1") == n / 2);
  SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT count(DISTINCT name) FROM users").getInt() == n);
}

TEST_CASE("to_async_db_oper runs members not declared read-only, and run(), on the writer; read-only ones on a reader",
          "[to_async_db_oper][routing]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    const std::thread::id writer = co_await writer_thread(d);
    const std::thread::id by_call = co_await users.call<&test::UserOper::where>();
    CHECK(by_call == writer);
    const std::thread::id by_run = co_await users.run([](test::UserOper& o) { return o.where(); });
    CHECK(by_run == writer);
    test::UserCreate ann{"ann", "ann@x"};
    co_await users.add(ann);  // add is not read-only: it must reach the writer or fail with SQLITE_READONLY

    auto probe = [](test::UserOper& o) {
      return std::make_pair(o.where(), sqlite3_db_readonly(o.db().getHandle(), "main"));
    };
    const auto [reader, reader_ro] = co_await users.run(asyncdb::read_only, probe);
    CHECK(reader != writer);
    CHECK(reader_ro == 1);
    const std::int64_t n = co_await users.call<&test::UserOper::count>();  // read-only: on a reader, still correct
    CHECK(n == 2);
    // A write through run(read_only) lands on a read-only connection and is refused.
    try {
      co_await users.run(asyncdb::read_only, [](test::UserOper& o) {
        test::UserCreate bob{"bob", "bob@x"};
        return o.add(bob);
      });
      FAIL("a write through run(read_only) succeeded");
    } catch (const SQLite::Exception& e) {
      CHECK(e.getErrorCode() == SQLITE_READONLY);
    }
  };
  test::run(ctx, check(db));
  CHECK(test::count_rows(dir.file(), "name = 'bob'") == 0);
}

TEST_CASE("to_async_db_oper builds one UserOper for the writer on its thread and reuses it for every call",
          "[to_async_db_oper][dao]") {
  test::temp_dir dir;
  const std::size_t built_before = test::user_dao_log().constructions().size();
  const int alive_before = test::user_dao_log().alive;
  std::thread::id writer;
  std::set<std::uintptr_t> addresses;
  {
    asyncdb::database db{dir.file(), test::default_options(2)};
    net::io_context ctx;
    auto calls = [](asyncdb::database& d, std::set<std::uintptr_t>& seen) -> net::awaitable<std::thread::id> {
      AsyncUsers users{d};
      for (int i = 0; i < 50; ++i) {
        test::UserCreate u{"u" + std::to_string(i), "u@x"};
        co_await users.add(u);
        const std::uintptr_t address =
            co_await users.run([](test::UserOper& o) { return reinterpret_cast<std::uintptr_t>(&o); });
        seen.insert(address);
      }
      co_return co_await writer_thread(d);
    };
    writer = test::run(ctx, calls(db, addresses));
    CHECK(test::user_dao_log().alive == alive_before + 1);
  }
  const auto built = test::user_dao_log().constructions();
  REQUIRE(built.size() == built_before + 1);  // 100 calls on the writer, one DAO, none on the idle readers
  CHECK(built.back() == writer);
  CHECK(addresses.size() == 1);
  CHECK(test::user_dao_log().alive == alive_before);  // destroyed with the database
  CHECK(test::count_rows(dir.file(), "email = 'u@x'") == 50);
}

TEST_CASE("to_async_db_oper builds reader DAOs only on reader threads, one per reader", "[to_async_db_oper][dao]") {
  test::temp_dir dir;
  const std::size_t built_before = test::user_dao_log().constructions().size();
  std::set<std::thread::id> reader_threads;
  {
    asyncdb::database db{dir.file(), test::default_options(2)};
    net::io_context ctx;
    auto reads = [](asyncdb::database& d) -> net::awaitable<std::vector<std::thread::id>> {
      AsyncUsers users{d};
      std::vector<net::awaitable<std::thread::id>> all;
      for (int i = 0; i < 30; ++i)
        all.push_back(users.run(asyncdb::read_only, [](test::UserOper& o) { return o.where(); }));
      co_return co_await asyncdb::gather(std::move(all));
    };
    for (const auto& id : test::run(ctx, reads(db))) reader_threads.insert(id);
  }
  const auto built = test::user_dao_log().constructions();
  const std::vector<std::thread::id> mine(built.begin() + static_cast<std::ptrdiff_t>(built_before), built.end());
  CHECK(mine.size() == reader_threads.size());
  CHECK(reader_threads.size() <= 2);
  CHECK(std::set<std::thread::id>(mine.begin(), mine.end()) == reader_threads);
}

TEST_CASE("to_async_db_oper copies call arguments when the awaitable is created", "[to_async_db_oper][arguments]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    test::UserCreate u{"ann", "ann@x"};
    net::awaitable<std::int64_t> pending = users.call<&test::UserOper::add>(u);
    u.name = "changed";
    u.email = "changed@x";
    const std::int64_t id = co_await std::move(pending);
    const std::string name = "ann";
    const std::optional<test::User> ann = co_await users.call<&test::UserOper::get_by_name>(name);
    REQUIRE(ann.has_value());
    CHECK(ann->id == id);
    CHECK(ann->email == "ann@x");
  };
  test::run(ctx, check(db));
  CHECK(test::count_rows(dir.file(), "name = 'ann'") == 1);
  CHECK(test::count_rows(dir.file(), "name = 'changed'") == 0);
}

TEST_CASE("to_async_db_oper results are values the caller owns, also after the database is gone",
          "[to_async_db_oper][results]") {
  test::temp_dir dir;
  std::vector<test::User> all;
  {
    asyncdb::database db{dir.file(), test::default_options(1)};
    net::io_context ctx;
    auto fill = [](asyncdb::database& d) -> net::awaitable<std::vector<test::User>> {
      AsyncUsers users{d};
      for (const char* name : {"ann", "bob", "cid"}) {
        test::UserCreate u{name, std::string(name) + "@x", name[0] != 'b'};
        co_await users.add(u);
      }
      co_return co_await users.list();
    };
    all = test::run(ctx, fill(db));
  }
  REQUIRE(all.size() == 3);
  CHECK(all[0].name == "ann");
  CHECK(all[1].email == "bob@x");
  CHECK_FALSE(all[1].is_active);
  CHECK(all[2].name == "cid");
}

TEST_CASE("to_async_db_oper rethrows a DAO's own exception and SQLite's constraint errors unchanged",
          "[to_async_db_oper][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    const std::string why = "name must not be empty";
    CHECK_THROWS_MATCHES(co_await users.call<&test::UserOper::fail>(why), std::invalid_argument,
                         Catch::Matchers::Message("name must not be empty"));
    test::UserCreate ann{"ann", "ann@x"};
    co_await users.add(ann);
    try {
      co_await users.add(ann);
      FAIL("a duplicate name was accepted");
    } catch (const SQLite::Exception& e) {
      CHECK(e.getErrorCode() == SQLITE_CONSTRAINT);
      CHECK(e.getExtendedErrorCode() == SQLITE_CONSTRAINT_UNIQUE);
      CHECK_THAT(e.what(), Catch::Matchers::Contains("UNIQUE"));
    }
  };
  test::run(ctx, check(db));
  CHECK(test::count_rows(dir.file()) == 1);
}

TEST_CASE("a DAO call that fails inside its own transaction leaves nothing behind for the next call",
          "[to_async_db_oper][errors][transactions]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    try {
      co_await users.run([](test::UserOper& o) {
        o.db().exec("BEGIN");
        test::UserCreate ghost{"ghost", "g@x"};
        o.add(ghost);
        return o.fail("validation failed after the insert");
      });
      FAIL("no exception");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()) == "validation failed after the insert");
    }
    const auto [autocommit, ghost] = co_await users.run([](test::UserOper& o) {
      return std::make_pair(sqlite3_get_autocommit(o.db().getHandle()), o.get_by_name("ghost").has_value());
    });
    CHECK(autocommit == 1);
    CHECK_FALSE(ghost);
  };
  test::run(ctx, check(db));
  CHECK(test::count_rows(dir.file(), "name = 'ghost'") == 0);
}

namespace {

// A DAO whose members take views of the caller's data.
class ViewDao {
 public:
  explicit ViewDao(SQLite::Database&) {}
  std::string copy_view(std::string_view s) { return std::string(s); }
  std::string copy_c_string(const char* s) { return s; }
  std::string copy_string(const std::string& s) { return s; }
  std::vector<int> copy_span(std::span<const int> v) { return {v.begin(), v.end()}; }
};

class AsyncViews : public asyncdb::to_async_db_oper<AsyncViews, ViewDao> {
 public:
  using to_async_db_oper::to_async_db_oper;
};

// The writer, held at a gate while an operation waits behind it. Declared before the database.
struct held_writer {
  test::gate g;
  std::atomic<bool> entered{false};
  test::completion blocker;
};

// Starts the operation `start()` returns while the writer is held, so that it waits in the queue; once it
// is queued, calls `spoil()` (which overwrites and frees the caller's buffer), then lets the writer go and
// returns what the operation returned.
template <class T, class Start, class Spoil>
net::awaitable<T> queued_while_spoiled(asyncdb::database& db, held_writer& w, Start& start, Spoil& spoil) {
  auto ex = co_await net::this_coro::executor;
  auto block = [&w](SQLite::Database&) {
    w.entered = true;
    w.g.wait();
  };
  asyncdb::async_run(db, block, net::bind_executor(ex, test::record_into(w.blocker)));
  co_await test::until_set(w.entered);
  std::optional<T> result;
  std::exception_ptr error;
  bool done = false;
  net::co_spawn(ex, start(), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) result.emplace(std::move(v));
    done = true;
  });
  auto queued = [&db] { return db.stats().queued == 1; };
  co_await test::poll_until(queued);
  spoil();
  w.g.open();
  auto finished = [&] { return done && w.blocker.done; };
  co_await test::poll_until(finished);
  if (error) std::rethrow_exception(error);
  co_return std::move(*result);
}

const std::string original = "the caller's own text, long enough to live on the heap";

// What the DAO received, with bytes that are not printable shown as '?': a failure prints readably.
std::string printable(std::string s) {
  for (char& c : s) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return s;
}

}  // namespace

TEST_CASE(
    "call() hands the DAO its own copy of string_view, C string, char array and span arguments, whatever the "
    "caller does to its buffer meanwhile",
    "[to_async_db_oper][arguments]") {
  test::temp_dir dir;
  held_writer w;
  asyncdb::database db{dir.file(), test::default_options(0)};  // no readers: every call queues behind the writer
  test::open_at_exit guard{w.g};
  net::io_context ctx;
  AsyncViews views{db};

  SECTION("a std::string_view") {
    auto buffer = std::make_unique<char[]>(original.size());
    std::memcpy(buffer.get(), original.data(), original.size());
    const std::string_view view(buffer.get(), original.size());
    auto start = [&] { return views.call<&ViewDao::copy_view>(view); };
    auto spoil = [&] {
      std::memset(buffer.get(), 'X', original.size());
      buffer.reset();
    };
    CHECK(printable(test::run(ctx, queued_while_spoiled<std::string>(db, w, start, spoil))) == original);
  }
  SECTION("a const char*") {
    auto buffer = std::make_unique<char[]>(original.size() + 1);
    std::memcpy(buffer.get(), original.c_str(), original.size() + 1);
    const char* text = buffer.get();
    auto start = [&] { return views.call<&ViewDao::copy_c_string>(text); };
    auto spoil = [&] {
      std::memset(buffer.get(), 'X', original.size());
      buffer.reset();
    };
    CHECK(printable(test::run(ctx, queued_while_spoiled<std::string>(db, w, start, spoil))) == original);
  }
  SECTION("a char array, to a DAO taking const std::string&") {
    struct named {
      char text[64];
    };
    auto holder = std::make_unique<named>();
    std::memcpy(holder->text, original.c_str(), original.size() + 1);
    auto start = [&] { return views.call<&ViewDao::copy_string>(holder->text); };
    auto spoil = [&] {
      std::memset(holder->text, 'X', sizeof holder->text - 1);
      holder.reset();
    };
    CHECK(printable(test::run(ctx, queued_while_spoiled<std::string>(db, w, start, spoil))) == original);
  }
  SECTION("a std::span<const int>") {
    const std::vector<int> numbers{1, 2, 3, 5, 8, 13, 21, 34};
    auto buffer = std::make_unique<std::vector<int>>(numbers);
    const std::span<const int> span(*buffer);
    auto start = [&] { return views.call<&ViewDao::copy_span>(span); };
    auto spoil = [&] {
      std::fill(buffer->begin(), buffer->end(), -1);
      buffer.reset();
    };
    CHECK(test::run(ctx, queued_while_spoiled<std::vector<int>>(db, w, start, spoil)) == numbers);
  }
  CHECK_FALSE(w.blocker.error);
}

TEST_CASE("an out-parameter passed with std::ref is filled in the caller's own object",
          "[to_async_db_oper][arguments]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    const test::UserCreate ann{"ann", "ann@x"};
    const std::int64_t id = co_await users.call<&test::UserOper::add>(ann);
    const std::string name = "ann";
    test::User out;
    // The caller keeps `out` alive and leaves it alone until the co_await returns.
    const bool found = co_await users.call<&test::UserOper::find>(name, std::ref(out));
    CHECK(found);
    CHECK(out.id == id);
    CHECK(out.email == "ann@x");
    const std::string nobody = "nobody";
    test::User untouched{7, "kept", "kept@x", false};
    CHECK_FALSE(co_await users.call<&test::UserOper::find>(nobody, std::ref(untouched)));
    CHECK(untouched.name == "kept");
  };
  test::run(ctx, check(db));
}

TEST_CASE("a member taking T&& gets the operation's own copy as an rvalue, on the writer, without a trial on a reader",
          "[to_async_db_oper][arguments][routing]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    AsyncUsers users{d};
    test::UserCreate ann{"ann", "ann@x"};
    const std::int64_t first = co_await users.call<&test::UserOper::add_moved>(ann);  // a copy is moved, not ann
    CHECK(ann.name == "ann");
    const std::string bob = "bob";  // not an aggregate: g++ 12 lets it be moved in
    const std::int64_t second = co_await users.call<&test::UserOper::add_named>(std::string(bob));
    CHECK(second == first + 1);
  };
  test::run(ctx, check(db));
  // A trial on a reader would have moved the argument away before the writer ran it again with empty strings.
  CHECK(db.stats().rerouted == 0);
  CHECK(test::rows_named(dir.file(), "ann") == 1);
  CHECK(test::rows_named(dir.file(), "bob") == 1);
  CHECK(test::count_rows(dir.file()) == 2);
}

namespace {

// Queues `n` calls of `Member` behind a write session, so that the writer finds them all waiting at once,
// and returns how many of them group commit took into shared transactions.
template <auto Member>
std::uint64_t grouped_when_queued_together(const std::filesystem::path& file, int n) {
  asyncdb::options opts = test::default_options(0);
  opts.group_commit.max_duration = std::chrono::seconds(10);
  asyncdb::database db{file, opts};
  net::io_context ctx;
  auto queue_behind_session = [](asyncdb::database& d, int count) -> net::awaitable<void> {
    AsyncUsers users{d};
    asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(d);
    std::vector<net::awaitable<std::int64_t>> all;
    for (int i = 0; i < count; ++i) {
      const test::UserCreate u{"user-" + std::to_string(i), "u@x"};
      all.push_back(users.call<Member>(u));
    }
    bool done = false;
    auto gathered = asyncdb::gather(std::move(all));
    const auto executor = co_await net::this_coro::executor;
    net::co_spawn(executor, std::move(gathered), [&done](std::exception_ptr ep, std::vector<std::int64_t>) {
      CHECK_FALSE(ep);
      done = true;
    });
    auto all_queued = [&d, count] { return d.stats().queued == static_cast<std::uint64_t>(count); };
    co_await test::poll_until(all_queued);
    s.release();
    auto finished = [&done] { return done; };
    co_await test::poll_until(finished);
  };
  test::run(ctx, queue_behind_session(db, n));
  CHECK(test::count_rows(file) == n);
  return db.stats().grouped;
}

}  // namespace

TEST_CASE("a member taking T&& is never group-committed, where a lost group would run it again",
          "[to_async_db_oper][arguments][group_commit]") {
  test::temp_dir dir;
  // The control: the same writes through a const& member share transactions.
  CHECK(grouped_when_queued_together<&test::UserOper::add>(dir.file("control.db"), 20) > 0);
  CHECK(grouped_when_queued_together<&test::UserOper::add_moved>(dir.file("moved.db"), 20) == 0);
}
