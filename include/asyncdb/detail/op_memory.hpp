#pragma once
// Where operations live: blocks recycled through a small process-wide cache, so that an operation started
// once the program is warm costs no heap allocation.
//
// Not the handler's associated allocator: Asio requires memory from it to be freed before the handler runs,
// while an operation is shared with a lane, its queue and the completion registry, and its last reference
// may drop after the handler ran, on a database thread, with the allocator's owner gone. Not Asio's
// recycling_allocator either: its cache is the current thread's, and only while that thread runs an
// io_context, so the database threads, which drop many of the last references, could never give a block back.
// This cache is any thread's: a block freed on a lane is taken by the next operation its event loop starts.
#include <asyncdb/detail/config.hpp>

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <memory>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define ASYNCDB_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNCDB_DETAIL_ASAN 1
#endif
#endif
#if defined(ASYNCDB_DETAIL_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace asyncdb {
inline namespace ASYNCDB_FLAVOUR {
namespace detail {

// Size classes of 256 to 4096 bytes, a few blocks each. A slot owns its block, and a block changes hands
// only by one atomic exchange, so no block is ever owned twice (no list links: nothing for ABA to break).
// The release/acquire pair orders everything the freeing thread did to the block before its next use.
// Trivially destructible and constant-initialised: a lane may free an operation during static destruction.
// Blocks still cached at exit are reachable from here; the cache holds at most
// slots * (256 + 512 + 1024 + 2048 + 4096) bytes.
class block_cache {
 public:
  static constexpr std::size_t smallest = 256;
  static constexpr std::size_t classes = 5;
  // Enough for the late frees of a burst: the drain releases its reference before the handler runs (see
  // async_op::run_completion), but a lane may still hold the operation it just delivered, and the writer
  // holds a whole group commit until its COMMIT's completions are delivered.
  static constexpr std::size_t slots = 16;

  static void* take(std::size_t size) {
    const std::size_t c = class_of(size);
    if (c == classes) return ::operator new(size);
    for (std::atomic<void*>& s : cache_[c]) {
      if (s.load(std::memory_order_relaxed) == nullptr) continue;
      if (void* p = s.exchange(nullptr, std::memory_order_acquire)) {
        unpoison(p, capacity(c));
        return p;
      }
    }
    return ::operator new(capacity(c));
  }

  static void give(void* p, std::size_t size) noexcept {
    const std::size_t c = class_of(size);
    if (c < classes) {
      // Poisoned before it is published: once in a slot, another thread may take and unpoison it.
      poison(p, capacity(c));
      for (std::atomic<void*>& s : cache_[c]) {
        void* empty = nullptr;
        if (s.load(std::memory_order_relaxed) == nullptr &&
            s.compare_exchange_strong(empty, p, std::memory_order_release, std::memory_order_relaxed)) {
          return;
        }
      }
      unpoison(p, capacity(c));
    }
    ::operator delete(p);
  }

 private:
  static constexpr std::size_t class_of(std::size_t size) noexcept {
    return size <= smallest ? 0 : static_cast<std::size_t>(std::bit_width(size - 1) - std::bit_width(smallest - 1));
  }
  static constexpr std::size_t capacity(std::size_t c) noexcept { return smallest << c; }

  // ASan cannot see a use after free of a cached block, which is never freed: poisoning it lets it.
  static void poison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(ASYNCDB_DETAIL_ASAN)
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
  }
  static void unpoison([[maybe_unused]] void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(ASYNCDB_DETAIL_ASAN)
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
  }

  static inline constinit std::array<std::array<std::atomic<void*>, slots>, classes> cache_{};
};

// The allocator of operations (std::allocate_shared): stateless, any thread, backed by block_cache.
// Over-aligned types bypass the cache, which holds blocks of operator new's default alignment.
template <class T>
struct op_allocator {
  using value_type = T;

  op_allocator() = default;
  template <class U>
  op_allocator(const op_allocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      return std::allocator<T>().allocate(n);
    } else {
      return static_cast<T*>(block_cache::take(sizeof(T) * n));
    }
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if constexpr (alignof(T) > __STDCPP_DEFAULT_NEW_ALIGNMENT__) {
      std::allocator<T>().deallocate(p, n);
    } else {
      block_cache::give(p, sizeof(T) * n);
    }
  }

  template <class U>
  bool operator==(const op_allocator<U>&) const noexcept {
    return true;
  }
};

// A T in the cache's memory, owned as by a unique_ptr; freed on any thread.
template <class T>
struct op_delete {
  void operator()(T* p) const noexcept {
    p->~T();
    op_allocator<T>().deallocate(p, 1);
  }
};
template <class T>
using op_unique_ptr = std::unique_ptr<T, op_delete<T>>;

template <class T>
op_unique_ptr<T> make_op_unique() {
  op_allocator<T> a;
  T* const p = a.allocate(1);
  try {
    ::new (static_cast<void*>(p)) T();
  } catch (...) {
    a.deallocate(p, 1);
    throw;
  }
  return op_unique_ptr<T>(p);
}

}  // namespace detail
}  // namespace ASYNCDB_FLAVOUR
}  // namespace asyncdb
