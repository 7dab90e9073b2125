// The matrix products of the frozen bf16 and int8 models (included by frozen_kernels.cpp, so compiled
// once per ISA, with -ffp-contract=off). The right operand is a FrozenMatrix (frozen.hpp's layout), of
// which a product computes the output blocks [b0, b1); the left one is rows of a, converted first
// (int8 with a scale per row, or bf16). The kernels:
//   int8: vpdpbusd (AVX512_VNNI, a shifted to unsigned by +128 and the shift taken back with the
//         weights' row sums), else vpmaddubsw on |a| and sign(a) w (AVX2; pairs of int8 products
//         reach at most 2 127^2 < 2^15, so nothing saturates) then vpmaddwd, else plain C++;
//   bf16: vdpbf16ps (AVX512_BF16), else bf16 widened to float (a shift) and FMAs, else plain C++.
// The integer sums are exact on every path, and every float operation after them (the conversion,
// the two scalings, the addition to the output) is the same IEEE operation on every path and lane,
// so int8 results do not depend on the ISA. AVX512_VNNI and AVX512_BF16 are not among the avx512
// build's flags: their kernels are compiled for them alone, and a product runs them when the caller's
// `dot` says so (the plan's CellPlan::dot, from what dispatch.cpp found the CPU has).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "weights/frozen.hpp"
#include "kernels/frozen_operands.hpp"
#include "kernels/gates.hpp"

namespace lstm_fast::detail {
namespace {

// Where a product writes: z[r][j] = v + bias[j] (bias given), z[r][j] + v (accumulate), or v.
struct Output {
  float* z;
  Index ldz;
  const float* bias;
  bool accumulate;
};

// Writes the `width` values v[0..16) of row r at column col.
inline void emit(const Output& out, Index r, Index col, Index width, const float* v) {
  using S = Simd<float>;
  float* z = out.z + r * out.ldz + col;
  const float* bias = out.bias ? out.bias + col : nullptr;
  if (width == kFrozenBlock) {
    for (Index e = 0; e < kFrozenBlock; e += S::kWidth) {
      auto x = S::load(v + e);
      if (out.accumulate)
        x = S::add(S::load(z + e), x);
      else if (bias)
        x = S::add(x, S::load(bias + e));
      S::store(z + e, x);
    }
    return;
  }
  for (Index e = 0; e < width; ++e) z[e] = out.accumulate ? z[e] + v[e] : (bias ? v[e] + bias[e] : v[e]);
}

// Runs tile(mr, nb, r0, b) over blocks [b0, b1) in tiles of up to 4 blocks (8 for a single row, whose 4
// chains alone would wait on the dot instruction's latency) and, for each, rows [0, rows) in tiles of
// up to 4 rows. Blocks outside: a tile's weights are read from memory once a product and then from L1
// or L2 for every row tile, while the rows (a few KiB to a few hundred) stay in L2; rows outside
// would stream all of the weights once per 4 rows, from L3 where they exceed L2.
template <typename Tile>
void over_tiles(Index rows, Index b0, Index b1, const Tile& tile) {
  for (Index b = b0; b < b1;) {
    const Index nb = rows == 1 && b1 - b >= 8 ? 8 : std::min<Index>(4, b1 - b);
    for (Index r0 = 0; r0 < rows; r0 += 4) tile(std::min<Index>(4, rows - r0), nb, r0, b);
    b += nb;
  }
}

// Runs block(mr, r0, b) (the fallback kernels: one block, up to 4 rows) over the same rows and blocks.
template <typename Block>
void over_blocks(Index rows, Index b0, Index b1, const Block& block) {
  for (Index b = b0; b < b1; ++b)
    for (Index r0 = 0; r0 < rows; r0 += 4) block(std::min<Index>(4, rows - r0), r0, b);
}

// ---- int8 ----------------------------------------------------------------------------------------

// float(sum) * s_a * s_W for the 16 columns of a block.
inline void dequantize(const std::int32_t* sums, float s_a, const float* s_w, float* v) {
#if defined(__AVX512F__)
  const __m512 x = _mm512_cvtepi32_ps(_mm512_loadu_si512(sums));
  _mm512_storeu_ps(v, _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(s_a)), _mm512_loadu_ps(s_w)));
#elif defined(__AVX2__)
  for (int h = 0; h < 16; h += 8) {
    const __m256 x = _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums + h)));
    _mm256_storeu_ps(v + h, _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(s_a)), _mm256_loadu_ps(s_w + h)));
  }
