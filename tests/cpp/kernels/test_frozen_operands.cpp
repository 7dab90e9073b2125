// The conversion of the frozen products' left operands (cpp/src/kernels/frozen_operands.hpp) against
// scalar oracles written from frozen.hpp's equations, compiled and run once per instruction set
// (kernels.cmake, with -ffp-contract=off as frozen_kernels.cpp). Depths 1, 3, 15, 16, 17, 33, 65
// (packets of 4, 8 or 16 floats and their tails), rows 1, 2, 5 with the row length wider than K.
// Tolerance: none, bit for bit. int8: s = max|row| / 127 (1 for a row of zeros) and
// q = round-half-even(min(max(a / s, -127), 127)) are one float division and one rounding each, the same
// in std::nearbyint as in the kernel's packets; a row with a NaN or an infinity has a NaN scale and
// zeros for q. bf16: round to nearest even, found here by comparing the two neighbours in double.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernel_test.hpp"
#include "kernels/frozen_operands.hpp"

namespace lstm_fast::test {
namespace {

const Index kDepths[] = {1, 3, 15, 16, 17, 33, 65};

// Quantizes `rows` rows of K (lda = K + 2 apart) into rows `stride` = K rounded up to 4, plus 4, apart,
// which start as garbage; checks each row against the oracle, and zeros from K to the stride.
::testing::AssertionResult quantizes_as_the_oracle(Index rows, Index K, const std::vector<float>& a) {
  const Index lda = K + 2, stride = (K + 3) / 4 * 4 + 4;
  std::vector<std::int8_t> q(static_cast<size_t>(rows * stride), std::int8_t(0x55));
  std::vector<float> scale(static_cast<size_t>(rows), -1.0f);
  detail::quantize_rows(rows, K, a.data(), lda, q.data(), stride, scale.data());
  for (Index r = 0; r < rows; ++r) {
    const float* v = a.data() + r * lda;
    float top = 0.0f;
    bool finite = true;
    for (Index k = 0; k < K; ++k) {
      finite = finite && std::isfinite(v[k]);
      top = std::max(top, std::fabs(v[k]));
    }
    std::vector<std::int8_t> want(static_cast<size_t>(stride), 0);
    if (!finite) {
      if (!std::isnan(scale[r])) return ::testing::AssertionFailure() << "row " << r << ": scale " << scale[r];
    } else {
      const float s = top > 0.0f ? top / 127.0f : 1.0f;
      if (auto same = bitwise_equal(std::vector<float>{scale[r]}, {s}); !same)
        return same << " (scale of row " << r << ")";
      for (Index k = 0; k < K; ++k)
        want[k] = static_cast<std::int8_t>(std::nearbyint(std::min(std::max(v[k] / s, -127.0f), 127.0f)));
    }
    if (auto same = bitwise_equal(std::vector<std::int8_t>(q.begin() + r * stride, q.begin() + (r + 1) * stride), want);
        !same)
      return same << " (q of row " << r << ")";
  }
  return ::testing::AssertionSuccess();
}

TEST(Int8Operands, QuantizedAsTheEquations) {
  for (Index K : kDepths)
    for (Index rows : {1, 2, 5}) {
      SCOPED_TRACE(::testing::Message() << "K " << K << ", rows " << rows);
      std::vector<float> a = random_values<float>(rows * (K + 2), unsigned(K * 10 + rows), -3.0f, 3.0f);
      if (rows == 5)  // a row of zeros: scale 1
        std::fill(a.begin() + 4 * (K + 2), a.end(), 0.0f);
      EXPECT_TRUE(quantizes_as_the_oracle(rows, K, a));
    }
}

// 127 in the row makes s = 1 exactly, so that a / s lands on halves: 2.5 -> 2, -3.5 -> -4, 0.5 -> 0.
TEST(Int8Operands, HalvesRoundToEven) {
  for (Index K : kDepths) {
    SCOPED_TRACE(::testing::Message() << "K " << K);
    const float halves[] = {2.5f, -3.5f, 0.5f, -0.5f, 126.5f, -125.5f, 1.5f};
    std::vector<float> a(static_cast<size_t>(K + 2), 0.0f);
    for (Index k = 0; k < K; ++k) a[k] = k == K / 2 ? 127.0f : halves[k % 7];
    EXPECT_TRUE(quantizes_as_the_oracle(1, K, a));
  }
}

// A NaN or an infinity anywhere in a row, body or tail: NaN scale, q zero (frozen_operands.hpp).
TEST(Int8Operands, NonFiniteRowsGetANaNScale) {
  for (Index K : kDepths)
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()})
      for (Index at : {Index(0), K - 1}) {
        SCOPED_TRACE(::testing::Message() << "K " << K << ", " << bad << " at " << at);
        std::vector<float> a = random_values<float>(2 * (K + 2), unsigned(K));
        a[(K + 2) + at] = bad;  // row 1; row 0 stays finite
        EXPECT_TRUE(quantizes_as_the_oracle(2, K, a));
      }
}

// bfloat16 of v, round to nearest even: of the two bf16 around v (its upper half, and the next one away
// from zero, 2^128 past the largest), the nearer, the even one on a tie. NaN: quiet, the sign and the
// upper payload kept.
std::uint16_t bf16_oracle(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const std::uint16_t down = static_cast<std::uint16_t>(bits >> 16), up = down + 1;
  if (std::isnan(v)) return down | 0x0040;
  auto value = [](std::uint16_t b) {
    if ((b & 0x7fff) == 0x7f80) return std::copysign(std::ldexp(1.0, 128), double(detail::from_bf16(b)));
    return double(detail::from_bf16(b));
  };
  if (std::isinf(v) || value(down) == v) return down;
  const double below = std::abs(double(v) - value(down)), above = std::abs(value(up) - double(v));
  if (below != above) return below < above ? down : up;
  return (down & 1) ? up : down;
}

TEST(Bf16Operands, RoundedToNearestEven) {
  std::vector<float> special = {0.0f,
                                -0.0f,
                                1e-40f,
                                -3e-39f,
                                std::numeric_limits<float>::max(),
                                -std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::quiet_NaN()};
  for (std::uint32_t bits : {0x3f808000u, 0x3f818000u, 0xbf808000u, 0x3f808001u, 0x7f800001u, 0x7f7f8000u}) {
    float v;  // ties with an even and an odd upper half, just past a tie, a signalling NaN, a tie to infinity
    std::memcpy(&v, &bits, 4);
    special.push_back(v);
  }
  for (Index K : kDepths)
    for (Index rows : {1, 3}) {
      SCOPED_TRACE(::testing::Message() << "K " << K << ", rows " << rows);
      const Index lda = K + 1, stride = (K + 1) / 2 * 2 + 2;
      std::vector<float> a = random_values<float>(rows * lda, unsigned(K + rows), -4.0f, 4.0f);
      for (size_t k = 0; k < special.size() && k < a.size(); ++k) a[(k * 7) % a.size()] = special[k];
      std::vector<std::uint16_t> out(static_cast<size_t>(rows * stride), 0x1234), want(out.size(), 0);
      detail::round_rows(rows, K, a.data(), lda, out.data(), stride);
      for (Index r = 0; r < rows; ++r)
        for (Index k = 0; k < K; ++k) want[r * stride + k] = bf16_oracle(a[r * lda + k]);
      EXPECT_TRUE(bitwise_equal(out, want));
    }
}

}  // namespace
}  // namespace lstm_fast::test
