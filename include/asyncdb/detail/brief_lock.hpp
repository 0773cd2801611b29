#pragma once
// Locking for the library's hot, tiny critical sections: the job queues and the completion registries, which
// the event loop and the lanes take once or twice per operation each.
#include <asyncdb/detail/config.hpp>

#include <mutex>
#include <thread>

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Locks `m`, first retrying a bounded number of times (well under a microsecond of pause instructions):
// what such a lock guards takes tens of nanoseconds, so a thread finding it taken nearly always gets it by
// retrying, where blocking puts it to sleep and costs it, and the thread that unlocks (the futex wake,
// then often a preemption by the woken thread), a context switch each; profiled, these were half the
// voluntary context switches of 64 point reads in flight. A holder preempted mid-section makes the waiter
// block as before. On a single core retrying cannot help: nothing else runs meanwhile, so it never spins.
inline std::unique_lock<std::mutex> lock_briefly(std::mutex& m) {
  static const bool spare_core = std::thread::hardware_concurrency() > 1;
  if (spare_core) {
    for (int i = 0; i < 64; ++i) {
      if (m.try_lock()) return std::unique_lock<std::mutex>(m, std::adopt_lock);
      cpu_relax();
    }
  }
  return std::unique_lock<std::mutex>(m);
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
