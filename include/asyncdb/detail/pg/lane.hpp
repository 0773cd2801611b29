#pragma once
// A PostgreSQL lane: one thread, the connection it owns (replaced after a fault), the DAOs built on it,
// and the loop that serves one queue (the writers share one, the readers of each replica one more).
#include <asyncdb/detail/deadline.hpp>
#include <asyncdb/detail/holder.hpp>
#include <asyncdb/detail/job_queue.hpp>
#include <asyncdb/detail/lane_thread.hpp>
#include <asyncdb/detail/pg/canceller.hpp>
#include <asyncdb/detail/pg/config.hpp>
#include <asyncdb/detail/pg/connection.hpp>
#include <asyncdb/detail/pg/statement_timeout.hpp>
#include <asyncdb/detail/session_slot.hpp>
#include <asyncdb/error.hpp>

#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/transaction_base>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace asyncdb::detail::pg {

class lane;

// What a lane runs: detail/run_op.hpp's operations and session openings, which are also detail::job.
using task = lane_task<lane>;

// One connection's state as stats() shows it.
enum class connection_state : unsigned char { connecting, ready, down, closed };

struct lane_snapshot {
  connection_state state = connection_state::connecting;
  int backend_pid = 0;
  std::uint64_t connects = 0;
  std::string last_error;
  writer_holder holder;  // the operation or session using it now
};

class lane {
 public:
  lane(std::string conninfo, bool writer, bool read_only, const connection_role& role, const lane_settings& settings,
       job_queue& queue, std::atomic<int>& connected_on_queue, std::shared_ptr<counters> c, canceller& cancels)
      : conninfo_(std::move(conninfo)),
        writer_(writer),
        read_only_(read_only),
        on_replica_(role.replica >= 0),
        role_(role),
        settings_(settings),
        queue_(queue),
        connected_on_queue_(connected_on_queue),
        counters_(std::move(c)),
        cancels_(cancels),
        target_(cancels.add_target()),
        backoff_(settings.reconnect_backoff) {}
  lane(const lane&) = delete;
  lane& operator=(const lane&) = delete;
  // Connects on the lane's thread; rethrows the first connect's failure.
  void start() {
    thread_.start(writer_ ? "asyncdb-pg-write" : "asyncdb-pg-read",
                  [this](std::promise<void>& opened) { main(opened); });
  }
  void join() noexcept { thread_.join(); }

  bool on_this_thread() const noexcept { return thread_.is_current(); }
  bool is_writer() const noexcept { return writer_; }
  const connection_role& role() const noexcept { return role_; }
  bool is_read_only() const noexcept { return read_only_; }
  const lane_settings& settings() const noexcept { return settings_; }

  // On the lane's thread only, while connected.
  connection& conn() noexcept { return *conn_; }
  counters& stats_counters() noexcept { return *counters_; }
  const std::shared_ptr<counters>& shared_counters() const noexcept { return counters_; }

  // An operation outside a session takes the connection (`name`), or gives it back (empty).
  void hold(const op_name& name) noexcept {
    if (name.name.empty()) {
      holder_.release();
    } else {
      holder_.hold(writer_holder::kind::operation, name, conn_ ? conn_->backend_pid() : 0);
    }
  }
  const connection_holder& holds() const noexcept { return holder_; }

  lane_snapshot snapshot() const {
    lane_snapshot s;
    {
      std::lock_guard lock(mutex_);
      s = info_;
    }
    s.holder = holder_.snapshot();
    return s;
  }

  // Serves one session until it is released, then rolls back what it left open. False when closing.
  template <class Granted>
  bool serve_session(const std::shared_ptr<session_state>& s, const op_name& name, Granted&& granted) {
    if (!sessions_.enter(s)) return false;
    holder_.hold(writer_holder::kind::session, name, conn_ ? conn_->backend_pid() : 0);
    in_session_ = true;
    granted();
    while (auto j = s->queue.pop()) dispatch(j, true);
    end_session_transaction();  // aborts: a session never commits behind its owner's back
    if (conn_) conn_->rollback_if_open();
    in_session_ = false;
    session_failed_ = nullptr;
    holder_.release();
    sessions_.leave();
    return true;
  }

  void stop_sessions() {
    sessions_.stop();
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
  }

  // The transaction a session holds open (begin(), or a read session's snapshot); on the lane's thread.
  std::unique_ptr<pqxx::transaction_base>& session_transaction() noexcept { return session_txn_; }

