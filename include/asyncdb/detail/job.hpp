#pragma once
#include <asyncdb/detail/asio.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <system_error>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

class lane;
class job_queue;
struct op_kind;

// What a lane of type L runs, where it is not detail::lane (PostgreSQL's): serve() runs an operation,
// refuse() completes it without running (a no-op if cancelled meanwhile).
template <class L>
class lane_task {
 public:
  virtual void serve(L& l) noexcept = 0;
  virtual void refuse(L& l, std::exception_ptr ep) noexcept = 0;
  // Whether its budget bounds its statements on the server: not a session's opening, whose budget is only
  // the wait for the session.
  virtual bool runs_statements() const noexcept { return true; }

 protected:
  ~lane_task() = default;
};

// The phases of one operation's run on a lane of type L (detail/run_op.hpp has the one implementation).
// SQLite's group commit drives them one by one to run a write inside the writer's shared transaction; the
// savepoint protocol around it belongs to group_commit alone.
template <class L>
class lane_op {
 public:
  // queued -> running; false if a canceller completed it already.
  virtual bool begin(L& l) noexcept = 0;
  // Runs the work and keeps its outcome.
  virtual void run(L& l) noexcept = 0;
  // Ends the run (no interrupt reaches it from here on), with `instead` as its outcome if given.
  // Returns whether it failed or was aborted by a cancellation.
  virtual bool end(L& l, std::exception_ptr instead = nullptr) noexcept = 0;
  // Delivers the outcome once the shared transaction is over; `undone` (the COMMIT's error) replaces
  // a success. Returns whether it delivered a success.
  virtual bool complete(L& l, std::exception_ptr undone = nullptr) noexcept = 0;
  // Drops the outcome, to run again alone; false if a cancellation came first (it is then completed).
  virtual bool take_back(L& l) noexcept = 0;
  // What is learned about its code (it opens its own transaction).
  virtual op_kind& kind() noexcept = 0;

 protected:
  ~lane_op() = default;
};
using group_member = lane_op<lane>;

// A unit of work a lane executes. Every job ends in exactly one of execute() or fail(): a queue that
// refuses a job, or a canceller that withdraws it, calls fail(); a lane that pops it calls execute(),
// or, for a write joining a group commit, drives it through its group_member().
class job {
 public:
  job() = default;
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  virtual ~job() = default;

  virtual void execute(lane& l) noexcept = 0;
  virtual void fail(error_code ec) noexcept = 0;

  // Non-null when the job may share the writer's transaction with others (see group_commit).
  virtual group_member* group() noexcept { return nullptr; }

  std::chrono::steady_clock::time_point enqueued_at{};
  // Its budget (asyncdb::budget() or the database's default), set before it is queued; none when the deadline
  // is max(). A PostgreSQL lane bounds its statements on the server by it too (pg/statement_timeout.hpp).
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::chrono::nanoseconds budget = std::chrono::nanoseconds::max();

  // Whether its budget is over: what was cancelled after this is timed out, as its caller is told.
  bool deadline_passed() const noexcept {
    return deadline != std::chrono::steady_clock::time_point::max() && std::chrono::steady_clock::now() >= deadline;
  }

 private:
  // The links of the one queue holding the job, guarded by that queue's mutex: a withdrawn job leaves
  // its queue at once, so a cancelled job never holds a place in options::max_queued.
  friend class job_queue;
  std::shared_ptr<job> queued_self_;
  job* prev_ = nullptr;
  job* next_ = nullptr;
  job_queue* queue_ = nullptr;
};

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