#else
  for (int e = 0; e < 16; ++e) v[e] = (static_cast<float>(sums[e]) * s_a) * s_w[e];
#endif
}

// The sums of `rows` rows x one block in plain C++, or AVX2: per group, |a| (unsigned) times
// sign(a) w in pairs (vpmaddubsw, at most 2 127^2), then pairs of pairs (vpmaddwd by ones).
void int8_block(Index rows, const std::int8_t* A, Index lda, const std::int8_t* P, Index groups, std::int32_t* sums) {
  for (Index r = 0; r < rows; ++r) {
    const std::int8_t* a = A + r * lda;
#if defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    for (Index kg = 0; kg < groups; ++kg) {
      std::int32_t group;
      std::memcpy(&group, a + kg * 4, 4);
      const __m256i av = _mm256_set1_epi32(group), magnitude = _mm256_abs_epi8(av);
      const __m256i* w = reinterpret_cast<const __m256i*>(P + kg * kFrozenBlock * 4);
      const __m256i w0 = _mm256_sign_epi8(_mm256_loadu_si256(w), av);
      const __m256i w1 = _mm256_sign_epi8(_mm256_loadu_si256(w + 1), av);
      acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, w0), ones));
      acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, w1), ones));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + r * kFrozenBlock), acc0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sums + r * kFrozenBlock + 8), acc1);
#else
    std::int32_t acc[kFrozenBlock] = {};
    for (Index kg = 0; kg < groups; ++kg) {
      const std::int8_t* w = P + kg * kFrozenBlock * 4;
      for (Index j = 0; j < kFrozenBlock; ++j)
        for (Index e = 0; e < 4; ++e) acc[j] += std::int32_t(a[kg * 4 + e]) * std::int32_t(w[j * 4 + e]);
    }
    std::memcpy(sums + r * kFrozenBlock, acc, sizeof acc);
#endif
  }
}

#if defined(__AVX512F__)
// Adds v to the output at row r, block b of W, lanes past the block's width masked off: the epilogue
// of the AVX-512 tiles, lane for lane the operations of emit().
__attribute__((target("avx512f"))) inline void emit_packet(const Output& out, Index r, const FrozenMatrix& W, Index b,
                                                           __m512 v) {
  const Index col = W.column(b), width = W.width(b);
  const __mmask16 mask = width == kFrozenBlock ? __mmask16(0xffff) : __mmask16((1u << width) - 1);
  float* z = out.z + r * out.ldz + col;
  if (out.accumulate)
    v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, z), v);
  else if (out.bias)
    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out.bias + col));
  _mm512_mask_storeu_ps(z, mask, v);
}

// AVX512_VNNI: MR rows x NB blocks of 16 int32 sums in registers, from row r0 and block b0; the
// 4-byte group of each row broadcast and shifted to unsigned (xor 0x80 adds 128), then W's offsets
// taken off and the sums dequantized into the output.
template <int MR, int NB>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_tile_vnni(const std::int8_t* A, Index lda,
                                                                           const float* sa, const FrozenMatrix& W,
                                                                           Index r0, Index b0, const Output& out) {
  __m512i acc[MR][NB];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_si512();
  const __m512i shift = _mm512_set1_epi32(static_cast<int>(0x80808080u));
  const Index groups = W.groups, block_stride = groups * kFrozenBlock * 4;
  const std::int8_t* P = W.q.data() + b0 * block_stride;
  A += r0 * lda;
  for (Index kg = 0; kg < groups; ++kg) {
    __m512i w[NB];
#pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) w[b] = _mm512_loadu_si512(P + b * block_stride + kg * kFrozenBlock * 4);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      std::int32_t group;
      std::memcpy(&group, A + r * lda + kg * 4, 4);
      const __m512i a = _mm512_xor_si512(_mm512_set1_epi32(group), shift);
#pragma GCC unroll 16
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], a, w[b]);
    }
  }
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b) {
    const Index block = b0 + b;
    const __m512i offset = _mm512_loadu_si512(W.block_offset.data() + block * kFrozenBlock);
    const __m512 scale = _mm512_loadu_ps(W.block_scale.data() + block * kFrozenBlock);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][b], offset));
      emit_packet(out, r0 + r, W, block, _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(sa[r0 + r])), scale));
    }
  }
}

using Int8Tile = void (*)(const std::int8_t*, Index, const float*, const FrozenMatrix&, Index, Index, const Output&);

