#pragma once
// The database side of the routes, in two interchangeable flavours:
//   async_store  awaits AsyncUserOper through asyncdb: the loop thread is free while SQLite works;
//   sync_store   calls UserOper directly on the loop thread (--sync): the "before" picture, same answers.
// Both bound every call by --request-timeout: the sync one reports an overrun as http_error 504, the async one as
// asyncdb's errc::deadline_exceeded, which the routes answer with 504 too.

#include <sqlite3.h>
#include <asyncdb/asyncdb.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "../async_user_oper.hpp"
#include "http_error.hpp"

namespace users_service {

namespace net = asyncdb::net;

struct user_counts {
  std::int64_t active = 0;
  std::int64_t inactive = 0;
};

class store {
 public:
  virtual ~store() = default;
  virtual net::awaitable<std::optional<User>> get_user(std::int64_t id) = 0;
  virtual net::awaitable<std::vector<User>> list(std::int64_t skip, std::int64_t limit) = 0;
  // Stores all of `batch` or none of it: 409 naming the first name already taken (stored or earlier in the batch).
  virtual net::awaitable<std::vector<User>> create_batch(std::vector<UserCreate> batch) = 0;
  virtual net::awaitable<user_counts> counts() = 0;
};

inline http_error name_taken(const std::string& name) { return http_error{409, "user name already exists: " + name}; }

inline http_error timed_out() { return http_error{504, "the database did not answer within the request timeout"}; }

inline bool is_unique_violation(const SQLite::Exception& e) {
  return e.getExtendedErrorCode() == SQLITE_CONSTRAINT_UNIQUE;
}

class async_store final : public store {
 public:
  // The database's options::operation_budget is the request timeout: every operation below is bounded by it,
  // and one that overruns throws errc::deadline_exceeded, which the routes answer with 504.
  async_store(asyncdb::database& db, std::chrono::milliseconds timeout) : db_{db}, users_{db}, timeout_{timeout} {}

  net::awaitable<std::optional<User>> get_user(std::int64_t id) override { return users_.get_by_id(id); }

  net::awaitable<std::vector<User>> list(std::int64_t skip, std::int64_t limit) override {
    return users_.list_page(skip, limit);
  }

  net::awaitable<std::vector<User>> create_batch(std::vector<UserCreate> batch) override {
    return create_in_session(std::move(batch));
  }

  // The guide's two concurrent counts, each within the operation budget. Total is their sum rather than a third
  // query, so the three numbers always agree even though the two reads may see different snapshots.
  net::awaitable<user_counts> counts() override { return both_counts(); }

 private:
  net::awaitable<user_counts> both_counts() {
    auto [active, inactive] = co_await asyncdb::gather(users_.count_by_activity(true), users_.count_by_activity(false));
    co_return user_counts{active, inactive};
  }

  // All or nothing, with the creates awaited together. Group commit alone cannot give both: a failing member of a
  // shared transaction rolls back only itself, and the batch may be split over several groups. So the batch takes
  // a write session (the writer, exclusively, inside BEGIN IMMEDIATE), starts every add on it at once with
  // asyncdb::gather (they queue on the session and run back to back), and commits only if every add succeeded;
  // otherwise it rolls back. A timeout or a shutdown that abandons the session rolls it back too. The request's
  // strand serialises the starts, as a session asks.
  net::awaitable<std::vector<User>> create_in_session(std::vector<UserCreate> batch) {
    // The whole session, its wait for the writer included, is bounded by the request timeout: past it the running
    // add is interrupted, the session ends and its transaction rolls back (asyncdb::session_budget).
    const auto whole_request = asyncdb::session_budget(timeout_);
    asyncdb::AsyncDbSession session = co_await asyncdb::async_db_session(db_, whole_request);
    co_await session.begin();
    std::vector<net::awaitable<std::optional<std::int64_t>>> adds;
    adds.reserve(batch.size());
    for (const UserCreate& u : batch) adds.push_back(add_unless_taken(session, u));
    const std::vector<std::optional<std::int64_t>> ids = co_await asyncdb::gather(std::move(adds));
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!ids[i]) {
        co_await session.rollback();
        throw name_taken(batch[i].name);
      }
    }
    co_await session.commit();
    std::vector<User> created;
    created.reserve(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i)
      created.push_back(User{*ids[i], std::move(batch[i].name), std::move(batch[i].email), batch[i].is_active});
    co_return created;
  }

  // A taken name is an answer (409), not a failure: SQLite's statement rollback leaves the transaction open.
  static net::awaitable<std::optional<std::int64_t>> add_unless_taken(asyncdb::AsyncDbSession& session,
                                                                      const UserCreate& u) {
    try {
      co_return co_await session.call<&UserOper::add>(u);
    } catch (const SQLite::Exception& e) {
      if (!is_unique_violation(e)) throw;
    }
    co_return std::nullopt;
  }

  asyncdb::database& db_;
  AsyncUserOper users_;
  std::chrono::milliseconds timeout_;
};

