// 11 — The same adapter over PostgreSQL: a libpqxx DAO (pqxx::work, exec_params) made awaitable, writes on a
// pool of primary connections, reads on a streaming replica. Runs the guide's method 1 (whole class),
// method 3 (a session with a committed and an abandoned transaction), the concurrent batch create and the
// concurrent stats query. Needs a server: scripts/examples.sh starts a throwaway primary and replica for it
// (or run scripts/pg-test-cluster.sh start, then eval "$(scripts/pg-test-cluster.sh env)").
#include <asyncdb/postgres.hpp>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <pqxx/pqxx>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

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

// The existing synchronous DAO, written for libpqxx: it knows nothing of asyncdb or Asio.
class PgUserOper {
 public:
  explicit PgUserOper(pqxx::connection& c) : c_(c) {}

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

 private:
  std::vector<User> rows(const char* sql) {
    pqxx::read_transaction t{c_};
    std::vector<User> out;
    for (const auto& r : t.exec(sql))
      out.push_back({r[0].as<std::int64_t>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<bool>()});
    return out;
  }
  pqxx::connection& c_;
};

// Method 1: the whole class, with its routing: reads on the replica, add on the primary.
class AsyncPgUserOper : public asyncdb::to_async_db_oper<AsyncPgUserOper, PgUserOper> {
 public:
  using to_async_db_oper::to_async_db_oper;
  using read_only_members = asyncdb::members<&PgUserOper::list, &PgUserOper::get_active_users>;
  using write_members = asyncdb::members<&PgUserOper::add>;
  auto add(const UserCreate& u) { return call<&PgUserOper::add>(u); }
  auto list() { return call<&PgUserOper::list>(); }
  auto get_active_users() { return call<&PgUserOper::get_active_users>(); }
};

asio::awaitable<void> main_coroutine(asyncdb::postgres::database& pg) {
  AsyncPgUserOper users{pg};

  // Method 1: one call.
  UserCreate ann{"ann", "ann@example.org"};
  const std::int64_t id = co_await users.add(ann);
  std::cout << "add(ann) -> id " << id << '\n';

  // Method 3: a session pins one primary connection; one transaction committed, one abandoned.
  {
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(pg);
    auto insert = [](std::string name) {
      return [name](pqxx::transaction_base& t) {
        t.exec_params("INSERT INTO users(name, email) VALUES ($1, $2)", name, name + "@example.org");
      };
    };
    co_await session.begin();
    auto add_bob = insert("bob");
    co_await session.run(add_bob);
    co_await session.commit();
    co_await session.begin();
    auto add_ghost = insert("ghost");
    co_await session.run(add_ghost);
    std::cout << "session: bob committed, ghost left in an open transaction\n";
  }  // the open transaction is rolled back here, never committed

  // The concurrent batch create: five adds in parallel on the primary's connections.
  std::vector<UserCreate> batch;
  for (int i = 1; i <= 5; ++i)
    batch.push_back(UserCreate{"user" + std::to_string(i), "user" + std::to_string(i) + "@example.org", i % 2 == 1});
  std::vector<asio::awaitable<std::int64_t>> adds;
  for (const UserCreate& u : batch) adds.push_back(users.add(u));
  const std::vector<std::int64_t> ids = co_await asyncdb::gather(std::move(adds));
  std::cout << "gather(" << ids.size() << " adds) done\n";

  // The concurrent stats query, on the replica once it has replayed the writes above (read_your_writes).
  auto [all, active] = co_await asyncdb::gather(users.list(), users.get_active_users());
  std::cout << "user stats: total " << all.size() << ", active " << active.size() << ", inactive "
            << all.size() - active.size() << '\n';
  for (const User& u : all)
    if (u.name == "ghost") throw std::runtime_error("the abandoned transaction was committed");
  if (all.size() != 7 || active.size() != 5) throw std::runtime_error("unexpected counts");
}

int main() {
  try {
    const char* primary = std::getenv("ASYNCDB_PG_PRIMARY");
    const char* replica = std::getenv("ASYNCDB_PG_REPLICA");
    if (primary == nullptr) {
      std::cerr << "11_postgres: set ASYNCDB_PG_PRIMARY (scripts/examples.sh starts a throwaway cluster)\n";
      return 1;
    }
    {  // a fresh schema for the example
      pqxx::connection c{primary};
      pqxx::work w{c};
      w.exec("DROP SCHEMA IF EXISTS asyncdb_example CASCADE");
      w.exec("CREATE SCHEMA asyncdb_example");
      w.exec(
          "CREATE TABLE asyncdb_example.users(id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, "
          "email text NOT NULL, is_active boolean NOT NULL DEFAULT true)");
      w.commit();
    }
    asio::io_context ctx;
    asyncdb::postgres::database pg{{
        .primary = primary,
        .replicas = replica != nullptr ? std::vector<std::string>{replica} : std::vector<std::string>{},
        .writers = 4,
        .readers = 2,
        .on_open = [](pqxx::connection& c) { pqxx::nontransaction{c}.exec("SET search_path = asyncdb_example"); },
        .read_your_writes = true,
    }};
    asio::co_spawn(ctx, main_coroutine(pg), [](const std::exception_ptr& e) {
      if (e) std::rethrow_exception(e);
    });
    ctx.run();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "11_postgres failed: " << e.what() << '\n';
    return 1;
  }
}
