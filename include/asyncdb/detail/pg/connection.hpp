#pragma once
// One libpqxx connection, owned by its lane's thread from connect to close, and what asyncdb watches on it.
#include <asyncdb/detail/dao_cache.hpp>
#include <asyncdb/detail/interruptible.hpp>
#include <asyncdb/detail/on_open.hpp>
#include <asyncdb/detail/pg/canceller.hpp>
#include <asyncdb/detail/pg/config.hpp>
#include <asyncdb/detail/pg/libpq.hpp>

#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>

namespace asyncdb::detail::pg {

// What one lease (one operation's run) did to the server's transactions, counted on the lane's thread from
// libpq's result events.
struct lease_watch {
  std::uint32_t commits = 0;             // statements that may have committed something (see on_event)
  std::uint32_t errors = 0;              // failed statements
  bool rolled_back_after_error = false;  // a transaction block with a failed statement ended in a rollback
};

class connection final : public interruptible {
 public:
  // Connects on the calling (lane) thread; throws pqxx::broken_connection or what on_open threw, naming `role`.
  connection(const std::string& conninfo, bool read_only, const on_open_function<pqxx::connection>& on_open,
             const connection_role& role, canceller& cancels, canceller::target& target)
      : conn_(std::make_unique<pqxx::connection>(conninfo)), read_only_(read_only), cancels_(cancels), target_(target) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // After a broken connection libpqxx 6.4 silently reconnects on the third use, losing the session's
    // state; asyncdb replaces the whole connection (and its DAOs) instead.
    conn_->inhibit_reactivation(true);
#pragma GCC diagnostic pop
    raw_ = raw_connection(*conn_);
    PQregisterEventProc(raw_, &connection::on_event, "asyncdb", this);
    if (read_only) {
      pqxx::nontransaction n(*conn_);
      n.exec("SET default_transaction_read_only = on");
    }
    run_on_open<pqxx::sql_error>(on_open, *conn_, role, [](const pqxx::sql_error& e, const std::string& name) {
      return pqxx::sql_error(name + e.what(), e.query(), e.sqlstate().c_str());
    });
    if (rollback_if_open()) {
      throw std::runtime_error("asyncdb: on_open left a transaction open on " + role.name() + "; it was rolled back");
    }
    arm_cancel();
  }

  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // The cancel handle first (close()'s repeated cancels must not reach SQL a DAO destructor runs, where
  // an exception would terminate), then the DAOs (they may hold prepared statements or transactions), then
  // the connection itself. A cancel request given up may still land: the socket (the lane's thread owns it)
  // is shut down first, so that such SQL fails as on a lost connection and no cancel meets it.
  ~connection() {
    if (!cancels_.set_handle(target_, nullptr, -1) || unanswered_cancel_) ::shutdown(PQsocket(raw_), SHUT_RDWR);
    daos_.clear();
    conn_.reset();
  }

  // Points the lane's cancel target at this connection: at connect, and again once the connection this one
  // replaced (max_lifetime) has been destroyed, which cleared it.
  void arm_cancel() noexcept { cancels_.set_handle(target_, PQgetCancel(raw_), PQsocket(raw_)); }

  pqxx::connection& get() noexcept { return *conn_; }
  int backend_pid() const noexcept { return PQbackendPID(raw_); }
  bool is_broken() const noexcept { return PQstatus(raw_) != CONNECTION_OK; }
  // A cancel request went unanswered and may still land: nothing more may run on this backend.
  bool must_be_replaced() const noexcept { return unanswered_cancel_ || is_broken(); }
  bool in_transaction() const noexcept {
    const PGTransactionStatusType s = PQtransactionStatus(raw_);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR || s == PQTRANS_ACTIVE;
  }
  bool in_failed_transaction() const noexcept { return PQtransactionStatus(raw_) == PQTRANS_INERROR; }

  // One statement of asyncdb's own between operations; whether it succeeded.
  bool exec_own(const char* sql) noexcept {
    PGresult* r = PQexec(raw_, sql);
    const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
  }

  // libpq's last error on this connection (for a lost one, what the server said before it closed), on one
  // line; empty when there is none.
  std::string last_error() const {
    std::string e = PQerrorMessage(raw_);
    for (char& ch : e) {
      if (ch == '\n' || ch == '\t') ch = ' ';
    }
    while (!e.empty() && e.back() == ' ') e.pop_back();
    return e;
  }

