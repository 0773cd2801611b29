#pragma once
// The parameters a DAO member or function declares, so arguments can be handed over as it asks for them.
#include <asyncdb/detail/config.hpp>

#include <cstddef>
#include <tuple>
#include <type_traits>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// `params` are the parameters the caller's arguments fill: all of a member's, a function's after its
// first (the connection). Unknown (a callable object, a volatile member): nothing is known.
template <class F>
struct signature {
  using params = std::tuple<>;
};
template <class R, class Connection, class... P>
struct signature<R (*)(Connection, P...)> {
  using params = std::tuple<P...>;
};
template <class R, class Connection, class... P>
struct signature<R (*)(Connection, P...) noexcept> : signature<R (*)(Connection, P...)> {};

// Every qualifier a member callable on a `Dao&` can carry; the DAO object is always an lvalue.
#define ASYNCDB_MEMBER_SIGNATURE(QUALIFIERS)    \
  template <class R, class C, class... P>       \
  struct signature<R (C::*)(P...) QUALIFIERS> { \
    using params = std::tuple<P...>;            \
  };
ASYNCDB_MEMBER_SIGNATURE()
ASYNCDB_MEMBER_SIGNATURE(const)
ASYNCDB_MEMBER_SIGNATURE(&)
ASYNCDB_MEMBER_SIGNATURE(const&)
ASYNCDB_MEMBER_SIGNATURE(noexcept)
ASYNCDB_MEMBER_SIGNATURE(const noexcept)
ASYNCDB_MEMBER_SIGNATURE(&noexcept)
ASYNCDB_MEMBER_SIGNATURE(const& noexcept)
#undef ASYNCDB_MEMBER_SIGNATURE

// The declared type of the parameter argument `I` fills; void where that is not known.
template <auto F, std::size_t I>
constexpr auto param_tag() noexcept {
  using params = typename signature<decltype(F)>::params;
  if constexpr (I < std::tuple_size_v<params>) {
    return std::type_identity<std::tuple_element_t<I, params>>{};
  } else {
    return std::type_identity<void>{};
  }
}
template <auto F, std::size_t I>
using param_t = typename decltype(param_tag<F, I>())::type;

// A parameter the callee may move from: the operation's stored argument is spent after one call.
template <class P>
inline constexpr bool consumes = std::is_rvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>;

// A parameter the callee writes through for the caller to read back.
template <class P>
inline constexpr bool writes_back = std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>;

template <class Params>
inline constexpr bool any_consumes = false;
template <class... P>
inline constexpr bool any_consumes<std::tuple<P...>> = (consumes<P> || ...);

// Whether F moves from its arguments: it may run once only (no trial on a reader, no group to replay).
template <auto F>
inline constexpr bool consumes_arguments = any_consumes<typename signature<decltype(F)>::params>;

// The parameter type of the first argument of a callable object's (non-generic) call operator.
template <class Fn>
struct first_param {
  using type = void;
};
template <class Fn>
requires requires { &Fn::operator(); }
struct first_param<Fn> {
  using params = typename signature<decltype(&Fn::operator())>::params;
  using type = std::remove_cvref_t<
      std::tuple_element_t<0, std::conditional_t<std::tuple_size_v<params> == 0, std::tuple<void>, params>>>;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
