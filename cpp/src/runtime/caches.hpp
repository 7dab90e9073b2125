// The data caches of the CPU the library runs on, read once from the OS (Linux sysfs, then glibc's
// sysconf), for the plan's size rules that change no result (plan.cpp: which split a team takes).
// Tests set other sizes in-process, as if on another machine.
#pragma once

#include <cstddef>

namespace lstm_fast::detail {

struct CacheSizes {
  std::size_t l1d = 0;  // bytes of level-1 data cache a core
  std::size_t l2 = 0;   // bytes of level-2 cache a core (unified)
};

// Where the OS says nothing: a core of the AMD EPYC the plan's constants were measured on.
constexpr CacheSizes kDefaultCacheSizes{32 << 10, 512 << 10};

// This machine's sizes (read at the first call), or the ones set_cache_sizes_for_test gave.
CacheSizes cache_sizes();

// For tests, process-wide: plan as if the caches had these sizes; {0, 0} gives back the machine's.
void set_cache_sizes_for_test(CacheSizes sizes);

}  // namespace lstm_fast::detail
