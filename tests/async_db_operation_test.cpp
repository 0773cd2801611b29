// async_db_operation (methods 2 and 4 of the guide): routing by is_read_only, one DAO object per
// connection kept with its prepared statements, arguments copied at the call, failures rethrown as they are.
#include "support.hpp"

#include "net.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

constexpr const char* probe_sql = "SELECT 'probe', ?";

// What a Probe call saw: its thread, which DAO object served it, and its prepared statement.
struct call_record {
  std::thread::id thread;
  std::uintptr_t dao = 0;
  std::uintptr_t statement = 0;  // the sqlite3_stmt* of Probe's prepared statement
  int statements = 0;            // how many statements with Probe's SQL exist on the connection
  bool read_only = false;
};

// Where Probe objects were built and destroyed: (thread, address) pairs.
struct probe_log {
  std::mutex mutex;
  std::vector<std::pair<std::thread::id, std::uintptr_t>> constructed;
  std::vector<std::pair<std::thread::id, std::uintptr_t>> destroyed;

  void add(std::vector<std::pair<std::thread::id, std::uintptr_t>>& to, const void* dao) {
    std::lock_guard lock(mutex);
    to.emplace_back(std::this_thread::get_id(), reinterpret_cast<std::uintptr_t>(dao));
  }
  void clear() {
    std::lock_guard lock(mutex);
    constructed.clear();
    destroyed.clear();
  }
  auto snapshot() {
    std::lock_guard lock(mutex);
    return std::make_pair(constructed, destroyed);
  }
};
probe_log& probes() {
  static probe_log log;
  return log;
}

// A synchronous DAO with a prepared statement, recording where it lives.
class Probe {
 public:
  explicit Probe(SQLite::Database& db) : db_(db), select_(db, probe_sql) { probes().add(probes().constructed, this); }
  ~Probe() { probes().add(probes().destroyed, this); }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  call_record write_where() { return record(); }  // declared is_write below
  call_record read_where() { return record(); }   // declared read-only below
  std::string echo(const std::string& s, int n) { return s + "/" + std::to_string(n); }
  int fail(const std::string& why) { throw std::invalid_argument(why); }

 private:
  call_record record() {
    select_.reset();
    select_.bind(1, 1);
    select_.executeStep();
    call_record r;
    r.thread = std::this_thread::get_id();
    r.dao = reinterpret_cast<std::uintptr_t>(this);
    for (sqlite3_stmt* s = sqlite3_next_stmt(db_.getHandle(), nullptr); s != nullptr;
         s = sqlite3_next_stmt(db_.getHandle(), s)) {
      if (std::string(sqlite3_sql(s)) == probe_sql) {
        r.statement = reinterpret_cast<std::uintptr_t>(s);
        ++r.statements;
      }
    }
    r.read_only = sqlite3_db_readonly(db_.getHandle(), "main") == 1;
    select_.reset();
    return r;
  }

  SQLite::Database& db_;
  SQLite::Statement select_;
};

std::pair<std::thread::id, bool> where_fn(SQLite::Database& c) {
  return {std::this_thread::get_id(), sqlite3_db_readonly(c.getHandle(), "main") == 1};
}
std::pair<std::thread::id, bool> where_fn_read(SQLite::Database& c) { return where_fn(c); }  // declared read-only
std::string echo_fn(SQLite::Database& c, const std::string& s, int n) {
  return c.execAndGet("SELECT '" + s + "'").getString() + "/" + std::to_string(n);
}
std::int64_t add_user_fn(SQLite::Database& c, const std::string& name) {
  SQLite::Statement insert(c, "INSERT INTO users(name, email) VALUES(?, 'x@x')");
  insert.bind(1, name);
  insert.exec();
  return c.getLastInsertRowid();
}

}  // namespace

template <>
inline constexpr bool asyncdb::is_read_only<&Probe::read_where> = true;
template <>
inline constexpr bool asyncdb::is_read_only<&where_fn_read> = true;
template <>
inline constexpr bool asyncdb::is_write<&Probe::write_where> = true;  // writes nothing, but is declared to
template <>
inline constexpr bool asyncdb::is_write<&where_fn> = true;

namespace {

constexpr asyncdb::async_db_operation<&Probe::write_where> write_where{};
constexpr asyncdb::async_db_operation<&Probe::echo> echo{};
constexpr asyncdb::async_db_operation<&where_fn> where{};
constexpr asyncdb::async_db_operation<&where_fn_read> where_read{};
constexpr asyncdb::async_db_operation<&echo_fn> echo_function{};
constexpr asyncdb::async_db_operation<&add_user_fn> add_user{};

net::awaitable<std::thread::id> writer_thread(asyncdb::database& db) {
  auto insert = [](SQLite::Database& c) {
    c.exec("INSERT INTO users(name, email) VALUES('known-write', 'k@x')");  // only the writer can do this
    return std::this_thread::get_id();
  };
  co_return co_await asyncdb::async_run(db, insert);
}

using strand_type = net::strand<net::io_context::executor_type>;

net::awaitable<void> hop_on_strand(asyncdb::database& db, strand_type strand, std::atomic<int>& wrong, int n) {
  for (int i = 0; i < n; ++i) {
    const auto [w, w_ro] = co_await where(db);
    if (w_ro || !strand.running_in_this_thread() || w == std::this_thread::get_id()) ++wrong;
    const auto [r, r_ro] = co_await where_read(db);
    if (!r_ro || !strand.running_in_this_thread() || r == std::this_thread::get_id()) ++wrong;
  }
}

}  // namespace

