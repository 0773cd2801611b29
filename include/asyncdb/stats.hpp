#pragma once
// A point-in-time picture of a database's work.
#include <asyncdb/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {

/// Who holds the writer connection at the moment of the snapshot.
struct writer_holder {
  /// What holds the writer.
  enum class kind { none, operation, session };
  kind what = kind::none;                ///< nothing, a single operation, or a write session
  std::string name;                      ///< the DAO member or function, or where the session was opened
  std::chrono::nanoseconds held_for{0};  ///< since the holder took the writer
};

/// Counters of one database since it opened; each field is read atomically, the set is not.
struct stats {
  std::size_t queued = 0;                  ///< accepted, not started (sessions' own queues included)
  std::size_t running = 0;                 ///< executing on a connection right now
  std::uint64_t completed = 0;             ///< finished without an exception
  std::uint64_t failed = 0;                ///< finished with an exception (the DAO's or asyncdb's)
  std::uint64_t cancelled = 0;             ///< cancelled while queued, or interrupted while running
  std::uint64_t rejected = 0;              ///< refused at once: queue full or database closed
  std::chrono::nanoseconds queue_wait{0};  ///< total time started operations spent queued
  std::uint64_t group_commits = 0;         ///< shared transactions committed by the writer (group commit)
  std::uint64_t grouped = 0;               ///< operations whose write was committed by one of those
  std::uint64_t rerouted = 0;              ///< undeclared operations that tried to write on a reader and moved
  writer_holder writer;                    ///< who holds the writer now
};

}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
