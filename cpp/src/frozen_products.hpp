// The matrix products of the frozen bf16 and int8 models (included by frozen_kernels.cpp, so compiled
// once per ISA, with -ffp-contract=off). The right operand is a FrozenMatrix (frozen.hpp's layout);
// the left one rows of a, already converted (int8 with a scale per row, or bf16). The kernels:
//   int8: vpdpbusd (AVX512_VNNI, a shifted to unsigned by +128 and the shift taken back with the
//         weights' row sums), else vpmaddubsw on |a| and sign(a) w (AVX2; pairs of int8 products
//         reach at most 2 127^2 < 2^15, so nothing saturates) then vpmaddwd, else plain C++;
//   bf16: vdpbf16ps (AVX512_BF16), else bf16 widened to float (a shift) and FMAs, else plain C++.
// The integer sums are exact on every path; the float epilogue is the same operations everywhere.
// AVX512_VNNI and AVX512_BF16 are chosen at run time inside the avx512 build (they are not part of
// its flags); LSTM_FAST_NO_DOT_INSTRUCTIONS set in the environment turns them off, for the tests.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "frozen.hpp"

namespace lstm_fast::detail {
namespace {

// What a product writes: z[r][j] = v + bias[j] (bias given), z[r][j] + v (accumulate) or v.
struct Output {
  float* z;
  Index ldz;
  const float* bias;
  bool accumulate;
  void put(Index r, Index j, float v) const {
    float& out = z[r * ldz + j];
    out = accumulate ? out + v : (bias ? v + bias[j] : v);
  }
};

// ---- int8 ----------------------------------------------------------------------------------------

// Row r of a [rows, K] (lda apart) -> q (int8, stride apart, zero past K) and its scale s.
void quantize_rows(Index rows, Index K, const float* a, Index lda, std::int8_t* q, Index stride, float* scale) {
  for (Index r = 0; r < rows; ++r) {
    const float* v = a + r * lda;
    float top = 0.0f;
    for (Index k = 0; k < K; ++k) top = std::max(top, std::fabs(v[k]));
    const float s = top > 0.0f ? top / 127.0f : 1.0f;
    scale[r] = s;
    std::int8_t* out = q + r * stride;
    for (Index k = 0; k < K; ++k) {
      float x = std::nearbyint(v[k] / s);
      x = x == x ? x : 0.0f;
      out[k] = static_cast<std::int8_t>(x > 127.0f ? 127.0f : (x < -127.0f ? -127.0f : x));
    }
    std::memset(out + K, 0, static_cast<std::size_t>(stride - K));
  }
}

// Dequantizes the int32 sums of row r, columns [j0, j0 + cols): ((float(sum) * s_a) * s_W).
inline void dequantize(const std::int32_t* sums, Index r, Index j0, Index cols, float s_a, const FrozenMatrix& W,
                       const Output& out) {
  for (Index j = 0; j < cols; ++j)
    out.put(r, j0 + j, (static_cast<float>(sums[j]) * s_a) * W.scale[static_cast<std::size_t>(j0 + j)]);
}

// The sums of rows [0, rows) x one block of 16 columns, in plain C++ (the compiler vectorizes it).
void int8_block_plain(Index rows, const std::int8_t* A, Index lda, const std::int8_t* P, Index groups,
                      std::int32_t* sums) {
  for (Index r = 0; r < rows; ++r) {
    std::int32_t acc[kFrozenBlock] = {};
    const std::int8_t* a = A + r * lda;
    for (Index kg = 0; kg < groups; ++kg) {
      const std::int8_t* w = P + kg * kFrozenBlock * 4;
      for (Index j = 0; j < kFrozenBlock; ++j)
        for (Index e = 0; e < 4; ++e) acc[j] += std::int32_t(a[kg * 4 + e]) * std::int32_t(w[j * 4 + e]);
    }
    std::memcpy(sums + r * kFrozenBlock, acc, sizeof acc);
  }
}

#if defined(__AVX2__)
// The same with AVX2: per group, |a| (unsigned) times sign(a) w in pairs (vpmaddubsw, at most
// 2 127^2), then pairs of pairs (vpmaddwd by ones) into the eight int32 of each half block.
void int8_block_avx2(Index rows, const std::int8_t* A, Index lda, const std::int8_t* P, Index groups,
                     std::int32_t* sums) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (Index r = 0; r < rows; ++r) {
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    const std::int8_t* a = A + r * lda;
    for (Index kg = 0; kg < groups; ++kg) {
      std::int32_t group;
      std::memcpy(&group, a + kg * 4, 4);
      const __m256i av = _mm256_set1_epi32(group);
      const __m256i magnitude = _mm256_abs_epi8(av);
      const __m256i* w = reinterpret_cast<const __m256i*>(P + kg * kFrozenBlock * 4);
      const __m256i w0 = _mm256_sign_epi8(_mm256_loadu_si256(w), av);
      const __m256i w1 = _mm256_sign_epi8(_mm256_loadu_si256(w + 1), av);
      acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, w0), ones));
      acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, w1), ones));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + r * kFrozenBlock), acc0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + r * kFrozenBlock + 8), acc1);
  }
}
#endif

