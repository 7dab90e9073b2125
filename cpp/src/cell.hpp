// One LSTM cell (one layer, one direction) over a packed sequence: the kernels network.cpp composes.
// Internal header: Eigen stays out of the public ones.
#pragma once

#include "lstm_fast/network.hpp"

namespace lstm_fast::detail {

struct CellDims {
  Index input_size;   // I_k
  Index hidden_size;  // H
  Index output_size;  // R (== H without projection)
  bool projection;
  bool peephole;
};

// Forward over the schedule, steps in order t = 0..T-1, or T-1..0 when `reverse`.
//   x: [N, I];  h0: [B, R] or null;  c0: [B, H] or null.
//   y: rows of [N, *] with row stride ldy; the cell writes columns 0..R-1 (pass y + d*R for direction d).
//   h_n: [B, R];  c_n: [B, H];  trace: null for inference.
template <typename T>
void cell_forward(const CellDims& dims, const CellWeights<T>& w, const Schedule& s, bool reverse,
                  const T* x, const T* h0, const T* c0, T* y, Index ldy, T* h_n, T* c_n,
                  CellTrace<T>* trace);

// Backpropagation through time for one cell.
//   x: [N, I] the input the forward saw;  dy: rows of [N, *] with stride ldy, columns 0..R-1;
//   dh_n: [B, R] or null;  dc_n: [B, H] or null.
//   dx: [N, I], overwritten, or incremented when accumulate_dx (the second direction of a layer);
//   dh0: [B, R];  dc0: [B, H];  g: the cell's weight gradients, overwritten.
template <typename T>
void cell_backward(const CellDims& dims, const CellWeights<T>& w, const Schedule& s, bool reverse,
                   const CellTrace<T>& trace, const T* x, const T* dy, Index ldy, const T* dh_n,
                   const T* dc_n, T* dx, bool accumulate_dx, T* dh0, T* dc0, const CellGrads<T>& g);

}  // namespace lstm_fast::detail
