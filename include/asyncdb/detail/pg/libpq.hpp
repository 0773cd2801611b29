#pragma once
// What asyncdb needs of libpq beneath libpqxx 6.4: the PGconn* that libpqxx keeps private.
#include <libpq-events.h>
#include <libpq-fe.h>
#include <pqxx/connection>

namespace asyncdb::detail::pg {

// libpqxx 6.4 gives no access to its PGconn* (7.7 adds seize_raw_connection), yet asyncdb must ask libpq,
// without a round trip, whether a transaction was left open (PQtransactionStatus) and must build the
// cancel handle on the connection's own thread (PQgetCancel). An explicit instantiation may name a private
// member ([temp.spec.general]/6), which is the one standard way to reach it; asyncdb only reads through it.
PGconn* raw_connection(const pqxx::connection_base& c) noexcept;

template <auto Member>
struct raw_connection_access {
  friend PGconn* raw_connection(const pqxx::connection_base& c) noexcept { return (c.*Member)(); }
};
template struct raw_connection_access<&pqxx::connection_base::raw_connection>;

}  // namespace asyncdb::detail::pg
