// The frozen models' products on tiles (cpp/src/kernels/tile_products.hpp), on the emulated tiles on
// every instruction set and on the AMX instructions where this program may run them (amx_here), against
// the products they stand in for (frozen_products.hpp's, their fallback paths, themselves tested against
// oracles in test_frozen_products.cpp): int8 bit for bit (exact int32 sums, then the same IEEE
// operations); bf16 against the float sums in double, within (K + 2) 2u of sum |a w| + |c|, u = 2^-24.
// Shapes: rows 1, 3, 15, 16, 17, 33 (tiles of 16 and the copied partial tile); output columns 1, 17, 64,
// 65, 100 (groups of up to 4 blocks and their tails) in 1 or 4 parts; depths 1, 6, 63, 64, 65, 130, 256
// (chunks of 64 bytes and a tail of every size); written, plus a bias, accumulated, over all blocks and
// a range from the middle.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernel_test.hpp"
#include "kernels/tile_products.hpp"

namespace lstm_fast::test {
namespace {

using detail::FrozenMatrix;
using detail::Output;

struct Shape {
  Index rows, n, K, parts;
};

std::vector<Shape> shapes() {
  std::vector<Shape> s;
  for (Index rows : {1, 3, 15, 16, 17, 33})
    for (Index n : {1, 17, 64, 65, 100})
      for (Index K : {1, 6, 63, 64, 65, 130, 256}) s.push_back({rows, n, K, 1});
  for (Index K : {6, 130}) s.push_back({17, 4 * 33, K, 4});
  return s;
}

// Every mode and range of blocks: out (+)= the product into z [rows, n + 3], by `product` and by
// `reference`, compared by `same(got, want, r, j, c)`, c what the mode adds to the product (0, the bias, z).
template <typename Product, typename Reference, typename Same>
::testing::AssertionResult agree(const FrozenMatrix& W, Index rows, unsigned seed, const Product& product,
                                 const Reference& reference, const Same& same) {
  const Index ldz = W.n + 3;
  const std::vector<float> z0 = random_values<float>(rows * ldz, seed), bias = random_values<float>(W.n, seed + 1);
  std::vector<std::pair<Index, Index>> ranges = {{0, W.blocks()}};
  if (W.blocks() >= 3) ranges.push_back({1, W.blocks() - 1});
  for (const auto& [b0, b1] : ranges)
    for (int mode = 0; mode < 3; ++mode) {
      std::vector<float> got = z0, want = z0;
      product(b0, b1, Output{got.data(), ldz, mode == 1 ? bias.data() : nullptr, mode == 2});
      reference(b0, b1, Output{want.data(), ldz, mode == 1 ? bias.data() : nullptr, mode == 2});
      for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < ldz; ++j)
          if (auto ok = same(got[r * ldz + j], want[r * ldz + j], r, j,
                             mode == 0              ? 0.0f
                             : mode == 1 && j < W.n ? bias[j]
                                                    : z0[r * ldz + j]);
              !ok)
            return ok << " (row " << r << ", column " << j << ", blocks [" << b0 << ", " << b1 << "), mode " << mode
                      << ")";
    }
  return ::testing::AssertionSuccess();
}

::testing::Message describe(const Shape& s) {
  return ::testing::Message() << "rows " << s.rows << ", n " << s.n << " in " << s.parts << " parts, K " << s.K;
}

template <typename Tiles>
void int8_products_agree() {
  unsigned seed = 1;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    std::mt19937 gen(seed++);
    std::uniform_int_distribution<int> value(-127, 127);
    const Index lda = (s.K + 3) / 4 * 4 + 5;  // zero to the whole group, garbage after
    std::vector<std::int8_t> a(static_cast<size_t>(s.rows * lda), std::int8_t(0x55)), w;
    for (Index r = 0; r < s.rows; ++r)
      for (Index k = 0; k < (s.K + 3) / 4 * 4; ++k) a[r * lda + k] = k < s.K ? std::int8_t(value(gen)) : 0;
    for (Index k = 0; k < s.n * s.K; ++k) w.push_back(std::int8_t(value(gen)));
    const std::vector<float> sa = random_values<float>(s.rows, seed, 1e-3f, 5e-2f),
                             sw = random_values<float>(s.n, seed + 1, 1e-3f, 5e-2f);
    const FrozenMatrix W = detail::freeze_int8(w.data(), sw.data(), s.n, s.K, s.parts);
    ASSERT_TRUE(agree(
        W, s.rows, seed,
        [&](Index b0, Index b1, const Output& out) {
          detail::int8_tile_product<Tiles>(s.rows, a.data(), lda, sa.data(), W, b0, b1, out);
        },
        [&](Index b0, Index b1, const Output& out) {
          detail::int8_product(s.rows, a.data(), lda, sa.data(), W, b0, b1, out, false);
        },
        [](float got, float want, Index, Index, float) { return bitwise_equal(std::vector<float>{got}, {want}); }));
  }
}

template <typename Tiles>
void bf16_products_agree() {
  unsigned seed = 1;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    const Index lda = (s.K + 1) / 2 * 2 + 3;  // zero to the whole pair, NaN after: never read
    const std::vector<float> av = random_values<float>(s.rows * s.K, seed),
                             wv = random_values<float>(s.n * s.K, seed + 1);
    std::vector<std::uint16_t> a(static_cast<size_t>(s.rows * lda), std::uint16_t(0x7fc0)), w;
    for (Index r = 0; r < s.rows; ++r)
      for (Index k = 0; k < (s.K + 1) / 2 * 2; ++k) a[r * lda + k] = k < s.K ? detail::to_bf16(av[r * s.K + k]) : 0;
    for (float v : wv) w.push_back(detail::to_bf16(v));
    const FrozenMatrix W = detail::freeze_bf16(w.data(), s.n, s.K, s.parts);
    ASSERT_TRUE(agree(
        W, s.rows, seed++,
        [&](Index b0, Index b1, const Output& out) {
          detail::bf16_tile_product<Tiles>(s.rows, a.data(), lda, W, b0, b1, out);
        },
        [&](Index b0, Index b1, const Output& out) {
          detail::bf16_product(s.rows, a.data(), lda, W, b0, b1, out, false);
        },
        [&](float got, float want, Index r, Index j, float c) -> ::testing::AssertionResult {
          if (j >= s.n) return bitwise_equal(std::vector<float>{got}, {want});
          double magnitude = std::abs(c);  // each within (K + 2) 2u of the exact sum: the two within twice that
          for (Index k = 0; k < s.K; ++k)
            magnitude += std::abs(double(detail::from_bf16(a[r * lda + k])) * detail::from_bf16(w[j * s.K + k]));
          const double bound = 2 * double(s.K + 2) * 2 * kEpsilon<float> * magnitude;
          if (std::abs(double(got) - want) <= bound) return ::testing::AssertionSuccess();
          return ::testing::AssertionFailure() << got << " against " << want << ", bound " << bound;
        }));
  }
}

TEST(TileProducts, Int8OnTheEmulatedTilesIsBitForBitTheOtherPaths) { int8_products_agree<detail::EmulatedTiles>(); }
TEST(TileProducts, Bf16OnTheEmulatedTilesIsTheFloatSum) { bf16_products_agree<detail::EmulatedTiles>(); }

#if defined(__AMX_TILE__)
const bool kOnAmx = register_amx_test("TileProducts", "OnTheAmxInstructions", [] {
  int8_products_agree<detail::AmxTiles>();
  bf16_products_agree<detail::AmxTiles>();
});
#endif

}  // namespace
}  // namespace lstm_fast::test
