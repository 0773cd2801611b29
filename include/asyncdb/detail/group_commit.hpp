#pragma once
#include <asyncdb/detail/lane.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <vector>

namespace asyncdb::detail {

// The writer's loop when group commit is on. A write alone costs one commit, which is most of its
// cost; when several independent writes are waiting, they share one transaction: each runs inside
// its own savepoint (a failure rolls back only its own changes), and each completes only once the
// shared COMMIT has returned, so an awaiter never resumes before its write is durable and visible.
class group_commit {
 public:
  static void serve(lane& l, job_queue& q, const options& o) { group_commit(l, q, o.group_commit).run(); }

 private:
  group_commit(lane& l, job_queue& q, const group_commit_options& o) : lane_(l), queue_(q), opts_(o) {}

  // A job alone in the queue runs alone: a shared transaction only pays when a second one waits.
  void run() {
    std::shared_ptr<job> j = queue_.pop();
    while (j) {
      std::shared_ptr<job> next;
      if (opts_.enabled && opts_.max_operations > 1 && j->groupable() && queue_.next_is_groupable()) {
        next = run_group(std::move(j));
      } else {
        j->execute(lane_);
      }
      j = next ? std::move(next) : queue_.pop();
    }
  }

  // Returns the job that stopped the group because it cannot join one, if any.
  std::shared_ptr<job> run_group(std::shared_ptr<job> first) {
    try {
      lane_.run_control(control_statements::begin);
    } catch (...) {
      first->execute(lane_);  // each alone then meets (and reports) the same lock
      return nullptr;
    }
    const auto deadline = std::chrono::steady_clock::now() + opts_.max_duration;
    const std::uint64_t commits_before = lane_.commits();
    held_.clear();
    alone_.clear();
    std::shared_ptr<job> j = std::move(first), stopper;
    bool ended = false, ender_held = false;
    for (std::size_t n = 1;; ++n) {
      lane_.set_interruptible(held_.empty());
      switch (j->run_grouped(lane_)) {
        case grouped_run::skipped:
          break;
        case grouped_run::held:
          held_.push_back(j);
          break;
        case grouped_run::alone:
          alone_.push_back(j);
          break;
        case grouped_run::ended_transaction:
          held_.push_back(j);
          ended = ender_held = true;
          break;
        case grouped_run::ended_alone:
          alone_.push_back(j);
          ended = true;
          break;
      }
      if (ended || n >= opts_.max_operations || std::chrono::steady_clock::now() >= deadline) break;
      j = queue_.try_pop();
      if (!j) break;
      if (!j->groupable()) {
        stopper = std::move(j);
        break;
      }
    }
    lane_.set_interruptible(true);
    finish(ended, ender_held, commits_before);
    return stopper;
  }

  // Completes the group: every held outcome after the commit. If the shared transaction was lost
  // instead (rolled back by one of its operations, or by SQLite), the writes it held run again,
  // alone, rather than fail for a neighbour's doing; if the COMMIT fails, they fail with its error.
  void finish(bool ended, bool ender_held, std::uint64_t commits_before) {
    std::exception_ptr undone;
    if (!ended) {
      try {
        lane_.run_control(control_statements::commit);
      } catch (...) {
        undone = std::current_exception();
        rollback_if_open(lane_.handle());
      }
    }
    const bool lost = ended && lane_.commits() == commits_before;
    std::size_t committed = 0;
    for (std::size_t i = 0; i < held_.size(); ++i) {
      const bool ender = ender_held && i + 1 == held_.size();
      if (lost && !ender && held_[i]->take_back()) {
        alone_.push_back(std::move(held_[i]));
        continue;
      }
      const bool ok = held_[i]->complete_grouped(lane_, ender ? nullptr : undone);
      if (ok && !undone && !lost && !ender) ++committed;
    }
    if (committed > 0) {
      counters& c = lane_.stats_counters();
      c.group_commits.fetch_add(1, std::memory_order_relaxed);
      c.grouped.fetch_add(committed, std::memory_order_relaxed);
    }
    held_.clear();
    for (auto& a : alone_) a->execute(lane_);
    alone_.clear();
  }

  lane& lane_;
  job_queue& queue_;
  const group_commit_options& opts_;
  std::vector<std::shared_ptr<job>> held_;
  std::vector<std::shared_ptr<job>> alone_;
};

}  // namespace asyncdb::detail
