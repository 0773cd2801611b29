#pragma once
// How an operation's arguments cross to the database thread: as owning values, never as views.
#include <asyncdb/detail/config.hpp>

#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

template <class M, class C>
C class_of_member(M C::*);

// The class a DAO member `F` belongs to.
template <auto F>
using member_class_t = decltype(class_of_member(F));

// The characters of a `const char*` or char-array argument, copied when the operation starts; the DAO
// gets them as whichever of const char*, std::string_view or const std::string& it takes.
struct owned_chars {
  std::string value;
  operator const char*() const noexcept { return value.c_str(); }
  operator std::string_view() const noexcept { return value; }
  operator const std::string&() const noexcept { return value; }
};

template <class T>
struct owning {
  using type = T;
  static_assert(!std::is_pointer_v<T> || std::is_function_v<std::remove_pointer_t<T>>,
                "asyncdb: a raw pointer argument would cross to the database thread without an owner, and the "
                "operation may run after the pointee is gone. Pass a value, or std::ref / std::cref to say that "
                "you keep the object alive until the operation completes.");
};
template <>
struct owning<const char*> {
  using type = owned_chars;
};
template <>
struct owning<char*> {
  using type = owned_chars;
};
template <class Char, class Traits>
struct owning<std::basic_string_view<Char, Traits>> {
  using type = std::basic_string<Char, Traits>;
};
template <class T, std::size_t N>
struct owning<std::span<T, N>> {
  using type = std::vector<std::remove_cv_t<T>>;
};

// What an argument of deduced type `Arg` is stored as until the operation runs.
template <class Arg>
using stored_t = typename owning<std::decay_t<Arg>>::type;

// Builds the stored value: a span becomes a vector of its elements, anything else converts.
template <class Arg>
stored_t<Arg> to_stored(Arg&& arg) {
  using stored = stored_t<Arg>;
  if constexpr (std::is_same_v<stored, owned_chars>) {
    return owned_chars{std::string(arg)};
  } else if constexpr (!std::is_same_v<stored, std::decay_t<Arg>> && requires { arg.begin(); }) {
    return stored(arg.begin(), arg.end());
  } else {
    return stored(std::forward<Arg>(arg));
  }
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
