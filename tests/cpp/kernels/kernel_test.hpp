// What the kernel tests share: random operands, buffers at chosen misalignments, the wider type the
// scalar oracles compute in, bitwise comparison, and which paths of the products this program runs (the
// dot instructions or the fallbacks). Compiled into each test_kernels_<isa>.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernels/gates.hpp"
#include "plan/plan.hpp"

#define LSTM_FAST_TEST_STRINGIFY_(x) #x
#define LSTM_FAST_TEST_STRINGIFY(x) LSTM_FAST_TEST_STRINGIFY_(x)
// The instruction set this program was compiled for (kernels.cmake): "baseline", "avx2", "avx512".
#define LSTM_FAST_TEST_ISA_NAME LSTM_FAST_TEST_STRINGIFY(LSTM_FAST_TEST_ISA)

namespace lstm_fast::test {

using Index = lstm_fast::Index;
using Precisions = ::testing::Types<float, double>;

// The oracles' type: float is checked against double, double against long double (x87's 64-bit
// mantissa on x86-64).
template <typename T>
using Wide = std::conditional_t<std::is_same_v<T, float>, double, long double>;

template <typename T>
constexpr T kEpsilon = std::numeric_limits<T>::epsilon();

template <typename T>
T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

// n numbers uniform in [lo, hi), the same for the same seed.
template <typename T>
std::vector<T> random_values(Index n, unsigned seed, T lo = T(-1), T hi = T(1)) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<T> uniform(lo, hi);
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x = uniform(gen);
  return v;
}

// A copy of `values` that starts `shift` elements into its storage (storage from std::vector, so
// aligned to at least 16 bytes: shift 1 puts it off every packet boundary). The storage ends with the
// copy, so that AddressSanitizer sees any read past it.
template <typename T>
struct Shifted {
  std::vector<T> storage;
  Index shift;

  Shifted(const std::vector<T>& values, Index shift_) : storage(values.size() + shift_), shift(shift_) {
    std::copy(values.begin(), values.end(), storage.begin() + shift);
  }
  T* data() { return storage.data() + shift; }
  std::vector<T> values() const { return std::vector<T>(storage.begin() + shift, storage.end()); }
};

// Equal bit for bit (NaN payloads and signed zeros included); names the first difference.
template <typename T>
::testing::AssertionResult bitwise_equal(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "sizes " << got.size() << " and " << want.size();
  for (size_t k = 0; k < got.size(); ++k)
    if (std::memcmp(&got[k], &want[k], sizeof(T)) != 0) {
      std::ostringstream s;
      s.precision(std::numeric_limits<T>::max_digits10);
      s << "element " << k << " of " << got.size() << ": " << got[k] << " against " << want[k];
      return ::testing::AssertionFailure() << s.str();
    }
  return ::testing::AssertionSuccess();
}

// The dot instructions this program's products can run (vdpbf16ps, vpdpbusd), decided as the library
// decides them: built for AVX-512 (kernel_table.cpp's kDot: frozen_products.hpp and bf16_training.hpp
// compile their tiles for the instructions alone) and on a CPU that has them (dispatch.cpp's
// dot_instructions()).
inline detail::DotInstructions dot_instructions_here() {
#if defined(__AVX512F__)
  return {__builtin_cpu_supports("avx512bf16") != 0, __builtin_cpu_supports("avx512vnni") != 0};
#else
  return {};
#endif
}

// Whether this program may run AMX instructions: the amx build (tiles.hpp's AmxTiles), on a CPU
// with AMX-TILE, AMX-INT8 and AMX-BF16, in a process the OS gave the tile data state
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), then ARCH_GET_XCOMP_PERM shows it).
inline bool amx_here() {
#if defined(__AMX_TILE__) && defined(__linux__)
  if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-int8") || !__builtin_cpu_supports("amx-bf16"))
    return false;
  constexpr long kGetPermission = 0x1022, kRequestPermission = 0x1023, kTileData = 18;
  unsigned long granted = 0;
  if (syscall(SYS_arch_prctl, kRequestPermission, kTileData) != 0) return false;
  if (syscall(SYS_arch_prctl, kGetPermission, &granted) != 0) return false;
  return (granted >> kTileData) & 1;
#else
  return false;
#endif
}

// Registers the test suite.name, running body(), only where amx_here(): elsewhere it does not exist (a
// skipped test would read as a check that ran); tests/test_cpp.py asks for it on a CPU with AMX.
template <typename Body>
struct AmxTest : ::testing::Test {
  explicit AmxTest(Body b) : body(b) {}
  void TestBody() override { body(); }
  Body body;
};
template <typename Body>
bool register_amx_test(const char* suite, const char* name, Body body) {
  if (!amx_here()) return false;
  ::testing::RegisterTest(suite, name, nullptr, nullptr, __FILE__, __LINE__,
                          [body]() -> ::testing::Test* { return new AmxTest<Body>(body); });
  return true;
}

// The paths of a product to test in-process: its fallback (`dot` false) and, where `dot_here`, its dot
// instruction; a suite instantiated with them is named .../Fallback and .../Dot.
inline std::vector<bool> product_paths(bool dot_here) {
  if (dot_here) return {false, true};
  return {false};
}
inline std::string path_name(const ::testing::TestParamInfo<bool>& info) { return info.param ? "Dot" : "Fallback"; }

}  // namespace lstm_fast::test
