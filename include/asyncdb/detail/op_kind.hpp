#pragma once
#include <asyncdb/routing.hpp>

#include <atomic>
#include <type_traits>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// What the library has learned about one kind of operation (one DAO member, function or callable
// type) by running it. Process-wide: whether code writes, or opens its own transaction, is a
// property of the code, not of one database. Relaxed: a stale read only costs one more replay.
struct op_kind {
  std::atomic<bool> writes{false};           // tried to write on a reader: goes to the writer from now on
  std::atomic<bool> own_transaction{false};  // opens or ends a transaction itself: never group-committed
};

template <class Tag>
inline op_kind kind_of{};

template <auto Operation>
struct operation_tag {};

enum class route : unsigned char { reader, writer, detect };

template <auto V>
struct value_tag {};

// Whether the asyncdb::members list `List` names `Operation`.
template <class List, auto Operation>
inline constexpr bool lists = false;
template <auto... Listed, auto Operation>
inline constexpr bool lists<members<Listed...>, Operation> = (std::is_same_v<value_tag<Listed>, value_tag<Operation>> ||
                                                              ...);

template <class Owner, auto Operation>
constexpr bool owner_reads() noexcept {
  if constexpr (requires { typename Owner::read_only_members; }) {
    return lists<typename Owner::read_only_members, Operation>;
  } else {
    return false;
  }
}

template <class Owner, auto Operation>
constexpr bool owner_writes() noexcept {
  if constexpr (requires { typename Owner::write_members; }) {
    return lists<typename Owner::write_members, Operation>;
  } else {
    return false;
  }
}

// Where an operation goes before anything is learned about it: as declared by the to_async_db_oper
// class `Owner` (void for none) or by an is_read_only / is_write specialization, else detected.
template <auto Operation, class Owner = void>
constexpr route declared_route() noexcept {
  constexpr bool reads = is_read_only<Operation> || owner_reads<Owner, Operation>();
  constexpr bool writes = is_write<Operation> || owner_writes<Owner, Operation>();
  static_assert(!(reads && writes), "asyncdb: an operation is declared both read-only and write");
  return reads ? route::reader : writes ? route::writer : route::detect;
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
