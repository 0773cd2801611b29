#pragma once
// Compile-time refusals with messages a user can act on.
#include <asyncdb/detail/config.hpp>

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Savepoint.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>

#include <type_traits>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class R>
inline constexpr bool refers_to_connection =
    std::is_same_v<std::remove_cv_t<R>, SQLite::Statement> || std::is_same_v<std::remove_cv_t<R>, SQLite::Column> ||
    std::is_same_v<std::remove_cv_t<R>, SQLite::Database> || std::is_same_v<std::remove_cv_t<R>, SQLite::Transaction> ||
    std::is_same_v<std::remove_cv_t<R>, SQLite::Savepoint> || std::is_same_v<std::remove_cv_t<R>, SQLite::Backup>;

// What check_result accepts; a refused result builds no operation, so its message stands nearly alone.
template <class R>
inline constexpr bool valid_result =
    !std::is_reference_v<R> && !std::is_pointer_v<R> && !refers_to_connection<R> &&
    (std::is_void_v<R> || (std::is_move_constructible_v<R> && std::is_default_constructible_v<R>));

// The result crosses threads and outlives the lease of the connection that produced it.
template <class R>
constexpr void check_result() {
  static_assert(!std::is_reference_v<R>,
                "asyncdb: the operation returns a reference; it would dangle once the operation leaves its "
                "connection's thread. Return a value (std::vector<User>, std::optional<User>, ...).");
  static_assert(!std::is_pointer_v<R>,
                "asyncdb: the operation returns a raw pointer, which may point into connection-owned memory. "
                "Return a value.");
  static_assert(!refers_to_connection<R>,
                "asyncdb: the operation returns a SQLite::Statement, Column, Database, Transaction, Savepoint or "
                "Backup, which is bound to a connection another thread owns. Materialize the rows into values "
                "inside the DAO.");
  static_assert(std::is_void_v<R> || (std::is_move_constructible_v<R> && std::is_default_constructible_v<R>),
                "asyncdb: the result type must be movable and default-constructible (the completion signature "
                "void(std::exception_ptr, R) needs an R even on error); wrap it in std::optional.");
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#define ASYNCDB_REFUSE_COAWAIT_TEMPORARIES 1
#else
#define ASYNCDB_REFUSE_COAWAIT_TEMPORARIES 0
#endif

// Arg as deduced by a forwarding reference: not an lvalue reference means a temporary or std::move.
template <class Arg>
inline constexpr bool risky_argument =
    !std::is_lvalue_reference_v<Arg> && std::is_aggregate_v<std::remove_cvref_t<Arg>> &&
    !std::is_trivially_destructible_v<std::remove_cvref_t<Arg>>;
template <class Fn>
inline constexpr bool risky_callable = !std::is_lvalue_reference_v<Fn> && std::is_class_v<std::remove_cvref_t<Fn>> &&
                                       !std::is_trivially_destructible_v<std::remove_cvref_t<Fn>>;

// One argument at a time, so that the compiler's "In instantiation of" line names the type (Arg = ...).
template <class Arg>
constexpr void refuse_coawait_temporary() {
#if ASYNCDB_REFUSE_COAWAIT_TEMPORARIES
  static_assert(!risky_argument<Arg>,
                "asyncdb: g++ 12 destroys twice an aggregate temporary with non-trivial members created inside a "
                "co_await expression (a double free); asyncdb refuses every rvalue of such a type (std::move "
                "included), whose type is the Arg named just above. Name the value and pass it as an lvalue "
                "(asyncdb copies it): `Arg value{...}; co_await dao.call<&Dao::member>(value);`, or build with "
                "g++ 13+ or clang.");
#endif
}

template <class... Args>
constexpr void refuse_coawait_temporaries() {
  (refuse_coawait_temporary<Args>(), ...);
}

template <class Fn>
constexpr void refuse_coawait_temporary_callable() {
#if ASYNCDB_REFUSE_COAWAIT_TEMPORARIES
  static_assert(!risky_callable<Fn>,
                "asyncdb: g++ 12 destroys twice a capturing lambda created inside a co_await expression (a double "
                "free). Name it first: `auto fn = [s](Dao& dao) { ... }; co_await db.run(fn);` (or build "
                "with g++ 13+ or clang).");
#endif
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