TEST_CASE("async_db_operation runs a DAO member on the writer, or on a reader when declared read-only",
          "[async_db_operation][routing]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    const std::thread::id writer = co_await writer_thread(d);
    for (int i = 0; i < 5; ++i) {
      const call_record w = co_await write_where(d);
      CHECK(w.thread == writer);
      CHECK_FALSE(w.read_only);
      const call_record r = co_await asyncdb::async_db_operation<&Probe::read_where>{}(d);
      CHECK(r.thread != writer);
      CHECK(r.read_only);
    }
  };
  test::run(ctx, check(db));
}

TEST_CASE("async_db_operation runs a function on the connection, on the writer unless declared read-only",
          "[async_db_operation][routing]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    const std::thread::id writer = co_await writer_thread(d);
    const auto [w, w_ro] = co_await where(d);
    CHECK(w == writer);
    CHECK_FALSE(w_ro);
    const auto [r, r_ro] = co_await where_read(d);
    CHECK(r != writer);
    CHECK(r_ro);
    CHECK(r != std::this_thread::get_id());
    const std::string echoed = co_await echo_function(d, "abc", 3);
    CHECK(echoed == "abc/3");
    const std::int64_t id = co_await add_user(d, "fn-user");
    CHECK(id > 0);
  };
  test::run(ctx, check(db));
  SQLite::Database plain(dir.file(), SQLITE_OPEN_READONLY);
  CHECK(plain.execAndGet("SELECT count(*) FROM users WHERE name = 'fn-user'").getInt() == 1);
}

TEST_CASE("async_db_operation copies its arguments at the call, so later changes and lifetimes do not matter",
          "[async_db_operation][arguments]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    std::string name = "original";
    int n = 1;
    net::awaitable<std::string> member = echo(d, name, n);
    net::awaitable<std::string> function = echo_function(d, name, n);
    name = "changed";
    n = 2;
    // Never co_await inside CHECK: g++ evaluates Catch's __builtin_constant_p(expr) and runs it again.
    const std::string from_member = co_await std::move(member);
    const std::string from_function = co_await std::move(function);
    CHECK(from_member == "original/1");
    CHECK(from_function == "original/1");

    // The argument dies before the operation starts: a reference would dangle (ASan would see it).
    net::awaitable<std::string> orphan = [&d] {
      std::string short_lived(64, 'x');
      return echo(d, short_lived, 3);
    }();
    const std::string from_orphan = co_await std::move(orphan);
    CHECK(from_orphan == std::string(64, 'x') + "/3");
  };
  test::run(ctx, check(db));
}

