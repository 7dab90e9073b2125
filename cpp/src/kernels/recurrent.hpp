// The products on weights packed once per call (included by forward.cpp and backward.cpp, so
// compiled once per ISA like gates.hpp): the per-step recurrent products, and the GEMMs over all
// steps that have a weight matrix as their right operand (the input projection X W_ih^T and
// dX = dZ W_ih).
//
// Each time step multiplies a few rows (the batch, often 1 to 64) by a member's slice of W_hh:
//   forward:   Z_t[:, gate*H + u0 + j] += h_{t-1} W_hh[gate*H + u0 + j, :]^T      (K = R)
//   backward:  dh[:, r0 + j]            = dZ_t W_hh[:, r0 + j]                     (K = 4H)
// A general GEMM re-packs the weight operand on every call, i.e. on every time step. Here the weights
// are packed once per call into panels: the output columns cut into blocks of kPanel = 3 packets (the
// last one as narrow as its columns allow), each block stored contiguously as P[k][0 .. width)
// (zero-padded past the last column), so that a block's rows of P are one stream with no cache-set
// aliasing. A register-blocked kernel keeps a tile of MR rows x NV packets of outputs in registers
// while it streams K: per k, NV packet loads of P, MR broadcasts of the left operand, MR NV FMAs.
// K is cut into fixed blocks of kDepth, so that a block's slice of P stays in L1 while every row
// block reads it.
//
// Every element is summed over k in the same order whatever the slice bounds, the row count or memory
// alignment (unaligned loads, padded tails, K blocks fixed by K alone), so results depend on the
// values alone.
#pragma once

#include <algorithm>

#include "kernels/gates.hpp"

