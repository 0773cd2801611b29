#pragma once
// The error category of asyncdb's own failures; SQLite errors stay SQLite::Exception.
#include <asyncdb/detail/asio.hpp>

#include <string>
#include <system_error>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Failures asyncdb itself reports; delivered as asyncdb::system_error (std::system_error, or
/// boost::system::system_error in the Boost.Asio flavour) at the co_await.
enum class errc {
  closed = 1,             ///< the database is closed, or was closed while the operation waited
  queue_full,             ///< options::max_queued operations are already waiting
  session_ended,          ///< the session was released or moved from
  transaction_aborted,    ///< a cancelled operation rolled the session's transaction back; call rollback()
  transaction_left_open,  ///< the operation returned inside a transaction; it was rolled back
  read_only_session,      ///< begin/commit/rollback on a read session, which holds one snapshot instead
  memory_database,        ///< ":memory:" or an empty path: every connection would see its own database
  deadline_exceeded,      ///< its time budget ran out; cancelled, it left nothing in the database
};

namespace detail {
class error_category final : public error_category_base {
 public:
  const char* name() const noexcept override { return "asyncdb"; }
  std::string message(int e) const override {
    switch (static_cast<errc>(e)) {
      case errc::closed:
        return "the database is closed";
      case errc::queue_full:
        return "too many queued operations (options::max_queued reached)";
      case errc::session_ended:
        return "the session has ended";
      case errc::transaction_aborted:
        return "the session's transaction was rolled back by a cancelled operation; call rollback()";
      case errc::transaction_left_open:
        return "the operation returned inside an open transaction; it was rolled back";
      case errc::read_only_session:
        return "a read session has one snapshot and no begin/commit/rollback";
      case errc::memory_database:
        return "in-memory databases are not supported: each connection would open a different database";
      case errc::deadline_exceeded:
        return "the operation's time budget ran out before it completed; nothing of it was committed";
    }
    return "unknown asyncdb error";
  }
};
}  // namespace detail

/// Returns the category of asyncdb::errc.
inline const detail::error_category_base& error_category() noexcept {
  static const detail::error_category category;
  return category;
}

/// Makes an error code in asyncdb's category.
inline error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb

// errc converts to the flavour's error_code; in the Boost flavour to std::error_code as well (Boost.System
// maps the category both ways), so code that holds either kind compares with errc. Kept out of the API
// reference (cond): Doxygen 1.9 cannot place a specialization of another library's template.
/// \cond
template <>
struct std::is_error_code_enum<asyncdb::errc> : std::true_type {};
#if defined(ASYNCDB_USE_BOOST_ASIO)
template <>
struct boost::system::is_error_code_enum<asyncdb::errc> : std::true_type {};
#endif
/// \endcond
