// The LSTM stack as a C++ function of raw arrays (internal: not installed; the bindings and the Model
// call it). No Python, no Eigen in this header. The equations are in lstm_fast/config.hpp.
//
// One call runs a whole sequence through every layer and direction ("Run" in haste's words); the
// training variant keeps a Trace so that `backward` can run backpropagation through time.
//
// Layout. Every array is dense and row-major, and aligned to its element type like any T* in C++
// (UBSan flags a double read at an address that is not a multiple of 8; the Python layer copies such
// NumPy views). Sequences are *packed* like torch's PackedSequence:
// the batch is sorted by length (longest first), so the rows active at step t are rows
// 0 .. batch_sizes[t]-1, and the rows of all steps are stored one step after another:
//   x: [N, I] with N = sum_t batch_sizes[t]; step t starts at row offsets[t].
// With every sequence of full length this is exactly the dense [T, B, I] layout, so dense input needs
// no copy. Padded steps are never computed.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "lstm_fast/config.hpp"
#include "plan.hpp"
#include "workspace.hpp"

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

// Everything a training forward leaves for backward.
template <typename T>
struct Trace {
  Config config;
  Schedule schedule;
  std::vector<Buffer<T>> layer_inputs;   // [L] of [N, I_k]: the input each layer saw
  std::vector<Buffer<T>> dropout_masks;  // [L-1] of [N, D*R] or empty: mask after layer k
  std::vector<CellTrace<T>> cells;       // [L*D]
  std::vector<detail::LayerPlan> plans;  // [L] the forward's (precision included): the backward runs the same
  bool zoneout = false;                  // zoneout's masks drawn from zoneout_seed
  std::uint64_t zoneout_seed = 0;
};

// The machine's float32 peak as the benchmark measures it: GFLOP/s (a multiply-add counts 2) that
// `threads` threads (1 .. kMaxThreads) sustain together for `seconds` in independent chains of the
// active ISA's widest FMA. A diagnostic, not part of a model's work (dispatch.cpp).
double fma_peak_gflops(double seconds, int threads);
// The same for the products of a frozen bf16 or int8 model: GOP/s of their multiply-add instruction
// (vdpbf16ps, vpdpbusd, or the fallback the ISA runs) on `threads` threads.
double dot_peak_gops(Precision precision, double seconds, int threads);

// The layers of a stack in order: layer(k, in, out) for k = 0 .. layers-1, layer 0 reading x, the last
// writing y, each other one writing [rows, width] numbers that the next one reads.
template <typename T, typename Layer>
void over_layers(Index layers, Index rows, Index width, const T* x, T* y, const Layer& layer) {
  Buffer<T> layer_in, layer_out;  // between layers
  const T* in = x;
  for (Index k = 0; k < layers; ++k) {
    T* out = y;
    if (k < layers - 1) {
      layer_out.resize(static_cast<size_t>(rows * width));
      out = layer_out.data();
    }
    layer(k, in, out);
    if (k < layers - 1) {
      std::swap(layer_in, layer_out);
      in = layer_in.data();
    }
  }
}

// What a training forward does beyond inference (docs/api.md's training options; a trace required).
//   recurrent_masks: null, or [L*D, B, R]: cell k*D + d's recurrent product reads h_{t-1} times its
//     mask (the recurrent dropout of docs/api.md, scale included).
//   zoneout_seed: null, or the seed of zoneout's masks (zoneout_masks below), which the trace keeps;
//     null: the config's probabilities, d = z.
//   checkpoint: 0 keeps the trace of every step; k > 0 keeps each cell's state every k steps (rounded
//     up to the plan's blocks, plan.hpp) and the backward recomputes the steps between, with gradients
//     bitwise those of 0; -1 chooses k near sqrt(T).
//   precision: fp32, or bf16 mixed precision (float only): every matrix product's operands rounded to
//     bfloat16, the products summed in float; the backward runs the same way.
template <typename T>
struct Training {
  const T* recurrent_masks = nullptr;
  const std::uint64_t* zoneout_seed = nullptr;
  Index checkpoint = 0;
  Precision precision = Precision::fp32;
};

// Runs the stack over a packed sequence.
//   weights: [L*D] cells.
//   x: [N, I];  h0: [L*D, B, R] or null (zeros);  c0: [L*D, B, H] or null (zeros).
//   dropout_masks: null, or [L-1] pointers, each null or [N, D*R]; layer k's output is multiplied by
//     mask k before it becomes layer k+1's input (the mask carries the 1/(1-p) scale).
//   y: [N, D*R] the last layer's output;  h_n: [L*D, B, R];  c_n: [L*D, B, H].
//   trace: null for inference; else filled with what backward needs (training), as `training` says.
template <typename T>
void forward(const Config& config, const std::vector<CellWeights<T>>& weights, const Schedule& schedule, const T* x,
             const T* h0, const T* c0, const T* const* dropout_masks, T* y, T* h_n, T* c_n, Trace<T>* trace,
             const Training<T>& training = {});

// Zoneout's training masks of cell `cell` (docs/api.md): d = 1 with probability z (to 2^-24), independently
// for every unit of every packed row, drawn from `seed`: d_h [N, R] (probability z_h) and d_c [N, H]
// (z_c), 0 or 1. Each row from its own splitmix64 stream (seeded by seed, cell and row), so that any
// rows can be drawn again alone: this writes rows [row0, row1) of d_h and d_c, which point at row row0's
// place. What the training forward uses (its team sharing the rows, a checkpointed backward drawing a
// segment's again); lstm_fast._core.zoneout_masks shows it.
template <typename T>
void zoneout_masks(std::uint64_t seed, Index cell, Index row0, Index row1, Index R, Index H, double z_h, double z_c,
                   T* d_h, T* d_c);

// Backpropagation through time over the trace of a training forward with the same weights.
//   dy: [N, D*R];  dh_n: [L*D, B, R] or null;  dc_n: [L*D, B, H] or null.
//   dx: [N, I];  dh0: [L*D, B, R];  dc0: [L*D, B, H];  grads: [L*D] cells, overwritten.
template <typename T>
void backward(const std::vector<CellWeights<T>>& weights, const Trace<T>& trace, const T* dy, const T* dh_n,
              const T* dc_n, T* dx, T* dh0, T* dc0, const std::vector<CellGrads<T>>& grads);

}  // namespace lstm_fast
