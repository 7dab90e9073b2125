// The frozen models' int8 and bf16 products on tiles (tiles.hpp: AmxTiles, or EmulatedTiles for the
// tests), with frozen_products.hpp's operands and outputs: out (+)= a W^T for rows [0, rows) of a
// (converted) and blocks [b0, b1) of W. A FrozenMatrix block (16 columns, K in groups of 4 bytes: int8
// quads or bf16 pairs) is already what a B tile holds, so the weights are read as they are packed.
//
// The blocking (tile numbers as tiles.hpp's AmxTiles expects): rows in tiles of 16 (A; fewer rows go
// through a zero-padded copy, so no tile reads past the operand); blocks in groups of up to 4, one C tile
// each (0-3), kept in tiles over the whole depth; the depth in chunks of 64 bytes (A tile 4, B tile 6)
// and its tail (tiles 5 and 7, shaped for it), so that one configuration serves the call. C goes through
// a buffer in L1 to the epilogue, the portable one of frozen_products.hpp: int8's sums are exact int32
// (TDPBSSD, s8 x s8: no offset to take back), then the same IEEE operations as every other path, so
// int8 stays bitwise the same on every ISA; bf16's float sums are in the tile unit's order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/frozen_products.hpp"
#include "kernels/tiles.hpp"

