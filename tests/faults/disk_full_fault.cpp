// Case 2, disk full: SQLITE_FULL from PRAGMA max_page_count (everywhere) and from a real, full, small
// filesystem (a tmpfs mounted for the test, where the machine allows it). The write that does not fit
// fails at its co_await with SQLITE_FULL, and so does every write of a group whose COMMIT fails; every
// earlier acknowledged write stays; once space is back, the same database object writes again.
#include "fault_support.hpp"
#include "items.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <support.hpp>

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <vector>

namespace {

// How one add ended: 0, or SQLite's primary and extended error codes.
struct add_outcome {
  int code = -1;
  int extended = 0;
};

asio::awaitable<void> add_recorded(faults::AsyncItems items, std::int64_t id, add_outcome& out) {
  try {
    co_await items.add(id);
    out.code = 0;
  } catch (const SQLite::Exception& e) {
    out.code = e.getErrorCode();
    out.extended = e.getExtendedErrorCode();
  } catch (...) {
    out.code = -2;
  }
}

// Adds `ids` at once (they queue together: group commit) and waits for all of them.
asio::awaitable<std::vector<add_outcome>> add_ids(asyncdb::database& db, const std::vector<std::int64_t>& ids) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<add_outcome> out(ids.size());
  std::size_t done = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    asio::co_spawn(ex, add_recorded(faults::AsyncItems{db}, ids[i], out[i]), [&done](std::exception_ptr) { ++done; });
  }
  auto all = [&] { return done == out.size(); };
  co_await test::poll_until(all, std::chrono::seconds(60));
  co_return out;
}

// Adds ids [first, first + n) at once (they queue together: group commit) and waits for all of them.
asio::awaitable<std::vector<add_outcome>> add_many(asyncdb::database& db, std::int64_t first, std::int64_t n) {
  auto ex = co_await asio::this_coro::executor;
  std::vector<add_outcome> out(static_cast<std::size_t>(n));
  std::size_t done = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    asio::co_spawn(ex, add_recorded(faults::AsyncItems{db}, first + i, out[static_cast<std::size_t>(i)]),
                   [&done](std::exception_ptr) { ++done; });
  }
  auto all = [&] { return done == out.size(); };
  co_await test::poll_until(all, std::chrono::seconds(60));
  co_return out;
}

std::set<std::int64_t> ids_in(const std::filesystem::path& file) {
  SQLite::Database c(file, SQLite::OPEN_READONLY);
  std::set<std::int64_t> ids;
  for (SQLite::Statement s(c, "SELECT id FROM items"); s.executeStep();) ids.insert(s.getColumn(0).getInt64());
  return ids;
}

struct split {
  std::vector<std::int64_t> ok, full, other;
};

split split_outcomes(const std::vector<add_outcome>& out, std::int64_t first) {
  split s;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::int64_t id = first + static_cast<std::int64_t>(i);
    (out[i].code == 0 ? s.ok : out[i].code == SQLITE_FULL ? s.full : s.other).push_back(id);
  }
  return s;
}

asyncdb::options full_options() {
  asyncdb::options o;
  o.on_open = [](SQLite::Database& c) {
    if (sqlite3_db_readonly(c.getHandle(), "main") == 0) faults::create_items(c);
  };
  return o;
}

// Everything the case checks after the fault, on the file itself.
void check_after(const std::filesystem::path& file, std::int64_t acked_before, const split& s) {
  const faults::file_check fc = faults::check_file(file);
  CHECK(fc.integrity == "ok");
  CHECK(fc.torn == 0);
  const std::set<std::int64_t> ids = ids_in(file);
  for (std::int64_t id = 1; id <= acked_before; ++id) CHECK(ids.count(id) == 1);
  std::size_t lost = 0, failed_but_there = 0;
  for (std::int64_t id : s.ok) lost += ids.count(id) == 0 ? 1 : 0;
  for (std::int64_t id : s.full) failed_but_there += ids.count(id);
  CHECK(lost == 0);
  CHECK(failed_but_there == 0);
}

struct mounted {
  std::filesystem::path at;
  ~mounted() { ::umount2(at.c_str(), MNT_DETACH); }
};

}  // namespace

