// Case 9 of the fault suite: DAO code that misbehaves. Each misdeed gets a clear error at its co_await (or
// is stopped by cancellation), and the same connection then serves a write and a read cleanly: with
// readers = 0 everything runs on the writer, with readers = 1 every read runs on the one reader.
#include <asio/experimental/awaitable_operators.hpp>

#include <sqlite3.h>

#include "fault_support.hpp"
#include "support.hpp"

using namespace asio::experimental::awaitable_operators;

namespace {

using namespace std::chrono_literals;

void create(SQLite::Database& c) {
  c.exec("CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY)");
  c.exec("INSERT OR IGNORE INTO t(k) VALUES(1), (2), (3)");
}

asyncdb::options hostile_options(std::size_t readers) {
  asyncdb::options o;
  o.readers = readers;
  o.on_open = [](SQLite::Database& c) {
    if (!c.tableExists("t")) create(c);
  };
  return o;
}

// Everything a DAO should not do, next to what a good one does.
class hostile {
 public:
  explicit hostile(SQLite::Database& db)
      : db_(db), scan_(db, "SELECT k FROM t ORDER BY k"), add_(db, "INSERT INTO t(k) VALUES(?)") {}

  int throw_int() { throw 42; }
  int throw_int_on_writer() { throw 43; }
  // Steps once and returns with the statement still on its first row: it keeps a snapshot while it steps.
  std::int64_t first_key_left_stepping() {
    if (!scan_.executeStep()) return -1;
    return scan_.getColumn(0).getInt64();
  }
  // Opens a transaction, writes in it and returns without committing.
  void begin_and_return(std::int64_t k) {
    db_.exec("BEGIN");
    add(k);
  }
  void add(std::int64_t k) {
    add_.reset();
    add_.bind(1, k);
    add_.exec();
  }
  std::int64_t count_key(std::int64_t k) {
    SQLite::Statement q(db_, "SELECT count(*) FROM t WHERE k = ?");
    q.bind(1, k);
    q.executeStep();
    return q.getColumn(0).getInt64();
  }
  // Whether no transaction is open on this connection (what a clean connection looks like).
  bool autocommit() { return sqlite3_get_autocommit(db_.getHandle()) != 0; }
  bool autocommit_on_writer() { return autocommit(); }
  SQLite::Database& db() { return db_; }

 private:
  SQLite::Database& db_;
  SQLite::Statement scan_;
  SQLite::Statement add_;
};

class async_hostile : public asyncdb::to_async_db_oper<async_hostile, hostile> {
 public:
  using to_async_db_oper::to_async_db_oper;
  using read_only_members = asyncdb::members<&hostile::throw_int, &hostile::first_key_left_stepping,
                                             &hostile::count_key, &hostile::autocommit>;
  using write_members = asyncdb::members<&hostile::throw_int_on_writer, &hostile::begin_and_return, &hostile::add,
                                         &hostile::autocommit_on_writer>;
};

// The same connections serve a write and a read cleanly afterwards: the write commits, the read sees it,
// and neither lane is left inside a transaction.
asio::awaitable<void> serves_cleanly(async_hostile& h, std::int64_t key) {
  co_await h.call<&hostile::add>(key);
  const std::int64_t seen = co_await h.call<&hostile::count_key>(key);
  CHECK(seen == 1);
  const bool reader_clean = co_await h.call<&hostile::autocommit>();
  const bool writer_clean = co_await h.call<&hostile::autocommit_on_writer>();
  CHECK(reader_clean);
  CHECK(writer_clean);
}

// A DAO whose constructor fails: the first `fail_first` constructions throw, later ones succeed.
std::atomic<int> fragile_failures_left{0};
class fragile {
 public:
  explicit fragile(SQLite::Database& db) : probe_(db, "SELECT count(*) FROM t") {
    if (fragile_failures_left.fetch_sub(1) > 0) throw std::runtime_error("fragile: cannot start");
  }
  std::int64_t rows() {
    probe_.reset();
    probe_.executeStep();
    return probe_.getColumn(0).getInt64();
  }

