#pragma once
// Fixtures of the PostgreSQL tests: the cluster's conninfo (or a skip saying why there is none), a fresh
// schema per test on the shared cluster, a libpqxx DAO as users write it, and waiting for the replica.
#include <asyncdb/postgres.hpp>

#include <pqxx/pqxx>

#include "support.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace pgtest {

inline std::string conninfo(int port) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=asyncdb_test user=postgres connect_timeout=5";
}

inline int primary_port() {
  const char* p = std::getenv("ASYNCDB_PG_PORT");
#ifdef ASYNCDB_PG_TEST_PORT
  return p != nullptr ? std::atoi(p) : ASYNCDB_PG_TEST_PORT;
#else
  return p != nullptr ? std::atoi(p) : 25432;
#endif
}

/// The primary's conninfo; exits the test process with 4 (ctest: skipped) when no server answers.
inline std::string primary() {
  const std::string ci = conninfo(primary_port());
  try {
    pqxx::connection c{ci};
  } catch (const std::exception& e) {
    std::fprintf(stderr, "SKIPPED: no PostgreSQL test cluster at %s (start it with scripts/pg-test-cluster.sh): %s\n",
                 ci.c_str(), e.what());
    std::exit(4);
  }
  return ci;
}
inline std::string replica() {
  primary();
  return conninfo(primary_port() + 1);
}

/// One statement on the primary, on a connection of its own (no schema).
inline void admin(const std::string& sql) {
  pqxx::connection c{primary()};
  pqxx::nontransaction t{c};
  t.exec(sql);
}

/// Polls `sql` (one boolean) on a connection of its own to the primary (or replica) until it holds; false
/// past the deadline.
inline bool wait_for(const std::string& sql, std::chrono::seconds deadline = std::chrono::seconds(10),
                     bool on_replica = false) {
  pqxx::connection c{on_replica ? replica() : primary()};
  pqxx::nontransaction t{c};
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!t.exec1(sql)[0].as<bool>()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

/// A database of the test's own, so that refusing connections to it touches no other test.
class scratch_database {
 public:
  scratch_database() : name_("f" + std::to_string(::getpid())) {
    admin("DROP DATABASE IF EXISTS " + name_);
    admin("CREATE DATABASE " + name_);
  }
  ~scratch_database() {
    try {
      admin("ALTER DATABASE " + name_ + " WITH ALLOW_CONNECTIONS true");
      admin("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
    } catch (...) {
    }
  }
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(primary_port()) + " dbname=" + name_ + " user=postgres";
  }
  const std::string& name() const { return name_; }
  /// `writers` primary connections to it, no readers, reconnecting quickly.
  asyncdb::postgres::options options(std::size_t writers) const {
    asyncdb::postgres::options o;
    o.primary = conninfo();
    o.writers = writers;
    o.readers = 0;
    o.reconnect_backoff = std::chrono::milliseconds(50);
    o.max_reconnect_backoff = std::chrono::milliseconds(200);
    return o;
  }

 private:
  std::string name_;
};

/// Whether a connection to the replica is seen polling its replay position (the wait read_your_writes makes)
/// within `deadline`.
inline bool reader_waits_for_replay(std::chrono::seconds deadline) {
  return wait_for(
      "SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_last_wal_replay_lsn()' "
      "AND pid <> pg_backend_pid()",
      deadline, true);
}

/// Pauses WAL replay on the replica for its lifetime; resumes even when the test fails. The replica is
/// shared by the test processes ctest runs at once, so each pause holds a lock file of the cluster's for its
/// lifetime (removed as it ends): another test's resume never ends this one's pause early.
class replay_paused {
 public:
  replay_paused() : lock_(lock_replay()) { exec("SELECT pg_wal_replay_pause()"); }
  ~replay_paused() {
    try {
      resume();
    } catch (...) {
    }
    ::unlink(lock_path().c_str());  // while still held: no lock file is left behind
    ::close(lock_);                 // releases the lock
  }
  replay_paused(const replay_paused&) = delete;
  replay_paused& operator=(const replay_paused&) = delete;
  void resume() { exec("SELECT pg_wal_replay_resume()"); }

 private:
  int lock_;

  static std::string lock_path() { return "/tmp/asyncdb-pg-replay-" + std::to_string(primary_port()) + ".lock"; }

  // The holder before us unlinks the file as it lets go, so a lock won on a file no longer under that name
  // locks nothing: open the name again.
  static int lock_replay() {
    const std::string path = lock_path();
    for (;;) {
      const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
      if (fd < 0) throw std::runtime_error("cannot open the replica's replay lock " + path);
      struct stat held {};
      struct stat named {};
      if (::flock(fd, LOCK_EX) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot lock the replica's replay");
      }
      if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_dev == named.st_dev &&
          held.st_ino == named.st_ino)
        return fd;
      ::close(fd);
    }
  }

  static void exec(const std::string& sql) {
    pqxx::connection c{replica()};
    pqxx::nontransaction t{c};
    t.exec(sql);
  }
};

