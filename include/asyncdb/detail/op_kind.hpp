#pragma once
#include <asyncdb/read_only.hpp>

#include <atomic>

namespace asyncdb::detail {

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

// Where an operation goes before anything is learned about it.
template <auto Operation>
constexpr route declared_route() noexcept {
  static_assert(!(is_read_only<Operation> && is_write<Operation>),
                "asyncdb: an operation is declared both is_read_only and is_write");
  return is_read_only<Operation> ? route::reader : is_write<Operation> ? route::writer : route::detect;
}

}  // namespace asyncdb::detail