namespace lstm_fast::detail {
namespace {

struct TileInt8 {
  using Element = std::int8_t;
  using Sum = std::int32_t;
  template <typename Tiles, int c, int a, int b>
  static void dot() {
    Tiles::template dot_int8<c, a, b>();
  }
  static const unsigned char* weights(const FrozenMatrix& W) {
    return reinterpret_cast<const unsigned char*>(W.q.data());
  }
  // float(sum) * s_a * s_W, added to the output as every int8 path does.
  static void emit_row(const Output& out, Index r, const FrozenMatrix& W, Index b, const Sum* sums, const float* sa) {
    alignas(64) float v[kFrozenBlock];
    dequantize(sums, sa[r], W.block_scale.data() + b * kFrozenBlock, v);
    emit(out, r, W.column(b), W.width(b), v);
  }
};

struct TileBf16 {
  using Element = std::uint16_t;
  using Sum = float;
  template <typename Tiles, int c, int a, int b>
  static void dot() {
    Tiles::template dot_bf16<c, a, b>();
  }
  static const unsigned char* weights(const FrozenMatrix& W) {
    return reinterpret_cast<const unsigned char*>(W.bf16.data());
  }
  static void emit_row(const Output& out, Index r, const FrozenMatrix& W, Index b, const Sum* sums, const float*) {
    emit(out, r, W.column(b), W.width(b), sums);
  }
};

// C tiles i .. NB - 1: zeroed, multiplied by A tile kA and each block's B tile kB (block i's weights at
// B + i block_bytes, rows 64 bytes apart), stored to sums[i] (16 rows of 16 lanes).
template <typename Tiles, int i, int NB>
void zero_sums() {
  if constexpr (i < NB) {
    Tiles::template zero<i>();
    zero_sums<Tiles, i + 1, NB>();
  }
}
template <typename Tiles, typename Kind, int kA, int kB, int i, int NB>
void dot_blocks(const unsigned char* B, Index block_bytes) {
  if constexpr (i < NB) {
    Tiles::template load<kB>(B + i * block_bytes, kTileBytes);
    Kind::template dot<Tiles, i, kA, kB>();
    dot_blocks<Tiles, Kind, kA, kB, i + 1, NB>(B, block_bytes);
  }
}
template <typename Tiles, typename Sum, int i, int NB>
void store_sums(Sum (*sums)[kTileRows * kFrozenBlock]) {
  if constexpr (i < NB) {
    Tiles::template store<i>(sums[i], kTileBytes);
    store_sums<Tiles, Sum, i + 1, NB>(sums);
  }
}

// The chunk of `bytes` a row at byte `k0` of rows [r0, r0 + mr) of A into A tile kA: straight from A (ld
// bytes apart) for 16 rows, else from a copy with zero rows after the mr.
template <typename Tiles, int kA>
void load_rows(const unsigned char* A, Index ld, Index mr, Index k0, Index bytes, unsigned char* stage) {
  if (mr == kTileRows) return Tiles::template load<kA>(A + k0, ld);
  std::memset(stage, 0, kTileRows * kTileBytes);
  for (Index r = 0; r < mr; ++r) std::memcpy(stage + r * kTileBytes, A + r * ld + k0, static_cast<size_t>(bytes));
  Tiles::template load<kA>(stage, kTileBytes);
}

// Rows [r0, r0 + mr) x blocks [b, b + NB): the whole depth on the C tiles, then the epilogue.
template <typename Tiles, typename Kind, int NB>
void tile_group(const unsigned char* A, Index ld, Index r0, Index mr, const FrozenMatrix& W, Index b, const float* sa,
                const Output& out) {
  alignas(64) typename Kind::Sum sums[NB][kTileRows * kFrozenBlock];
  alignas(64) unsigned char stage[kTileRows * kTileBytes];
  const Index depth = W.groups * 4, chunks = depth / kTileBytes, tail = depth % kTileBytes;
  const Index block_bytes = W.groups * kFrozenBlock * 4;
  const unsigned char* B = Kind::weights(W) + b * block_bytes;
  const unsigned char* rows = A + r0 * ld;
  zero_sums<Tiles, 0, NB>();
  for (Index c = 0; c < chunks; ++c) {
    load_rows<Tiles, 4>(rows, ld, mr, c * kTileBytes, kTileBytes, stage);
    dot_blocks<Tiles, Kind, 4, 6, 0, NB>(B + c * kTileRows * kTileBytes, block_bytes);
  }
  if (tail > 0) {
    load_rows<Tiles, 5>(rows, ld, mr, chunks * kTileBytes, tail, stage);
    dot_blocks<Tiles, Kind, 5, 7, 0, NB>(B + chunks * kTileRows * kTileBytes, block_bytes);
  }
  store_sums<Tiles, typename Kind::Sum, 0, NB>(sums);
  for (int i = 0; i < NB; ++i)
    for (Index r = 0; r < mr; ++r) Kind::emit_row(out, r0 + r, W, b + i, sums[i] + r * kFrozenBlock, sa);
}

// The tiles' shapes for a depth of `depth` bytes: C and the chunks' A and B whole, the tail's A `tail`
// bytes a row and its B tail / 4 rows.
inline TileShape tile_shape(Index depth) {
  TileShape s;
  const Index tail = depth % kTileBytes;
  for (int t = 0; t < 5; ++t) {
    s.rows[t] = kTileRows;
    s.bytes[t] = kTileBytes;
  }
  s.rows[6] = kTileRows;
  s.bytes[6] = kTileBytes;
  if (tail > 0) {
    s.rows[5] = kTileRows;
    s.bytes[5] = static_cast<std::uint16_t>(tail);
    s.rows[7] = static_cast<unsigned char>(tail / 4);
    s.bytes[7] = kTileBytes;
  }
  return s;
}

template <typename Tiles, typename Kind>
void tile_product(Index rows, const typename Kind::Element* A, Index lda, const float* sa, const FrozenMatrix& W,
                  Index b0, Index b1, const Output& out) {
  using Group =
      void (*)(const unsigned char*, Index, Index, Index, const FrozenMatrix&, Index, const float*, const Output&);
  static constexpr Group groups[4] = {tile_group<Tiles, Kind, 1>, tile_group<Tiles, Kind, 2>,
                                      tile_group<Tiles, Kind, 3>, tile_group<Tiles, Kind, 4>};
  const auto* bytes = reinterpret_cast<const unsigned char*>(A);
  const Index ld = lda * static_cast<Index>(sizeof(typename Kind::Element));
  Tiles::configure(tile_shape(W.groups * 4));
  for (Index r0 = 0; r0 < rows; r0 += kTileRows)
    for (Index b = b0; b < b1; b += 4) {
      const Index nb = std::min<Index>(4, b1 - b);
      groups[nb - 1](bytes, ld, r0, std::min(kTileRows, rows - r0), W, b, sa, out);
    }
  Tiles::release();
}

// The two products, as int8_product and bf16_product (frozen_products.hpp) on tiles.
template <typename Tiles>
void int8_tile_product(Index rows, const std::int8_t* A, Index lda, const float* sa, const FrozenMatrix& W, Index b0,
                       Index b1, const Output& out) {
  tile_product<Tiles, TileInt8>(rows, A, lda, sa, W, b0, b1, out);
}
template <typename Tiles>
void bf16_tile_product(Index rows, const std::uint16_t* A, Index lda, const FrozenMatrix& W, Index b0, Index b1,
                       const Output& out) {
  tile_product<Tiles, TileBf16>(rows, A, lda, nullptr, W, b0, b1, out);
}

// The frozen cell's product kinds on tiles (frozen_products.hpp's "product kinds"): the operands
// converted as on the other paths, the products on `Tiles` (the plan's CellPlan::tiles).
template <typename Tiles>
struct Int8TileProduct : Int8Product {
  static void multiply(Index rows, const void* a, Index lda, const float* scales, const FrozenMatrix& W, Index b0,
                       Index b1, const Output& out, bool) {
    int8_tile_product<Tiles>(rows, static_cast<const std::int8_t*>(a), lda, scales, W, b0, b1, out);
  }
};
template <typename Tiles>
struct Bf16TileProduct : Bf16Product {
  static void multiply(Index rows, const void* a, Index lda, const float*, const FrozenMatrix& W, Index b0, Index b1,
                       const Output& out, bool) {
    bf16_tile_product<Tiles>(rows, static_cast<const std::uint16_t*>(a), lda, W, b0, b1, out);
  }
};

}  // namespace
}  // namespace lstm_fast::detail
