// The per-step recurrent products on weights packed once per call (included by cell.cpp, so compiled
// once per ISA like gates.hpp).
//
// Each time step multiplies a few rows (the batch, often 1 to 64) by a member's slice of W_hh:
//   forward:   Z_t[:, gate*H + u0 + j] += h_{t-1} W_hh[gate*H + u0 + j, :]^T      (K = R)
//   backward:  dh[:, r0 + j]            = dZ_t W_hh[:, r0 + j]                     (K = 4H)
// A general GEMM re-packs the weight operand on every call, i.e. on every time step. Here the weights
// are packed once per call into panels: the output columns cut into blocks of kPanel = 3 packets, each
// block stored contiguously as P[k][0 .. kPanel) (zero-padded past the last column), so that a block's
// rows of P are one stream with no cache-set aliasing. A register-blocked kernel keeps a tile of
// MR rows x NB blocks of outputs in registers while it streams K: per k, 3 NB packet loads of P, MR
// broadcasts of the left operand, 3 MR NB FMAs. K is cut into fixed blocks of kDepth, so that a
// block's slice of P stays in L1 while every row block reads it.
//
// Every element is summed over k in the same order whatever the slice bounds, the row count or memory
// alignment (unaligned loads, padded tails, K blocks fixed by K alone), so results depend on the
// values alone.
#pragma once

#include <algorithm>

#include "gates.hpp"

namespace lstm_fast::detail {
namespace {

inline Index round_up(Index n, Index multiple) { return (n + multiple - 1) / multiple * multiple; }

template <typename T>
constexpr Index kPanel = 3 * Simd<T>::kWidth;  // output columns per packed block
constexpr Index kDepth = 128;                  // k per pass over the outputs

// Numbers in the packed panel of n output columns over depth K.
template <typename T>
Index panel_size(Index n, Index K) {
  return round_up(n, kPanel<T>) * K;
}

// Rows [row0, row0 + n) of W (row-major, leading dimension ldw), columns [col0, col0 + K) ->
// the panel of W^T: block jb holds P[k][j] = W[row0 + jb kPanel + j][col0 + k]. Each row of W is
// read in order and written down one column of its block (the block, K x kPanel, stays in cache).
template <typename T>
void pack_transposed(const T* W, Index ldw, Index row0, Index col0, Index n, Index K, T* P) {
  constexpr Index PW = kPanel<T>;
  for (Index j0 = 0; j0 < n; j0 += PW) {
    T* block = P + j0 * K;  // = (j0 / PW) * K * PW
    const Index width = std::min(PW, n - j0);
    for (Index j = 0; j < width; ++j) {
      const T* w = W + (row0 + j0 + j) * ldw + col0;
      for (Index k = 0; k < K; ++k) block[k * PW + j] = w[k];
    }
    for (Index k = 0; k < K; ++k) std::fill(block + k * PW + width, block + (k + 1) * PW, T(0));
  }
}

// Columns [col0, col0 + n) of W's rows 0 .. K-1 -> the panel: block jb holds P[k][j] = W[k][col0 + jb kPanel + j].
template <typename T>
void pack_columns(const T* W, Index ldw, Index col0, Index n, Index K, T* P) {
  constexpr Index PW = kPanel<T>;
  for (Index j0 = 0; j0 < n; j0 += PW) {
    T* block = P + j0 * K;
    const Index width = std::min(PW, n - j0);
    for (Index k = 0; k < K; ++k) {
      const T* w = W + k * ldw + col0 + j0;
      std::copy(w, w + width, block + k * PW);
      std::fill(block + k * PW + width, block + (k + 1) * PW, T(0));
    }
  }
}

// C[r][j] (+)= sum_{k < K} A[r][k] P[k][j] for r < MR and the NB blocks from P on (block_stride apart),
// j < cols <= NB kPanel. Reads whole blocks (the padding makes that safe); writes only the `cols`
// valid columns of C. Every loop over r, b and v is unrolled so that acc lives in registers: a loop
// the compiler keeps rolled indexes acc at run time, puts the array on the stack and stores it every k.
template <typename T, int MR, int NB, bool kAccumulate>
void tile(Index K, const T* A, Index lda, const T* P, Index block_stride, T* C, Index ldc, Index cols) {
  using S = Simd<T>;
  using Packet = typename S::Packet;
  constexpr Index W = S::kWidth, PW = kPanel<T>;
  constexpr int NV = 3 * NB;  // packets per row of the tile
  Packet acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) acc[r][v] = S::set1(T(0));
  for (Index k = 0; k < K; ++k) {
    Packet b[NV];
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) b[v] = S::load(P + (v / 3) * block_stride + k * PW + (v % 3) * W);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const Packet a = S::set1(A[r * lda + k]);
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) acc[r][v] = S::madd(a, b[v], acc[r][v]);
    }
  }
  if (cols == NV * W) {  // a whole tile
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
      for (int v = 0; v < NV; ++v) {
        T* c = C + r * ldc + v * W;
        S::store(c, kAccumulate ? S::add(S::load(c), acc[r][v]) : acc[r][v]);
      }
    return;
  }
  // The last, partial block of a slice: through a buffer, only the valid columns written.
  T lanes[MR][NV * W];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) S::store(&lanes[r][v * W], acc[r][v]);
  for (int r = 0; r < MR; ++r) {
    T* c = C + r * ldc;
    for (Index j = 0; j < cols; ++j) c[j] = kAccumulate ? c[j] + lanes[r][j] : lanes[r][j];
  }
}