  // A read session's snapshot: one REPEATABLE READ, READ ONLY transaction, opened by asyncdb's own BEGIN
  // under a pqxx::nontransaction. libpqxx's own transaction classes roll the whole transaction back when a
  // statement fails, which would end the snapshot; the nontransaction leaves that to asyncdb, and as the
  // connection's one transaction object it still makes libpqxx refuse a DAO's own transaction. The
  // savepoint is what a failed operation is rolled back to (keep_snapshot).
  void open_snapshot() {
    session_txn_ = std::make_unique<pqxx::nontransaction>(conn_->get());
    session_txn_->exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT 1; SAVEPOINT " + snapshot_savepoint);
  }

  // After each operation of a read session, once no cancel can reach the connection: a failed (or
  // cancelled) operation is rolled back to the savepoint, so that the next one runs on the same snapshot
  // (a failed statement fails the whole transaction on the server); a successful one moves the savepoint
  // past it, so that a later failure undoes nothing of it. An operation that ended the transaction itself
  // ended the snapshot: the session's later operations fail.
  void keep_snapshot() noexcept {
    if (!conn_ || conn_->must_be_replaced() || !session_txn_) return;
    static const std::string rollback = "ROLLBACK TO SAVEPOINT " + snapshot_savepoint;
    static const std::string advance = "RELEASE SAVEPOINT " + snapshot_savepoint + "; SAVEPOINT " + snapshot_savepoint;
    if (conn_->in_transaction() &&
        conn_->exec_own(conn_->in_failed_transaction() ? rollback.c_str() : advance.c_str())) {
      return;
    }
    session_failed_ = std::make_exception_ptr(std::logic_error(
        "asyncdb: an operation of this read session ended its transaction (COMMIT, ROLLBACK), so its snapshot is "
        "gone; open a new read session"));
  }
  void end_session_transaction() noexcept {
    try {
      session_txn_.reset();
    } catch (...) {  // pqxx aborts in the destructor and swallows what fails; nothing else to do
    }
  }