 private:
  SQLite::Statement probe_;  // prepared before the throw: finalized by its own destructor
};

// A DAO whose constructor throws something that is not a std::exception, every time.
class hopeless {
 public:
  explicit hopeless(SQLite::Database&) { throw 7; }
  int anything() { return 0; }
};

// Awaits `aw` and stores the code of the std::system_error it threw (none when it succeeded).
template <class T>
asio::awaitable<void> error_into(asio::awaitable<T> aw, std::error_code& out) {
  try {
    co_await std::move(aw);
    out = {};
  } catch (const std::system_error& e) {
    out = e.code();
  }
}

template <class Aw>
asio::awaitable<int> int_thrown_by(Aw aw) {
  try {
    co_await std::move(aw);
  } catch (int v) {
    co_return v;
  }
  co_return -1;
}

}  // namespace

template <>
inline constexpr bool asyncdb::is_write<&fragile::rows> = true;
template <>
inline constexpr bool asyncdb::is_write<&hopeless::anything> = true;

TEST_CASE("a DAO that throws a non std exception type gets it back at its co_await", "[faults][hostile]") {
  const std::size_t readers = GENERATE(0, 1);
  faults::watchdog dog(30s, "hostile: throw 42");
  test::temp_dir dir;
  asyncdb::database db(dir.file(), hostile_options(readers));
  async_hostile h(db);
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    const int on_reader = co_await int_thrown_by(h.call<&hostile::throw_int>());
    const int on_writer = co_await int_thrown_by(h.call<&hostile::throw_int_on_writer>());
    CHECK(on_reader == 42);
    CHECK(on_writer == 43);
    co_await serves_cleanly(h, 100);
  };
  test::run(ctx, body());
  const auto s = db.stats();
  CHECK(s.failed == 2);
}

TEST_CASE("a DAO whose constructor throws fails its call and is built again on the next", "[faults][hostile]") {
  const std::size_t readers = GENERATE(0, 1);
  faults::watchdog dog(30s, "hostile: constructor throws");
  test::temp_dir dir;
  asyncdb::database db(dir.file(), hostile_options(readers));
  async_hostile h(db);
  asio::io_context ctx;
  fragile_failures_left = 1;
  auto body = [&]() -> asio::awaitable<void> {
    std::string first_error;
    try {
      co_await asyncdb::async_db_operation<&fragile::rows>{}(db);
    } catch (const std::runtime_error& e) {
      first_error = e.what();
    }
    CHECK(first_error == "fragile: cannot start");
    const std::int64_t rows = co_await asyncdb::async_db_operation<&fragile::rows>{}(db);  // built again, once
    CHECK(rows == 3);
    const int thrown = co_await int_thrown_by(asyncdb::async_db_operation<&hopeless::anything>{}(db));
    CHECK(thrown == 7);
    const int again = co_await int_thrown_by(asyncdb::async_db_operation<&hopeless::anything>{}(db));
    CHECK(again == 7);
    co_await serves_cleanly(h, 101);
  };
  test::run(ctx, body());
}

TEST_CASE("a DAO that leaves a statement stepping holds no snapshot into the next operation", "[faults][hostile]") {
  const std::size_t readers = GENERATE(0, 1);
  faults::watchdog dog(30s, "hostile: statement left stepping");
  test::temp_dir dir;
  asyncdb::database db(dir.file(), hostile_options(readers));
  async_hostile h(db);
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    const std::int64_t first = co_await h.call<&hostile::first_key_left_stepping>();
    CHECK(first == 1);
    // A write committed after it is visible to the next read on the same connection: no snapshot survived.
    co_await h.call<&hostile::add>(std::int64_t{0});
    const std::int64_t seen = co_await h.call<&hostile::count_key>(std::int64_t{0});
    CHECK(seen == 1);
    // The statement was reset between the two operations: it starts again from its first row (now 0).
    const std::int64_t again = co_await h.call<&hostile::first_key_left_stepping>();
    CHECK(again == 0);
    co_await serves_cleanly(h, 102);
  };
  test::run(ctx, body());
}

