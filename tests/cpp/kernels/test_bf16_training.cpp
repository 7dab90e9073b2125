// bf16 training's products (cpp/src/cell/bf16_training.hpp) against scalar oracles, compiled and run
// once per instruction set (kernels.cmake). Their operands are floats holding bfloat16 values:
//   bf16_bits and pair_rows: the layouts, bit for bit (the upper halves; pairs of rows in one lane;
//     zeros in the padding), on every build;
//   Bf16Rows::product (the forward's and dh's products, through the frozen bf16 kernels: vdpbf16ps on the
//     avx512 build, so there only where the CPU has AVX512_BF16; the fallback on the others), rows
//     1 to 130 (more than its 128 rows at a time), depths and columns around 16;
//   pair_gemm (the weight gradients dW (+)= dA^T M on vdpbf16ps: the avx512 build on a CPU with
//     AVX512_BF16 only, as the passes run it), row tiles of 8, 4 and 1, column slices of 48 and their
//     tails, odd numbers of summed rows.
// Tolerance of the products: against the sum in double (the products of two bf16 are exact); float's
// sum of K terms and the addition to the output within (K + 1) u (sum |a_k b_k| + |c|), u = 2^-24;
// allowed (K + 2) 2u, twice that.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cell/bf16_training.hpp"
#include "kernel_test.hpp"