// One SQLite connection and UserOper per loop thread, opened on first use, closed when the thread ends.
class sync_store final : public store {
 public:
  sync_store(std::filesystem::path path, std::chrono::milliseconds timeout)
      : path_{std::move(path)}, timeout_{timeout} {}

  net::awaitable<std::optional<User>> get_user(std::int64_t id) override {
    co_return guarded([&](UserOper& dao) { return dao.get_by_id(id); });
  }

  net::awaitable<std::vector<User>> list(std::int64_t skip, std::int64_t limit) override {
    co_return guarded([&](UserOper& dao) { return dao.list_page(skip, limit); });
  }

  net::awaitable<std::vector<User>> create_batch(std::vector<UserCreate> batch) override {
    co_return guarded([&](UserOper& dao) {
      SQLite::Transaction tx{local().db, SQLite::TransactionBehavior::IMMEDIATE};
      std::vector<User> created;
      created.reserve(batch.size());
      for (UserCreate& u : batch) {
        std::int64_t id = 0;
        try {
          id = dao.add(u);
        } catch (const SQLite::Exception& e) {
          if (is_unique_violation(e)) throw name_taken(u.name);  // ~Transaction rolls back
          throw;
        }
        created.push_back(User{id, std::move(u.name), std::move(u.email), u.is_active});
      }
      tx.commit();
      return created;
    });
  }

  net::awaitable<user_counts> counts() override {
    co_return guarded([&](UserOper& dao) {
      return user_counts{dao.count_by_activity(true), dao.count_by_activity(false)};
    });
  }

 private:
  struct connection {
    SQLite::Database db;
    UserOper dao;
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    explicit connection(const std::filesystem::path& p)
        : db{p.string(), SQLite::OPEN_READWRITE}, dao{(configure(db, this), db)} {}
  };

  // The timeout without Asio: a progress handler interrupts a long statement, a busy handler stops waiting for a
  // lock, both once the request's deadline has passed.
  static void configure(SQLite::Database& db, connection* c) {
    sqlite3_progress_handler(
        db.getHandle(), 1000,
        [](void* p) { return std::chrono::steady_clock::now() > static_cast<connection*>(p)->deadline ? 1 : 0; }, c);
    sqlite3_busy_handler(
        db.getHandle(),
        [](void* p, int) {
          if (std::chrono::steady_clock::now() > static_cast<connection*>(p)->deadline) return 0;
          std::this_thread::sleep_for(std::chrono::milliseconds{1});
          return 1;
        },
        c);
  }

  connection& local() {
    thread_local std::unique_ptr<connection> c;
    if (!c) c = std::make_unique<connection>(path_);
    return *c;
  }

  template <class Fn>
  std::invoke_result_t<Fn&, UserOper&> guarded(Fn fn) {
    connection& c = local();
    c.deadline = std::chrono::steady_clock::now() + timeout_;
    try {
      return fn(c.dao);
    } catch (const SQLite::Exception&) {
      if (std::chrono::steady_clock::now() > c.deadline) throw timed_out();
      throw;
    }
  }

  std::filesystem::path path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace users_service