  // Between operations: whether the server ended this connection while it sat idle (a restart,
  // pg_terminate_backend), which libpq only notices at the next query. Reads what has arrived without
  // blocking: a server ending a session sends a FATAL error first, which libpq hands to the notice
  // receiver when no query runs (watched here only for this call), then closes the socket.
  bool ended_while_idle() noexcept {
    if (is_broken()) return true;
    idle_check check;
    check.previous = PQsetNoticeReceiver(raw_, &connection::on_idle_notice, &check);
    pollfd p{PQsocket(raw_), POLLIN, 0};
    for (int reads = 0; reads < 16 && !check.fatal && ::poll(&p, 1, 0) == 1; ++reads) {
      if (PQconsumeInput(raw_) == 0) break;  // the end of the stream: libpq marks the connection bad
      (void)PQisBusy(raw_);                  // parses what came: a FATAL reaches on_idle_notice
    }
    // Back to libpq's default receiver (libpqxx 6.4 sets only the notice processor it calls), whose
    // argument is null: no result made later carries a pointer to `check`.
    PQsetNoticeReceiver(raw_, check.previous, nullptr);
    if (check.fatal) ended_why_ = check.message;
    return check.fatal || is_broken();
  }

  // Between operations, after the connection sat idle: whether the server answers an empty query within
  // `bound`. A peer gone without closing (a stopped or vanished host, a firewall or NAT that dropped the idle
  // flow and resets it on the next packet) sends nothing, so ended_while_idle cannot see it: only something
  // sent finds out. A connection that fails is left broken (socket shut down), so nothing more is sent on it,
  // by the DAOs' destructors either, and the lane replaces it before the operation starts.
  bool answers_within(std::chrono::milliseconds bound) noexcept {
    bool answered = PQsendQuery(raw_, "") == 1;
    const auto give_up = saturating_deadline(std::chrono::steady_clock::now(), bound);
    bool done = false;
    while (answered && !done) {
      while (PQisBusy(raw_) == 0) {
        PGresult* r = PQgetResult(raw_);
        if (r == nullptr) {
          done = true;
          break;
        }
        answered = answered && PQresultStatus(r) == PGRES_EMPTY_QUERY;
        PQclear(r);
      }
      if (done) break;
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(give_up - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        answered = false;
        break;
      }
      pollfd p{PQsocket(raw_), POLLIN, 0};
      const int wait = static_cast<int>(std::min<std::int64_t>(left.count(), 60000));  // poll takes an int
      if (::poll(&p, 1, wait) > 0 && PQconsumeInput(raw_) == 0) answered = false;
    }
    if (answered && !is_broken()) return true;
    ::shutdown(PQsocket(raw_), SHUT_RDWR);
    (void)PQconsumeInput(raw_);  // reads the end of the stream: libpq marks the connection bad
    return false;
  }

  // What the server said when it ended the connection while idle (ended_while_idle), else libpq's last error.
  std::string end_reason() const { return ended_why_.empty() ? last_error() : ended_why_; }

  // Rolls back a transaction the server still has open (a DAO's raw BEGIN, say); returns whether one was.
  // On a connection that must be replaced nothing more runs: the transaction ends with it.
  bool rollback_if_open() noexcept {
    if (is_broken() || !in_transaction()) return false;
    if (!unanswered_cancel_) PQclear(PQexec(raw_, "ROLLBACK"));
    return true;
  }

  // One-value query of asyncdb's own, outside any transaction of the DAO's; 0 on failure.
  std::uint64_t lsn(const char* sql) noexcept {
    return one_value<std::uint64_t>(sql, 0, [](const char* v) { return parse_lsn(v); });
  }
  // As lsn(), for an integer; -1 on failure.
  std::int64_t integer(const char* sql) noexcept {
    return one_value<std::int64_t>(sql, -1, [](const char* v) { return std::strtoll(v, nullptr, 10); });
  }

  template <class Dao>
  Dao& dao() {
    return daos_.emplace<Dao>(*conn_);
  }

  void interrupt() noexcept override { cancels_.request(target_); }

  void begin_lease(std::chrono::steady_clock::time_point /*queued_at*/) noexcept override {
    watch_ = {};
    in_block_ = in_transaction();
    block_errors_ = 0;
    rollback_unresolved_ = false;
  }

  // The lane's thread, once the operation can no longer be interrupted. A ROLLBACK answer after a failed
  // statement that nothing resolved (see on_event) ended the block if the server is out of it now.
  lease_watch end_lease() noexcept {
    if (!cancels_.settle(target_)) unanswered_cancel_ = true;
    if (rollback_unresolved_ && !in_transaction()) watch_.rolled_back_after_error = true;
    rollback_unresolved_ = false;
    return watch_;
  }

