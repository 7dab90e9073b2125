// The tile operations of cpp/src/kernels/tiles.hpp: the emulation against oracles written from the
// instructions' definitions (TDPBSSD: exact int32 sums of s8 x s8; TDPBF16PS: float sums of bf16
// products, pairs in order, denormal inputs and results flushed to zero), at every depth a tile holds
// (4 to 64 bytes a row) and fewer rows than 16; and, where this program may run AMX (amx_here), the
// instructions against the emulation: int8 bit for bit, bf16 within the float sums' bound
// ((K + 2) 2u of sum |a b| + |c|, u = 2^-24: the order of a tile's additions is the unit's).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernel_test.hpp"
#include "kernels/tiles.hpp"
#include "weights/frozen.hpp"

namespace lstm_fast::test {
namespace {

using detail::EmulatedTiles;
using detail::kTileBytes;
using detail::kTileRows;
using detail::TileShape;

// C (tile 0) M x 16 lanes, A (tile 4) M x depth bytes, B (tile 6) depth / 4 rows of 64 bytes.
TileShape shape(Index M, Index depth) {
  TileShape s;
  s.rows[0] = s.rows[4] = static_cast<unsigned char>(M);
  s.bytes[0] = kTileBytes;
  s.bytes[4] = static_cast<std::uint16_t>(depth);
  s.rows[6] = static_cast<unsigned char>(depth / 4);
  s.bytes[6] = kTileBytes;
  return s;
}

std::vector<std::int8_t> random_bytes(Index n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> value(-128, 127);
  std::vector<std::int8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<std::int8_t>(value(gen));
  return v;
}

// C = c0 + A B on tiles of `Tiles` (every operand a 16 x 64-byte array; only the configured part used).
template <typename Tiles, typename Sum, bool kInt8>
std::vector<Sum> run(Index M, Index depth, const void* a, const void* b, const std::vector<Sum>& c0) {
  std::vector<Sum> c = c0;
  Tiles::configure(shape(M, depth));
  Tiles::template load<0>(c.data(), kTileBytes);
  Tiles::template load<4>(a, kTileBytes);
  Tiles::template load<6>(b, kTileBytes);
  if constexpr (kInt8)
    Tiles::template dot_int8<0, 4, 6>();
  else
    Tiles::template dot_bf16<0, 4, 6>();
  Tiles::template store<0>(c.data(), kTileBytes);
  Tiles::release();
  return c;
}

const Index kShapes[][2] = {{16, 64}, {16, 4}, {1, 64}, {5, 36}, {16, 60}, {3, 8}};

TEST(EmulatedTiles, Int8SumsAreTheExactIntegerSums) {
  unsigned seed = 1;
  for (const auto& [M, depth] : kShapes) {
    SCOPED_TRACE(::testing::Message() << "M " << M << ", depth " << depth);
    const auto a = random_bytes(kTileRows * kTileBytes, seed++), b = random_bytes(kTileRows * kTileBytes, seed++);
    std::vector<std::int32_t> c0(kTileRows * 16);
    for (auto& x : c0) x = static_cast<std::int32_t>(seed++ * 2654435761u % 100000) - 50000;
    const auto got = run<EmulatedTiles, std::int32_t, true>(M, depth, a.data(), b.data(), c0);
    std::vector<std::int32_t> want = c0;
    for (Index m = 0; m < M; ++m)
      for (Index n = 0; n < 16; ++n)
        for (Index k = 0; k < depth; ++k)
          want[m * 16 + n] +=
              std::int32_t(a[m * kTileBytes + k]) * std::int32_t(b[(k / 4) * kTileBytes + 4 * n + k % 4]);
    ASSERT_TRUE(bitwise_equal(got, want));  // (the rows past M: never stored, as they were)
  }
}

std::vector<std::uint16_t> random_bf16(Index n, unsigned seed) {
  const std::vector<float> v = random_values<float>(n, seed);
  std::vector<std::uint16_t> out;
  for (float x : v) out.push_back(detail::to_bf16(x));
  return out;
}

TEST(EmulatedTiles, Bf16SumsAddThePairsInOrder) {
  unsigned seed = 1;
  for (const auto& [M, depth] : kShapes) {
    SCOPED_TRACE(::testing::Message() << "M " << M << ", depth " << depth);
    const auto a = random_bf16(kTileRows * 32, seed++), b = random_bf16(kTileRows * 32, seed++);
    const std::vector<float> c0 = random_values<float>(kTileRows * 16, seed++);
    const auto got = run<EmulatedTiles, float, false>(M, depth, a.data(), b.data(), c0);
    std::vector<float> want = c0;
    for (Index m = 0; m < M; ++m)
      for (Index n = 0; n < 16; ++n)
        for (Index k = 0; k < depth / 2; ++k)  // (bf16 products are exact in float: one rounding an addition)
          want[m * 16 + n] += detail::from_bf16(a[m * 32 + k]) * detail::from_bf16(b[(k / 2) * 32 + 2 * n + k % 2]);
    ASSERT_TRUE(bitwise_equal(got, want));
  }
}

TEST(EmulatedTiles, Bf16FlushesDenormalInputsAndResults) {
  std::vector<std::uint16_t> a(kTileRows * 32, 0), b(kTileRows * 32, 0);
  a[0] = 0x0001;  // a denormal bf16: read as 0
  b[0] = 0x3f80;  // 1
  a[1] = 0x0080;  // 2^-126, the smallest normal
  b[1] = 0x3f00;  // 0.5: the product 2^-127 is denormal, flushed
  std::vector<float> c0(kTileRows * 16, 0.0f);
  const auto got = run<EmulatedTiles, float, false>(1, 4, a.data(), b.data(), c0);
  EXPECT_EQ(got[0], 0.0f);
}

// ---- the instructions against the emulation ------------------------------------------------------

#if defined(__AMX_TILE__)
void amx_agrees_with_the_emulation() {
  unsigned seed = 1;
  for (const auto& [M, depth] : kShapes) {
    SCOPED_TRACE(::testing::Message() << "M " << M << ", depth " << depth);
    const auto a = random_bytes(kTileRows * kTileBytes, seed++), b = random_bytes(kTileRows * kTileBytes, seed++);
    const std::vector<std::int32_t> c0(kTileRows * 16, 7);
    ASSERT_TRUE(bitwise_equal(run<detail::AmxTiles, std::int32_t, true>(M, depth, a.data(), b.data(), c0),
                              run<EmulatedTiles, std::int32_t, true>(M, depth, a.data(), b.data(), c0)));
    const auto a16 = random_bf16(kTileRows * 32, seed++), b16 = random_bf16(kTileRows * 32, seed++);
    const std::vector<float> f0 = random_values<float>(kTileRows * 16, seed++);
    const auto got = run<detail::AmxTiles, float, false>(M, depth, a16.data(), b16.data(), f0);
    const auto want = run<EmulatedTiles, float, false>(M, depth, a16.data(), b16.data(), f0);
    for (Index m = 0; m < M; ++m)
      for (Index n = 0; n < 16; ++n) {
        double magnitude = std::abs(f0[m * 16 + n]);
        for (Index k = 0; k < depth / 2; ++k)
          magnitude += std::abs(double(detail::from_bf16(a16[m * 32 + k])) *
                                detail::from_bf16(b16[(k / 2) * 32 + 2 * n + k % 2]));
        const double bound = double(depth / 2 + 2) * 2 * kEpsilon<float> * magnitude;
        ASSERT_LE(std::abs(double(got[m * 16 + n]) - want[m * 16 + n]), bound) << "row " << m << ", lane " << n;
      }
  }
}
const bool kOnAmx = register_amx_test("AmxTiles", "AgreeWithTheEmulation", amx_agrees_with_the_emulation);
#endif

}  // namespace
}  // namespace lstm_fast::test
