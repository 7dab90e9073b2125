// The left operands of the frozen models' products, converted to the precision (included by
// frozen_kernels.cpp, so compiled once per ISA, with -ffp-contract=off): int8 rows quantized with a
// scale per row, bf16 rows rounded. Every lane and the scalar tail run the same IEEE operations, so the
// int8 quantization gives the same bits on every ISA.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "weights/frozen.hpp"
#include "kernels/gates.hpp"

namespace lstm_fast::detail {
namespace {

// Round to nearest even for |x| < 2^22, by adding and subtracting 1.5 * 2^23: the same two IEEE
// additions in a packet and in a scalar.
constexpr float kRound = 12582912.0f;

// A packet of integral floats in [-127, 127] -> int8 (exact: the conversion only drops zeros).
template <typename Packet>
inline void narrow(const Packet& x, std::int8_t* out) {
#if defined(__AVX512F__)
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(x)));
#elif defined(__AVX2__)
  const __m256i i32 = _mm256_cvttps_epi32(x);  // 8 lanes -> 8 bytes
  const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packs_epi16(i16, i16));
#else
  alignas(16) float lanes[sizeof(Packet) / sizeof(float)];
  Simd<float>::store(lanes, x);
  for (std::size_t e = 0; e < sizeof(Packet) / sizeof(float); ++e) out[e] = static_cast<std::int8_t>(lanes[e]);
#endif
}

// Row r of a [rows, K] (lda apart) -> q (int8, stride apart, zero past K) and its scale s:
// s = max|row| / 127 (1 for a row of zeros), q = round(min(max(a / s, -127), 127)).
inline void quantize_rows(Index rows, Index K, const float* a, Index lda, std::int8_t* q, Index stride, float* scale) {
  using S = Simd<float>;
  constexpr Index W = S::kWidth;
  const Index body = K - K % W;
  for (Index r = 0; r < rows; ++r) {
    const float* v = a + r * lda;
    auto top_packet = S::set1(0.0f), probe = S::set1(0.0f);  // probe: 0, or NaN once a NaN or inf is seen
    for (Index k = 0; k < body; k += W) {
      const auto x = S::load(v + k);
      top_packet = Eigen::internal::pmax(top_packet, Eigen::internal::pabs(x));
      probe = S::add(probe, S::mul(x, S::set1(0.0f)));
    }
    float top = body > 0 ? Eigen::internal::predux_max(top_packet) : 0.0f;
    float sink = body > 0 ? Eigen::internal::predux(probe) : 0.0f;
    for (Index k = body; k < K; ++k) {
      top = std::max(top, std::fabs(v[k]));
      sink += v[k] * 0.0f;
    }
    // A row with a NaN or an infinity gets a NaN scale, so that its products, and the outputs, are NaN.
    const float s = sink != sink ? sink : top > 0.0f ? top / 127.0f : 1.0f;
    scale[r] = s;
    std::int8_t* out = q + r * stride;
    const auto sv = S::set1(s), lo = S::set1(-127.0f), hi = S::set1(127.0f), round = S::set1(kRound);
    for (Index k = 0; k < body; k += W) {
      auto x = Eigen::internal::pmin(Eigen::internal::pmax(Eigen::internal::pdiv(S::load(v + k), sv), lo), hi);
      x = S::sub(S::add(x, round), round);
      x = Eigen::internal::pand(x, Eigen::internal::pcmp_eq(x, x));  // NaN -> 0, as the scalar tail
      narrow(x, out + k);
    }
    for (Index k = body; k < K; ++k) {
      const float x = std::min(std::max(v[k] / s, -127.0f), 127.0f);
      const float rounded = (x + kRound) - kRound;
      out[k] = static_cast<std::int8_t>(rounded == rounded ? rounded : 0.0f);
    }
    std::memset(out + K, 0, static_cast<std::size_t>(stride - K));
  }
}

// Rows of a [rows, K] (lda apart) rounded to bfloat16 (nearest even), stride apart, zero past K.
inline void round_rows(Index rows, Index K, const float* a, Index lda, std::uint16_t* out, Index stride) {
  for (Index r = 0; r < rows; ++r) {
    for (Index k = 0; k < K; ++k) out[r * stride + k] = to_bf16(a[r * lda + k]);
    std::fill(out + r * stride + K, out + (r + 1) * stride, std::uint16_t(0));
  }
}

}  // namespace
}  // namespace lstm_fast::detail