 private:
  template <class T, class Parse>
  T one_value(const char* sql, T otherwise, Parse parse) noexcept {
    PGresult* r = PQexec(raw_, sql);
    const T v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetisnull(r, 0, 0) == 0
                    ? parse(PQgetvalue(r, 0, 0))
                    : otherwise;
    PQclear(r);
    return v;
  }

  struct idle_check {
    PQnoticeReceiver previous = nullptr;
    bool fatal = false;
    char message[256] = {};  // the FATAL's own words
  };

  static void on_idle_notice(void* arg, const PGresult* r) noexcept {
    auto* check = static_cast<idle_check*>(arg);
    if (check == nullptr) return;
    const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity != nullptr && (std::strcmp(severity, "FATAL") == 0 || std::strcmp(severity, "PANIC") == 0)) {
      check->fatal = true;
      const char* m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
      if (m != nullptr) std::snprintf(check->message, sizeof check->message, "%s", m);
    }
    if (check->previous != nullptr) check->previous(nullptr, r);  // libpqxx's notice processor, as before
  }

  // Whether a lease committed anything is decided from what the server did, not from what a statement's
  // tag says it was: `SELECT f()`, CALL and a data-modifying CTE write under the tags SELECT and CALL. Inside
  // a transaction block nothing commits but a COMMIT the server answered as one (a COMMIT in a failed
  // block answers ROLLBACK); outside a block every statement that succeeds on a read-write connection
  // committed on its own and may have written, whatever it was. On a read-only connection (a replica, or
  // default_transaction_read_only) nothing commits. Where the two cannot be told apart the lease counts as
  // having committed: the library then reports the operation's own outcome, never operation_aborted.
  //
  // libpq fires this before it reads the statement's ReadyForQuery, so PQtransactionStatus cannot be asked
  // here (it answers ACTIVE); the block is followed from BEGIN/COMMIT, and from errors: a statement that
  // succeeds after a failed one in a block is outside it, or after a ROLLBACK TO SAVEPOINT, and counts.
  static int on_event(PGEventId id, void* info, void* self) noexcept {
    if (id != PGEVT_RESULTCREATE) return 1;
    auto& c = *static_cast<connection*>(self);
    const PGresult* r = static_cast<PGEventResultCreate*>(info)->result;
    const ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_FATAL_ERROR) {
      ++c.watch_.errors;
      if (c.in_block_) ++c.block_errors_;
      c.in_block_ = false;  // failed (or, for a COMMIT, ended): what succeeds next is no longer surely inside
      return 1;
    }
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return 1;
    const char* tag = PQcmdStatus(const_cast<PGresult*>(r));
    if (std::strcmp(tag, "BEGIN") == 0 || std::strcmp(tag, "START TRANSACTION") == 0) {
      // A ROLLBACK answer left unresolved was the end of the previous block: a new one cannot begin inside it.
      if (c.rollback_unresolved_) c.watch_.rolled_back_after_error = true;
      c.rollback_unresolved_ = false;
      c.in_block_ = true;
      c.block_errors_ = 0;
    } else if (std::strcmp(tag, "COMMIT") == 0) {
      // Also the end of a block whose ROLLBACK answer was a ROLLBACK TO SAVEPOINT: it committed.
      c.rollback_unresolved_ = false;
      c.in_block_ = false;
      if (!c.read_only_) ++c.watch_.commits;
    } else if (std::strcmp(tag, "ROLLBACK") == 0) {
      // ROLLBACK, a COMMIT the server turned into one, or ROLLBACK TO SAVEPOINT, which stays in the block:
      // the next BEGIN or COMMIT, or the transaction status at the lease's end, tells which.
      if (c.block_errors_ > 0) c.rollback_unresolved_ = true;
      c.in_block_ = false;
    } else if (std::strcmp(tag, "PREPARE TRANSACTION") == 0) {
      c.in_block_ = false;  // ends the block; COMMIT PREPARED, outside one, counts below
    } else if (!c.in_block_ && !c.read_only_) {
      ++c.watch_.commits;
    }
    return 1;
  }

  std::unique_ptr<pqxx::connection> conn_;
  const bool read_only_;
  bool in_block_ = false;             // surely inside a healthy transaction block
  std::uint32_t block_errors_ = 0;    // failed statements since the block began
  bool rollback_unresolved_ = false;  // a ROLLBACK answer after a failed statement: end of block or savepoint
  PGconn* raw_ = nullptr;
  canceller& cancels_;
  canceller::target& target_;
  lease_watch watch_;
  std::string ended_why_;
  bool unanswered_cancel_ = false;
  dao_cache daos_;
};

}  // namespace asyncdb::detail::pg