// Rows [0, rows) of C (a multiple of MR), columns [0, cols): NB blocks at a time, each group swept by
// row blocks of MR while its slice of P is in L1; a last group of fewer blocks takes a narrower tile.
template <typename T, int MR, int NB, bool kAccumulate>
void tiles(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, Index block_stride, T* C,
           Index ldc) {
  constexpr Index PW = kPanel<T>;
  for (Index j0 = 0; j0 < cols; j0 += NB * PW) {
    const Index nc = std::min(NB * PW, cols - j0);
    const T* p = P + (j0 / PW) * block_stride;
    if (nc > (NB - 1) * PW) {
      for (Index r0 = 0; r0 < rows; r0 += MR)
        tile<T, MR, NB, kAccumulate>(K, A + r0 * lda, lda, p, block_stride, C + r0 * ldc + j0, ldc, nc);
    } else if constexpr (NB > 1) {
      tiles<T, MR, NB - 1, kAccumulate>(rows, nc, K, A, lda, p, block_stride, C + j0, ldc);
    }
  }
}

// Tiles for rows whatever their count: as many rows per tile as the registers allow (8 with 32
// vector registers, else 4: MR x 3 accumulators plus 3 packets of P), then the last 1 to 3 rows over
// more blocks, so that at least 9 independent FMA chains stay in flight (latency 4 x 2 ports).
template <bool kAccumulate, typename T>
void panel_product_depth(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, Index block_stride,
                         T* C, Index ldc) {
  constexpr int kRows = Simd<T>::kWidth * sizeof(T) == 64 ? 8 : 4;  // AVX-512: 32 registers
  Index done = rows / kRows * kRows;
  if (done) tiles<T, kRows, 1, kAccumulate>(done, cols, K, A, lda, P, block_stride, C, ldc);
  if constexpr (kRows == 8) {
    if (rows - done >= 4) {
      tiles<T, 4, 1, kAccumulate>(4, cols, K, A + done * lda, lda, P, block_stride, C + done * ldc, ldc);
      done += 4;
    }
  }
  const T* a = A + done * lda;
  T* c = C + done * ldc;
  switch (rows - done) {
    case 3: tiles<T, 3, 1, kAccumulate>(3, cols, K, a, lda, P, block_stride, c, ldc); break;
    case 2: tiles<T, 2, 2, kAccumulate>(2, cols, K, a, lda, P, block_stride, c, ldc); break;
    case 1: tiles<T, 1, 3, kAccumulate>(1, cols, K, a, lda, P, block_stride, c, ldc); break;
    default: break;
  }
}

// C[rows, cols] (+)= A[rows, K] P[K, cols], P a panel packed by pack_transposed or pack_columns.
template <bool kAccumulate, typename T>
void panel_product(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, T* C, Index ldc) {
  constexpr Index PW = kPanel<T>;
  const Index block_stride = K * PW;
  for (Index k0 = 0; k0 < K; k0 += kDepth) {
    const Index depth = std::min(kDepth, K - k0);
    if (kAccumulate || k0 > 0)
      panel_product_depth<true>(rows, cols, depth, A + k0, lda, P + k0 * PW, block_stride, C, ldc);
    else
      panel_product_depth<false>(rows, cols, depth, A + k0, lda, P + k0 * PW, block_stride, C, ldc);
  }
}

}  // namespace
}  // namespace lstm_fast::detail