// The tile for mr rows (1-4) and nb blocks (1-4), or one row and 8 blocks (over_tiles).
Int8Tile int8_tile(Index mr, Index nb) {
  if (nb == 8) return int8_tile_vnni<1, 8>;
  static const Int8Tile tiles[4][4] = {
      {int8_tile_vnni<1, 1>, int8_tile_vnni<1, 2>, int8_tile_vnni<1, 3>, int8_tile_vnni<1, 4>},
      {int8_tile_vnni<2, 1>, int8_tile_vnni<2, 2>, int8_tile_vnni<2, 3>, int8_tile_vnni<2, 4>},
      {int8_tile_vnni<3, 1>, int8_tile_vnni<3, 2>, int8_tile_vnni<3, 3>, int8_tile_vnni<3, 4>},
      {int8_tile_vnni<4, 1>, int8_tile_vnni<4, 2>, int8_tile_vnni<4, 3>, int8_tile_vnni<4, 4>},
  };
  return tiles[mr - 1][nb - 1];
}
#endif

// out (+)= dequantized q_a q_W^T for rows [0, rows) of A (quantized, scales sa) and blocks [b0, b1);
// on vpdpbusd if `dot` (the AVX-512 build only).
void int8_product(Index rows, const std::int8_t* A, Index lda, const float* sa, const FrozenMatrix& W, Index b0,
                  Index b1, const Output& out, [[maybe_unused]] bool dot) {
  const Index block_stride = W.groups * kFrozenBlock * 4;
  alignas(64) std::int32_t sums[4 * kFrozenBlock];
  alignas(64) float v[kFrozenBlock];
  auto finish = [&](Index r, Index b, const std::int32_t* s) {
    dequantize(s, sa[r], W.block_scale.data() + b * kFrozenBlock, v);
    emit(out, r, W.column(b), W.width(b), v);
  };
#if defined(__AVX512F__)
  if (dot) {
    over_tiles(rows, b0, b1,
               [&](Index mr, Index nb, Index r0, Index b) { int8_tile(mr, nb)(A, lda, sa, W, r0, b, out); });
    return;
  }
#endif
  over_blocks(rows, b0, b1, [&](Index mr, Index r0, Index b) {
    int8_block(mr, A + r0 * lda, lda, W.q.data() + b * block_stride, W.groups, sums);
    for (Index r = 0; r < mr; ++r) finish(r0 + r, b, sums + r * kFrozenBlock);
  });
}

// ---- bf16 ----------------------------------------------------------------------------------------

// The float sums of `rows` (<= 4) rows x one block of 16 columns, bf16 widened to float: per group
// the block's weights widened once (a shift for the even k, a mask for the odd), then two FMAs a row
// and half block, 8 independent chains for 4 rows.
void bf16_block(Index rows, const std::uint16_t* A, Index lda, const std::uint16_t* P, Index groups, float* sums) {
#if defined(__AVX2__)
  __m256 acc[4][2];
  for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (Index kg = 0; kg < groups; ++kg) {
    const __m256i* w = reinterpret_cast<const __m256i*>(P + kg * kFrozenBlock * 2);
    const __m256i w0 = _mm256_loadu_si256(w), w1 = _mm256_loadu_si256(w + 1);
    const __m256 even0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
    const __m256 odd0 = _mm256_castsi256_ps(_mm256_and_si256(w0, high));
    const __m256 even1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
    const __m256 odd1 = _mm256_castsi256_ps(_mm256_and_si256(w1, high));
    for (Index r = 0; r < rows; ++r) {
      const std::uint16_t* a = A + r * lda + 2 * kg;
      const __m256 ae = _mm256_set1_ps(from_bf16(a[0])), ao = _mm256_set1_ps(from_bf16(a[1]));
      acc[r][0] = _mm256_fmadd_ps(ao, odd0, _mm256_fmadd_ps(ae, even0, acc[r][0]));
      acc[r][1] = _mm256_fmadd_ps(ao, odd1, _mm256_fmadd_ps(ae, even1, acc[r][1]));
    }
  }
  for (Index r = 0; r < rows; ++r) {
    _mm256_storeu_ps(sums + r * kFrozenBlock, acc[r][0]);
    _mm256_storeu_ps(sums + r * kFrozenBlock + 8, acc[r][1]);
  }
#else
  for (Index r = 0; r < rows; ++r) {
    const std::uint16_t* a = A + r * lda;
    float acc[kFrozenBlock] = {};
    for (Index kg = 0; kg < groups; ++kg) {
      const std::uint16_t* w = P + kg * kFrozenBlock * 2;
      const float even = from_bf16(a[2 * kg]), odd = from_bf16(a[2 * kg + 1]);
      for (Index j = 0; j < kFrozenBlock; ++j)
        acc[j] = (acc[j] + even * from_bf16(w[2 * j])) + odd * from_bf16(w[2 * j + 1]);
    }
    std::memcpy(sums + r * kFrozenBlock, acc, sizeof acc);
  }
#endif
}

