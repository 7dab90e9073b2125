// The multiply-add throughput of the instructions the frozen products run on (compiled once per ISA,
// like fma_probe.cpp): the peaks the benchmark's bf16 and int8 fractions are of.
#include <chrono>

#include "cell/cell_kernel.hpp"
#include "weights/frozen.hpp"
#include "kernels/frozen_products.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {

namespace {

// Seconds since start.
inline double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

#if defined(__AVX512F__)
constexpr int kChains = 12;  // more independent chains than latency x ports

// kChains chains of vpdpbusd for about `seconds`: GOP/s, a multiply-add counting 2. (The loops are
// written out in each function: a lambda would not inherit the function's target.)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) double vnni_throughput(double seconds) {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-2);
  const auto start = std::chrono::steady_clock::now();
  long long rounds = 0;
  do {
    for (int r = 0; r < 4096; ++r)
      for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, w);
    rounds += 4096;
  } while (since(start) < seconds);
  const double rate = double(rounds) * kChains * 64 * 2.0 / since(start) / 1e9;
  for (int i = 1; i < kChains; ++i) acc[0] = _mm512_add_epi32(acc[0], acc[i]);
  static volatile int sink;  // keeps the loop
  sink = _mm512_reduce_add_epi32(acc[0]);
  return rate;
}

// The same with vdpbf16ps (32 multiply-adds an instruction).
__attribute__((target("avx512f,avx512bw,avx512bf16"))) double bf16_dot_throughput(double seconds) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  const __m512i a = _mm512_set1_epi16(0x3f80), w = _mm512_set1_epi16(0x3c00);  // 1.0, 2^-7
  const auto start = std::chrono::steady_clock::now();
  long long rounds = 0;
  do {
    for (int r = 0; r < 4096; ++r)
      for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], (__m512bh)a, (__m512bh)w);
    rounds += 4096;
  } while (since(start) < seconds);
  const double rate = double(rounds) * kChains * 32 * 2.0 / since(start) / 1e9;
  for (int i = 1; i < kChains; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  static volatile float sink;
  sink = _mm512_reduce_add_ps(acc[0]);
  return rate;
}
#endif

}  // namespace

// The multiply-add throughput of the instruction the frozen products of precision p run on this ISA
// and CPU (vpdpbusd, vdpbf16ps where `dot` has them; else the AVX2 sequences; baseline: the plain C++ block kernel on
// weights in L1), in GOP/s: the peak the benchmark's bf16 and int8 fractions are of.
double dot_throughput(Precision p, [[maybe_unused]] const DotInstructions& dot, double seconds) {
#if defined(__AVX512F__)
  if (p == Precision::int8 && dot.int8) return vnni_throughput(seconds);
  if (p == Precision::bf16 && dot.bf16) return bf16_dot_throughput(seconds);
#endif
  // The block kernels, 4 rows by a block of 16 columns and depth 256 that stays in L1.
  alignas(64) static std::int8_t q[4 * 256], w8[16 * 256];
  alignas(64) static std::uint16_t b16[4 * 256], w16[16 * 256];
  alignas(64) std::int32_t sums[4 * kFrozenBlock] = {};
  alignas(64) float fsums[4 * kFrozenBlock] = {};
  const auto start = std::chrono::steady_clock::now();
  long long blocks = 0;
  do {
    for (int k = 0; k < 64; ++k) {
      if (p == Precision::int8)
        int8_block(4, q, 256, w8, 64, sums);
      else
        bf16_block(4, b16, 256, w16, 128, fsums);
    }
    blocks += 64;
  } while (since(start) < seconds);
  const double rate = double(blocks) * 4 * kFrozenBlock * 256 * 2.0 / since(start) / 1e9;
  static volatile float sink;
  sink = float(sums[0]) + fsums[0];
  return rate;
}

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
