// Compiled WITHOUT the instruction set's flags, into each test_kernels_<isa>: before anything built
// with those flags runs (the static initialisers that register the tests included), checks that this
// CPU has the set, as cpp/src/cell/dispatch.cpp does; if not, says so and exits 77, which ctest
// (SKIP_RETURN_CODE) and tests/test_cpp.py report as a skip with this message.
// LSTM_FAST_TEST_CPU_LACKS=<isa> pretends the CPU lacks that set, so the skip can be tested anywhere.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <unistd.h>  // _exit

#define LSTM_FAST_STRINGIFY_(x) #x
#define LSTM_FAST_STRINGIFY(x) LSTM_FAST_STRINGIFY_(x)

namespace {

bool cpu_has(const char* isa) {
#if defined(__x86_64__) || defined(__i386__)
  if (std::strcmp(isa, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (std::strcmp(isa, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
#endif
  return std::strcmp(isa, "baseline") == 0;
}

// Priority 101: before the default-priority initialisers of every translation unit of the program.
__attribute__((constructor(101))) void skip_unless_the_cpu_has_the_isa() {
  const char* isa = LSTM_FAST_STRINGIFY(LSTM_FAST_TEST_ISA);
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();  // constructors may run before libgcc's own initialisation of the CPU model
#endif
  const char* pretend = std::getenv("LSTM_FAST_TEST_CPU_LACKS");
  if (cpu_has(isa) && !(pretend && std::strcmp(pretend, isa) == 0)) return;
  std::printf("SKIPPED: the kernel tests for %s need a CPU with that instruction set; this one lacks it\n", isa);
  std::fflush(stdout);
  _exit(77);
}

}  // namespace