#if defined(__AVX512F__)
// AVX512_BF16: a pair of bf16 of a row broadcast against 16 columns' pairs, MR rows x NB blocks of
// float sums from row r0 and block b0, added into the output.
template <int MR, int NB>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_tile_dot(const std::uint16_t* A, Index lda,
                                                                          const FrozenMatrix& W, Index r0, Index b0,
                                                                          const Output& out) {
  __m512 acc[MR][NB];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  const Index groups = W.groups, block_stride = groups * kFrozenBlock * 2;
  const std::uint16_t* P = W.bf16.data() + b0 * block_stride;
  A += r0 * lda;
  for (Index kg = 0; kg < groups; ++kg) {
    __m512i w[NB];
#pragma GCC unroll 16
    for (int b = 0; b < NB; ++b) w[b] = _mm512_loadu_si512(P + b * block_stride + kg * kFrozenBlock * 2);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, A + r * lda + kg * 2, 4);
      const __m512i a = _mm512_set1_epi32(pair);
#pragma GCC unroll 16
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)a, (__m512bh)w[b]);
    }
  }
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b)
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) emit_packet(out, r0 + r, W, b0 + b, acc[r][b]);
}

using Bf16Tile = void (*)(const std::uint16_t*, Index, const FrozenMatrix&, Index, Index, const Output&);

Bf16Tile bf16_tile(Index mr, Index nb) {  // as int8_tile
  if (nb == 8) return bf16_tile_dot<1, 8>;
  static const Bf16Tile tiles[4][4] = {
      {bf16_tile_dot<1, 1>, bf16_tile_dot<1, 2>, bf16_tile_dot<1, 3>, bf16_tile_dot<1, 4>},
      {bf16_tile_dot<2, 1>, bf16_tile_dot<2, 2>, bf16_tile_dot<2, 3>, bf16_tile_dot<2, 4>},
      {bf16_tile_dot<3, 1>, bf16_tile_dot<3, 2>, bf16_tile_dot<3, 3>, bf16_tile_dot<3, 4>},
      {bf16_tile_dot<4, 1>, bf16_tile_dot<4, 2>, bf16_tile_dot<4, 3>, bf16_tile_dot<4, 4>},
  };
  return tiles[mr - 1][nb - 1];
}
#endif

// out (+)= bf16(a) bf16(W)^T for rows [0, rows) of A (rounded already) and blocks [b0, b1); on
// vdpbf16ps if `dot` (the AVX-512 build only).
void bf16_product(Index rows, const std::uint16_t* A, Index lda, const FrozenMatrix& W, Index b0, Index b1,
                  const Output& out, [[maybe_unused]] bool dot) {
  const Index block_stride = W.groups * kFrozenBlock * 2;
  alignas(64) float sums[4 * kFrozenBlock];
#if defined(__AVX512F__)
  if (dot) {
    over_tiles(rows, b0, b1, [&](Index mr, Index nb, Index r0, Index b) { bf16_tile(mr, nb)(A, lda, W, r0, b, out); });
    return;
  }
#endif
  over_blocks(rows, b0, b1, [&](Index mr, Index r0, Index b) {
    bf16_block(mr, A + r0 * lda, lda, W.bf16.data() + b * block_stride, W.groups, sums);
    for (Index r = 0; r < mr; ++r) emit(out, r0 + r, W.column(b), W.width(b), sums + r * kFrozenBlock);
  });
}

// ---- fp32 ----------------------------------------------------------------------------------------

