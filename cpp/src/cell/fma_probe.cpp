// The FMA throughput probe behind fma_peak_gflops (dispatch.cpp; compiled once per ISA:
// cell_kernel.hpp): independent chains of this ISA's widest float multiply-add.
#include <chrono>

#include "cell/cell_kernel.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {

double fma_throughput(double seconds) {
  using S = Simd<float>;
  constexpr int kChains = 12;  // more independent chains than FMA latency x ports, so throughput binds
  typename S::Packet acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = S::set1(1e-3f * float(i));
  const auto a = S::set1(0.999999f), b = S::set1(1e-7f);
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  long long rounds = 0;
  do {
    for (int r = 0; r < 4096; ++r)
      for (int i = 0; i < kChains; ++i) acc[i] = S::madd(acc[i], a, b);
    rounds += 4096;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < seconds);
  float lanes[S::kWidth];
  float sum = 0.0f;
  for (int i = 0; i < kChains; ++i) {
    S::store(lanes, acc[i]);
    for (Index k = 0; k < S::kWidth; ++k) sum += lanes[k];
  }
  static volatile float sink;  // keeps the loop from being optimised away
  sink = sum;
  return double(rounds) * kChains * S::kWidth * 2.0 / elapsed / 1e9;
}

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
