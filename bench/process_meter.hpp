#pragma once
// What the whole process (every thread) spent over a measurement window: CPU time and context switches,
// from getrusage(RUSAGE_SELF). Threads that ended inside the window are counted too (the kernel folds
// their usage into the process's).
#include <sys/resource.h>

#include <cstddef>

#include "sample.hpp"

namespace bench {

/// CPU time and context switches of this process so far.
struct process_usage {
  double cpu_us = 0;            // user + system, every thread
  double context_switches = 0;  // voluntary (a thread slept) + involuntary (a thread was preempted)

  static process_usage now() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const auto us = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
    };
    return {us(ru.ru_utime) + us(ru.ru_stime), static_cast<double>(ru.ru_nvcsw + ru.ru_nivcsw)};
  }
};

/// Starts at construction; stop() writes the per-operation figures of the window into a sample.
class process_meter {
 public:
  process_meter() : start_(process_usage::now()) {}
  /// Sets `client_cpu_us` and `switches_per_op` for the `n` operations since construction.
  void stop(sample& out, std::size_t n) const {
    const process_usage end = process_usage::now();
    const double ops = static_cast<double>(n);
    out.client_cpu_us = (end.cpu_us - start_.cpu_us) / ops;
    out.switches_per_op = (end.context_switches - start_.context_switches) / ops;
  }

 private:
  process_usage start_;
};

}  // namespace bench