#if defined(__AVX512F__)
// AVX512_VNNI: 16 int32 sums per block in one register; up to 4 rows x 4 blocks at once, the 4-byte
// group of each row broadcast and shifted to unsigned (xor 0x80 adds 128), then W's offset removed.
template <int MR, int NB>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_tile_vnni(const std::int8_t* A, Index lda,
                                                                           const std::int8_t* P, Index groups,
                                                                           const std::int32_t* offset,
                                                                           std::int32_t* sums) {
  __m512i acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_si512();
  const __m512i shift = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  const Index block_stride = groups * kFrozenBlock * 4;
  for (Index kg = 0; kg < groups; ++kg) {
    __m512i w[NB];
    for (int b = 0; b < NB; ++b) w[b] = _mm512_loadu_si512(P + b * block_stride + kg * kFrozenBlock * 4);
    for (int r = 0; r < MR; ++r) {
      std::int32_t group;
      std::memcpy(&group, A + r * lda + kg * 4, 4);
      const __m512i a = _mm512_xor_si512(_mm512_set1_epi32(group), shift);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], a, w[b]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < NB; ++b)
      _mm512_storeu_si512(sums + (r * NB + b) * kFrozenBlock,
                          _mm512_sub_epi32(acc[r][b], _mm512_loadu_si512(offset + b * kFrozenBlock)));
}

bool use_dot_instructions(const char* feature) {
  static const bool allowed = !std::getenv("LSTM_FAST_NO_DOT_INSTRUCTIONS");
  return allowed && (feature[0] == 'v' ? __builtin_cpu_supports("avx512vnni") : __builtin_cpu_supports("avx512bf16"));
}
#endif

