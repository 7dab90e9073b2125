// The recycled memory behind Buffer<T> (workspace.hpp): traces and [N, *] workspaces.
//
// Why: a training step of a small model allocates ~20 MB (trace, dZ) and frees it at backward. From
// the system, every fresh 4 KiB page costs a page fault and a zero fill, a third of a small model's
// training step (docs/PERFORMANCE.md). Recycling the blocks makes the next call's memory already
// mapped.
//
// Each block carries a 64-byte header with its capacity, so a block can serve any request up to
// its size. Blocks under kRecycledMinBytes (workspace.hpp) go straight back to the system (malloc serves
// those well).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <vector>

#include "runtime/workspace.hpp"

// Under AddressSanitizer a cached block is poisoned, and a reused one unpoisoned only up to the
// request: a use after free, or a read past the request inside a larger block, is still reported.
#if defined(__SANITIZE_ADDRESS__)
#define LSTM_FAST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LSTM_FAST_ASAN 1
#endif
#endif
#ifdef LSTM_FAST_ASAN
#include <sanitizer/asan_interface.h>
#define LSTM_FAST_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define LSTM_FAST_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define LSTM_FAST_POISON(p, n) ((void)(p), (void)(n))
#define LSTM_FAST_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace lstm_fast {
namespace {

constexpr std::size_t kAlign = 64;       // a cache line, and AVX-512's packet
constexpr std::size_t kHeader = kAlign;  // keeps the payload aligned
constexpr std::size_t kMaxCachedBytes = std::size_t(1) << 30;
// A training call of a layer-normalised two-layer stack frees some 30 blocks (trace, workspaces, outputs).
constexpr std::size_t kMaxCachedBlocks = 64;

struct Cache {
  std::mutex mutex;
  std::vector<unsigned char*> blocks;  // free blocks (header pointers), oldest first
  std::size_t bytes = 0;               // their capacities' sum
};

Cache& cache() {
  static Cache* instance = new Cache;  // never destroyed: threads may free blocks during exit
  return *instance;
}

std::size_t capacity(const unsigned char* block) { return *reinterpret_cast<const std::size_t*>(block); }

void release(unsigned char* block) {
  LSTM_FAST_UNPOISON(block + kHeader, capacity(block));
  ::operator delete(block, std::align_val_t(kAlign));
}

}  // namespace

namespace detail {

void* workspace_allocate(std::size_t bytes) {
  if (bytes > (std::size_t(-1) >> 1)) throw std::bad_alloc();
  if (bytes >= detail::kRecycledMinBytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    // Best fit among blocks no more than twice the request (a huge block is not spent on a small need).
    auto best = c.blocks.end();
    for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it) {
      const std::size_t cap = capacity(*it);
      if (cap >= bytes && cap / 2 <= bytes && (best == c.blocks.end() || cap < capacity(*best))) best = it;
    }
    if (best != c.blocks.end()) {
      unsigned char* block = *best;
      c.bytes -= capacity(block);
      c.blocks.erase(best);
      LSTM_FAST_UNPOISON(block + kHeader, bytes);
      return block + kHeader;
    }
  }
  auto* block = static_cast<unsigned char*>(::operator new(bytes + kHeader, std::align_val_t(kAlign)));
  *reinterpret_cast<std::size_t*>(block) = bytes;
  return block + kHeader;
}

void workspace_free(void* payload, std::size_t) noexcept {
  if (!payload) return;
  unsigned char* block = static_cast<unsigned char*>(payload) - kHeader;
  const std::size_t cap = capacity(block);
  if (cap < detail::kRecycledMinBytes || cap > kMaxCachedBytes) return release(block);
  {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    try {
      c.blocks.push_back(block);
    } catch (...) {  // no memory for the list itself: give the block back instead
      release(block);
      return;
    }
    c.bytes += cap;
    LSTM_FAST_POISON(payload, cap);
    while (c.bytes > kMaxCachedBytes || c.blocks.size() > kMaxCachedBlocks) {  // oldest out
      c.bytes -= capacity(c.blocks.front());
      release(c.blocks.front());
      c.blocks.erase(c.blocks.begin());
    }
  }
}

}  // namespace detail

void workspace_release() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (unsigned char* block : c.blocks) release(block);
  c.blocks.clear();
  c.bytes = 0;
}

std::size_t workspace_cached_bytes() noexcept {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

}  // namespace lstm_fast
