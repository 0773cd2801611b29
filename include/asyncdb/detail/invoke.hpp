#pragma once
// How a stored call reaches its DAO member or function, for any backend: `Lane` is the backend's lane,
// and the backend's `native_connection(Lane&)` (found by argument-dependent lookup) its connection.
#include <asyncdb/detail/arguments.hpp>
#include <asyncdb/detail/signature.hpp>

#include <cstddef>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class T>
inline constexpr bool is_reference_wrapper = false;
template <class T>
inline constexpr bool is_reference_wrapper<std::reference_wrapper<T>> = true;

// An out-parameter filled on asyncdb's copy of the argument would be lost without a word.
template <class P, class Stored>
constexpr void check_argument() {
  static_assert(!writes_back<P> || is_reference_wrapper<Stored>,
                "asyncdb: this argument goes to a non-const lvalue reference parameter (an out-parameter), but "
                "asyncdb stores a copy of each argument, so the DAO would fill the copy and leave yours untouched. "
                "Pass std::ref(out): you keep `out` alive, and do not touch it, until the operation completes.");
}

// The value category each stored argument is handed over in: an rvalue to a parameter that takes one
// (the argument belongs to the operation, which then runs once), an lvalue to anything else, so that
// an operation run again (a trial on a reader, a group commit's replay) sees its arguments intact.
template <auto F, std::size_t I, class Stored>
using passed_t = std::conditional_t<consumes<param_t<F, I>>, Stored&&, Stored&>;

// A DAO member runs on the connection's own DAO instance; a free function gets the connection.
template <auto F, class Dao, class Lane, class... Args>
decltype(auto) invoke_on(Lane& l, Args&&... args) {
  if constexpr (std::is_member_function_pointer_v<decltype(F)>) {
    return std::invoke(F, l.conn().template dao<Dao>(), std::forward<Args>(args)...);
  } else {
    using native = decltype(native_connection(l));
    static_assert(std::is_invocable_v<decltype(F), native, Args&&...>,
                  "asyncdb: async_db_operation<F> needs a DAO member, or a function whose first parameter is the "
                  "connection (SQLite::Database& or pqxx::connection&) followed by the arguments given");
    return std::invoke(F, native_connection(l), std::forward<Args>(args)...);
  }
}

template <auto F>
struct default_dao {
  using type = void;
};
template <auto F>
requires std::is_member_function_pointer_v<decltype(F)>
struct default_dao<F> {
  using type = member_class_t<F>;
};

template <auto F, class Dao, class Lane, class Indices, class... Stored>
struct call_result;
template <auto F, class Dao, class Lane, std::size_t... I, class... Stored>
struct call_result<F, Dao, Lane, std::index_sequence<I...>, Stored...> {
  using type = decltype(invoke_on<F, Dao>(std::declval<Lane&>(), std::declval<passed_t<F, I, Stored>>()...));
};

// What calling F with arguments deduced as Args returns, once they are stored.
template <auto F, class Dao, class Lane, class... Args>
using call_result_t = typename call_result<F, Dao, Lane, std::index_sequence_for<Args...>, stored_t<Args>...>::type;

template <auto F, class... Args, std::size_t... I>
constexpr void check_arguments(std::index_sequence<I...>) {
  (check_argument<param_t<F, I>, stored_t<Args>>(), ...);
}

// Arguments are stored as owning values (see arguments.hpp) and handed over as passed_t says.
template <auto F, class Dao, class Lane, class... Args>
auto bind_call(Args&&... args) {
  check_arguments<F, Args...>(std::index_sequence_for<Args...>{});
  using R = call_result_t<F, Dao, Lane, Args...>;
  using stored = std::tuple<stored_t<Args>...>;
  return [s = stored(to_stored(std::forward<Args>(args))...)](Lane& l) mutable -> R {
    return [&]<std::size_t... I>(std::index_sequence<I...>)->R {
      return invoke_on<F, Dao>(l, static_cast<passed_t<F, I, std::tuple_element_t<I, stored>>>(std::get<I>(s))...);
    }
    (std::index_sequence_for<Args...>{});
  };
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
