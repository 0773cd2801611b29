#pragma once
#include <asyncdb/detail/deadline.hpp>
#include <asyncdb/detail/op_kind.hpp>
#include <asyncdb/detail/sqlite/lane.hpp>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// The writer's loop when group commit is on. A write alone costs one commit, which is most of its
// cost; when several independent writes are waiting, they share one transaction: each runs inside its
// own savepoint (a failure rolls back only its own changes), and each completes only once the shared
// COMMIT has returned, so an awaiter never resumes before its write is durable and visible.
//
// Start order is kept: a write that turns out to need a transaction of its own ends the group before
// it and runs alone next; if the shared transaction is lost under a write (SQLite rolls back the
// whole transaction for an interrupted write, a full disk or an I/O error), the writes before it run
// again alone, in order, before anything else.
class group_commit {
 public:
  static void serve(lane& l, job_queue& q, const options& o) { group_commit(l, q, o.group_commit).run(); }

 private:
  group_commit(lane& l, job_queue& q, const group_commit_options& o) : lane_(l), conn_(l.conn()), queue_(q), opts_(o) {}

  // A job alone in the queue runs alone: a shared transaction only pays when a second one waits.
  void run() {
    std::shared_ptr<job> j = queue_.pop();
    while (j) {
      group_member* g = opts_.enabled && opts_.max_operations > 1 ? j->group() : nullptr;
      if (g != nullptr && queue_.next_is_groupable()) {
        j = run_group(std::move(j), *g);
      } else {
        j->execute(lane_);
        j = nullptr;
      }
      lane_.checkpoint_if_due();
      if (!j) j = queue_.pop();
    }
  }

  // How one write left the shared transaction.
  enum class step : unsigned char { held, alone, ended };

  // A write of the group. `m` is kept, not asked again: group() turns null once its kind is marked.
  struct member {
    std::shared_ptr<job> owner;
    group_member* m;
    std::exception_ptr undone;  // the RELEASE's failure, which undid a write that had succeeded
  };

  // Returns the job that ended the group and must run next, if any.
  std::shared_ptr<job> run_group(std::shared_ptr<job> j, group_member& first) {
    // Started before BEGIN, so that cancelling it wakes BEGIN's wait for another process's lock; a
    // BEGIN that fails is its failure: it waited its busy_timeout, and does not wait again alone.
    if (!first.begin(lane_)) return nullptr;
    std::exception_ptr begin_failed;
    try {
      conn_.run_control(control_statements::begin);
    } catch (...) {
      begin_failed = std::current_exception();
    }
    if (begin_failed) {
      // Completed outside the catch block: the exception it still holds there would otherwise be released on
      // this thread while the caller reads it.
      first.end(lane_, std::move(begin_failed));
      first.complete(lane_);
      return nullptr;
    }
    const auto deadline = saturating_deadline(std::chrono::steady_clock::now(), opts_.max_duration);
    const std::uint64_t commits_before = conn_.commits();
    std::vector<member> held;
    group_member* m = &first;
    for (std::size_t n = 1;; ++n) {
      bool failed = false, saw_transaction = false;
      std::exception_ptr undone;
      switch (run_member(*m, failed, saw_transaction, undone)) {
        case step::held:
          held.push_back({std::move(j), m, std::move(undone)});
          break;
        case step::alone:
          m->kind().own_transaction.store(true, std::memory_order_relaxed);
          commit(held);
          return m->take_back(lane_) ? std::move(j) : nullptr;
        case step::ended:
          ended(held, {std::move(j), m, nullptr}, failed, saw_transaction, commits_before);
          return nullptr;
      }
      if (n >= opts_.max_operations || std::chrono::steady_clock::now() >= deadline) break;
      j = next_member(m);
      if (!j) break;
      if (m == nullptr) {
        commit(held);
        return j;
      }
    }
    commit(held);
    return nullptr;
  }

  // The next queued job, started if it can join (`m` is then its member, else null); a cancelled one
  // is skipped.
  std::shared_ptr<job> next_member(group_member*& m) {
    while (std::shared_ptr<job> j = queue_.try_pop()) {
      m = j->group();
      if (m == nullptr || m->begin(lane_)) return j;
    }
    return nullptr;
  }