TEST_CASE(
    "each connection gets one DAO object, built on first use on its own thread, kept with its prepared "
    "statement and destroyed there",
    "[async_db_operation][dao]") {
  test::temp_dir dir;
  probes().clear();
  std::vector<call_record> writes;
  std::vector<call_record> reads;
  {
    asyncdb::database db{dir.file(), test::default_options(2)};
    CHECK(probes().snapshot().first.empty());  // connections are open, but no DAO is built before use

    net::io_context ctx;
    auto calls = [](asyncdb::database& d, std::vector<call_record>& w,
                    std::vector<call_record>& r) -> net::awaitable<void> {
      for (int i = 0; i < 50; ++i) w.push_back(co_await write_where(d));
      std::vector<net::awaitable<call_record>> parallel;
      for (int i = 0; i < 40; ++i) parallel.push_back(asyncdb::async_db_operation<&Probe::read_where>{}(d));
      r = co_await asyncdb::gather(std::move(parallel));
    };
    test::run(ctx, calls(db, writes, reads));
  }
  const auto [constructed, destroyed] = probes().snapshot();

  REQUIRE(writes.size() == 50);
  REQUIRE(reads.size() == 40);
  // The writer: one object, built on the writer's thread, the same object and statement for all 50 calls.
  const std::thread::id writer = writes.front().thread;
  std::size_t built_on_writer = 0;
  for (const auto& [thread, dao] : constructed) {
    if (thread == writer) {
      ++built_on_writer;
      CHECK(dao == writes.front().dao);
    }
  }
  CHECK(built_on_writer == 1);
  for (const auto& w : writes) {
    CHECK(w.thread == writer);
    CHECK(w.dao == writes.front().dao);
    CHECK(w.statement == writes.front().statement);
    CHECK(w.statements == 1);  // prepared once, never again
  }
  // The readers: per thread one object, built on that thread, reused with its statement.
  std::map<std::thread::id, call_record> first_by_thread;
  for (const auto& r : reads) {
    CHECK(r.thread != writer);
    CHECK(r.statements == 1);
    auto [it, inserted] = first_by_thread.emplace(r.thread, r);
    CHECK(it->second.dao == r.dao);
    CHECK(it->second.statement == r.statement);
  }
  CHECK(first_by_thread.size() <= 2);
  CHECK(constructed.size() == 1 + first_by_thread.size());  // nothing built where nothing ran
  std::set<std::thread::id> construction_threads;
  for (const auto& [thread, dao] : constructed) {
    construction_threads.insert(thread);
    if (thread != writer) {
      REQUIRE(first_by_thread.count(thread) == 1);
      CHECK(first_by_thread.at(thread).dao == dao);
    }
    CHECK(thread != std::this_thread::get_id());
  }
  CHECK(construction_threads.size() == constructed.size());  // never two on one connection
  // Every object was destroyed with its database, on the thread that built it.
  auto sorted = [](auto v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  CHECK(sorted(destroyed) == sorted(constructed));
}

TEST_CASE("a coroutine on a strand of a multi-threaded loop resumes on that strand after async_db_operation",
          "[async_db_operation][threads]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(2)};
  net::io_context ctx;
  std::atomic<int> wrong{0};
  std::atomic<int> ok{0};
  for (int c = 0; c < 4; ++c) {
    strand_type s = net::make_strand(ctx);
    net::co_spawn(s, hop_on_strand(db, s, wrong, 10), [&](std::exception_ptr ep) { ++(ep ? wrong : ok); });
  }
  test::run_on_threads(ctx, 3, 60s);
  CHECK(ok == 4);
  CHECK(wrong == 0);
}

TEST_CASE("a DAO member's exception reaches the co_await with its own type and message",
          "[async_db_operation][errors]") {
  test::temp_dir dir;
  asyncdb::database db{dir.file(), test::default_options(1)};
  net::io_context ctx;
  auto check = [](asyncdb::database& d) -> net::awaitable<void> {
    const std::string why = "no user named zed";
    CHECK_THROWS_MATCHES(co_await asyncdb::async_db_operation<&Probe::fail>{}(d, why), std::invalid_argument,
                         Catch::Matchers::Message("no user named zed"));
    CHECK_THROWS_MATCHES(co_await asyncdb::async_db_operation<&test::UserOper::fail>{}(d, why), std::invalid_argument,
                         Catch::Matchers::Message("no user named zed"));
    const std::string dup = "dup";
    co_await add_user(d, dup);
    try {
      co_await add_user(d, dup);
      FAIL("duplicate name accepted");
    } catch (const SQLite::Exception& e) {
      CHECK(e.getErrorCode() == SQLITE_CONSTRAINT);
      CHECK_THAT(e.what(), Catch::Matchers::Contains("UNIQUE"));
    }
  };
  test::run(ctx, check(db));
}

namespace {

// Functions that take views of the caller's data.
std::string copy_view_fn(SQLite::Database&, std::string_view s) { return std::string(s); }
std::string copy_c_string_fn(SQLite::Database&, const char* s) { return s; }
std::vector<int> copy_span_fn(SQLite::Database&, std::span<const int> v) { return {v.begin(), v.end()}; }

constexpr asyncdb::async_db_operation<&copy_view_fn> copy_view{};
constexpr asyncdb::async_db_operation<&copy_c_string_fn> copy_c_string{};
constexpr asyncdb::async_db_operation<&copy_span_fn> copy_span{};

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
    "async_db_operation hands a function its own copy of string_view, C string and span arguments, whatever "
    "the caller does to its buffer meanwhile",
    "[async_db_operation][arguments]") {
  test::temp_dir dir;
  held_writer w;
  asyncdb::database db{dir.file(), test::default_options(0)};  // no readers: every call queues behind the writer
  test::open_at_exit guard{w.g};
  net::io_context ctx;

  SECTION("a std::string_view") {
    auto buffer = std::make_unique<char[]>(original.size());
    std::memcpy(buffer.get(), original.data(), original.size());
    const std::string_view view(buffer.get(), original.size());
    auto start = [&] { return copy_view(db, view); };
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
    auto start = [&] { return copy_c_string(db, text); };
    auto spoil = [&] {
      std::memset(buffer.get(), 'X', original.size());
      buffer.reset();
    };
    CHECK(printable(test::run(ctx, queued_while_spoiled<std::string>(db, w, start, spoil))) == original);
  }
  SECTION("a std::span<const int>") {
    const std::vector<int> numbers{1, 2, 3, 5, 8, 13, 21, 34};
    auto buffer = std::make_unique<std::vector<int>>(numbers);
    const std::span<const int> span(*buffer);
    auto start = [&] { return copy_span(db, span); };
    auto spoil = [&] {
      std::fill(buffer->begin(), buffer->end(), -1);
      buffer.reset();
    };
    CHECK(test::run(ctx, queued_while_spoiled<std::vector<int>>(db, w, start, spoil)) == numbers);
  }
  CHECK_FALSE(w.blocker.error);
}
