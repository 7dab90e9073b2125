// The products of the frozen models (cpp/src/kernels/frozen_products.hpp) against scalar oracles written
// from frozen.hpp's equations, compiled and run once per instruction set (kernels.cmake), on both of
// their paths in-process where this program has the dot instructions (the avx512 build on a CPU with
// AVX512_VNNI / AVX512_BF16: vpdpbusd, vdpbf16ps) and else on the fallback alone (vpmaddubsw and
// widening FMAs on AVX2 and AVX-512, plain C++ on the baseline). Shapes: rows 1, 3, 4, 5, 17 (tiles of
// up to 4 rows), output columns per part 1, 3, 15, 16, 17, 33 (blocks of 16 and their tails) in 1 or 4
// parts, 129 for one row's tile of 8 blocks, depths 1, 3, 5, 17, 33, 130 (not whole groups of 4 or 2);
// every output mode (written, plus a bias, accumulated), over all the blocks and a range from the middle.
// Tolerances:
//   int8: none, bit for bit. The sums are integers (exact on every path), then the oracle runs the same
//         IEEE operations, ((float(sum) * s_a) * s_W) and the addition (this file is compiled with
//         -ffp-contract=off, as the library's frozen_kernels.cpp, so that neither is fused).
//   bf16, fp32: against the sum in double of the same operands (bf16 products are exact in float and in
//         double); float's recursive sum of K terms and the addition to the output are within
//         (K + 1) u (sum |a_k w_k| + |c|), u = 2^-24 (one more u per product for fp32 without FMA):
//         the tests allow (K + 2) 2u, twice that.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "kernel_test.hpp"
#include "kernels/frozen_products.hpp"

