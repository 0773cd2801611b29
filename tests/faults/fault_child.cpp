// The other process of the fault suite (tests/faults/README.md). Every mode reports on stdout, one line
// per event, written with write(2) as it happens, so a SIGKILL loses nothing already reported.
//   burst <db> <synchronous> <first id> <count>   concurrent adds; "ack <id>" after each co_await returned
//   close <db> <synchronous> <first id> <count>   the same, with close() called while they are queued
//   session <db> <synchronous> <first id>         "ack"ed adds, then a write session inserting rows forever
//   lock <db>                                     holds BEGIN IMMEDIATE (one row written) until "commit" on stdin
//   unwritable <db>                               as user nobody: open, read, write; prints each outcome
//   orphan <db>                                   a slow write queued (result not awaited), then the database's
//                                                 last owner dies inside a read; main returns right after that read
#include "items.hpp"

#include <grp.h>
#include <unistd.h>
#include <asio/bind_executor.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

namespace {

void say(const std::string& line) {
  const std::string s = line + "\n";
  if (::write(1, s.data(), s.size()) != static_cast<ssize_t>(s.size())) std::_Exit(3);
}

asyncdb::options items_options(const std::string& synchronous) {
  asyncdb::options o;
  o.on_open = [synchronous](SQLite::Database& c) {
    if (sqlite3_db_readonly(c.getHandle(), "main") == 0) {
      faults::create_items(c);
      c.exec("PRAGMA synchronous=" + synchronous);
    }
  };
  return o;
}

asio::awaitable<void> add_one(faults::AsyncItems items, std::int64_t id) {
  co_await items.add(id);
  say("ack " + std::to_string(id));
}

void spawn_adds(asio::io_context& ctx, asyncdb::database& db, std::int64_t first, std::int64_t count) {
  for (std::int64_t id = first; id < first + count; ++id)
    asio::co_spawn(ctx, add_one(faults::AsyncItems{db}, id), asio::detached);
}

long long ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

int burst(const std::string& file, const std::string& sync, std::int64_t first, std::int64_t count, bool close) {
  asyncdb::database db{file, items_options(sync)};
  asio::io_context ctx;
  spawn_adds(ctx, db, first, count);
  say("ready");
  const auto t0 = std::chrono::steady_clock::now();
  if (!close) {
    ctx.run();
    say("done " + std::to_string(ms_since(t0)));
    return 0;
  }
  std::thread loop([&] { ctx.run(); });
  // close() once every add is accepted, so that it has all of them to run before it closes.
  const auto give_up = t0 + std::chrono::seconds(20);
  for (asyncdb::stats s = db.stats(); s.queued + s.running + s.completed + s.failed < static_cast<std::uint64_t>(count);
       s = db.stats()) {
    if (std::chrono::steady_clock::now() > give_up) std::_Exit(2);
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // not a spin: the loop thread needs the core
  }
  say("closing");
  const auto closing = std::chrono::steady_clock::now();
  db.close();
  say("done " + std::to_string(ms_since(closing)));
  loop.join();
  return 0;
}

asio::awaitable<void> session_forever(asyncdb::database& db, std::int64_t first) {
  faults::AsyncItems items{db};
  for (std::int64_t id = first; id < first + 100; ++id) {
    co_await items.add(id);
    say("ack " + std::to_string(id));
  }
  asyncdb::AsyncDbSession s = co_await asyncdb::async_db_session(db);
  co_await s.begin();
  say("begun");
  for (std::int64_t id = first + 100;; ++id) {
    co_await s.call<&faults::ItemOper::add>(id);
    say("row " + std::to_string(id));
  }
}

int session(const std::string& file, const std::string& sync, std::int64_t first) {
  asyncdb::database db{file, items_options(sync)};
  asio::io_context ctx;
  asio::co_spawn(ctx, session_forever(db, first), [](std::exception_ptr e) {
    if (e) std::_Exit(2);
  });
  ctx.run();
  return 1;  // never reached: the parent kills us
}

int lock(const std::string& file) {
  SQLite::Database c(file, SQLite::OPEN_READWRITE);
  c.exec("BEGIN IMMEDIATE");
  c.exec("INSERT INTO items(id, payload) VALUES(-1, 'from the other process')");
  say("locked");
  for (std::string line; std::getline(std::cin, line);) {
    if (line == "commit") {
      c.exec("COMMIT");
      say("committed");
    }
  }
  return 0;
}

std::string code_and_what(const SQLite::Exception& e) { return std::to_string(e.getErrorCode()) + " " + e.what(); }

asio::awaitable<void> read_then_write(asyncdb::database& db) {
  faults::AsyncItems items{db};
  try {
    say("read-ok " + std::to_string(co_await items.count()));
  } catch (const SQLite::Exception& e) {
    say("read-failed " + code_and_what(e));
  }
  try {
    co_await items.add(1'000'000);
    say("write-ok");
  } catch (const SQLite::Exception& e) {
    say("write-failed " + code_and_what(e));
  }
}

int unwritable(const std::string& file) {
  const gid_t nobody_group = 65534;
  if (::setgroups(1, &nobody_group) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
    say("cannot-drop-privileges");
    return 0;
  }
  say("uid " + std::to_string(::getuid()));
  try {
    asyncdb::database db{file, {.readers = 1}};
    say("opened");
    asio::io_context ctx;
    asio::co_spawn(ctx, read_then_write(db), asio::detached);
    ctx.run();
  } catch (const SQLite::Exception& e) {
    say("open-failed " + code_and_what(e));
  } catch (const std::exception& e) {
    say(std::string("open-failed other ") + e.what());
  }
  return 0;
}

// The database is destroyed on its own reader thread, so it closes in the background; the write queued before
// must still land although main returns at once (the close's promise: what is queued runs).
int orphan(const std::string& file) {
  asyncdb::options opts = items_options("NORMAL");
  opts.readers = 1;
  // The write takes seconds on a loaded machine; the default 5 s grace would cut it short, as close() may.
  opts.close_grace = std::chrono::minutes(3);
  auto db = std::make_shared<asyncdb::database>(file, opts);
  asyncdb::database& ref = *db;
  auto slow_write = [](SQLite::Database& c) {
    c.exec(
        "INSERT INTO items(id, payload) SELECT 7, count(*) FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT "
        "i + 1 FROM n WHERE i < 3000000) SELECT i FROM n)");
  };
  (void)asyncdb::async_run(ref, slow_write, asio::use_future);  // fire and forget
  asio::io_context ctx;
  auto last_owner = [owner = std::move(db)](SQLite::Database&) { return owner.use_count(); };
  asyncdb::async_run(ref, asyncdb::read_only, std::move(last_owner),
                     asio::bind_executor(ctx, [](std::exception_ptr e, long owners) {
                       say(e ? "read-failed" : "read-ok owners " + std::to_string(owners));
                     }));
  ctx.run();
  say("main-returns");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 2 ? argv[1] : "";
  const std::string file = argc > 2 ? argv[2] : "";
  try {
    if (mode == "burst" && argc == 6) return burst(file, argv[3], std::atoll(argv[4]), std::atoll(argv[5]), false);
    if (mode == "close" && argc == 6) return burst(file, argv[3], std::atoll(argv[4]), std::atoll(argv[5]), true);
    if (mode == "session" && argc == 5) return session(file, argv[3], std::atoll(argv[4]));
    if (mode == "lock") return lock(file);
    if (mode == "unwritable") return unwritable(file);
    if (mode == "orphan") return orphan(file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "asyncdb_fault_child: %s\n", e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: asyncdb_fault_child burst|close|session|lock|unwritable|orphan <db> ...\n");
  return 64;
}