namespace lstm_fast::detail {
namespace {

inline Index round_up(Index n, Index multiple) { return (n + multiple - 1) / multiple * multiple; }

template <typename T>
constexpr Index kPanel = 3 * Simd<T>::kWidth;  // output columns per packed block
constexpr Index kDepth = 128;                  // k per pass over the outputs

// The blocks of a panel of n columns: full ones of kPanel columns, then, for the last n % kPanel
// columns, one block only as wide as the packets they need (a slice of 64 columns is 48 + 16, not
// 48 + 48 with two thirds of the second block's FMAs spent on zeros).
template <typename T>
Index last_block_width(Index n) {
  return round_up(n % kPanel<T>, Simd<T>::kWidth);
}

// The width of the block of a panel of n columns that starts at column j0.
template <typename T>
Index block_width(Index n, Index j0) {
  return n - j0 >= kPanel<T> ? kPanel<T> : last_block_width<T>(n);
}

// Numbers in the packed panel of n output columns over depth K.
template <typename T>
Index panel_size(Index n, Index K) {
  return round_up(n, Simd<T>::kWidth) * K;
}

// Rows [row0, row0 + n) of W (row-major, leading dimension ldw), columns [col0, col0 + K) -> the panel
// of W^T: the block of columns [j0, j0 + width) starts at P + j0 K and holds P[k][j] = W[row0 + j0 + j][col0 + k]
// in rows of `width`. Each row of W is read in order and written down one column of its block (the
// block, K x width, stays in cache).
template <typename T>
void pack_transposed(const T* W, Index ldw, Index row0, Index col0, Index n, Index K, T* P) {
  for (Index j0 = 0; j0 < n; j0 += kPanel<T>) {
    const Index cols = std::min(kPanel<T>, n - j0);
    const Index width = block_width<T>(n, j0);
    T* block = P + j0 * K;
    for (Index j = 0; j < cols; ++j) {
      const T* w = W + (row0 + j0 + j) * ldw + col0;
      for (Index k = 0; k < K; ++k) block[k * width + j] = w[k];
    }
    for (Index k = 0; k < K; ++k) std::fill(block + k * width + cols, block + (k + 1) * width, T(0));
  }
}

// Columns [col0, col0 + n) of W's rows 0 .. K-1 -> the panel, blocks as in pack_transposed:
// P[k][j] = W[k][col0 + j0 + j].
template <typename T>
void pack_columns(const T* W, Index ldw, Index col0, Index n, Index K, T* P) {
  for (Index j0 = 0; j0 < n; j0 += kPanel<T>) {
    const Index cols = std::min(kPanel<T>, n - j0);
    const Index width = block_width<T>(n, j0);
    T* block = P + j0 * K;
    for (Index k = 0; k < K; ++k) {
      const T* w = W + k * ldw + col0 + j0;
      std::copy(w, w + cols, block + k * width);
      std::fill(block + k * width + cols, block + (k + 1) * width, T(0));
    }
  }
}

// C[r][j] (+)= sum_{k < K} A[r][k] P[k][j] for r < MR and j < cols <= (3 NF + NR) packets: NF full
// blocks from P on (block_stride apart, rows of 3 packets), then NR packets of the narrow last block
// at `last` (rows of NR packets). Reads whole packets (the padding makes that safe); writes only the
// `cols` valid columns of C. Every loop over r and v is unrolled so that acc lives in registers: a
// loop the compiler keeps rolled indexes acc at run time, puts the array on the stack and stores it
// every k. Each output is one FMA chain over k in order, whatever the tile's shape.
template <typename T, int MR, int NF, int NR, bool kAccumulate>
void tile(Index K, const T* A, Index lda, const T* P, Index block_stride, const T* last, T* C, Index ldc, Index cols) {
  using S = Simd<T>;
  using Packet = typename S::Packet;
  constexpr Index W = S::kWidth;
  constexpr int NV = 3 * NF + NR;
  Packet acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v) acc[r][v] = S::set1(T(0));
  for (Index k = 0; k < K; ++k) {
    Packet b[NV];
#pragma GCC unroll 32
    for (int v = 0; v < NV; ++v)
      b[v] = v < 3 * NF ? S::load(P + (v / 3) * block_stride + k * 3 * W + (v % 3) * W)
                        : S::load(last + k * NR * W + (v - 3 * NF) * W);
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
  // The last, partial packet of a slice: through a buffer, only the valid columns written.
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

// The last group of a slice: `blocks` (<= NF) full blocks and the narrow block of `narrow` packets,
// as one tile, for rows [0, rows) in steps of MR.
template <typename T, int MR, int NF, bool kAccumulate>
void last_group(Index blocks, Index narrow, Index rows, Index depth, const T* A, Index lda, const T* P,
                Index block_stride, const T* last, T* C, Index ldc, Index cols) {
  if (blocks < NF) {
    if constexpr (NF > 0)
      last_group<T, MR, NF - 1, kAccumulate>(blocks, narrow, rows, depth, A, lda, P, block_stride, last, C, ldc, cols);
    return;
  }
  for (Index r0 = 0; r0 < rows; r0 += MR) {
    const T* a = A + r0 * lda;
    T* c = C + r0 * ldc;
    switch (narrow) {
      case 0:
        if constexpr (NF > 0) tile<T, MR, NF, 0, kAccumulate>(depth, a, lda, P, block_stride, last, c, ldc, cols);
        break;
      case 1: tile<T, MR, NF, 1, kAccumulate>(depth, a, lda, P, block_stride, last, c, ldc, cols); break;
      case 2: tile<T, MR, NF, 2, kAccumulate>(depth, a, lda, P, block_stride, last, c, ldc, cols); break;
      default: tile<T, MR, NF, 3, kAccumulate>(depth, a, lda, P, block_stride, last, c, ldc, cols); break;
    }
  }
}

// Rows [0, rows) of C (a multiple of MR), columns [0, cols), depth [k0, k0 + depth) of a panel of
// full depth K: NB full blocks at a time, each group swept by row blocks of MR while its slice of P
// is in L1; the full blocks left over and the narrow last block go together in one last tile.
template <typename T, int MR, int NB, bool kAccumulate>
void tiles(Index rows, Index cols, Index K, Index k0, Index depth, const T* A, Index lda, const T* P, T* C, Index ldc) {
  constexpr Index W = Simd<T>::kWidth, PW = kPanel<T>;
  const Index blocks = cols / PW, stride = K * PW;
  const T* a = A + k0;
  Index b0 = 0;
  for (; b0 + NB <= blocks; b0 += NB)
    for (Index r0 = 0; r0 < rows; r0 += MR)
      tile<T, MR, NB, 0, kAccumulate>(depth, a + r0 * lda, lda, P + b0 * stride + k0 * PW, stride, nullptr,
                                      C + r0 * ldc + b0 * PW, ldc, NB * PW);
  if (b0 * PW == cols) return;
  // What is left: fewer than NB full blocks, then the narrow one (its rows last_block_width long).
  const Index narrow = last_block_width<T>(cols) / W;
  const T* last = P + blocks * stride + k0 * narrow * W;
  last_group<T, MR, NB - 1, kAccumulate>(blocks - b0, narrow, rows, depth, a, lda, P + b0 * stride + k0 * PW, stride,
                                         last, C + b0 * PW, ldc, cols - b0 * PW);
}

// Tiles for rows whatever their count: as many rows per tile as the registers allow (8 with 32
// vector registers, else 4: MR x 3 accumulators plus 3 packets of P), then the last 1 to 3 rows over
// more blocks, so that at least 9 independent FMA chains stay in flight (latency 4 x 2 ports).
template <bool kAccumulate, typename T>
void panel_product_depth(Index rows, Index cols, Index K, Index k0, Index depth, const T* A, Index lda, const T* P,
                         T* C, Index ldc) {
  constexpr int kRows = Simd<T>::kWidth * sizeof(T) == 64 ? 8 : 4;  // AVX-512: 32 registers
  Index done = rows / kRows * kRows;
  if (done) tiles<T, kRows, 1, kAccumulate>(done, cols, K, k0, depth, A, lda, P, C, ldc);
  if constexpr (kRows == 8) {
    if (rows - done >= 4) {
      tiles<T, 4, 1, kAccumulate>(4, cols, K, k0, depth, A + done * lda, lda, P, C + done * ldc, ldc);
      done += 4;
    }
  }
  const T* a = A + done * lda;
  T* c = C + done * ldc;
  switch (rows - done) {
    case 3: tiles<T, 3, 1, kAccumulate>(3, cols, K, k0, depth, a, lda, P, c, ldc); break;
    case 2: tiles<T, 2, 2, kAccumulate>(2, cols, K, k0, depth, a, lda, P, c, ldc); break;
    case 1: tiles<T, 1, 3, kAccumulate>(1, cols, K, k0, depth, a, lda, P, c, ldc); break;
    default: break;
  }
}

// C[rows, cols] (+)= A[rows, K] P[K, cols], P a panel packed by pack_transposed or pack_columns.
template <bool kAccumulate, typename T>
void panel_product(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, T* C, Index ldc) {
  for (Index k0 = 0; k0 < K; k0 += kDepth) {
    const Index depth = std::min(kDepth, K - k0);
    if (kAccumulate || k0 > 0)
      panel_product_depth<true>(rows, cols, K, k0, depth, A, lda, P, C, ldc);
    else
      panel_product_depth<false>(rows, cols, K, k0, depth, A, lda, P, C, ldc);
  }
}

// Rows per block of panel_gemm: a block's rows of A over one kDepth (128 x 128 numbers, 64 KiB in
// float) stay in L2 while the panel streams past them.
constexpr Index kRowBlock = 128;

// The GEMM form of panel_product, for many rows (all the steps of a call): C[rows, cols] (+)= A P,
// in blocks of kRowBlock rows. Each element is the same FMA chain as in panel_product, so a row's
// result does not depend on how the rows are shared between threads. Faster than Eigen's GEMM at
// every shape of the benchmark (docs/PERFORMANCE.md).
template <bool kAccumulate, typename T>
void panel_gemm(Index rows, Index cols, Index K, const T* A, Index lda, const T* P, T* C, Index ldc) {
  for (Index r0 = 0; r0 < rows; r0 += kRowBlock)
    panel_product<kAccumulate>(std::min(kRowBlock, rows - r0), cols, K, A + r0 * lda, lda, P, C + r0 * ldc, ldc);
}

}  // namespace
}  // namespace lstm_fast::detail
