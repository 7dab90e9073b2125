// Memory for traces and workspaces (internal: not installed). Training allocates tens of megabytes
// per call (the trace, dZ); fresh pages from the system cost a page fault each (docs/PERFORMANCE.md).
// Blocks of kRecycledMinBytes and more are therefore recycled by the library: a freed block goes to a
// bounded cache (at most 64 blocks, 1 GiB) that later calls take from, best fit. Memory comes
// uninitialised, 64-byte aligned. Thread-safe. workspace_release() returns the cached blocks to the
// system.
#pragma once

#include <cstddef>
#include <new>
#include <utility>
#include <vector>

namespace lstm_fast {

namespace detail {
// Blocks from this size on are cached (workspace.cpp); the bindings' outputs from this size on use them.
constexpr std::size_t kRecycledMinBytes = std::size_t(64) << 10;
void* workspace_allocate(std::size_t bytes);  // throws std::bad_alloc
void workspace_free(void* block, std::size_t bytes) noexcept;
}  // namespace detail
void workspace_release() noexcept;
std::size_t workspace_cached_bytes() noexcept;  // what the cache holds now

template <typename T>
struct WorkspaceAllocator {
  using value_type = T;
  WorkspaceAllocator() = default;
  template <typename U>
  WorkspaceAllocator(const WorkspaceAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(detail::workspace_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { detail::workspace_free(p, n * sizeof(T)); }
  // resize() default-initialises (no zero fill): every buffer is written before it is read.
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U>
  bool operator==(const WorkspaceAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const WorkspaceAllocator<U>&) const noexcept {
    return false;
  }
};
template <typename T>
using Buffer = std::vector<T, WorkspaceAllocator<T>>;

// Storage that starts on a cache line, value-initialised as std::vector's: packed weights, read by
// 64-byte vector loads at every step, so that no load spans two lines (malloc gives 16 bytes).
template <typename T>
struct LineAllocator {
  using value_type = T;
  LineAllocator() = default;
  template <typename U>
  LineAllocator(const LineAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete (p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const LineAllocator<U>&) const noexcept {
    return true;
  }
  template <typename U>
  bool operator!=(const LineAllocator<U>&) const noexcept {
    return false;
  }
};
template <typename T>
using LineVector = std::vector<T, LineAllocator<T>>;

}  // namespace lstm_fast
