// The tile operations the tile products (tile_products.hpp) are written against, in two implementations
// with one interface: AmxTiles, the AMX instructions (the amx build only, cmake/isas.cmake; run where the
// plan says, the CPU and the OS having allowed them), and EmulatedTiles, plain C++ with the instructions' documented
// semantics, so that the tile products' packing, blocking and tails are tested on every CPU and the
// instructions are checked against it on an AMX one.
//
// The state: 8 tiles of up to 16 rows of 64 bytes, each configured with its rows and bytes a row
// (TileShape, set by configure). Tile numbers are template arguments, as the instructions take them.
//   load<t>(p, stride)        rows of tile t from p, `stride` bytes apart
//   store<t>(p, stride)       tile t's rows to p
//   zero<t>()                 tile t = 0
//   dot_int8<c, a, b>()       TDPBSSD:   C[m][n] += sum_k A[m][4k + e] B[k][4n + e], e = 0..3, s8 x s8 into
//                               exact int32 (wrapping; our sums never reach 2^31)
//   dot_bf16<c, a, b>()       TDPBF16PS: C[m][n] += A[m][2k] B[k][2n] + A[m][2k + 1] B[k][2n + 1], in float,
//                               one rounding (nearest even) an addition, denormal inputs and results as 0
//   release()                 TILERELEASE: the tile state back to its initial (unconfigured) one
// For A (M x K) and C (M x 16 lanes of 4 bytes) a tile's rows are the matrix's rows; B is K/4 (int8) or
// K/2 (bf16) rows of 16 columns' groups, the layout of a FrozenMatrix block.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "lstm_fast/config.hpp"

namespace lstm_fast::detail {
namespace {

constexpr int kTiles = 8;
constexpr Index kTileRows = 16;
constexpr Index kTileBytes = 64;  // a tile row

// The rows and the bytes a row of each tile: palette 1 (the only one).
struct TileShape {
  unsigned char rows[kTiles] = {};
  std::uint16_t bytes[kTiles] = {};
};

// ---- the emulation ---------------------------------------------------------------------------------

struct EmulatedTiles {
  struct State {
    TileShape shape;
    alignas(64) unsigned char data[kTiles][kTileRows * kTileBytes];
  };
  static State& state() {
    static thread_local State s;
    return s;
  }
  static void configure(const TileShape& shape) {
    state().shape = shape;
    std::memset(state().data, 0, sizeof state().data);  // (ldtilecfg zeroes every tile)
  }
  static void release() { configure(TileShape{}); }
  template <int t>
  static void zero() {
    std::memset(state().data[t], 0, sizeof state().data[t]);
  }
  template <int t>
  static void load(const void* p, Index stride) {
    const TileShape& s = state().shape;
    std::memset(state().data[t], 0, sizeof state().data[t]);
    for (Index r = 0; r < s.rows[t]; ++r)
      std::memcpy(state().data[t] + r * kTileBytes, static_cast<const unsigned char*>(p) + r * stride, s.bytes[t]);
  }
  template <int t>
  static void store(void* p, Index stride) {
    const TileShape& s = state().shape;
    for (Index r = 0; r < s.rows[t]; ++r)
      std::memcpy(static_cast<unsigned char*>(p) + r * stride, state().data[t] + r * kTileBytes, s.bytes[t]);
  }
  template <int c, int a, int b>
  static void dot_int8() {
    const TileShape& s = state().shape;
    for (Index m = 0; m < s.rows[c]; ++m)
      for (Index n = 0; n < s.bytes[c] / 4; ++n) {
        std::int32_t sum = lane<std::int32_t>(c, m, n);
        for (Index k = 0; k < s.bytes[a] / 4; ++k)
          for (Index e = 0; e < 4; ++e)
            sum += std::int32_t(lane<std::int8_t>(a, m, 4 * k + e)) * std::int32_t(lane<std::int8_t>(b, k, 4 * n + e));
        set_lane(c, m, n, sum);
      }
  }
  template <int c, int a, int b>
  static void dot_bf16() {
    const TileShape& s = state().shape;
    for (Index m = 0; m < s.rows[c]; ++m)
      for (Index n = 0; n < s.bytes[c] / 4; ++n) {
        float sum = lane<float>(c, m, n);
        for (Index k = 0; k < s.bytes[a] / 4; ++k)
          for (Index e = 0; e < 2; ++e)
            sum =
                flush(sum + widen(lane<std::uint16_t>(a, m, 2 * k + e)) * widen(lane<std::uint16_t>(b, k, 2 * n + e)));
        set_lane(c, m, n, sum);
      }
  }

