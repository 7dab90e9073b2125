// The weights of a frozen model in a reduced precision (bf16, int8), converted and packed once when
// the model is made, and the interface of the kernels that run them (frozen_kernels.cpp, compiled per
// ISA). Internal header: not installed. The numerics are API.md's "Inference models and precision":
//   bf16: z += bf16(a) bf16(W)^T, products summed in float32;
//   int8: z += (q_a q_W^T) s_a s_W, q_a = rint(a / s_a) per row of a and step, s = max|row| / 127,
//         the integer sums exact (int32), then float32: ((float(sum) * s_a) * s_W).
//
// Packed layout, the same for every instruction set (so a model packed once runs on any of them and
// set_isa may change under it): the n output columns in blocks of kFrozenBlock, each block stored
// whole over the depth K in groups of g numbers per column (g = 4 int8, 2 bf16):
//   P[block][k / g][j][k % g] = W[block * kFrozenBlock + j][k],   zero past n and K.
// One group row of a block (kFrozenBlock * g numbers, 64 bytes) is what vpdpbusd and vdpbf16ps read
// against one broadcast group of a row of a.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cell.hpp"
#include "lstm_fast/config.hpp"

namespace lstm_fast::detail {

constexpr Index kFrozenBlock = 16;  // output columns per packed block: one 512-bit packet of int32/float

// Largest depth of an int8 product whose sums of 255 x 127 products (vpdpbusd's, before the shift is
// taken back) stay inside int32: the sums are exact.
constexpr Index kMaxInt8Depth = 65536;

inline Index frozen_group(Precision p) { return p == Precision::int8 ? 4 : 2; }

// W [n, K] packed for products a W^T in one reduced precision.
struct FrozenMatrix {
  Index n = 0, K = 0;
  Index groups = 0;                  // ceil(K / g)
  std::vector<std::int8_t> q;        // int8: the packed q_W
  std::vector<float> scale;          // int8: s_W per row [n]
  std::vector<std::int32_t> offset;  // int8: 128 sum_k q_W[j][k] per row [n], for vpdpbusd's unsigned a
  std::vector<std::uint16_t> bf16;   // bf16: the packed bf16(W)
  Index padded_n() const { return (n + kFrozenBlock - 1) / kFrozenBlock * kFrozenBlock; }
};

// float32 -> bfloat16, round to nearest even (NaN stays NaN).
std::uint16_t to_bf16(float v);
float from_bf16(std::uint16_t v);

// W [n, K] row-major float -> a FrozenMatrix of precision p (bf16 or int8): int8 quantizes each row
// (scale max|row| / 127, 1 for a row of zeros; q = rint(w / s) in [-127, 127]).
FrozenMatrix freeze_matrix(Precision p, const float* W, Index n, Index K);
// From values already in the precision (a file's): q [n, K] with scales [n], or bf16 [n, K].
FrozenMatrix freeze_int8(const std::int8_t* q, const float* scale, Index n, Index K);
FrozenMatrix freeze_bf16(const std::uint16_t* values, Index n, Index K);
// The values back, row-major [n, K] (for saving): q or bf16 bits.
std::vector<std::int8_t> unpack_int8(const FrozenMatrix& m);
std::vector<std::uint16_t> unpack_bf16(const FrozenMatrix& m);

// One cell (layer, direction) of a frozen model: the three matrices and the float32 parameters.
struct FrozenCell {
  FrozenMatrix ih;              // W_ih [4H, I_k]
  FrozenMatrix hh;              // W_hh [4H, R]
  FrozenMatrix hr;              // W_hr [R, H], when proj_size > 0
  const float* bias = nullptr;  // [4H] b_ih + b_hh, or null
  const float* peep = nullptr;  // [3, H] (i, f, o), or null
};

// The steps of one call of a cell (the packed layout of network.hpp, as raw arrays so that a
// streaming step builds it on its stack): step t has rows offsets[t] .. offsets[t] + batch_sizes[t].
struct FrozenSteps {
  Index batch;               // B
  Index steps;               // T
  const Index* batch_sizes;  // [T]
  const Index* offsets;      // [T + 1]
  bool reverse;
};

// Where the working memory of one frozen_cell_forward call puts its buffers (byte offsets, each a
// multiple of 64), for a cell of `dims` over steps of at most `batch` rows and input projections of
// at most `chunk_rows` rows.
struct FrozenWork {
  std::size_t z;      // float [chunk_rows, 4H]: pre-activations of a chunk of steps
  std::size_t h;      // float [B, R]: the running h
  std::size_t c;      // float [B, H]: the running c
  std::size_t m;      // float [B, H]: o * tanh(c) before the projection
  std::size_t a;      // the rows of a product's left operand in the precision: int8 or bf16, each row
                      // padded to whole groups (max over x, h and m rows)
  std::size_t scale;  // float [rows]: s_a of each row (int8)
  std::size_t bytes;  // in all
  Index a_stride;     // numbers per row of the a buffer (the widest K rounded up to a group)

  FrozenWork(const CellDims& dims, Precision p, Index batch, Index chunk_rows) {
    const Index g = frozen_group(p), item = p == Precision::int8 ? 1 : 2;
    const Index widest = std::max({dims.input_size, dims.output_size, dims.hidden_size});
    const Index rows = std::max(batch, chunk_rows);
    a_stride = (widest + g - 1) / g * g;
    std::size_t at = 0;
    auto take = [&](Index count, Index size) {
      const std::size_t here = at;
      at += (static_cast<std::size_t>(count * size) + 63) / 64 * 64;
      return here;
    };
    z = take(chunk_rows * 4 * dims.hidden_size, 4);
    h = take(batch * dims.output_size, 4);
    c = take(batch * dims.hidden_size, 4);
    m = take(batch * dims.hidden_size, 4);
    a = take(rows * a_stride, item);
    scale = take(rows, 4);
    bytes = at;
  }
};

// One cell over the steps, in precision p. x: [N, I_k]; state0 read (null: zeros) before anything is
// written, so state_n may alias it; y: [N, R] rows `stride` apart; work: frozen_work_bytes of them,
// 64-byte aligned. chunk: steps per input projection. Never allocates.
struct FrozenArrays {
  const float* x;
  StatePointers<const float*> state0;
  StridedRows<float*> y;
  StatePointers<float*> state_n;
  unsigned char* work;
};

}  // namespace lstm_fast::detail