// Z (+)= q_a q_W^T, dequantized: rows of A quantized already (scales sa), W packed.
void int8_product(Index rows, const std::int8_t* A, Index lda, const float* sa, const FrozenMatrix& W,
                  const Output& out) {
  const Index blocks = W.padded_n() / kFrozenBlock, block_stride = W.groups * kFrozenBlock * 4;
  alignas(64) std::int32_t sums[4 * 4 * kFrozenBlock];
#if defined(__AVX512F__)
  static const bool vnni = use_dot_instructions("vnni");
  if (vnni) {
    // Offsets padded to whole blocks: the tile reads 16 of them per block.
    for (Index r0 = 0; r0 < rows; r0 += 4) {
      const Index mr = std::min<Index>(4, rows - r0);
      for (Index b0 = 0; b0 < blocks; b0 += 4) {
        const Index nb = std::min<Index>(4, blocks - b0);
        const std::int8_t* a = A + r0 * lda;
        const std::int8_t* p = W.q.data() + b0 * block_stride;
        std::int32_t offset[4 * kFrozenBlock] = {};
        const Index j0 = b0 * kFrozenBlock, cols = std::min(W.n - j0, nb * kFrozenBlock);
        std::memcpy(offset, W.offset.data() + j0, static_cast<std::size_t>(cols) * 4);
        auto run = [&](auto tile) { tile(a, lda, p, W.groups, offset, sums); };
        // The tile shape from the rows and blocks left; sums are [mr][nb][16].
        if (mr == 4 && nb == 4)
          run(int8_tile_vnni<4, 4>);
        else if (mr == 4)
          run(nb == 3 ? int8_tile_vnni<4, 3> : nb == 2 ? int8_tile_vnni<4, 2> : int8_tile_vnni<4, 1>);
        else if (nb == 4)
          run(mr == 3 ? int8_tile_vnni<3, 4> : mr == 2 ? int8_tile_vnni<2, 4> : int8_tile_vnni<1, 4>);
        else {
          for (Index r = 0; r < mr; ++r)
            for (Index b = 0; b < nb; ++b)
              int8_tile_vnni<1, 1>(a + r * lda, lda, p + b * block_stride, W.groups, offset + b * kFrozenBlock,
                                   sums + (r * nb + b) * kFrozenBlock);
        }
        for (Index r = 0; r < mr; ++r) dequantize(sums + r * nb * kFrozenBlock, r0 + r, j0, cols, sa[r0 + r], W, out);
      }
    }
    return;
  }
#endif
  for (Index b = 0; b < blocks; ++b) {
    const Index j0 = b * kFrozenBlock, cols = std::min(kFrozenBlock, W.n - j0);
    for (Index r0 = 0; r0 < rows; r0 += 4) {
      const Index mr = std::min<Index>(4, rows - r0);
#if defined(__AVX2__)
      int8_block_avx2(mr, A + r0 * lda, lda, W.q.data() + b * block_stride, W.groups, sums);
#else
      int8_block_plain(mr, A + r0 * lda, lda, W.q.data() + b * block_stride, W.groups, sums);
#endif
      for (Index r = 0; r < mr; ++r) dequantize(sums + r * kFrozenBlock, r0 + r, j0, cols, sa[r0 + r], W, out);
    }
  }
}

// ---- bf16 ----------------------------------------------------------------------------------------

void round_rows(Index rows, Index K, const float* a, Index lda, std::uint16_t* out, Index stride) {
  for (Index r = 0; r < rows; ++r) {
    for (Index k = 0; k < K; ++k) out[r * stride + k] = to_bf16(a[r * lda + k]);
    std::fill(out + r * stride + K, out + (r + 1) * stride, std::uint16_t(0));
  }
}

// The float sums of rows [0, rows) x one block of 16 columns, bf16 widened to float.
void bf16_block_widened(Index rows, const std::uint16_t* A, Index lda, const std::uint16_t* P, Index groups,
                        float* sums) {
  for (Index r = 0; r < rows; ++r) {
    const std::uint16_t* a = A + r * lda;
#if defined(__AVX2__)
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
    for (Index kg = 0; kg < groups; ++kg) {
      const __m256 even = _mm256_set1_ps(from_bf16(a[2 * kg])), odd = _mm256_set1_ps(from_bf16(a[2 * kg + 1]));
      const __m256i* w = reinterpret_cast<const __m256i*>(P + kg * kFrozenBlock * 2);
      const __m256i w0 = _mm256_loadu_si256(w), w1 = _mm256_loadu_si256(w + 1);
      acc0 = _mm256_fmadd_ps(even, _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), acc0);
      acc0 = _mm256_fmadd_ps(odd, _mm256_castsi256_ps(_mm256_and_si256(w0, high)), acc0);
      acc1 = _mm256_fmadd_ps(even, _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)), acc1);
      acc1 = _mm256_fmadd_ps(odd, _mm256_castsi256_ps(_mm256_and_si256(w1, high)), acc1);
    }
    _mm256_storeu_ps(sums + r * kFrozenBlock, acc0);
    _mm256_storeu_ps(sums + r * kFrozenBlock + 8, acc1);
#else
    float acc[kFrozenBlock] = {};
    for (Index kg = 0; kg < groups; ++kg) {
      const std::uint16_t* w = P + kg * kFrozenBlock * 2;
      const float even = from_bf16(a[2 * kg]), odd = from_bf16(a[2 * kg + 1]);
      for (Index j = 0; j < kFrozenBlock; ++j) {
        acc[j] = acc[j] + even * from_bf16(w[2 * j]);
        acc[j] = acc[j] + odd * from_bf16(w[2 * j + 1]);
      }
    }
    std::memcpy(sums + r * kFrozenBlock, acc, sizeof acc);
