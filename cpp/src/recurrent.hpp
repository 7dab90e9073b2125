// The per-step recurrent products on weights packed once per call (included by cell.cpp, so compiled
// once per ISA like gates.hpp).
//
// Each time step multiplies a few rows (the batch, often 1 to 64) by a member's slice of W_hh:
//   forward:   Z_t[:, gate*H + u0 + j] += h_{t-1} W_hh[gate*H + u0 + j, :]^T      (K = R)
//   backward:  dh[:, r0 + j]            = dZ_t W_hh[:, r0 + j]                     (K = 4H)
// A general GEMM re-packs the weight operand on every call, i.e. on every step, and its blocking is
// tuned for large operands. Here the weights are packed once per call into panels P[k][j] (j the
// output column, contiguous, zero-padded to whole SIMD packets), and a register-blocked kernel keeps
// an MR x NV-packet tile of outputs in registers while it streams K: per k, NV packet loads of P, MR
// broadcasts of the left operand, MR*NV FMAs. The panel slice of one column block is reused by every
// row block while it is still in L1.
//
// Every element is summed over k in the same order whatever the slice bounds or memory alignment
// (unaligned loads, padded tails), so results depend on the values alone.
#pragma once

#include <algorithm>

#include "gates.hpp"

namespace lstm_fast::detail {
namespace {

inline Index round_up(Index n, Index multiple) { return (n + multiple - 1) / multiple * multiple; }

// Rows of W (row-major, leading dimension ldw) -> panel P[k][j] = W[row0 + j][col0 + k] for
// j < n, k < K; P's rows are `ldp` long (ldp >= n, a multiple of the packet width), zeros past n.
template <typename T>
void pack_transposed(const T* W, Index ldw, Index row0, Index col0, Index n, Index K, Index ldp, T* P) {
  for (Index k = 0; k < K; ++k) {
    T* p = P + k * ldp;
    for (Index j = 0; j < n; ++j) p[j] = W[(row0 + j) * ldw + col0 + k];
    std::fill(p + n, p + ldp, T(0));
  }
}

// Columns [col0, col0 + n) of W's rows 0..K-1 -> panel P[k][j] = W[k][col0 + j], zero-padded to ldp.
template <typename T>
void pack_columns(const T* W, Index ldw, Index col0, Index n, Index K, Index ldp, T* P) {
  for (Index k = 0; k < K; ++k) {
    std::copy(W + k * ldw + col0, W + k * ldw + col0 + n, P + k * ldp);
    std::fill(P + k * ldp + n, P + (k + 1) * ldp, T(0));
  }
}

// C[r][j] (+)= sum_k A[r][k] P[k][j] for r < MR, j < cols <= NV * W. Reads P up to NV whole packets
// per row (the padding makes that safe); writes only the `cols` valid columns of C.
template <typename T, int MR, int NV, bool kAccumulate>
void tile(Index K, const T* A, Index lda, const T* P, Index ldp, T* C, Index ldc, Index cols) {
  using S = Simd<T>;
  using Packet = typename S::Packet;
  constexpr Index W = S::kWidth;
  // Every loop over r and v is unrolled, so that acc lives in registers: a loop the compiler keeps
  // rolled indexes acc at run time, which puts the array on the stack and stores it every k.
  Packet acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[r][v] = S::set1(T(0));
  for (Index k = 0; k < K; ++k) {
    Packet b[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) b[v] = S::load(P + k * ldp + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const Packet a = S::set1(A[r * lda + k]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = S::madd(a, b[v], acc[r][v]);
    }
  }
  if (cols == NV * W) {  // a whole tile
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        T* c = C + r * ldc + v * W;
        S::store(c, kAccumulate ? S::add(S::load(c), acc[r][v]) : acc[r][v]);
      }
    return;
  }
  // The last, partial block of a slice: through a buffer, only the valid columns written.
  T lanes[MR][NV * W];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) S::store(&lanes[r][v * W], acc[r][v]);
  for (int r = 0; r < MR; ++r) {
    T* c = C + r * ldc;
    for (Index j = 0; j < cols; ++j) c[j] = kAccumulate ? c[j] + lanes[r][j] : lanes[r][j];
  }
}

// Rows [0, rows) of C, columns [0, cols): column blocks of NV packets, each swept by row blocks of MR.
template <typename T, int MR, int NV, bool kAccumulate>
void tiles(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, Index ldp, T* C, Index ldc) {
  constexpr Index W = Simd<T>::kWidth, kBlock = NV * W;
  for (Index j0 = 0; j0 < cols; j0 += kBlock) {
    const Index nc = std::min(kBlock, cols - j0);
    const Index packets = (nc + W - 1) / W;
    for (Index r0 = 0; r0 < rows; r0 += MR) {
      const T* a = A + r0 * lda;
      T* c = C + r0 * ldc + j0;
      // A narrower last column block uses a tile with as many packets as it needs.
      if (packets == NV)
        tile<T, MR, NV, kAccumulate>(K, a, lda, P + j0, ldp, c, ldc, nc);
      else if constexpr (NV > 1)
        tiles<T, MR, NV - 1, kAccumulate>(MR, nc, K, a, lda, P + j0, ldp, c, ldc);
    }
  }
}

// C[rows, cols] (+)= A[rows, K] P[K, cols]; P a packed panel (leading dimension ldp, zero-padded).
// Row blocks of 4 (4 x 3 packets: 12 accumulators, within 16 vector registers), then the last 1 to
// 3 rows with more packets per row so that enough independent FMA chains stay in flight. K is cut
// into blocks of kDepth so that a column block's rows of P (kDepth x 3 packets) stay in L1 while
// every row block reads them; the blocks are fixed by K alone, so the order of the sums is too.
constexpr Index kDepth = 128;

template <bool kAccumulate, typename T>
void panel_product_block(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, Index ldp, T* C,
                         Index ldc) {
  const Index main = rows / 4 * 4;
  if (main) tiles<T, 4, 3, kAccumulate>(main, cols, K, A, lda, P, ldp, C, ldc);
  const T* a = A + main * lda;
  T* c = C + main * ldc;
  switch (rows - main) {
    case 3: tiles<T, 3, 3, kAccumulate>(3, cols, K, a, lda, P, ldp, c, ldc); break;
    case 2: tiles<T, 2, 4, kAccumulate>(2, cols, K, a, lda, P, ldp, c, ldc); break;
    case 1: tiles<T, 1, 8, kAccumulate>(1, cols, K, a, lda, P, ldp, c, ldc); break;
    default: break;
  }
}

template <bool kAccumulate, typename T>
void panel_product(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, Index ldp, T* C, Index ldc) {
  for (Index k0 = 0; k0 < K; k0 += kDepth) {
    const Index depth = std::min(kDepth, K - k0);
    if (kAccumulate || k0 > 0)
      panel_product_block<true>(rows, cols, depth, A + k0, lda, P + k0 * ldp, ldp, C, ldc);
    else
      panel_product_block<false>(rows, cols, depth, A + k0, lda, P + k0 * ldp, ldp, C, ldc);
  }
}

}  // namespace
}  // namespace lstm_fast::detail
