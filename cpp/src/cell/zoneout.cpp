// Zoneout's training masks (zoneout.hpp): a splitmix64 stream per packed row.
#include "cell/zoneout.hpp"

#include <cmath>

namespace lstm_fast {
namespace {

// splitmix64 (Steele, Lea & Flood 2014): a counter's 64 mixed bits.
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// n numbers of d, 1 where a 24-bit uniform is below `threshold`, two from each of the stream's draws.
template <typename T>
void bernoulli_row(std::uint64_t& stream, Index n, std::uint32_t threshold, T* d) {
  for (Index k = 0; k < n; k += 2) {
    const std::uint64_t bits = splitmix64(stream++);
    d[k] = T((bits >> 40) < threshold);
    if (k + 1 < n) d[k + 1] = T(((bits >> 8) & 0xffffffu) < threshold);
  }
}

}  // namespace

template <typename T>
void zoneout_masks(std::uint64_t seed, Index cell, Index row0, Index row1, Index R, Index H, double z_h, double z_c,
                   T* d_h, T* d_c) {
  auto threshold = [](double z) { return static_cast<std::uint32_t>(std::llround(z * 16777216.0)); };
  const std::uint64_t cell_seed = splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(cell)));
  for (Index row = row0; row < row1; ++row) {
    std::uint64_t stream = splitmix64(cell_seed ^ static_cast<std::uint64_t>(row)) << 20;
    bernoulli_row(stream, R, threshold(z_h), d_h + (row - row0) * R);
    bernoulli_row(stream, H, threshold(z_c), d_c + (row - row0) * H);
  }
}

template void zoneout_masks<float>(std::uint64_t, Index, Index, Index, Index, Index, double, double, float*, float*);
template void zoneout_masks<double>(std::uint64_t, Index, Index, Index, Index, Index, double, double, double*, double*);

}  // namespace lstm_fast