TEST_CASE("a DAO that opens a transaction and returns gets transaction_left_open and nothing is kept",
          "[faults][hostile]") {
  const std::size_t readers = GENERATE(0, 1);
  faults::watchdog dog(30s, "hostile: transaction left open");
  test::temp_dir dir;
  asyncdb::database db(dir.file(), hostile_options(readers));
  async_hostile h(db);
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    const std::error_code alone = co_await test::error_of(h.call<&hostile::begin_and_return>(std::int64_t{-7}));
    CHECK(alone == asyncdb::errc::transaction_left_open);
    // Among well-behaved writes queued together (a group commit): it alone fails, the others commit.
    std::vector<asio::awaitable<void>> writes;
    for (std::int64_t k = 200; k < 210; ++k) {
      if (k == 205) {
        writes.push_back(h.call<&hostile::begin_and_return>(std::int64_t{-8}));
      } else {
        writes.push_back(h.call<&hostile::add>(k));
      }
    }
    std::vector<std::error_code> errors(writes.size());
    std::vector<asio::awaitable<void>> recorded;
    for (std::size_t i = 0; i < writes.size(); ++i) recorded.push_back(error_into(std::move(writes[i]), errors[i]));
    co_await asyncdb::gather(std::move(recorded));
    for (std::size_t i = 0; i < errors.size(); ++i) {
      INFO("write " << i);
      if (i == 5) {
        CHECK(errors[i] == asyncdb::errc::transaction_left_open);
      } else {
        CHECK(!errors[i]);
      }
    }
    const std::int64_t left7 = co_await h.call<&hostile::count_key>(std::int64_t{-7});
    const std::int64_t left8 = co_await h.call<&hostile::count_key>(std::int64_t{-8});
    CHECK(left7 == 0);
    CHECK(left8 == 0);
    for (std::int64_t k = 200; k < 210; ++k) {
      const std::int64_t n = co_await h.call<&hostile::count_key>(k);
      CHECK(n == (k == 205 ? 0 : 1));
    }
    co_await serves_cleanly(h, 103);
  };
  test::run(ctx, body());
}

TEST_CASE("a DAO statement that never ends is stopped by cancellation and the connection serves on",
          "[faults][hostile]") {
  const std::size_t readers = GENERATE(0, 1);
  const bool on_writer = GENERATE(false, true);
  faults::watchdog dog(30s, "hostile: endless statement");
  test::temp_dir dir;
  asyncdb::database db(dir.file(), hostile_options(readers));
  async_hostile h(db);
  asio::io_context ctx;
  std::atomic<bool> started{false};
  auto body = [&]() -> asio::awaitable<void> {
    std::error_code cancelled;
    const auto start = std::chrono::steady_clock::now();
    if (on_writer) {
      // Written first, in its own transaction: the cancellation must leave nothing of it.
      auto endless = [&started](hostile& d) {
        d.db().exec("BEGIN");
        d.add(-9);
        started = true;
        d.db().execAndGet(faults::endless_count);
        d.db().exec("COMMIT");
      };
      auto op = error_into(h.run(endless), cancelled);
      co_await (std::move(op) || test::timer_after_start(started));
    } else {
      auto endless = [&started](hostile& d) {
        started = true;
        return d.db().execAndGet(faults::endless_count).getInt64();
      };
      auto op = error_into(h.run(asyncdb::read_only, endless), cancelled);
      co_await (std::move(op) || test::timer_after_start(started));
    }
    std::printf("hostile endless %s (readers %zu): stopped after %.0f ms\n", on_writer ? "write" : "read", readers,
                faults::ms_since(start));
    CHECK(started);
    CHECK(cancelled == asio::error::operation_aborted);
    const std::int64_t left = co_await h.call<&hostile::count_key>(std::int64_t{-9});
    CHECK(left == 0);
    co_await serves_cleanly(h, 104);
  };
  test::run(ctx, body());
  const auto s = db.stats();
  CHECK(s.cancelled == 1);
}