 private:
  template <typename V>
  static V lane(int t, Index row, Index i) {
    V v;
    std::memcpy(&v, state().data[t] + row * kTileBytes + i * Index(sizeof(V)), sizeof(V));
    return v;
  }
  template <typename V>
  static void set_lane(int t, Index row, Index i, V v) {
    std::memcpy(state().data[t] + row * kTileBytes + i * Index(sizeof(V)), &v, sizeof(V));
  }
  static float flush(float x) {  // a denormal as a zero of its sign
    std::uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if ((bits & 0x7f800000u) == 0) bits &= 0x80000000u;
    std::memcpy(&x, &bits, 4);
    return x;
  }
  static float widen(std::uint16_t v) { return flush(from_bits(std::uint32_t(v) << 16)); }
  static float from_bits(std::uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

// ---- the instructions ----------------------------------------------------------------------------

#if defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__AMX_BF16__)
// The intrinsics take a tile's number as a literal (GCC's are asm with the number spelled in): a template
// argument goes through these, one literal a case.
#define LSTM_FAST_BY_TILE(t, op) \
  if constexpr (t == 0)          \
    op(0);                       \
  else if constexpr (t == 1)     \
    op(1);                       \
  else if constexpr (t == 2)     \
    op(2);                       \
  else if constexpr (t == 3)     \
    op(3);                       \
  else if constexpr (t == 4)     \
    op(4);                       \
  else if constexpr (t == 5)     \
    op(5);                       \
  else if constexpr (t == 6)     \
    op(6);                       \
  else                           \
    op(7)
#define LSTM_FAST_AMX static

// The products' C tiles are 0-3 and their (A, B) pairs (4, 6) and (5, 7) (tile_products.hpp).
struct AmxTiles {
  // ldtilecfg's 64 bytes: palette, start row, 14 reserved, then bytes a row and rows of each tile.
  struct alignas(64) Config {
    unsigned char palette = 1, start_row = 0, reserved[14] = {};
    std::uint16_t bytes[16] = {};
    unsigned char rows[16] = {};
  };
  LSTM_FAST_AMX void configure(const TileShape& shape) {
    Config config;
    for (int t = 0; t < kTiles; ++t) {
      config.bytes[t] = shape.bytes[t];
      config.rows[t] = shape.rows[t];
    }
    _tile_loadconfig(&config);
  }
  LSTM_FAST_AMX void release() { _tile_release(); }
  template <int t>
  LSTM_FAST_AMX void zero() {
#define LSTM_FAST_OP(n) _tile_zero(n)
    LSTM_FAST_BY_TILE(t, LSTM_FAST_OP);
#undef LSTM_FAST_OP
  }
  template <int t>
  LSTM_FAST_AMX void load(const void* p, Index stride) {
#define LSTM_FAST_OP(n) _tile_loadd(n, p, stride)
    LSTM_FAST_BY_TILE(t, LSTM_FAST_OP);
#undef LSTM_FAST_OP
  }
  template <int t>
  LSTM_FAST_AMX void store(void* p, Index stride) {
#define LSTM_FAST_OP(n) _tile_stored(n, p, stride)
    LSTM_FAST_BY_TILE(t, LSTM_FAST_OP);
#undef LSTM_FAST_OP
  }
  template <int c, int a, int b>
  LSTM_FAST_AMX void dot_int8() {
    static_assert(c < 4 && ((a == 4 && b == 6) || (a == 5 && b == 7)), "the products' tiles");
#define LSTM_FAST_OP(n) _tile_dpbssd(n, 4, 6)
#define LSTM_FAST_TAIL(n) _tile_dpbssd(n, 5, 7)
    if constexpr (a == 4) {
      LSTM_FAST_BY_TILE(c, LSTM_FAST_OP);
    } else {
      LSTM_FAST_BY_TILE(c, LSTM_FAST_TAIL);
    }
#undef LSTM_FAST_OP
#undef LSTM_FAST_TAIL
  }
  template <int c, int a, int b>
  LSTM_FAST_AMX void dot_bf16() {
    static_assert(c < 4 && ((a == 4 && b == 6) || (a == 5 && b == 7)), "the products' tiles");
#define LSTM_FAST_OP(n) _tile_dpbf16ps(n, 4, 6)
#define LSTM_FAST_TAIL(n) _tile_dpbf16ps(n, 5, 7)
    if constexpr (a == 4) {
      LSTM_FAST_BY_TILE(c, LSTM_FAST_OP);
    } else {
      LSTM_FAST_BY_TILE(c, LSTM_FAST_TAIL);
    }
#undef LSTM_FAST_OP
#undef LSTM_FAST_TAIL
  }
};
#undef LSTM_FAST_AMX
#undef LSTM_FAST_BY_TILE
#else
// The builds without the instructions: the same name, so that the products' kinds are the same list
// in every build; never planned there (their kernel table offers no tile unit, cell/kernel_table.cpp).
using AmxTiles = EmulatedTiles;
#endif

}  // namespace
}  // namespace lstm_fast::detail