  // read_your_writes, before an operation on a replica: waits (bounded by replica_wait) until the replica
  // has replayed the primary's WAL up to this database's last committed write.
  void catch_up() {
    if (!settings_.read_your_writes || !read_only_ || !on_replica_) return;
    const std::uint64_t target = settings_.written_lsn->load(std::memory_order_acquire);
    if (target <= replayed_) return;
    const auto give_up = saturating_deadline(std::chrono::steady_clock::now(), settings_.replica_wait);
    for (;;) {
      replayed_ = std::max(replayed_, conn_->lsn("SELECT pg_last_wal_replay_lsn()"));
      if (replayed_ >= target) return;
      if (closing_.load(std::memory_order_relaxed)) throw system_error(errc::closed);
      if (std::chrono::steady_clock::now() >= give_up) {
        throw std::runtime_error(
            "asyncdb: the replica has not replayed this database's last write within "
            "postgres::options::replica_wait; read on the primary instead");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // read_your_writes, after an operation on the primary that committed: records the WAL position, before
  // the caller resumes, so that any read it starts next waits for it.
  void note_write() noexcept {
    if (!settings_.read_your_writes || read_only_ || session_txn_) return;
    const std::uint64_t lsn = conn_->lsn("SELECT pg_current_wal_lsn()");
    std::uint64_t seen = settings_.written_lsn->load(std::memory_order_relaxed);
    while (lsn > seen && !settings_.written_lsn->compare_exchange_weak(seen, lsn, std::memory_order_release)) {
    }
  }

  // Before asyncdb's own SQL that must run (note_write, a session's start): replaces a connection that must
  // be (after_operation). Null when the lane has a usable connection now, else why it has none.
  std::exception_ptr replace_if_needed() noexcept {
    after_operation();
    return conn_ ? nullptr : down_error();
  }

  // Any thread: close()'s grace is over. The lane starts nothing more (what is queued fails with
  // errc::closed) and the statement running now, if any, is cancelled on the server, or, when the server
  // does not answer the cancel request, cut off from it.
  void interrupt_for_close() noexcept {
    closing_.store(true, std::memory_order_relaxed);
    cancels_.request(target_);
    cancels_.sever_if_unanswered(target_);
  }

  // After each operation: a connection that died (or was left unusable) is dropped with its DAOs, and
  // replaced at once if the server answers.
  void after_operation() noexcept {
    if (conn_ && conn_->must_be_replaced()) {
      drop(conn_->is_broken() ? "the connection was lost" : "a cancel request to its server went unanswered");
      // Not once close()'s grace is over: nothing more will run, and a connect (with on_open) could not be
      // cancelled.
      if (!closing_.load(std::memory_order_relaxed)) try_connect();
    }
  }

 private:
  void main(std::promise<void>& opened) {
    std::exception_ptr failed;
    try {
      connect();
    } catch (...) {
      failed = std::current_exception();
    }
    if (failed) {
      set_state(connection_state::closed);
      opened.set_exception(std::move(failed));
      return;
    }
    opened.set_value();
    for (;;) {
      // Down while another connection of this queue is up: take nothing (it would only be refused), and
      // reconnect when the backoff allows. Only when every one is down do operations fail fast.
      if (!conn_ && connected_on_queue_.load(std::memory_order_relaxed) > 0 && wait_for_next_attempt()) {
        try_connect();
        continue;
      }
      auto j = queue_.pop();
      if (!j) break;
      dispatch(j);
    }
    conn_.reset();
    count_connected(false);
    set_state(connection_state::closed);
  }

  // A session's operation runs on the session's connection or fails: never on another connection (which
  // holds none of its transaction, temporary tables, settings or locks, and may run it concurrently with
  // the session), never on a new one after that connection was lost.
  void dispatch(const std::shared_ptr<job>& j, bool of_session = false) noexcept {
    task* t = dynamic_cast<task*>(j.get());  // PostgreSQL queues hold PostgreSQL operations only
    if (t == nullptr) return;
    if (closing_.load(std::memory_order_relaxed)) {
      t->refuse(*this, std::make_exception_ptr(system_error(errc::closed)));
      return;
    }
    // Never start an operation on a connection the server already ended: it was not in flight there.
    if (conn_ && conn_->ended_while_idle()) drop("the server closed the connection while it was idle");
    // Nor on one a given-up cancel request may still reach (after_operation has normally replaced it).
    if (conn_ && conn_->must_be_replaced()) drop("a cancel request to its server went unanswered");
    if (!of_session) refresh();
    if (of_session && session_failed_) {
      t->refuse(*this, session_failed_);
      return;
    }
    if (!conn_ && !try_connect()) {
      // Another connection of this queue is up: it serves the operation (queued again, at the end).
      if (!of_session && connected_on_queue_.load(std::memory_order_relaxed) > 0 && !queue_.push_again(j)) return;
      t->refuse(*this, down_error());
      return;
    }
    if (t->runs_statements()) timeouts_.prepare(*conn_, j->deadline, j->budget);
    t->serve(*this);
    // Between operations, never inside a session: after the caller has its answer, so that a replacement's
    // connect delays no operation that this lane already took (the lane's queue mates serve meanwhile).
    last_used_ = std::chrono::steady_clock::now();
    if (!of_session) retire_if_due(last_used_);
  }

  // Before an operation outside a session: a connection idle past idle_validation_after must answer a round
  // trip or it is dropped (dispatch connects its replacement), and one past its lifetime is replaced.
  void refresh() noexcept {
    if (!conn_) return;
    const auto now = std::chrono::steady_clock::now();
    if (settings_.idle_validation_after.count() > 0 &&
        now >= saturating_deadline(last_used_, settings_.idle_validation_after) &&
        !conn_->answers_within(settings_.validation_timeout)) {
      drop("the connection did not answer a round trip after sitting idle");
      return;
    }
    retire_if_due(now);
  }

  // max_lifetime. Make before break: the old connection serves until its replacement is up, so a connect that
  // fails (the server at max_connections, a changed password) costs no operation; it is tried again after the
  // backoff, as a reconnect would be.
  void retire_if_due(std::chrono::steady_clock::time_point now) noexcept {
    if (!conn_ || now < retire_at_ || now < next_attempt_ || closing_.load(std::memory_order_relaxed)) return;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;  // close() drains the queue: no new connection for the little that is left
    }
    std::string error;
    try {
      auto fresh = std::make_unique<connection>(conninfo_, read_only_, settings_.on_open, role_, cancels_, target_);
      conn_ = std::move(fresh);  // the old one's destructor clears the cancel target, its DAOs go with it
      conn_->arm_cancel();
      connected();
      return;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown error";
    }
    next_attempt_ = std::chrono::steady_clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, settings_.max_reconnect_backoff);
    std::lock_guard lock(mutex_);
    info_.last_error = "replacing the connection past max_lifetime failed (it serves on): " + error;
  }

  // A new connection's deadline: max_lifetime less up to a fifth of it, drawn per connection, so that the
  // connections made together (at start, after a restart) are not all replaced at once.
  std::chrono::steady_clock::time_point retire_time(std::chrono::steady_clock::time_point now) {
    const std::chrono::milliseconds life = settings_.max_lifetime;
    if (life.count() <= 0) return std::chrono::steady_clock::time_point::max();
    std::uniform_int_distribution<std::chrono::milliseconds::rep> cut(0, life.count() / 5);
    return saturating_deadline(now, life - std::chrono::milliseconds(cut(jitter_)));
  }

  // Waits until the next connect attempt is due; false, at once, when the database is closing.
  bool wait_for_next_attempt() {
    std::unique_lock lock(mutex_);
    wake_.wait_until(lock, next_attempt_, [this] { return stopping_; });
    return !stopping_;
  }

  // Keeps connected_on_queue_ (shared by the lanes of one queue) counting this lane while it has a connection.
  void count_connected(bool connected) noexcept {
    if (connected == counted_) return;
    connected_on_queue_.fetch_add(connected ? 1 : -1, std::memory_order_relaxed);
    counted_ = connected;
  }

  void connect() {
    set_state(connection_state::connecting);
    conn_ = std::make_unique<connection>(conninfo_, read_only_, settings_.on_open, role_, cancels_, target_);
    connected();
  }

  void connected() {
    timeouts_.reset();
    count_connected(true);
    last_used_ = std::chrono::steady_clock::now();
    retire_at_ = retire_time(last_used_);
    std::lock_guard lock(mutex_);
    info_.state = connection_state::ready;
    info_.backend_pid = conn_->backend_pid();
    ++info_.connects;
    backoff_ = settings_.reconnect_backoff;
  }

  // One attempt, unless the last failed less than the backoff ago: fail fast rather than queue behind
  // a server that is down. Each attempt is bounded by the conninfo's connect_timeout.
  bool try_connect() noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_attempt_) return false;
    std::string error;
    try {
      connect();
      return true;
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown error";
    }
    conn_.reset();
    count_connected(false);
    next_attempt_ = saturating_deadline(std::chrono::steady_clock::now(), backoff_);
    backoff_ = std::min(saturating_double(backoff_), settings_.max_reconnect_backoff);
    std::lock_guard lock(mutex_);
    info_.state = connection_state::down;
    info_.backend_pid = 0;
    info_.last_error = std::move(error);
    return false;
  }

  void drop(std::string why) noexcept {
    if (session_txn_) sessions_.abort_current();  // its transaction died with the connection
    if (in_session_ && !session_failed_) {
      const std::string server = conn_ ? conn_->end_reason() : std::string();
      session_failed_ = std::make_exception_ptr(pqxx::broken_connection(
          "asyncdb: this session's connection was lost (" + why + (server.empty() ? "" : ": " + server) +
          "); its transaction, temporary tables, settings and locks went with it, so the session's operations "
          "fail from here on: end the session and open a new one"));
    }
    end_session_transaction();  // refers to the connection: gone first
    conn_.reset();
    count_connected(false);
    std::lock_guard lock(mutex_);
    info_.state = connection_state::down;
    info_.backend_pid = 0;
    info_.last_error = std::move(why);
  }

  std::exception_ptr down_error() const {
    std::lock_guard lock(mutex_);
    return std::make_exception_ptr(pqxx::broken_connection(
        "asyncdb: the " + std::string(writer_ ? "primary" : "read-only") + " connection is down: " + info_.last_error));
  }

  void set_state(connection_state s) noexcept {
    std::lock_guard lock(mutex_);
    info_.state = s;
    if (s != connection_state::ready) info_.backend_pid = 0;
  }

  const std::string conninfo_;
  const bool writer_;
  const bool read_only_;
  const bool on_replica_;
  const connection_role role_;
  const lane_settings& settings_;
  std::uint64_t replayed_ = 0;  // the replica's replay position last seen
  job_queue& queue_;
  std::atomic<int>& connected_on_queue_;
  bool counted_ = false;  // counted in connected_on_queue_
  std::shared_ptr<counters> counters_;
  canceller& cancels_;
  canceller::target& target_;
  std::unique_ptr<connection> conn_;                   // a pointer: a replacement is connected before the old one goes
  statement_timeout timeouts_;                         // conn_'s, as asyncdb has set it
  std::chrono::steady_clock::time_point last_used_{};  // when the last operation ended, or the connect
  std::chrono::steady_clock::time_point retire_at_ = std::chrono::steady_clock::time_point::max();
  std::minstd_rand jitter_{static_cast<std::minstd_rand::result_type>(
      std::hash<const void*>{}(this) ^
      static_cast<std::size_t>(std::chrono::steady_clock::now().time_since_epoch().count()))};
  std::unique_ptr<pqxx::transaction_base> session_txn_;  // declared after conn_: destroyed first
  bool in_session_ = false;                              // serving a session now
  std::exception_ptr session_failed_;                    // why every later operation of the session being served fails
  inline static const std::string snapshot_savepoint = "asyncdb_snapshot";
  std::chrono::milliseconds backoff_;
  std::chrono::steady_clock::time_point next_attempt_{};

  mutable std::mutex mutex_;
  std::condition_variable wake_;  // ends wait_for_next_attempt when the database closes
  bool stopping_ = false;
  lane_snapshot info_;
  connection_holder holder_;  // for stats() and the hold watchdog

  std::atomic<bool> closing_{false};  // close()'s grace is over; never cleared
  session_slot sessions_;
  lane_thread thread_;  // last: joined before the members its thread uses are destroyed
};

}  // namespace asyncdb::detail::pg
