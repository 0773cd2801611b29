#pragma once
#include <asyncdb/detail/config.hpp>

#include <source_location>
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

// An operation's name, and where it was started when the entry point could take a std::source_location
// (call<&Dao::f>'s trailing argument pack cannot: its name names the member). Both refer to static storage.
struct op_name {
  std::string_view name;
  std::source_location where{};  // line 0: unknown

  constexpr op_name(std::string_view n, std::source_location w = {}) noexcept : name(n), where(w) {}
  constexpr op_name(const char* n) noexcept : name(n) {}
  // The name alone, for what reports no location (stats()'s holder).
  constexpr operator std::string_view() const noexcept { return name; }
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
