// The interface of a frozen model's cell (cell/frozen_kernels.cpp, compiled per ISA): the steps of a
// call, its working memory and its arrays. The weights it runs on are weights/frozen.hpp's.
#pragma once

#include <algorithm>
#include <cstddef>

#include "cell/cell.hpp"
#include "weights/frozen.hpp"

namespace lstm_fast::detail {

// The steps of one call of a cell (the packed layout of network.hpp, as raw arrays so that a
// streaming step builds it on its stack): step t has rows offsets[t] .. offsets[t] + batch_sizes[t].
struct FrozenSteps {
  Index batch;               // B
  Index steps;               // T
  const Index* batch_sizes;  // [T]
  const Index* offsets;      // [T + 1]
  bool reverse;
};

// Where the working memory of one frozen_forward call puts its buffers (byte offsets, multiples of
// 64), for a cell of `dims` over steps of at most `batch` rows, input projections of at most
// `chunk_rows` rows, and `slices` slices per segment (the plan's team).
struct FrozenWork {
  std::size_t z;              // float [chunk_rows, 4H]: pre-activations of a chunk of steps
  std::size_t h[2];           // float [B, R] each: step p writes h[(p + 1) % 2] and reads h[p % 2] (step 0: h0)
  std::size_t m;              // float [B, H]: o * tanh(c) before the projection
  std::size_t a;              // slice j's at a + j * a_bytes: a product's left operand converted (int8
                              // or bf16), rows padded to whole groups (the widest of x, h and m rows)
  std::size_t scale;          // slice j's at scale + j * scale_bytes: float [rows] s_a of each row
  std::size_t recurrent = 0;  // layer norm: float [B, 4H] h W_hh^T, normalised before it joins z
  std::size_t c_keep = 0;     // layer norm with zoneout: float [B, H] c_{t-1}
  std::size_t a_bytes = 0, scale_bytes = 0;
  std::size_t bytes = 0;  // in all
  Index a_stride = 0;     // numbers per row of a slice's a buffer

  FrozenWork(const CellDims& dims, Precision p, Index batch, Index chunk_rows, int slices) {
    const Index g = frozen_group(p), item = p == Precision::int8 ? 1 : p == Precision::bf16 ? 2 : 4;
    const Index widest = std::max({dims.input_size, dims.output_size, dims.hidden_size});
    const Index rows = std::max(batch, chunk_rows);
    a_stride = (widest + g - 1) / g * g;
    auto aligned = [](Index count, Index size) { return (static_cast<std::size_t>(count * size) + 63) / 64 * 64; };
    a_bytes = aligned(rows * a_stride, item);
    scale_bytes = aligned(rows, 4);
    std::size_t at = 0;
    auto take = [&](std::size_t size) {
      const std::size_t here = at;
      at += size;
      return here;
    };
    z = take(aligned(chunk_rows * 4 * dims.hidden_size, 4));
    h[0] = take(aligned(batch * dims.output_size, 4));
    h[1] = take(aligned(batch * dims.output_size, 4));
    m = take(aligned(batch * dims.hidden_size, 4));
    a = take(a_bytes * static_cast<std::size_t>(slices));
    scale = take(scale_bytes * static_cast<std::size_t>(slices));
    if (dims.layer_norm) {
      recurrent = take(aligned(batch * 4 * dims.hidden_size, 4));
      c_keep = take(aligned(batch * dims.hidden_size, 4));
    }
    bytes = at;
  }
};

// One cell over the steps, in precision p, on a team of plan.team (frozen_kernels.cpp). x: [N, I_k];
// state0 read (null: zeros) before anything is written, so state_n may alias it; y: [N, R] rows
// `stride` apart; work: FrozenWork(dims, p, B, plan.chunk * B, plan.team).bytes of them, aligned to 4
// bytes. Never allocates.
struct FrozenArrays {
  const float* x;
  StatePointers<const float*> state0;
  StridedRows<float*> y;
  StatePointers<float*> state_n;
  unsigned char* work;
};

}  // namespace lstm_fast::detail