  // Runs one started write in its savepoint, watching for transaction statements of its own.
  step run_member(group_member& m, bool& failed, bool& saw_transaction, std::exception_ptr& undone) {
    sqlite3* db = conn_.handle();
    try {
      conn_.run_control(control_statements::savepoint);
    } catch (...) {
      failed = m.end(lane_, std::current_exception());
      return in_transaction(db) ? step::held : step::ended;
    }
    conn_.watch(watch_for::transactions);
    m.run(lane_);
    const bool poisoned = poisons_transaction(sqlite3_errcode(db));  // before anything else runs on db
    saw_transaction = conn_.stop_watching();
    failed = m.end(lane_);
    reset_statements(db);
    if (!in_transaction(db)) return step::ended;
    if (saw_transaction) return undo_member() ? step::alone : step::ended;
    if (failed && poisoned) {
      rollback_if_open(db);
      return step::ended;
    }
    if (failed) return undo_member() ? step::held : step::ended;
    try {
      conn_.run_control(control_statements::release);
    } catch (...) {
      undone = std::current_exception();
      if (!undo_member()) return step::ended;
    }
    return step::held;
  }

  // Rolls the member's savepoint back; false, with the shared transaction rolled back, if that fails (the
  // group then ends as if SQLite had rolled it back: the writes before this one run again alone).
  bool undo_member() noexcept {
    if (rollback_to_savepoint()) return true;
    rollback_if_open(conn_.handle());
    return false;
  }

  // The shared transaction ended under `m`. If it committed (m ran COMMIT itself), everything so far is
  // durable. If it was rolled back, the writes before m run again alone, in order, and so does m when
  // the cause was its own transaction statement or it claims a success SQLite rolled back.
  void ended(std::vector<member>& held, member last, bool failed, bool saw_transaction, std::uint64_t commits_before) {
    const bool committed = conn_.commits() != commits_before;
    if (saw_transaction || committed) last.m->kind().own_transaction.store(true, std::memory_order_relaxed);
    if (committed) {
      lane_.completing_group({held.empty() ? 0 : held.size() + 1, true});
      complete(held, nullptr, true);
      last.m->complete(lane_);
      lane_.completing_group({});
      return;
    }
    std::vector<std::shared_ptr<job>> again;
    for (member& h : held) {
      if (h.m->take_back(lane_)) again.push_back(std::move(h.owner));
    }
    if (failed && !saw_transaction) {
      last.m->complete(lane_);
    } else if (last.m->take_back(lane_)) {
      again.push_back(std::move(last.owner));
    }
    held.clear();
    for (auto& a : again) a->execute(lane_);
  }

  // Ends the shared transaction, which is open even when no member is held (the first one may have left).
  void commit(std::vector<member>& held) {
    std::exception_ptr undone;
    try {
      conn_.run_control(control_statements::commit);
    } catch (...) {
      undone = std::current_exception();
      rollback_if_open(conn_.handle());
    }
    lane_.completing_group({held.size(), !undone});
    complete(held, undone, !undone);
    lane_.completing_group({});
  }

  void complete(std::vector<member>& held, const std::exception_ptr& undone, bool committed) {
    std::size_t succeeded = 0;
    for (member& h : held) {
      if (h.m->complete(lane_, h.undone ? h.undone : undone)) ++succeeded;
    }
    if (committed && succeeded > 0) {
      counters& c = lane_.stats_counters();
      c.group_commits.fetch_add(1, std::memory_order_relaxed);
      c.grouped.fetch_add(succeeded, std::memory_order_relaxed);
    }
    held.clear();
  }

  // False if the savepoint could not be rolled back (the shared transaction is gone or unusable).
  bool rollback_to_savepoint() noexcept {
    try {
      conn_.run_control(control_statements::rollback_to);
      conn_.run_control(control_statements::release);
      return true;
    } catch (...) {
      return false;
    }
  }

  lane& lane_;
  connection& conn_;
  job_queue& queue_;
  const group_commit_options& opts_;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
