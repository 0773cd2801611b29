#pragma once
#include <asyncdb/detail/config.hpp>

#include <string_view>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// "UserOper::add" for &UserOper::add, read from the compiler's signature string (static storage),
// so stats() can name the operation that holds the writer without any registration.
template <auto F>
constexpr std::string_view parse_name_of() noexcept {
  const std::string_view sig = __PRETTY_FUNCTION__;  // gcc: "[with auto F = &X::f; ...]", clang: "[F = &X::f]"
  std::string_view::size_type begin = sig.find("F = ");
  if (begin == std::string_view::npos) return sig;
  begin += 4;
  if (begin < sig.size() && sig[begin] == '&') ++begin;
  const auto end = sig.find_first_of(";]", begin);
  return sig.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
}

// Parsed at compile time: an operation's start pays nothing for its name.
template <auto F>
inline constexpr std::string_view name_of_v = parse_name_of<F>();

template <auto F>
constexpr std::string_view name_of() noexcept {
  return name_of_v<F>;
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