namespace lstm_fast::test {
namespace {

using detail::from_bf16;
using detail::FrozenMatrix;
using detail::kFrozenBlock;
using detail::Output;

enum class Mode { kWrite, kBias, kAccumulate };
const char* const kModeNames[] = {"written", "plus a bias", "accumulated"};

struct Shape {
  Index rows, n, K, parts;
};

std::vector<Shape> shapes() {
  std::vector<Shape> s;
  for (Index rows : {1, 3, 4, 5, 17})
    for (Index part_n : {1, 3, 15, 16, 17, 33})
      for (Index parts : {1, 4})
        for (Index K : {1, 3, 5, 17, 33, 130}) s.push_back({rows, part_n * parts, K, parts});
  s.push_back({1, 129, 40, 1});  // 9 blocks: one row's tile of 8 blocks, then a tile of 1
  s.push_back({2, 129, 40, 1});
  return s;
}

::testing::Message describe(const Shape& s) {
  return ::testing::Message() << "rows " << s.rows << ", n " << s.n << " in " << s.parts << " parts, K " << s.K;
}

// Whether column j of W is one of blocks [b0, b1)'s: each part of n / parts columns in blocks of 16 from
// the part's first column, block b being block b % part_blocks of part b / part_blocks.
std::vector<bool> columns_of_blocks(Index n, Index parts, Index b0, Index b1) {
  const Index part_n = n / parts, part_blocks = (part_n + kFrozenBlock - 1) / kFrozenBlock;
  std::vector<bool> written(static_cast<size_t>(n), false);
  for (Index b = b0; b < b1; ++b) {
    const Index first = b % part_blocks * kFrozenBlock;
    for (Index j = first; j < std::min(first + kFrozenBlock, part_n); ++j)
      written[(b / part_blocks) * part_n + j] = true;
  }
  return written;
}

// Runs product(b0, b1, out) into z [rows, n + 3] in every mode, over blocks [0, blocks) and, with 3 or
// more, [1, blocks - 1); then check(r, j, got, mode, c) on every number written (c: what the mode adds to
// the product: 0, bias_j or z_rj as it was), and every other number of z must be as it was.
template <typename Product, typename Check>
::testing::AssertionResult over_modes(const FrozenMatrix& W, Index rows, unsigned seed, const Product& product,
                                      const Check& check) {
  const Index ldz = W.n + 3;
  const std::vector<float> z0 = random_values<float>(rows * ldz, seed), bias = random_values<float>(W.n, seed + 1);
  std::vector<std::pair<Index, Index>> ranges = {{0, W.blocks()}};
  if (W.blocks() >= 3) ranges.push_back({1, W.blocks() - 1});
  for (const auto& [b0, b1] : ranges)
    for (Mode mode : {Mode::kWrite, Mode::kBias, Mode::kAccumulate}) {
      std::vector<float> z = z0;
      product(b0, b1, Output{z.data(), ldz, mode == Mode::kBias ? bias.data() : nullptr, mode == Mode::kAccumulate});
      const std::vector<bool> written = columns_of_blocks(W.n, W.parts, b0, b1);
      for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < ldz; ++j) {
          const float got = z[r * ldz + j], was = z0[r * ldz + j];
          auto where = [&] {
            return ::testing::Message() << " (row " << r << ", column " << j << ", blocks [" << b0 << ", " << b1
                                        << "), " << kModeNames[int(mode)] << ")";
          };
          if (j >= W.n || !written[j]) {
            if (auto same = bitwise_equal(std::vector<float>{got}, {was}); !same) return same << where() << " outside";
            continue;
          }
          const float c = mode == Mode::kWrite ? 0.0f : mode == Mode::kBias ? bias[j] : was;
          if (auto ok = check(r, j, got, mode, c); !ok) return ok << where();
        }
    }
  return ::testing::AssertionSuccess();
}

// |got - (want + c)| within (K + 2) 2u of sum |a_k w_k| + |c| (the header's bound).
::testing::AssertionResult within_float_sum(float got, double want, double magnitude, Index K, float c) {
  const double expected = want + c, bound = double(K + 2) * kEpsilon<float> * (magnitude + std::abs(c));
  if (std::abs(got - expected) <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got << " against " << expected << " (error " << std::abs(got - expected)
                                       << ", bound " << bound << ")";
}

// ---- int8 ----------------------------------------------------------------------------------------

// q_a [rows, K] (lda = 4 groups + 5 apart, zero to the whole group, garbage after) with scales s_a, and
// W = q_W [n, K] with scales s_W, packed; values in [-127, 127], or only -127 and 127 (`extremes`).
struct Int8Operands {
  Index lda;
  std::vector<std::int8_t> a, w;
  std::vector<float> sa, sw;
  FrozenMatrix W;

  Int8Operands(const Shape& s, unsigned seed, bool extremes) : lda((s.K + 3) / 4 * 4 + 5) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<int> value(-127, 127), sign(0, 1);
    auto draw = [&] { return static_cast<std::int8_t>(extremes ? (sign(gen) ? 127 : -127) : value(gen)); };
    a.assign(static_cast<size_t>(s.rows * lda), std::int8_t(0x55));
    for (Index r = 0; r < s.rows; ++r) {
      for (Index k = 0; k < s.K; ++k) a[r * lda + k] = draw();
      std::fill(a.begin() + r * lda + s.K, a.begin() + r * lda + (s.K + 3) / 4 * 4, std::int8_t(0));
    }
    for (Index k = 0; k < s.n * s.K; ++k) w.push_back(draw());
    sa = random_values<float>(s.rows, seed + 1, 1e-3f, 5e-2f);
    sw = random_values<float>(s.n, seed + 2, 1e-3f, 5e-2f);
    W = detail::freeze_int8(w.data(), sw.data(), s.n, s.K, s.parts);
  }

  // frozen.hpp's int8: ((float(sum_k q_a q_W) * s_a) * s_W), then the mode's addition.
  float oracle(Index K, Index r, Index j, Mode mode, float c) const {
    std::int64_t sum = 0;
    for (Index k = 0; k < K; ++k) sum += std::int64_t(a[r * lda + k]) * std::int64_t(w[j * K + k]);
    const float v = (static_cast<float>(sum) * sa[r]) * sw[j];
    return mode == Mode::kWrite ? v : v + c;
  }
};

class Int8Products : public ::testing::TestWithParam<bool> {};

::testing::AssertionResult int8_bit_for_bit(const Shape& s, unsigned seed, bool extremes, bool dot) {
  const Int8Operands o(s, seed, extremes);
  return over_modes(
      o.W, s.rows, seed,
      [&](Index b0, Index b1, const Output& out) {
        detail::int8_product(s.rows, o.a.data(), o.lda, o.sa.data(), o.W, b0, b1, out, dot);
      },
      [&](Index r, Index j, float got, Mode mode, float c) {
        return bitwise_equal(std::vector<float>{got}, {o.oracle(s.K, r, j, mode, c)});
      });
}

TEST_P(Int8Products, BitForBitTheIntegerOracle) {
  unsigned seed = 1;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    ASSERT_TRUE(int8_bit_for_bit(s, seed++, false, GetParam()));
  }
}