TEST_CASE("a write past max_page_count fails with SQLITE_FULL and writes resume once the limit is raised",
          "[faults][disk_full]") {
  faults::watchdog dog(std::chrono::seconds(60), "disk full max_page_count");
  test::temp_dir dir;
  const auto file = dir.file("full.db");
  asyncdb::database db{file, full_options()};
  asio::io_context ctx;
  auto body = [&]() -> asio::awaitable<void> {
    const std::vector<add_outcome> before = co_await add_many(db, 1, 100);
    for (const add_outcome& o : before) REQUIRE(o.code == 0);
    auto limit = [](SQLite::Database& c) {
      const std::int64_t pages = c.execAndGet("PRAGMA page_count").getInt64();
      c.exec("PRAGMA max_page_count=" + std::to_string(pages + 4));
    };
    co_await asyncdb::async_run(db, limit);

    // Alone: one write at a time until one does not fit.
    faults::AsyncItems items{db};
    std::int64_t id = 1000;
    int alone_code = 0;
    for (; id < 2000 && alone_code == 0; ++id) {
      add_outcome o;
      co_await add_recorded(items, id, o);
      alone_code = o.code;
    }
    CHECK(alone_code == SQLITE_FULL);
    const std::int64_t alone_last = id - 1;  // the one that failed

    // Together: 500 writes queued at once, in groups.
    const std::vector<add_outcome> together = co_await add_many(db, 10'000, 500);
    const split s = split_outcomes(together, 10'000);
    CHECK(s.other.empty());
    CHECK(s.full.size() >= together.size() - 10);   // a few small ones may still fit in a page's free space
    const std::int64_t n = co_await items.count();  // reads go on
    CHECK(n == 100 + (alone_last - 1000) + static_cast<std::int64_t>(s.ok.size()));
    check_after(file, 100, s);

    auto unlimit = [](SQLite::Database& c) { c.exec("PRAGMA max_page_count=1073741823"); };
    co_await asyncdb::async_run(db, unlimit);
    const std::vector<add_outcome> again = co_await add_ids(db, s.full);
    split s2;
    for (std::size_t i = 0; i < again.size(); ++i) (again[i].code == 0 ? s2.ok : s2.other).push_back(s.full[i]);
    CHECK(s2.ok.size() == again.size());
    check_after(file, 100, s2);
    std::printf(
        "disk full (max_page_count): write %lld alone failed with SQLITE_FULL after %lld fitted; of 500 queued "
        "together %zu failed with SQLITE_FULL and %zu fitted; earlier writes intact; all %zu failed ones succeeded "
        "on the same database once the limit was raised\n",
        static_cast<long long>(alone_last), static_cast<long long>(alone_last - 1000), s.full.size(), s.ok.size(),
        s.full.size());
  };
  test::run(ctx, body());
  const asyncdb::stats st = db.stats();
  CHECK(st.writer.what == asyncdb::writer_holder::kind::none);
  CHECK(st.queued == 0);
}

TEST_CASE("a write on a full filesystem fails with SQLITE_FULL and writes resume once space is freed",
          "[faults][disk_full]") {
  faults::watchdog dog(std::chrono::seconds(60), "disk full tmpfs");
  test::temp_dir dir;
  const std::filesystem::path mnt = dir.file("mnt");
  std::filesystem::create_directory(mnt);
  if (::mount("asyncdb-fault", mnt.c_str(), "tmpfs", 0, "size=16m") != 0) {
    faults::skip(std::string("cannot mount a 16 MiB tmpfs here (") + std::strerror(errno) + "); run as root");
  }
  mounted guard{mnt};
  const auto file = mnt / "full.db";
  const auto filler = mnt / "filler";
  {
    asyncdb::database db{file, full_options()};
    asio::io_context ctx;
    auto body = [&]() -> asio::awaitable<void> {
      const std::vector<add_outcome> before = co_await add_many(db, 1, 100);
      for (const add_outcome& o : before) REQUIRE(o.code == 0);
      // Fill the filesystem to the last byte.
      const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      REQUIRE(fd >= 0);
      std::vector<char> chunk(4096, 'f');
      std::size_t filled = 0;
      for (ssize_t w; (w = ::write(fd, chunk.data(), chunk.size())) > 0;) filled += static_cast<std::size_t>(w);
      ::close(fd);

      faults::AsyncItems items{db};
      std::vector<add_outcome> together;
      split s;
      std::int64_t first = 10'000;
      // WAL space already allocated may take a few writes; then every write must fail with SQLITE_FULL.
      for (int round = 0; round < 20 && s.full.empty(); ++round, first += 1000) {
        together = co_await add_many(db, first, 1000);
        s = split_outcomes(together, first);
        CHECK(s.other.empty());
        check_after(file, 100, s);
      }
      REQUIRE(!s.full.empty());
      const std::int64_t n = co_await items.count();  // reads go on while the disk is full
      CHECK(n >= 100);
      std::filesystem::remove(filler);
      const std::int64_t failed_first = first - 1000;
      const std::vector<add_outcome> again = co_await add_ids(db, s.full);
      split s2;
      for (std::size_t i = 0; i < again.size(); ++i) (again[i].code == 0 ? s2.ok : s2.other).push_back(s.full[i]);
      CHECK(s2.other.empty());
      check_after(file, 100, s2);
      std::printf(
          "disk full (16 MiB tmpfs, %zu KiB of filler): %zu of 1000 writes queued together failed with SQLITE_FULL "
          "(first id %lld), %zu succeeded and are there, 100 earlier writes intact; after deleting the filler all %zu "
          "failed ones succeeded on the same database\n",
          filled / 1024, s.full.size(), static_cast<long long>(failed_first), s.ok.size(), s.full.size());
    };
    test::run(ctx, body());
    CHECK(db.stats().writer.what == asyncdb::writer_holder::kind::none);
  }
  const faults::file_check fc = faults::check_file(file);
  CHECK(fc.integrity == "ok");
}
