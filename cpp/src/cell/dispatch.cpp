// Runtime ISA dispatch: the cell kernels are compiled for each instruction set of cmake/isas.cmake's list
// that the platform builds, given here by the header CMake generates from it (cell/isas.hpp in the build
// folder: LSTM_FAST_FOR_EACH_ISA, worst first, with what the CPU must have to run each); the best one
// this CPU runs is chosen on first use, unless the environment variable LSTM_FAST_ISA names another;
// and the dot-product instructions beyond it that the CPU has (AVX512_BF16, AVX512_VNNI, the AMX tiles of
// the amx set), which the plan hands the products.
#include <atomic>
#include <cstdlib>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <string>
#include <thread>
#include <vector>

#include "cell/cell.hpp"
#include "cell/isas.hpp"
#include "lstm_fast/config.hpp"

// Each build's table (kernel_table.cpp, compiled once per set in the set's namespace).
#define LSTM_FAST_DECLARE_TABLE(name, cpu_has) \
  namespace lstm_fast::detail::name {          \
  extern const KernelTable kernel_table;       \
  }
LSTM_FAST_FOR_EACH_ISA(LSTM_FAST_DECLARE_TABLE)
#undef LSTM_FAST_DECLARE_TABLE

namespace lstm_fast {
namespace detail {
// Linux hands a process the AMX tile data state (XTILEDATA, XCR0 bit 18) only when asked
// (arch_prctl(ARCH_REQ_XCOMP_PERM), Linux 5.16 and later); before that a tile instruction is SIGILL. Asked
// once, only where CPUID has shown AMX (cmake/isas.cmake's amx set, whose test calls this last); a refusal
// (an older kernel, a container or hypervisor forbidding it) leaves the amx set unsupported.
bool tile_data_permitted() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  static const bool permitted = [] {
    constexpr long kGetPermission = 0x1022, kRequestPermission = 0x1023, kTileData = 18;
    unsigned long granted = 0;
    if (syscall(SYS_arch_prctl, kRequestPermission, kTileData) != 0) return false;
    if (syscall(SYS_arch_prctl, kGetPermission, &granted) != 0) return false;
    return ((granted >> kTileData) & 1) != 0;
  }();
  return permitted;
#else
  return false;
#endif
}
}  // namespace detail

namespace {

struct Candidate {
  const detail::KernelTable* table;
  bool (*cpu_has)();
};

#define LSTM_FAST_CPU_HAS(name, cpu_has) \
  bool cpu_has_##name() { return cpu_has; }
LSTM_FAST_FOR_EACH_ISA(LSTM_FAST_CPU_HAS)
#undef LSTM_FAST_CPU_HAS

// Compiled instruction sets, worst first.
const std::vector<Candidate>& compiled() {
#define LSTM_FAST_CANDIDATE(name, cpu_has) {&detail::name::kernel_table, &cpu_has_##name},
  static const std::vector<Candidate> list = {LSTM_FAST_FOR_EACH_ISA(LSTM_FAST_CANDIDATE)};
#undef LSTM_FAST_CANDIDATE
  return list;
}

const detail::KernelTable* find_supported(const std::string& name) {
  for (const Candidate& c : compiled())
    if (name == c.table->isa && c.cpu_has()) return c.table;
  return nullptr;
}

std::string supported_list() {
  std::string s;
  for (const std::string& name : supported_isas()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

const detail::KernelTable* initial_choice() {
  if (const char* forced = std::getenv("LSTM_FAST_ISA"); forced && *forced) {
    if (const detail::KernelTable* table = find_supported(forced)) return table;
    throw Error(std::string("the environment variable LSTM_FAST_ISA must name an instruction set this build and ") +
                "CPU support (" + supported_list() + "), got '" + forced + "'");
  }
  const detail::KernelTable* best = compiled().front().table;
  for (const Candidate& c : compiled())
    if (c.cpu_has()) best = c.table;
  return best;
}

std::atomic<const detail::KernelTable*> g_active{nullptr};

// Whether the dot instructions may be used: -1 until first asked (then the environment's answer).
std::atomic<int> g_dot_allowed{-1};
std::atomic<bool> g_tiles_emulated{false};  // emulate_tiles()

}  // namespace

namespace detail {
const KernelTable& active_kernels() {
  const KernelTable* table = g_active.load(std::memory_order_acquire);
  if (!table) {
    table = initial_choice();  // throws on a bad LSTM_FAST_ISA, every time until it is fixed
    g_active.store(table, std::memory_order_release);
  }
  return *table;
}

DotInstructions dot_instructions() {
  int allowed = g_dot_allowed.load(std::memory_order_acquire);
  if (allowed < 0) {
    allowed = std::getenv("LSTM_FAST_NO_DOT_INSTRUCTIONS") ? 0 : 1;
    int unset = -1;
    g_dot_allowed.compare_exchange_strong(unset, allowed);
    allowed = g_dot_allowed.load(std::memory_order_acquire);
  }
  const DotInstructions built = active_kernels().dot;
  // (The amx set's table is active only where its CPU test, the OS's permission included, passed.)
  const TileUnit tiles = g_tiles_emulated.load(std::memory_order_acquire) ? TileUnit::emulated : built.tiles;
  return {allowed && built.bf16 && __builtin_cpu_supports("avx512bf16"),
          allowed && built.int8 && __builtin_cpu_supports("avx512vnni"), allowed ? tiles : TileUnit::none};
}

void allow_dot_instructions(bool allowed) { g_dot_allowed.store(allowed ? 1 : 0, std::memory_order_release); }
void emulate_tiles(bool emulated) { g_tiles_emulated.store(emulated, std::memory_order_release); }
}  // namespace detail

std::string isa() { return detail::active_kernels().isa; }

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const Candidate& c : compiled())
    if (c.cpu_has()) names.push_back(c.table->isa);
  return names;
}

void set_isa(const std::string& name) {
  const detail::KernelTable* table = find_supported(name);
  if (!table)
    throw Error("isa must be one of this build's and CPU's instruction sets (" + supported_list() + "), got '" + name +
                "'");
  g_active.store(table, std::memory_order_release);
}

namespace {

// Runs measure() on `threads` threads at once and sums their rates.
template <typename Measure>
double on_threads(double seconds, int threads, const Measure& measure) {
  if (!(seconds > 0.0 && seconds <= 60.0)) throw Error("seconds must be in (0, 60], got " + std::to_string(seconds));
  if (threads < 1 || threads > kMaxThreads)
    throw Error("threads must be in [1, " + std::to_string(kMaxThreads) + "], got " + std::to_string(threads));
  std::vector<double> rates(static_cast<size_t>(threads), 0.0);
  std::vector<std::thread> others;
  for (int k = 1; k < threads; ++k) others.emplace_back([&, k] { rates[k] = measure(); });
  rates[0] = measure();
  for (std::thread& t : others) t.join();
  double total = 0.0;
  for (double r : rates) total += r;
  return total;
}

}  // namespace

double fma_peak_gflops(double seconds, int threads) {
  const detail::FmaThroughput measure = detail::active_kernels().fma_throughput;
  return on_threads(seconds, threads, [&] { return measure(seconds); });
}

double dot_peak_gops(Precision precision, double seconds, int threads) {
  if (precision == Precision::fp32) return fma_peak_gflops(seconds, threads);
  const detail::DotThroughput measure = detail::active_kernels().dot_throughput;
  const detail::DotInstructions dot = detail::dot_instructions();
  return on_threads(seconds, threads, [&] { return measure(precision, dot, seconds); });
}

}  // namespace lstm_fast