// MR rows x NB blocks of float sums (16 / W packets a block) from row r0 and block b0, one FMA chain
// per output over k in order, added into the output. NB = W / 4 blocks keep 4 MR accumulators.
template <int MR, int NB>
void f32_tile(const float* A, Index lda, const FrozenMatrix& W, Index r0, Index b0, const Output& out) {
  using S = Simd<float>;
  constexpr int V = kFrozenBlock / S::kWidth;  // packets per block
  typename S::Packet acc[MR][NB * V];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NB * V; ++v) acc[r][v] = S::set1(0.0f);
  const Index K = W.K, block_stride = K * kFrozenBlock;
  const float* P = W.f32.data() + b0 * block_stride;
  A += r0 * lda;
  for (Index k = 0; k < K; ++k) {
    typename S::Packet w[NB * V];
#pragma GCC unroll 16
    for (int v = 0; v < NB * V; ++v)
      w[v] = S::load(P + (v / V) * block_stride + k * kFrozenBlock + (v % V) * S::kWidth);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const auto a = S::set1(A[r * lda + k]);
#pragma GCC unroll 16
      for (int v = 0; v < NB * V; ++v) acc[r][v] = S::madd(a, w[v], acc[r][v]);
    }
  }
  alignas(64) float sums[kFrozenBlock];
#pragma GCC unroll 16
  for (int b = 0; b < NB; ++b)
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) S::store(sums + v * S::kWidth, acc[r][b * V + v]);
      emit(out, r0 + r, W.column(b0 + b), W.width(b0 + b), sums);
    }
}

// out (+)= a W^T for rows [0, rows) of A and blocks [b0, b1).
// (Blocks outside, as over_tiles.)
void f32_product(Index rows, const float* A, Index lda, const FrozenMatrix& W, Index b0, Index b1, const Output& out) {
  constexpr int NB = std::max<int>(1, int(Simd<float>::kWidth) / 4);
  Index b = b0;
  for (; b + NB <= b1; b += NB)
    for (Index r0 = 0; r0 < rows; r0 += 4) {
      switch (std::min<Index>(4, rows - r0)) {
        case 4: f32_tile<4, NB>(A, lda, W, r0, b, out); break;
        case 3: f32_tile<3, NB>(A, lda, W, r0, b, out); break;
        case 2: f32_tile<2, NB>(A, lda, W, r0, b, out); break;
        default: f32_tile<1, NB>(A, lda, W, r0, b, out); break;
      }
    }
  for (; b < b1; ++b)
    for (Index r = 0; r < rows; ++r) f32_tile<1, 1>(A, lda, W, r, b, out);
}

// ---- the product kinds ---------------------------------------------------------------------------
// What the frozen cell (frozen_kernels.cpp) is instantiated with, once per kind: how it converts a left
// operand's rows (into `to`, `stride` numbers apart, with a scale a row in `scales` for int8), the
// product of converted rows with a FrozenMatrix (on the kind's dot instruction where `dot`: the plan's
// CellPlan::dot), and whether the cell's gates must be the same bits on every ISA (kExactGates).

struct F32Product {
  static constexpr bool kConverts = false;  // the rows as they are
  static constexpr bool kExactGates = false;
  static void multiply(Index rows, const void* a, Index lda, const float*, const FrozenMatrix& W, Index b0, Index b1,
                       const Output& out, bool) {
    f32_product(rows, static_cast<const float*>(a), lda, W, b0, b1, out);
  }
};

struct Bf16Product {
  static constexpr bool kConverts = true;
  static constexpr bool kExactGates = false;
  static const void* convert(Index rows, Index K, const float* a, Index lda, unsigned char* to, Index stride, float*) {
    round_rows(rows, K, a, lda, reinterpret_cast<std::uint16_t*>(to), stride);
    return to;
  }
  static void multiply(Index rows, const void* a, Index lda, const float*, const FrozenMatrix& W, Index b0, Index b1,
                       const Output& out, bool dot) {
    bf16_product(rows, static_cast<const std::uint16_t*>(a), lda, W, b0, b1, out, dot);
  }
};

struct Int8Product {
  static constexpr bool kConverts = true;
  static constexpr bool kExactGates = true;  // int8's promise: the same bits on every instruction set
  static const void* convert(Index rows, Index K, const float* a, Index lda, unsigned char* to, Index stride,
                             float* scales) {
    quantize_rows(rows, K, a, lda, reinterpret_cast<std::int8_t*>(to), stride, scales);
    return to;
  }
  static void multiply(Index rows, const void* a, Index lda, const float* scales, const FrozenMatrix& W, Index b0,
                       Index b1, const Output& out, bool dot) {
    int8_product(rows, static_cast<const std::int8_t*>(a), lda, scales, W, b0, b1, out, dot);
  }
};

}  // namespace
}  // namespace lstm_fast::detail
