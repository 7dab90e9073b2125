// bf16 training's products on vdpbf16ps (included by forward.cpp and backward.cpp, so compiled once per
// ISA). With CellPlan::precision bf16 every product's operands are bfloat16 values held in floats
// (network.cpp rounds the weights and x, the passes round h, m and the gradients where they write
// them), so the float kernels (recurrent.hpp) already compute the mixed-precision products exactly as
// docs/api.md states, with float sums. Where the plan says so (CellPlan::dot: AVX512_BF16) the products
// run instead on vdpbf16ps: the projection, the recurrent products, dh and dX on the frozen models' bf16
// kernels (frozen_products.hpp; the weights packed once per pass, the left operand's rows converted,
// exactly: their upper halves, per block of rows in a buffer of the member's own), and the weight
// gradients on the pair-row kernel below. The same products, two per lane, summed in another order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cell/cell_kernel.hpp"
#include "kernels/frozen_products.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// The blocks of W (FrozenMatrix in parts: the gates) that hold units [u0, u1) of part `part`.
inline std::pair<Index, Index> blocks_of(const FrozenMatrix& W, Index part, Index u0, Index u1) {
  return {part * W.part_blocks() + u0 / kFrozenBlock, part * W.part_blocks() + (u1 + kFrozenBlock - 1) / kFrozenBlock};
}

// Rows of a [rows, K] (lda apart) whose floats hold bfloat16 values already -> their bf16 bits (the upper
// halves: exact), stride apart, zero past K.
inline void bf16_bits(Index rows, Index K, const float* a, Index lda, std::uint16_t* out, Index stride) {
  for (Index r = 0; r < rows; ++r) {
    const float* v = a + r * lda;
    std::uint16_t* o = out + r * stride;
    Index k = 0;
#if defined(__AVX512F__)
    for (; k + 16 <= K; k += 16) {
      const __m512i bits = _mm512_srli_epi32(_mm512_castps_si512(_mm512_loadu_ps(v + k)), 16);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + k), _mm512_cvtepi32_epi16(bits));
    }
#endif
    for (; k < K; ++k) {
      std::uint32_t bits;
      std::memcpy(&bits, v + k, 4);
      o[k] = static_cast<std::uint16_t>(bits >> 16);
    }
    std::fill(o + K, o + stride, std::uint16_t(0));
  }
}

// The members' buffers of left-operand rows in bf16, and the products through them.
struct Bf16Rows {
  static constexpr Index kRows = 128;  // rows converted at a time by product() (as panel_gemm's row blocks)
  Index capacity = 0;                  // rows a member's buffer holds: kRows, or a step's B if more
  Index stride = 0;                    // numbers a row: the deepest product's, in whole pairs
  std::vector<std::uint16_t> rows;     // member j's from j * capacity * stride

  Bf16Rows() = default;
  Bf16Rows(int team, Index batch, Index depth)
      : capacity(std::max(kRows, batch)),
        stride((depth + 1) / 2 * 2),
        rows(static_cast<std::size_t>(team * capacity * stride)) {}

  // Rows [0, n) of A (floats holding bf16 values, lda apart; n <= capacity), K deep, in member j's buffer.
  const std::uint16_t* convert(int j, Index n, Index K, const float* A, Index lda) {
    std::uint16_t* buffer = rows.data() + j * capacity * stride;
    bf16_bits(n, K, A, lda, buffer, (K + 1) / 2 * 2);
    return buffer;
  }
  // out (+)= a W^T for rows [0, n) of a (converted) and blocks [b0, b1) of W (out.bias added if given).
  static void multiply(const std::uint16_t* a, Index n, const FrozenMatrix& W, Index b0, Index b1, const Output& out) {
    bf16_product(n, a, W.groups * 2, W, b0, b1, out, true);
  }
  // The two for any number of rows of A, kRows at a time.
  void product(int j, Index n, const float* A, Index lda, const FrozenMatrix& W, Index b0, Index b1,
               const Output& out) {
    for (Index r0 = 0; r0 < n; r0 += kRows) {
      const Index m = std::min(kRows, n - r0);
      multiply(convert(j, m, W.K, A + r0 * lda, lda), m, W, b0, b1,
               {out.z + r0 * out.ldz, out.ldz, out.bias, out.accumulate});
    }
  }
};