namespace lstm_fast::test {
namespace {

namespace isa = detail::LSTM_FAST_ISA;
using detail::FrozenMatrix;

// n floats holding bfloat16 values.
std::vector<float> bf16_values(Index n, unsigned seed) {
  std::vector<float> v = random_values<float>(n, seed);
  for (float& x : v) x = detail::from_bf16(detail::to_bf16(x));
  return v;
}

std::uint16_t upper_half(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return static_cast<std::uint16_t>(bits >> 16);
}

::testing::AssertionResult within_float_sum(float got, double want, double magnitude, Index K, float c) {
  const double expected = want + c, bound = double(K + 2) * kEpsilon<float> * (magnitude + std::abs(c));
  if (std::abs(got - expected) <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << got << " against " << expected << " (error " << std::abs(got - expected)
                                       << ", bound " << bound << ")";
}

TEST(Bf16Training, Bf16BitsAreTheUpperHalves) {
  for (Index K : {1, 3, 15, 16, 17, 33})
    for (Index rows : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << "K " << K << ", rows " << rows);
      const Index lda = K + 3, stride = (K + 1) / 2 * 2 + 2;
      const std::vector<float> a = bf16_values(rows * lda, unsigned(K));
      std::vector<std::uint16_t> out(static_cast<size_t>(rows * stride), 0x5555), want(out.size(), 0);
      isa::bf16_bits(rows, K, a.data(), lda, out.data(), stride);
      for (Index r = 0; r < rows; ++r)
        for (Index k = 0; k < K; ++k) want[r * stride + k] = upper_half(a[r * lda + k]);
      EXPECT_TRUE(bitwise_equal(out, want));
    }
}

// P[kg][c - c0] = bf16(M[2 kg][c]) | bf16(M[2 kg + 1][c]) << 16 (0 past row n), zero to ldo; nothing after.
TEST(Bf16Training, PairRowsHoldTwoRowsALane) {
  for (Index n : {1, 2, 3, 16, 17, 33})
    for (auto [c0, c1] : {std::pair<Index, Index>{0, 1}, {0, 15}, {0, 16}, {0, 17}, {3, 36}, {5, 54}}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << ", columns [" << c0 << ", " << c1 << ")");
      const Index ldm = c1 + 2, ldo = (c1 - c0 + 15) / 16 * 16, groups = (n + 1) / 2;
      const std::vector<float> M = bf16_values(n * ldm, unsigned(n * 100 + c1));
      std::vector<std::uint32_t> out(static_cast<size_t>((groups + 1) * ldo), 0x55555555u);
      std::vector<std::uint32_t> want = out;
      for (Index kg = 0; kg < groups; ++kg)
        for (Index c = 0; c < ldo; ++c) {
          const bool column = c0 + c < c1;
          const std::uint32_t even = column ? upper_half(M[2 * kg * ldm + c0 + c]) : 0;
          const std::uint32_t odd = column && 2 * kg + 1 < n ? upper_half(M[(2 * kg + 1) * ldm + c0 + c]) : 0;
          want[kg * ldo + c] = even | odd << 16;
        }
      isa::pair_rows(n, M.data(), ldm, c0, c1, out.data(), ldo);
      EXPECT_TRUE(bitwise_equal(out, want));
    }
}

// Whether this program runs bf16 training's products as the passes do: the avx512 build only on a CPU
// with AVX512_BF16 (its tiles run vdpbf16ps), the others on the fallback.
bool runs_bf16_training_products() {
#if defined(__AVX512F__)
  return dot_instructions_here().bf16;
#else
  return true;
#endif
}

class Bf16TrainingProducts : public ::testing::TestWithParam<bool> {};
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(Bf16TrainingProducts);

TEST_P(Bf16TrainingProducts, RowsConvertedAndMultiplied) {
  for (Index n : {1, 3, 17, 128, 130})
    for (Index K : {1, 3, 16, 17, 33})
      for (Index part_n : {1, 17, 33}) {
        SCOPED_TRACE(::testing::Message() << "rows " << n << ", K " << K << ", 4 parts of " << part_n);
        const Index lda = K + 3, cols = 4 * part_n, ldz = cols + 2;
        const std::vector<float> A = bf16_values(n * lda, unsigned(n + K)), w = bf16_values(cols * K, unsigned(K));
        std::vector<std::uint16_t> w16;
        for (float x : w) w16.push_back(detail::to_bf16(x));
        const FrozenMatrix W = detail::freeze_bf16(w16.data(), cols, K, 4);
        const auto [b0, b1] = isa::blocks_of(W, 2, 0, part_n);  // the third gate's units
        ASSERT_EQ(b0, 2 * W.part_blocks());
        ASSERT_EQ(b1, 3 * W.part_blocks());
        const std::vector<float> z0 = random_values<float>(n * ldz, unsigned(n)), bias = random_values<float>(cols, 7);
        for (bool accumulate : {false, true}) {
          std::vector<float> z = z0;
          isa::Bf16Rows rows(2, 16, K);
          rows.product(1, n, A.data(), lda, W, b0, b1, {z.data(), ldz, accumulate ? nullptr : bias.data(), accumulate});
          for (Index r = 0; r < n; ++r)
            for (Index j = 0; j < ldz; ++j) {
              const float got = z[r * ldz + j], was = z0[r * ldz + j];
              if (j < 2 * part_n || j >= 3 * part_n) {
                ASSERT_TRUE(bitwise_equal(std::vector<float>{got}, {was})) << "row " << r << ", column " << j;
                continue;
              }
              double sum = 0, magnitude = 0;
              for (Index k = 0; k < K; ++k) {
                sum += double(A[r * lda + k]) * w[j * K + k];
                magnitude += std::abs(double(A[r * lda + k]) * w[j * K + k]);
              }
              ASSERT_TRUE(within_float_sum(got, sum, magnitude, K, accumulate ? was : bias[j]))
                  << "row " << r << ", column " << j << (accumulate ? ", accumulated" : ", plus a bias");
            }
        }
      }
}

#if defined(__AVX512F__)
// dW[g][c] (+)= sum_k dA[k][g0 + g] M[k][c] over n rows, as backward.cpp's matrix_gradients calls it;
// nothing written past the rows and columns of dW.
TEST_P(Bf16TrainingProducts, WeightGradientsOnPairRows) {
  for (Index n : {1, 2, 3, 17, 33})
    for (Index rows : {1, 3, 4, 5, 8, 9, 13, 17})
      for (Index K : {1, 3, 15, 16, 17, 48, 49, 100}) {
        SCOPED_TRACE(::testing::Message() << "n " << n << ", rows " << rows << ", K " << K);
        const Index g0 = 3, G = g0 + rows + 2, groups = (n + 1) / 2, lda = (rows + 15) / 16 * 16;
        const Index ldb = (K + 15) / 16 * 16, ldc = K + 5;
        const std::vector<float> dA = bf16_values(n * G, unsigned(n * 7 + rows)), M = bf16_values(n * K, unsigned(K));
        std::vector<std::uint32_t> a(static_cast<size_t>(groups * lda)), b(static_cast<size_t>(groups * ldb));
        isa::pair_rows(n, dA.data(), G, g0, g0 + rows, a.data(), lda);
        isa::pair_rows(n, M.data(), K, 0, K, b.data(), ldb);
        const std::vector<float> C0 = random_values<float>((rows + 1) * ldc, unsigned(n + K));
        for (bool add : {false, true}) {
          std::vector<float> C = C0;
          isa::pair_gemm(rows, K, groups, a.data(), lda, b.data(), ldb, C.data(), ldc, add);
          for (Index g = 0; g <= rows; ++g)
            for (Index c = 0; c < ldc; ++c) {
              const float got = C[g * ldc + c], was = C0[g * ldc + c];
              if (g == rows || c >= K) {
                ASSERT_TRUE(bitwise_equal(std::vector<float>{got}, {was})) << "row " << g << ", column " << c;
                continue;
              }
              double sum = 0, magnitude = 0;
              for (Index k = 0; k < n; ++k) {
                sum += double(dA[k * G + g0 + g]) * M[k * K + c];
                magnitude += std::abs(double(dA[k * G + g0 + g]) * M[k * K + c]);
              }
              ASSERT_TRUE(within_float_sum(got, sum, magnitude, n, add ? was : 0.0f))
                  << "row " << g << ", column " << c << (add ? ", added" : "");
            }
        }
      }
}
#endif

std::vector<bool> bf16_training_paths() {
  if (!runs_bf16_training_products()) return {};
#if defined(__AVX512F__)
  return {true};
#else
  return {false};
#endif
}

INSTANTIATE_TEST_SUITE_P(Paths, Bf16TrainingProducts, ::testing::ValuesIn(bf16_training_paths()), path_name);

}  // namespace
}  // namespace lstm_fast::test
