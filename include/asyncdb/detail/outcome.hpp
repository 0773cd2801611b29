#pragma once
// An operation's outcome, decided once for every backend from what its lease saw: the contract's "aborted
// means nothing of it is in the database" lives here, not in each backend's run_op.
#include <asyncdb/detail/config.hpp>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// What a backend reports of one lease (one run of one operation on its connection), once no cancellation can
// reach the operation any more.
struct lease_report {
  bool cancel_requested = false;  // a cancellation arrived while it ran
  bool failed = false;            // it ends with an exception (its own, or one the backend gave it)
  bool commit_refused = false;    // the backend turned a commit of it into a rollback, for the cancellation
  bool committed = false;         // something of it committed (an autocommit statement, a COMMIT)
  bool in_doubt = false;          // a COMMIT whose outcome nobody knows (the connection died during it)
};

enum class verdict : unsigned char { succeeded, failed, aborted };

// Aborted (operation_aborted) only when nothing of it reached the database: a cancellation arrived, nothing of
// it committed, its outcome is known, and it failed or its commit was refused. A cancellation that came after a
// commit, or after the work was done, changes nothing: the real outcome is delivered.
constexpr verdict decide(const lease_report& r) noexcept {
  if (r.cancel_requested && !r.committed && !r.in_doubt && (r.failed || r.commit_refused)) return verdict::aborted;
  return r.failed ? verdict::failed : verdict::succeeded;
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
