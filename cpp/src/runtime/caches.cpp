// Cache sizes from /sys/devices/system/cpu/cpu0/cache/index*/ (level, type, size: "48K"), else sysconf.
#include "runtime/caches.hpp"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>

#if defined(__linux__)
#include <unistd.h>
#endif

namespace lstm_fast::detail {
namespace {

// Bytes from sysfs's "512K" / "2M" / "32768", 0 when unreadable.
std::size_t parse_size(const std::string& text) {
  std::size_t end = 0;
  unsigned long value = 0;
  try {
    value = std::stoul(text, &end);
  } catch (...) {
    return 0;
  }
  const char unit = end < text.size() ? text[end] : ' ';
  return value * (unit == 'K' ? 1024UL : unit == 'M' ? 1024UL * 1024 : 1UL);
}

CacheSizes from_sysfs() {
  CacheSizes sizes;
  for (int index = 0; index < 8; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
    int level = 0;
    std::string type, size;
    if (!(level_file >> level && type_file >> type && size_file >> size)) continue;
    if (level == 1 && type == "Data") sizes.l1d = parse_size(size);
    if (level == 2 && (type == "Unified" || type == "Data")) sizes.l2 = parse_size(size);
  }
  return sizes;
}

CacheSizes read_machine() {
  CacheSizes sizes = from_sysfs();
#if defined(__linux__) && defined(_SC_LEVEL2_CACHE_SIZE)
  if (!sizes.l1d) sizes.l1d = static_cast<std::size_t>(std::max(0L, sysconf(_SC_LEVEL1_DCACHE_SIZE)));
  if (!sizes.l2) sizes.l2 = static_cast<std::size_t>(std::max(0L, sysconf(_SC_LEVEL2_CACHE_SIZE)));
#endif
  if (!sizes.l1d) sizes.l1d = kDefaultCacheSizes.l1d;
  if (!sizes.l2) sizes.l2 = kDefaultCacheSizes.l2;
  return sizes;
}

std::atomic<std::size_t> g_test_l1d{0}, g_test_l2{0};

}  // namespace

CacheSizes cache_sizes() {
  static const CacheSizes machine = read_machine();
  const CacheSizes test{g_test_l1d.load(std::memory_order_acquire), g_test_l2.load(std::memory_order_acquire)};
  return test.l2 ? test : machine;
}

void set_cache_sizes_for_test(CacheSizes sizes) {
  g_test_l1d.store(sizes.l1d, std::memory_order_release);
  g_test_l2.store(sizes.l2, std::memory_order_release);
}

}  // namespace lstm_fast::detail
