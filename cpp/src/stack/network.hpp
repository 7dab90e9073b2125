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
#include "plan/plan.hpp"
#include "cell/cell_arrays.hpp"
#include "cell/zoneout.hpp"
#include "runtime/workspace.hpp"

namespace lstm_fast {

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

// What a forward reads.
//   x: [N, I];  h0: [L*D, B, R] or null (zeros);  c0: [L*D, B, H] or null (zeros).
//   dropout_masks: null, or [L-1] pointers, each null or [N, D*R]; layer k's output is multiplied by
//     mask k before it becomes layer k+1's input (the mask carries the 1/(1-p) scale).
template <typename T>
struct ForwardInputs {
  const T* x = nullptr;
  const T* h0 = nullptr;
  const T* c0 = nullptr;
  const T* const* dropout_masks = nullptr;
};

// What a forward writes.
//   y: [N, D*R] the last layer's output;  h_n: [L*D, B, R];  c_n: [L*D, B, H].
//   trace: null for inference; else filled with what backward needs (training).
template <typename T>
struct ForwardOutputs {
  T* y = nullptr;
  T* h_n = nullptr;
  T* c_n = nullptr;
  Trace<T>* trace = nullptr;
};

// What a backward reads beside the trace: the loss's gradients w.r.t. the forward's outputs.
//   dy: [N, D*R];  dh_n: [L*D, B, R] or null (zeros);  dc_n: [L*D, B, H] or null (zeros).
template <typename T>
struct BackwardInputs {
  const T* dy = nullptr;
  const T* dh_n = nullptr;
  const T* dc_n = nullptr;
};

// What a backward writes: the gradients w.r.t. the forward's inputs and weights, overwritten.
//   dx: [N, I];  dh0: [L*D, B, R];  dc0: [L*D, B, H];  grads: [L*D] cells.
template <typename T>
struct BackwardOutputs {
  T* dx = nullptr;
  T* dh0 = nullptr;
  T* dc0 = nullptr;
  std::vector<CellGrads<T>> grads;
};

// Runs the stack over a packed sequence. weights: [L*D] cells; `training` as Training says (with
// outputs.trace only).
template <typename T>
void forward(const Config& config, const std::vector<CellWeights<T>>& weights, const Schedule& schedule,
             const ForwardInputs<T>& inputs, const ForwardOutputs<T>& outputs, const Training<T>& training = {});

// The plan forward() takes for layer `layer` of a dense call of `steps` steps of `batch` rows (a training
// one at `precision`), on this machine, ISA and thread count: for tests and tools.
template <typename T>
detail::LayerPlan layer_plan(const Config& config, Index layer, Index steps, Index batch, bool training,
                             Precision precision = Precision::fp32);

// Backpropagation through time over the trace of a training forward with the same weights.
template <typename T>
void backward(const std::vector<CellWeights<T>>& weights, const Trace<T>& trace, const BackwardInputs<T>& inputs,
              const BackwardOutputs<T>& outputs);

}  // namespace lstm_fast
