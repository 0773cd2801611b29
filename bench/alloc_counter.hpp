#pragma once
// Counts every call of the global operator new in the program (any thread), for "heap allocations per
// operation". Defined in alloc_counter.cpp, which replaces the global operator new and delete.
#include <cstdint>

namespace bench {

/// Calls of any global operator new since the program started.
std::uint64_t allocations() noexcept;

}  // namespace bench
