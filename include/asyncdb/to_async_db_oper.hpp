#pragma once
// Method 1 of the guide: lift a whole synchronous DAO class.
#include <asyncdb/database.hpp>
#include <asyncdb/detail/sqlite/initiate.hpp>
#include <asyncdb/routing.hpp>

#include <source_location>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// CRTP base giving `Derived` awaitable access to every member of the synchronous `Dao`. Each connection
/// gets its own `Dao(SQLite::Database&)`, built on first use on that connection's thread and kept.
/// `Derived` may declare the routing of Dao's members in itself (public `read_only_members` and
/// `write_members`, lists of asyncdb::members), so every translation unit that sees it routes alike.
template <class Derived, class Dao>
class to_async_db_oper {
 public:
  /// Binds to `db`, which must outlive this object's operations. Cheap to copy; no connection is held.
  explicit to_async_db_oper(database& db) noexcept : db_(&db) {}

  /// Refuses any other database (asyncdb::postgres::database) at compile time with a message, not a bare mismatch.
  template <class Other>
  requires(!std::is_base_of_v<to_async_db_oper, std::remove_cv_t<Other>>) explicit to_async_db_oper(Other&) {
    static_assert(std::is_same_v<Other, database>,
                  "asyncdb: this DAO is constructed from SQLite::Database&, so its to_async_db_oper needs an "
                  "asyncdb::database; an asyncdb::postgres::database serves DAOs constructed from "
                  "pqxx::connection&");
  }

  /// Calls the DAO's `Member` with `args`: on a reader if Derived lists it in `read_only_members` (or
  /// `is_read_only<Member>`), on the writer if in `write_members` (or `is_write<Member>`), else on a reader
  /// until it first tries to write (docs/reference.md, "Routing"); args are copied into owning values.
  /// Completion: awaitable<R>. Resumes on the awaiting coroutine's executor. Thread-safe.
  /// Throws at the co_await what the member threw, or errc::closed / queue_full / operation_aborted.
  template <auto Member, class... Args>
  auto call(Args&&... args) const {
    static_assert(
        std::is_member_function_pointer_v<decltype(Member)> && std::is_base_of_v<detail::member_class_t<Member>, Dao>,
        "asyncdb: call<&X::f> needs a member function of the DAO class (or of one of its bases)");
    return detail::initiate_call<detail::sqlite_backend, Member, Dao, Derived>(detail::database_access::of(*db_),
                                                                               std::forward<Args>(args)...);
  }

  /// Runs `fn(Dao&) -> R` on the writer: several DAO calls in one hop. Completion, executor, thread safety
  /// and errors as for call().
  template <class Fn>
  auto run(Fn&& fn, std::source_location where = std::source_location::current()) const {
    return run_on(false, std::forward<Fn>(fn), where);
  }

  /// Runs `fn(Dao&) -> R` on a read-only connection; otherwise as run(fn).
  template <class Fn>
  auto run(read_only_t, Fn&& fn, std::source_location where = std::source_location::current()) const {
    return run_on(true, std::forward<Fn>(fn), where);
  }

  /// Returns the database this object calls into.
  database& get_database() const noexcept { return *db_; }

 protected:
  ~to_async_db_oper() = default;

 private:
  template <class Fn>
  auto run_on(bool read_only, Fn&& fn, const std::source_location& where) const {
    return detail::initiate_run<detail::sqlite_backend>(
        detail::database_access::of(*db_), read_only, std::forward<Fn>(fn), net::use_awaitable,
        [](detail::lane& l) -> Dao& { return l.conn().dao<Dao>(); }, detail::op_name{where.function_name(), where});
  }

  database* db_;
};

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