/// A schema of its own for one test, dropped at the end; `search_path()` is what on_open sets.
class schema {
 public:
  schema() : name_("t" + std::to_string(::getpid()) + "_" + std::to_string(next())) {
    pqxx::connection c{primary()};
    pqxx::work w{c};
    w.exec("CREATE SCHEMA " + name_);
    w.exec("CREATE TABLE " + name_ +
           ".users(id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, email text NOT NULL, "
           "is_active boolean NOT NULL DEFAULT true)");
    w.commit();
  }
  ~schema() {
    try {
      pqxx::connection c{primary()};
      pqxx::work w{c};
      w.exec("DROP SCHEMA " + name_ + " CASCADE");
      w.commit();
    } catch (...) {
    }
  }
  const std::string& name() const noexcept { return name_; }
  /// Runs on each connection: the test's tables first.
  std::function<void(pqxx::connection&)> on_open() const {
    return [n = name_](pqxx::connection& c) {
      pqxx::nontransaction t{c};
      t.exec("SET search_path = " + n);
    };
  }
  asyncdb::postgres::options options(std::size_t writers = 4, std::size_t readers = 2, bool with_replica = true) const {
    asyncdb::postgres::options o;
    o.primary = primary();
    if (with_replica) o.replicas = {replica()};
    o.writers = writers;
    o.readers = readers;
    o.on_open = on_open();
    return o;
  }
  /// One statement on a connection of the test's own, outside asyncdb.
  pqxx::result exec(const std::string& sql, bool on_replica = false) const {
    pqxx::connection c{on_replica ? replica() : primary()};
    pqxx::nontransaction t{c};
    t.exec("SET search_path = " + name_);
    return t.exec(sql);
  }

 private:
  static int next() {
    static std::atomic<int> n{0};
    return n++;
  }
  std::string name_;
};