// Only -127 and 127 over a deep K: AVX2's vpmaddubsw pairs reach 2 127^2 < 2^15 and must not saturate;
// the sums reach 127^2 K, 6.6e7 here, inside int32 (vpdpbusd's +128 shift included).
TEST_P(Int8Products, NothingSaturatesAtTheExtremes) {
  for (const Shape& s : {Shape{3, 17, 4099, 1}, Shape{1, 33, 4096, 1}, Shape{5, 64, 1001, 4}}) {
    SCOPED_TRACE(describe(s));
    ASSERT_TRUE(int8_bit_for_bit(s, unsigned(s.K), true, GetParam()));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, Int8Products, ::testing::ValuesIn(product_paths(dot_instructions_here().int8)),
                         path_name);

// ---- bf16 ----------------------------------------------------------------------------------------

// bf16(a) [rows, K] (lda = 2 groups + 3 apart, zero to the whole pair, NaN after: never read), and bf16(W).
struct Bf16Operands {
  Index lda;
  std::vector<std::uint16_t> a, w;
  FrozenMatrix W;

  Bf16Operands(const Shape& s, unsigned seed) : lda((s.K + 1) / 2 * 2 + 3) {
    const std::vector<float> av = random_values<float>(s.rows * s.K, seed),
                             wv = random_values<float>(s.n * s.K, seed + 1);
    a.assign(static_cast<size_t>(s.rows * lda), std::uint16_t(0x7fc0));
    for (Index r = 0; r < s.rows; ++r) {
      for (Index k = 0; k < s.K; ++k) a[r * lda + k] = detail::to_bf16(av[r * s.K + k]);
      std::fill(a.begin() + r * lda + s.K, a.begin() + r * lda + (s.K + 1) / 2 * 2, std::uint16_t(0));
    }
    for (float v : wv) w.push_back(detail::to_bf16(v));
    W = detail::freeze_bf16(w.data(), s.n, s.K, s.parts);
  }
};

class Bf16Products : public ::testing::TestWithParam<bool> {};

TEST_P(Bf16Products, TheFloatSumsOfTheBf16Products) {
  unsigned seed = 1;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    const Bf16Operands o(s, seed++);
    ASSERT_TRUE(over_modes(
        o.W, s.rows, seed,
        [&](Index b0, Index b1, const Output& out) {
          detail::bf16_product(s.rows, o.a.data(), o.lda, o.W, b0, b1, out, GetParam());
        },
        [&](Index r, Index j, float got, Mode, float c) {
          double sum = 0, magnitude = 0;
          for (Index k = 0; k < s.K; ++k) {
            const double p = double(from_bf16(o.a[r * o.lda + k])) * from_bf16(o.w[j * s.K + k]);
            sum += p;
            magnitude += std::abs(p);
          }
          return within_float_sum(got, sum, magnitude, s.K, c);
        }));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, Bf16Products, ::testing::ValuesIn(product_paths(dot_instructions_here().bf16)),
                         path_name);

// ---- fp32 ----------------------------------------------------------------------------------------

TEST(Fp32Products, TheFloatSums) {
  unsigned seed = 1;
  for (const Shape& s : shapes()) {
    SCOPED_TRACE(describe(s));
    const Index lda = s.K + 3;
    const std::vector<float> a = random_values<float>(s.rows * lda, seed),
                             w = random_values<float>(s.n * s.K, seed + 1);
    const FrozenMatrix W = detail::freeze_matrix(Precision::fp32, w.data(), s.n, s.K, s.parts);
    ASSERT_TRUE(over_modes(
        W, s.rows, seed++,
        [&](Index b0, Index b1, const Output& out) { detail::f32_product(s.rows, a.data(), lda, W, b0, b1, out); },
        [&](Index r, Index j, float got, Mode, float c) {
          double sum = 0, magnitude = 0;
          for (Index k = 0; k < s.K; ++k) {
            sum += double(a[r * lda + k]) * w[j * s.K + k];
            magnitude += std::abs(double(a[r * lda + k]) * w[j * s.K + k]);
          }
          return within_float_sum(got, sum, magnitude, s.K, c);
        }));
  }
}

}  // namespace
}  // namespace lstm_fast::test