#endif
  }
}

#if defined(__AVX512F__)
// AVX512_BF16: a pair of bf16 of a row broadcast against 16 columns' pairs, float sums.
template <int MR, int NB>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_tile_dot(const std::uint16_t* A, Index lda,
                                                                          const std::uint16_t* P, Index groups,
                                                                          float* sums) {
  __m512 acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  const Index block_stride = groups * kFrozenBlock * 2;
  for (Index kg = 0; kg < groups; ++kg) {
    __m512i w[NB];
    for (int b = 0; b < NB; ++b) w[b] = _mm512_loadu_si512(P + b * block_stride + kg * kFrozenBlock * 2);
    for (int r = 0; r < MR; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, A + r * lda + kg * 2, 4);
      const __m512i a = _mm512_set1_epi32(pair);
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)a, (__m512bh)w[b]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int b = 0; b < NB; ++b) _mm512_storeu_ps(sums + (r * NB + b) * kFrozenBlock, acc[r][b]);
}
#endif

// Z (+)= bf16(a) bf16(W)^T: rows of A rounded already, W packed.
void bf16_product(Index rows, const std::uint16_t* A, Index lda, const FrozenMatrix& W, const Output& out) {
  const Index blocks = W.padded_n() / kFrozenBlock, block_stride = W.groups * kFrozenBlock * 2;
  alignas(64) float sums[4 * 4 * kFrozenBlock];
  auto emit = [&](const float* s, Index r, Index j0, Index cols) {
    for (Index j = 0; j < cols; ++j) out.put(r, j0 + j, s[j]);
  };
#if defined(__AVX512F__)
  static const bool dot = use_dot_instructions("bf16");
  if (dot) {
    for (Index r0 = 0; r0 < rows; r0 += 4) {
      const Index mr = std::min<Index>(4, rows - r0);
      for (Index b0 = 0; b0 < blocks; b0 += 4) {
        const Index nb = std::min<Index>(4, blocks - b0);
        const std::uint16_t* a = A + r0 * lda;
        const std::uint16_t* p = W.bf16.data() + b0 * block_stride;
        auto run = [&](auto tile) { tile(a, lda, p, W.groups, sums); };
        if (mr == 4 && nb == 4)
          run(bf16_tile_dot<4, 4>);
        else if (mr == 4)
          run(nb == 3 ? bf16_tile_dot<4, 3> : nb == 2 ? bf16_tile_dot<4, 2> : bf16_tile_dot<4, 1>);
        else if (nb == 4)
          run(mr == 3 ? bf16_tile_dot<3, 4> : mr == 2 ? bf16_tile_dot<2, 4> : bf16_tile_dot<1, 4>);
        else {
          for (Index r = 0; r < mr; ++r)
            for (Index b = 0; b < nb; ++b)
              bf16_tile_dot<1, 1>(a + r * lda, lda, p + b * block_stride, W.groups, sums + (r * nb + b) * kFrozenBlock);
        }
        const Index j0 = b0 * kFrozenBlock, cols = std::min(W.n - j0, nb * kFrozenBlock);
        for (Index r = 0; r < mr; ++r) emit(sums + r * nb * kFrozenBlock, r0 + r, j0, cols);
      }
    }
    return;
  }
#endif
  for (Index b = 0; b < blocks; ++b) {
    const Index j0 = b * kFrozenBlock, cols = std::min(kFrozenBlock, W.n - j0);
    for (Index r0 = 0; r0 < rows; r0 += 4) {
      const Index mr = std::min<Index>(4, rows - r0);
      bf16_block_widened(mr, A + r0 * lda, lda, W.bf16.data() + b * block_stride, W.groups, sums);
      for (Index r = 0; r < mr; ++r) emit(sums + r * kFrozenBlock, r0 + r, j0, cols);
    }
  }
}

}  // namespace
}  // namespace lstm_fast::detail
