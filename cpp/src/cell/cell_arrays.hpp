// The arrays of one cell as the kernels read and write them (internal; no Eigen): its weights and
// their gradients in torch.nn.LSTM's layout, the schedule of a packed sequence, and what a training
// forward keeps for backpropagation through time. The layout is network.hpp's (the stack's).
#pragma once

#include <cstdint>
#include <vector>

#include "lstm_fast/config.hpp"
#include "runtime/workspace.hpp"

namespace lstm_fast {

// The weights of one layer in one direction, in torch.nn.LSTM's layout. Cell k*D + d is layer k,
// direction d (d = 1 is the reverse direction), as in torch's h_n.
template <typename T>
struct CellWeights {
  const T* weight_ih = nullptr;    // [4H, I_k] rows in blocks (i, f, g, o)
  const T* weight_hh = nullptr;    // [4H, R]
  const T* bias_ih = nullptr;      // [4H], null when !bias
  const T* bias_hh = nullptr;      // [4H], null when !bias
  const T* weight_hr = nullptr;    // [R, H], null when proj_size == 0
  const T* weight_peep = nullptr;  // [3, H] rows (i, f, o), null when !peephole
  // Layer norm's gains and biases (Config::layer_norm; else null): of LN(W_ih x_t) and LN(W_hh h_{t-1})
  // [4H] each, of LN(c_t) [H].
  const T* ln_ih_weight = nullptr;
  const T* ln_ih_bias = nullptr;
  const T* ln_hh_weight = nullptr;
  const T* ln_hh_bias = nullptr;
  const T* ln_cell_weight = nullptr;
  const T* ln_cell_bias = nullptr;
};

// Where backward writes the gradients of one cell: same shapes as CellWeights. Overwritten, not
// accumulated. Pointers for absent weights are ignored.
template <typename T>
struct CellGrads {
  T* weight_ih = nullptr;
  T* weight_hh = nullptr;
  T* bias_ih = nullptr;
  T* bias_hh = nullptr;
  T* weight_hr = nullptr;
  T* weight_peep = nullptr;
  T* ln_ih_weight = nullptr;
  T* ln_ih_bias = nullptr;
  T* ln_hh_weight = nullptr;
  T* ln_hh_bias = nullptr;
  T* ln_cell_weight = nullptr;
  T* ln_cell_bias = nullptr;
};

// Which batch rows are active at each step (torch's PackedSequence.batch_sizes).
struct Schedule {
  Index batch = 0;                 // B: rows of the state
  std::vector<Index> batch_sizes;  // [T], each in 1..B, non-increasing
  std::vector<Index> offsets;      // [T + 1], offsets[t] = sum_{s<t} batch_sizes[s]

  static Schedule dense(Index steps, Index batch);                        // every row active at every step
  static Schedule packed(std::vector<Index> batch_sizes, Index batch);    // validates
  Index steps() const { return static_cast<Index>(batch_sizes.size()); }  // T
  Index rows() const { return offsets.empty() ? 0 : offsets.back(); }     // N
};

// What one cell keeps for backpropagation through time: the activated gates and the states around
// each step. Rows follow the packed layout.
template <typename T>
struct CellTrace {
  Buffer<T> gates;        // [N, 4H] activated (i, f, g, o)
  Buffer<T> cell;         // [N, H] c_t
  Buffer<T> cell_prev;    // [N, H] c_{t-1} as seen by the row (c0 on its first step)
  Buffer<T> hidden_prev;  // [N, R] h_{t-1} * r as W_hh saw it (h0 * r on the row's first step)
  // [B, R] the recurrent dropout mask r (Gal & Ghahramani 2016, scaled by 1/(1-p)): W_hh reads
  // h_{t-1} * r at every step; empty: none (r = 1).
  Buffer<T> recurrent_mask;
  // Zoneout's masks (cell_kernel.hpp's Zoneout), [N, R] and [N, H], or empty: the probabilities. With
  // zoneout, `cell` holds c~_t, the cell's new state before the mix, and cell_prev the mixed c_{t-1}.
  Buffer<T> zoneout_h, zoneout_c;
  // Layer norm (Config::layer_norm): each LN's input normalised, (v - mean) / std, of W_ih x_t and
  // W_hh h_{t-1} [N, 4H] and of c_t [N, H]; tanh(LN(c_t)) [N, H]; the three stds [N, 3].
  Buffer<T> ln_ih_hat, ln_hh_hat, ln_cell_hat, ln_tanh, ln_std;
  // Checkpointed (plan.checkpoint > 0; then the arrays above are empty but the recurrent mask): the
  // state (h [B, R], c [B, H]) before each segment, in processing order, rows not yet started holding
  // the initial state: [segments, B, R] and [segments, B, H].
  Buffer<T> segment_h, segment_c;
};

}  // namespace lstm_fast