/// Waits (with a deadline) until the replica has replayed everything the primary has written so far.
inline void wait_for_replica() {
  pqxx::connection p{primary()};
  pqxx::connection r{replica()};
  pqxx::nontransaction pt{p};
  const std::string lsn = pt.exec1("SELECT pg_current_wal_lsn()::text")[0].as<std::string>();
  pqxx::nontransaction rt{r};
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!rt.exec1("SELECT pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn")[0].as<bool>()) {
    if (std::chrono::steady_clock::now() > give_up) throw std::runtime_error("the replica did not catch up in 30 s");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

struct User {
  std::int64_t id = 0;
  std::string name;
  std::string email;
  bool is_active = true;
};
struct UserCreate {
  std::string name;
  std::string email;
  bool is_active = true;
};

inline test::dao_log& pg_dao_log() {
  static test::dao_log log;
  return log;
}

/// The DAO as a team moving from SQLite writes it: pqxx::work and exec_params, nothing of asyncdb.
class PgUserOper {
 public:
  explicit PgUserOper(pqxx::connection& c) : c_(c) {
    pg_dao_log().constructed();
    ++pg_dao_log().alive;
  }
  ~PgUserOper() { --pg_dao_log().alive; }
  PgUserOper(const PgUserOper&) = delete;
  PgUserOper& operator=(const PgUserOper&) = delete;

  std::int64_t add(const UserCreate& u) {
    pqxx::work w{c_};
    const auto id = w.exec_params1("INSERT INTO users(name, email, is_active) VALUES ($1, $2, $3) RETURNING id", u.name,
                                   u.email, u.is_active)[0]
                        .as<std::int64_t>();
    w.commit();
    return id;
  }
  std::vector<User> list() { return rows("SELECT id, name, email, is_active FROM users ORDER BY id"); }
  std::vector<User> get_active_users() {
    return rows("SELECT id, name, email, is_active FROM users WHERE is_active ORDER BY id");
  }
  std::optional<User> get_by_name(const std::string& name) {
    pqxx::read_transaction t{c_};
    const pqxx::result r = t.exec_params("SELECT id, name, email, is_active FROM users WHERE name = $1", name);
    if (r.empty()) return std::nullopt;
    return row(r[0]);
  }
  std::int64_t count() {
    pqxx::read_transaction t{c_};
    return t.exec1("SELECT count(*) FROM users")[0].as<std::int64_t>();
  }
  /// Whether this connection is a hot standby's.
  bool in_recovery() {
    pqxx::nontransaction t{c_};
    return t.exec1("SELECT pg_is_in_recovery()")[0].as<bool>();
  }
  int backend_pid() { return c_.backendpid(); }
  /// Which DAO object served the call.
  std::uintptr_t address() const { return reinterpret_cast<std::uintptr_t>(this); }
  std::thread::id where() { return std::this_thread::get_id(); }
  /// Sleeps on the server: a statement that runs until cancelled.
  int sleep(double seconds) {
    pqxx::nontransaction t{c_};
    t.exec("SELECT pg_sleep(" + std::to_string(seconds) + ")");
    return 1;
  }
  /// Inserts, then sleeps inside the same transaction, then commits.
  std::int64_t add_slowly(const UserCreate& u, double seconds) {
    pqxx::work w{c_};
    const auto id = w.exec_params1("INSERT INTO users(name, email) VALUES ($1, $2) RETURNING id", u.name, u.email)[0]
                        .as<std::int64_t>();
    w.exec("SELECT pg_sleep(" + std::to_string(seconds) + ")");
    w.commit();
    return id;
  }
  /// The lost-write case of libpqxx 6.4: a failed statement caught, then COMMIT.
  int add_two_catching_the_second(const UserCreate& a, const UserCreate& b) {
    pqxx::work w{c_};
    w.exec_params("INSERT INTO users(name, email) VALUES ($1, $2)", a.name, a.email);
    try {
      w.exec_params("INSERT INTO users(name, email) VALUES ($1, $2)", b.name, b.email);
    } catch (const pqxx::sql_error&) {
      // "a duplicate is fine": the DAO means to keep the first insert
    }
    w.commit();
    return 1;
  }

 private:
  static User row(const pqxx::row& r) {
    return User{r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<bool>()};
  }
  std::vector<User> rows(const std::string& sql) {
    pqxx::read_transaction t{c_};
    std::vector<User> out;
    for (const auto& r : t.exec(sql)) out.push_back(row(r));
    return out;
  }

  pqxx::connection& c_;
};

class AsyncPgUserOper : public asyncdb::to_async_db_oper<AsyncPgUserOper, PgUserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
  using read_only_members = asyncdb::members<&PgUserOper::list, &PgUserOper::get_active_users, &PgUserOper::get_by_name,
                                             &PgUserOper::count, &PgUserOper::in_recovery>;
  using write_members = asyncdb::members<&PgUserOper::add>;
  auto list() { return call<&PgUserOper::list>(); }
  auto get_active_users() { return call<&PgUserOper::get_active_users>(); }
};

inline std::int64_t count_users(const schema& s) {
  return s.exec("SELECT count(*) FROM users")[0][0].as<std::int64_t>();
}

}  // namespace pgtest
