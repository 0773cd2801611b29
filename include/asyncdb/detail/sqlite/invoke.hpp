#pragma once
#include <asyncdb/detail/arguments.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// A DAO member runs on the connection's own DAO instance; a free function gets the connection.
template <auto F, class Dao, class... Args>
decltype(auto) invoke_on(lane& l, Args&... args) {
  if constexpr (std::is_member_function_pointer_v<decltype(F)>) {
    return std::invoke(F, l.conn().template dao<Dao>(), args...);
  } else {
    static_assert(std::is_invocable_v<decltype(F), SQLite::Database&, Args&...>,
                  "asyncdb: async_db_operation<F> needs a DAO member or a function F(SQLite::Database&, args...)");
    return std::invoke(F, l.conn().database(), args...);
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

template <auto F, class Dao, class... Args>
using invoke_result_t = decltype(invoke_on<F, Dao>(std::declval<lane&>(), std::declval<Args&>()...));

// What calling F with arguments deduced as Args returns, once they are stored.
template <auto F, class Dao, class... Args>
using call_result_t = invoke_result_t<F, Dao, stored_t<Args>...>;

// Arguments are stored as owning values (see arguments.hpp) and passed as lvalues, so the call could be
// repeated safely.
template <auto F, class Dao, class... Args>
auto bind_call(Args&&... args) {
  using R = call_result_t<F, Dao, Args...>;
  return [stored = std::tuple<stored_t<Args>...>(to_stored(std::forward<Args>(args))...)](lane& l) mutable -> R {
    return std::apply([&](auto&... a) -> R { return invoke_on<F, Dao>(l, a...); }, stored);
  };
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