// ---- the weight gradients: dW (+)= dA^T M over a block's rows ----------------------------------------
// Both operands in pair rows: P[kg][c] = bf16(M[2 kg][c]) | bf16(M[2 kg + 1][c]) << 16, what one lane of
// vdpbf16ps takes, so that dW[g][c] = sum_kg A[kg][g] . B[kg][c] sums the rows two at a time.

// Columns [c0, c1) of rows [0, n) of M (floats holding bf16 values, ldm apart) -> pair rows, ldo apart,
// zero past the columns up to ldo and in the odd row past n.
inline void pair_rows(Index n, const float* M, Index ldm, Index c0, Index c1, std::uint32_t* out, Index ldo) {
  for (Index kg = 0; kg < (n + 1) / 2; ++kg) {
    const float* even = M + 2 * kg * ldm;
    const float* odd = 2 * kg + 1 < n ? even + ldm : nullptr;
    std::uint32_t* o = out + kg * ldo - c0;
    Index c = c0;
#if defined(__AVX512F__)
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    for (; c + 16 <= c1; c += 16) {
      const __m512i e = _mm512_srli_epi32(_mm512_castps_si512(_mm512_loadu_ps(even + c)), 16);
      const __m512i d =
          odd ? _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(odd + c)), high) : _mm512_setzero_si512();
      _mm512_storeu_si512(o + c, _mm512_or_si512(e, d));
    }
#endif
    for (; c < c1; ++c) {
      std::uint32_t lo, hi = 0;
      std::memcpy(&lo, even + c, 4);
      if (odd) std::memcpy(&hi, odd + c, 4);
      o[c] = (lo >> 16) | (hi & 0xffff0000u);
    }
    std::fill(o + c1, o + c0 + ldo, 0u);
  }
}

#if defined(__AVX512F__)
// C[r][c] (+)= sum_kg A[kg][r] . B[kg][c] for MR rows and NV packets of 16 columns (cols valid).
template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void pair_tile(Index groups, const std::uint32_t* A, Index lda,
                                                                      const std::uint32_t* B, Index ldb, float* C,
                                                                      Index ldc, Index cols, bool add) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (Index kg = 0; kg < groups; ++kg) {
    __m512i b[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(B + kg * ldb + v * 16);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(A[kg * lda + r]));
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], (__m512bh)a, (__m512bh)b[v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const Index width = std::min<Index>(16, cols - v * 16);
      const __mmask16 mask = width >= 16 ? __mmask16(0xffff) : __mmask16((1u << width) - 1);
      float* c = C + r * ldc + v * 16;
      __m512 x = acc[r][v];
      if (add) x = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, c), x);
      _mm512_mask_storeu_ps(c, mask, x);
    }
}

using PairTile = void (*)(Index, const std::uint32_t*, Index, const std::uint32_t*, Index, float*, Index, Index, bool);

template <int MR>
PairTile pair_tile_of(Index nv) {
  return nv == 1 ? pair_tile<MR, 1> : nv == 2 ? pair_tile<MR, 2> : pair_tile<MR, 3>;
}

// C[rows, cols] (+)= A^T B over `groups` pair rows (A: [groups, rows], B: [groups, cols] padded to whole
// packets): columns in slices of 3 packets, each swept by tiles of 8 rows while its slice of B is in L2.
inline void pair_gemm(Index rows, Index cols, Index groups, const std::uint32_t* A, Index lda, const std::uint32_t* B,
                      Index ldb, float* C, Index ldc, bool add) {
  for (Index c0 = 0; c0 < cols; c0 += 48) {
    const Index width = std::min<Index>(48, cols - c0), nv = (width + 15) / 16;
    auto run = [&](PairTile tile, Index r0) {
      tile(groups, A + r0, lda, B + c0, ldb, C + r0 * ldc + c0, ldc, width, add);
    };
    Index r0 = 0;
    for (; r0 + 8 <= rows; r0 += 8) run(pair_tile_of<8>(nv), r0);
    for (; r0 + 4 <= rows; r0 += 4) run(pair_tile_of<4>(nv), r0);
    for (; r0 < rows; ++r0) run(pair_tile_of<1>(nv), r0);
  }
}
#endif

}  // namespace
}  // namespace lstm_fast::detail::LSTM_FAST_ISA
