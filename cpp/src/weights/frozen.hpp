// The weights of a frozen model (fp32, bf16, int8), converted and packed once when the model is made
// (the interface of the cell that runs them is cell/frozen_cell.hpp). Internal header: not installed. The numerics are
// docs/api.md's "Inference models and precision":
//   fp32: z += a W^T in float32;
//   bf16: z += bf16(a) bf16(W)^T, products summed in float32;
//   int8: z += (q_a q_W^T) s_a s_W, q_a = rint(a / s_a) per row of a and step, s = max|row| / 127,
//         the integer sums exact (int32), then float32: ((float(sum) * s_a) * s_W).
//
// Packed layout, the same for every instruction set (so a model packed once runs on any of them and
// set_isa may change under it): the n output columns in blocks of kFrozenBlock, each block stored
// whole over the depth K in groups of g numbers per column (g = 4 int8, 2 bf16, 1 float):
//   P[block][k / g][j][k % g] = W[block * kFrozenBlock + j][k],   zero past n and K.
// One group row of a block (kFrozenBlock * g numbers, 64 bytes) is what vpdpbusd and vdpbf16ps read
// against one broadcast group of a row of a.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lstm_fast/config.hpp"
#include "runtime/workspace.hpp"

namespace lstm_fast::detail {

constexpr Index kFrozenBlock = 16;  // output columns per packed block: one 512-bit packet of int32/float

// Largest depth of an int8 product whose sums of 255 x 127 products (vpdpbusd's, before the shift is
// taken back) stay inside int32: the sums are exact.
constexpr Index kMaxInt8Depth = 65536;

// Depth numbers per column in one group of the packed layout: what one lane of vpdpbusd (4 int8),
// vdpbf16ps (2 bf16) or an FMA (1 float) takes.
inline Index frozen_group(Precision p) { return p == Precision::int8 ? 4 : p == Precision::bf16 ? 2 : 1; }

// W [n, K] packed for products a W^T in one reduced precision. The columns come in `parts` equal parts
// (the four gates of W_ih and W_hh; 1 for W_hr), each padded to whole blocks, so that a team member's
// share of the hidden units is whole blocks of every gate.
struct FrozenMatrix {
  Index n = 0, K = 0;
  Index parts = 1;
  Index groups = 0;                       // ceil(K / g)
  LineVector<std::int8_t> q;              // int8: the packed q_W
  std::vector<float> scale;               // int8: s_W per row [n]
  LineVector<float> block_scale;          // int8: s_W in block order [padded_n], 1 on the padding
  LineVector<std::int32_t> block_offset;  // int8: 128 sum_k q_W[j][k] in block order, for vpdpbusd's +128
  LineVector<std::uint16_t> bf16;         // bf16: the packed bf16(W)
  LineVector<float> f32;                  // fp32: the packed W
  std::vector<Index> block_column;        // [blocks] the output column of each block's first lane
  std::vector<Index> block_width;         // [blocks] how many of its 16 columns exist

  Index part_n() const { return n / parts; }
  Index part_blocks() const { return (part_n() + kFrozenBlock - 1) / kFrozenBlock; }
  Index blocks() const { return parts * part_blocks(); }
  Index padded_n() const { return blocks() * kFrozenBlock; }
  Index column(Index block) const { return block_column[static_cast<std::size_t>(block)]; }
  Index width(Index block) const { return block_width[static_cast<std::size_t>(block)]; }
};

// float32 -> bfloat16, round to nearest even (NaN stays a quiet NaN). Branch-free, so that a loop of
// it vectorizes.
inline std::uint16_t to_bf16(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const std::uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return static_cast<std::uint16_t>((nan ? (bits | 0x00400000u) : rounded) >> 16);
}

inline float from_bf16(std::uint16_t v) {
  const std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// W [n, K] row-major float -> a FrozenMatrix of precision p in `parts` parts: int8
// quantizes each row (scale max|row| / 127, 1 for a row of zeros; q = rint(w / s) in [-127, 127]), and
// throws Error for a NaN or infinite weight, which int8 cannot hold.
FrozenMatrix freeze_matrix(Precision p, const float* W, Index n, Index K, Index parts);
// From values already in the precision (a file's): q [n, K] with scales [n], or bf16 [n, K].
FrozenMatrix freeze_int8(const std::int8_t* q, const float* scale, Index n, Index K, Index parts);
FrozenMatrix freeze_bf16(const std::uint16_t* values, Index n, Index K, Index parts);
// W [n, K] float -> the bf16 FrozenMatrix of W^T [K, n] (one part): bf16 training's dZ W products.
FrozenMatrix freeze_bf16_transposed(const float* W, Index n, Index K);
// The values back, row-major [n, K] (for saving): q or bf16 bits.
std::vector<std::int8_t> unpack_int8(const FrozenMatrix& m);
std::vector<std::uint16_t> unpack_bf16(const FrozenMatrix& m);

// One cell (layer, direction) of a frozen model: the three matrices and the float32 parameters.
struct FrozenCell {
  FrozenMatrix ih;              // W_ih [4H, I_k], 4 parts
  FrozenMatrix hh;              // W_hh [4H, R], 4 parts
  FrozenMatrix hr;              // W_hr [R, H], when proj_size > 0
  const float* bias = nullptr;  // [4H] b_ih + b_hh, or null
  const float* peep = nullptr;  // [3, H] (i, f, o), or null
  // Layer norm's gains and biases (ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias [4H] each,
  // ln_cell_weight, ln_cell_bias [H]), or null.
  const float* ln[6] = {};
};

}  // namespace lstm_fast::detail
