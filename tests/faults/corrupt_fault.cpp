// Case 4, corrupt and unusable files: a garbage header, one corrupted table page, a file the process may
// not write. Each gets a clear error where it belongs, and nothing else stops working.
#include "fault_support.hpp"
#include "items.hpp"
#include "process.hpp"

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <support.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

void write_garbage(const std::filesystem::path& file, std::streamoff at, std::size_t bytes, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> junk(bytes);
  for (char& c : junk) c = static_cast<char>(rng());
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  if (!f) f.open(file, std::ios::out | std::ios::binary);
  f.seekp(at);
  f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
}

int primary_code(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const SQLite::Exception& x) {
    return x.getErrorCode() & 0xff;
  } catch (...) {
    return -1;
  }
}

// Runs `fn` and returns its outcome: 0, SQLite's primary error code, or -1 for another exception.
template <class T>
asio::awaitable<int> code_of(asio::awaitable<T> aw) {
  std::exception_ptr e;
  try {
    co_await std::move(aw);
  } catch (...) {
    e = std::current_exception();
  }
  co_return e ? primary_code(e) : 0;
}

std::int64_t count_good(SQLite::Database& c) { return c.execAndGet("SELECT count(*) FROM good").getInt64(); }
std::int64_t count_items(SQLite::Database& c) { return c.execAndGet("SELECT count(*) FROM items").getInt64(); }
void add_good(SQLite::Database& c) { c.exec("INSERT INTO good(note) VALUES('still works')"); }
void add_item(SQLite::Database& c) { c.exec("INSERT INTO items VALUES(100000, 'into a corrupt table')"); }

struct corrupt_outcomes {
  std::vector<int> item_reads, item_writes, good_reads, good_writes;
};

asio::awaitable<void> touch_everything(asyncdb::database& db, corrupt_outcomes& out) {
  for (int round = 0; round < 3; ++round) {
    std::vector<asio::awaitable<int>> ops;
    for (int i = 0; i < 4; ++i) {
      ops.push_back(code_of(asyncdb::async_run(db, asyncdb::read_only, &count_items)));
      ops.push_back(code_of(asyncdb::async_run(db, &add_item)));
      ops.push_back(code_of(asyncdb::async_run(db, asyncdb::read_only, &count_good)));
      ops.push_back(code_of(asyncdb::async_run(db, &add_good)));
    }
    const std::vector<int> codes = co_await asyncdb::gather(std::move(ops));
    for (std::size_t i = 0; i < codes.size(); i += 4) {
      out.item_reads.push_back(codes[i]);
      out.item_writes.push_back(codes[i + 1]);
      out.good_reads.push_back(codes[i + 2]);
      out.good_writes.push_back(codes[i + 3]);
    }
  }
}

}  // namespace

TEST_CASE("a file with a garbage header fails to open with an error naming the path and the cause",
          "[faults][corrupt]") {
  test::temp_dir dir;
  const auto file = dir.file("garbage.db");
  write_garbage(file, 0, 8192, 42);
  try {
    asyncdb::database db{file};
    FAIL("the database opened a file with a garbage header");
  } catch (const SQLite::Exception& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find(file.string()) != std::string::npos);
    CHECK(what.find("not a database") != std::string::npos);
    CHECK(e.getErrorCode() == SQLITE_NOTADB);
    std::printf("corrupt header: database() threw SQLite::Exception %d: %s\n", e.getErrorCode(), e.what());
  }
}

TEST_CASE("a corrupted table page fails only the operations that touch it", "[faults][corrupt]") {
  faults::watchdog dog(std::chrono::seconds(60), "corrupt page");
  test::temp_dir dir;
  const auto file = dir.file("corrupt.db");
  std::int64_t root = 0, page_size = 0;
  {
    SQLite::Database c(file, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    c.exec("PRAGMA journal_mode=WAL");
    faults::create_items(c);
    c.exec("CREATE TABLE good(id INTEGER PRIMARY KEY, note TEXT)");
    SQLite::Transaction t(c);
    for (int id = 1; id <= 2000; ++id) {
      c.exec("INSERT INTO items VALUES(" + std::to_string(id) + ", '" + faults::payload_of(id) + "')");
    }
    c.exec("INSERT INTO good(note) VALUES('before')");
    t.commit();
    root = c.execAndGet("SELECT rootpage FROM sqlite_master WHERE name = 'items'").getInt64();
    page_size = c.execAndGet("PRAGMA page_size").getInt64();
  }  // closing checkpoints the WAL into the file and removes it
  REQUIRE(!std::filesystem::exists(file.string() + "-wal"));
  write_garbage(file, (root - 1) * page_size, static_cast<std::size_t>(page_size), 7);  // the items b-tree's root

  asyncdb::database db{file, {.readers = 2}};
  asio::io_context ctx;
  corrupt_outcomes out;
  test::run(ctx, touch_everything(db, out));
  for (int c : out.item_reads) CHECK(c == SQLITE_CORRUPT);
  for (int c : out.item_writes) CHECK(c == SQLITE_CORRUPT);
  for (int c : out.good_reads) CHECK(c == 0);
  for (int c : out.good_writes) CHECK(c == 0);
  const asyncdb::stats s = db.stats();
  CHECK(s.failed == out.item_reads.size() + out.item_writes.size());
  CHECK(s.completed == out.good_reads.size() + out.good_writes.size());
  CHECK(s.writer.what == asyncdb::writer_holder::kind::none);
  db.close();
  SQLite::Database c(file, SQLite::OPEN_READONLY);
  CHECK(count_good(c) == 1 + static_cast<std::int64_t>(out.good_writes.size()));
  std::printf(
      "corrupt page: %zu operations on the corrupted table failed with SQLITE_CORRUPT, %zu on the other table "
      "succeeded, on 2 readers and the writer\n",
      out.item_reads.size() + out.item_writes.size(), out.good_reads.size() + out.good_writes.size());
}

TEST_CASE("a file the process may not write fails to open with an error naming it", "[faults][corrupt]") {
  test::temp_dir dir;
  const auto file = dir.file("readonly.db");
  {
    asyncdb::database db{file, {.on_open = faults::create_items}};
    asio::io_context ctx;
    faults::AsyncItems items{db};
    auto add = [&]() -> asio::awaitable<void> { co_await items.add(1); };
    test::run(ctx, add());
  }
  std::filesystem::permissions(file.parent_path(), std::filesystem::perms(0755));
  std::filesystem::permissions(file, std::filesystem::perms(0644));
  faults::child_process c({ASYNCDB_FAULT_CHILD, "unwritable", file.string()});
  const std::vector<std::string> lines = c.rest();
  c.wait();
  if (!lines.empty() && lines.front() == "cannot-drop-privileges") faults::skip("cannot switch to user nobody here");
  // The writer needs write access: the constructor refuses the file, naming it and SQLite's reason.
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "uid 65534");
  INFO(lines[1]);
  CHECK(lines[1].rfind("open-failed " + std::to_string(SQLITE_READONLY) + " ", 0) == 0);
  CHECK(lines[1].find(file.string()) != std::string::npos);
  std::printf("unwritable file (as user nobody): database() threw %s\n", lines[1].c_str() + 12);
}
