#pragma once
#include <chrono>
#include <exception>
#include <system_error>

namespace asyncdb::detail {

class lane;

// How an operation ended inside the writer's shared transaction (group commit).
enum class grouped_run : unsigned char {
  skipped,            // cancelled while queued: already completed, nothing ran
  held,               // ran inside its savepoint; its outcome waits for the shared commit
  alone,              // opens its own transaction: rolled back to its savepoint, to be run alone later
  ended_transaction,  // its work ended the shared transaction (COMMIT, ROLLBACK, or SQLite's own rollback)
  ended_alone,        // as ended_transaction, after its own BEGIN failed: to be run alone later
};

// A unit of work a lane executes. Every job ends in exactly one of execute() or fail(): a queue
// that refuses or drops a job calls fail(), a lane that pops it calls execute(), or, on the writer,
// run_grouped() then complete_grouped().
class job {
 public:
  job() = default;
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  virtual ~job() = default;

  virtual void execute(lane& l) noexcept = 0;
  virtual void fail(std::error_code ec) noexcept = 0;

  // Group commit, on the writer's thread only. A groupable job runs inside a savepoint of a shared
  // transaction and holds its outcome until complete_grouped(), which the writer calls once that
  // transaction is over: with null after a commit, or with the error that ended it in a rollback.
  virtual bool groupable() const noexcept { return false; }
  virtual grouped_run run_grouped(lane& l) noexcept {
    execute(l);
    return grouped_run::skipped;
  }
  // Returns whether it completed with success.
  virtual bool complete_grouped(lane&, std::exception_ptr) noexcept { return false; }
  // The shared transaction was rolled back under it: a job that had succeeded forgets its outcome and
  // is queued again, to run alone (true); one that failed keeps its own error (false).
  virtual bool take_back() noexcept { return false; }

  std::chrono::steady_clock::time_point enqueued_at{};
};

}  // namespace asyncdb::detail
