#pragma once
// Counts every call of the global operator new and of aligned_alloc in the program (any thread), for "heap
// allocations per operation". Defined in alloc_counter.cpp, which replaces operator new and delete and aligned_alloc.
#include <cstdint>

namespace bench {

/// Calls of any global operator new, and of aligned_alloc, since the program started.
std::uint64_t allocations() noexcept;

}  // namespace bench
