#pragma once
// How Asio initiates an operation given an asyncdb::budget_t token: the inner token's own async_result, with
// the handler wrapped in a budget_handler and its timer armed once the operation is queued (as the
// experimental::as_tuple adapter of Asio 1.22 wraps its handlers).
#include <asyncdb/detail/budget.hpp>

#include <chrono>
#include <type_traits>
#include <utility>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
template <class Token>
struct budget_t;

namespace detail {
// A completion token with an absolute deadline (a session's operations inherit the session's); max() is none.
template <class Token>
struct until_t {
  budget_clock::time_point deadline;
  Token token;
};

template <class Initiation>
struct budget_initiation {
  Initiation initiation;
  budget_clock::time_point deadline;
  std::chrono::nanoseconds budget;
  // budget(max()) says "no budget", which keeps the database's default off too; a session's token without a
  // deadline (until_t) says nothing, and a session's operations take no default anyway.
  bool unbounded_overrides_default = false;

  template <class Handler, class... Args>
  void operator()(Handler&& handler, Args&&... args) {
    auto start = [&](auto h) { std::move(initiation)(std::move(h), std::forward<Args>(args)...); };
    if (unbounded_overrides_default && deadline == budget_clock::time_point::max()) {
      return start_unbounded(std::forward<Handler>(handler), start);
    }
    start_within(std::forward<Handler>(handler), deadline, budget, start);
  }
};
}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb

/// \cond
#if defined(ASYNCDB_USE_BOOST_ASIO)
namespace boost::asio {
#else
namespace asio {
#endif
template <class Token, class... Signatures>
struct async_result<asyncdb::budget_t<Token>, Signatures...> : async_result<Token, Signatures...> {
  template <class Initiation, class RawToken, class... Args>
  static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
    using wrapper = asyncdb::detail::budget_initiation<std::decay_t<Initiation>>;
    Token inner = std::forward<RawToken>(token).token;
    return async_initiate<Token, Signatures...>(
        wrapper{std::forward<Initiation>(initiation), asyncdb::detail::deadline_after(token.duration), token.duration,
                true},
        inner, std::forward<Args>(args)...);
  }
};

template <class Token, class... Signatures>
struct async_result<asyncdb::detail::until_t<Token>, Signatures...> : async_result<Token, Signatures...> {
  template <class Initiation, class RawToken, class... Args>
  static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
    using wrapper = asyncdb::detail::budget_initiation<std::decay_t<Initiation>>;
    Token inner = std::forward<RawToken>(token).token;
    return async_initiate<Token, Signatures...>(
        wrapper{std::forward<Initiation>(initiation), token.deadline, asyncdb::detail::budget_left(token.deadline)},
        inner, std::forward<Args>(args)...);
  }
};
}  // namespace asio
/// \endcond
