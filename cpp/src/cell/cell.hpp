// One LSTM cell (one layer, one direction) over a packed sequence: the interface of the kernels that
// network.cpp composes, and the table of them per instruction set. Internal header: Eigen stays out.
#pragma once

#include "cell/cell_arrays.hpp"
#include "plan/plan.hpp"

namespace lstm_fast {

// The machine's float32 peak as the benchmark measures it: GFLOP/s (a multiply-add counts 2) that
// `threads` threads (1 .. kMaxThreads) sustain together for `seconds` in independent chains of the
// active ISA's widest FMA. A diagnostic, not part of a model's work (dispatch.cpp).
double fma_peak_gflops(double seconds, int threads);
// The same for the products of a frozen bf16 or int8 model: GOP/s of their multiply-add instruction
// (vdpbf16ps, vpdpbusd, or the fallback the ISA runs) on `threads` threads.
double dot_peak_gops(Precision precision, double seconds, int threads);

}  // namespace lstm_fast

namespace lstm_fast::detail {

// a * b for a, b >= 0, or -1 when the product exceeds `limit`: size products are checked before
// anything is allocated or indexed with them.
inline Index checked_mul(Index a, Index b, Index limit) {
  if (a != 0 && b > limit / a) return -1;
  return a * b;
}

// Which rows are active at each step, and the order of the steps: t = 0..T-1, or T-1..0 when
// `reverse` (the second direction of a bidirectional layer).
struct Sequence {
  const Schedule& schedule;
  bool reverse;
};

// A cell's state for its B rows, or the gradient w.r.t. it: h [B, R] and c [B, H].
template <typename P>
struct StatePointers {
  P h;
  P c;
};

// Rows of an [N, *] array `stride` numbers apart, of which the cell reads or writes columns 0..R-1
// (a layer's output holds both directions: pass y + d*R with stride D*R for direction d).
template <typename P>
struct StridedRows {
  P data;
  Index stride;
};

// The arrays of one cell's forward. x: [N, I]; state0: where the rows start (either pointer null:
// zeros); state_n: written, the state after each row's last step; trace: null for inference, else
// filled for the backward.
template <typename T>
struct ForwardArrays {
  const T* x;
  StatePointers<const T*> state0;
  StridedRows<T*> y;
  StatePointers<T*> state_n;
  CellTrace<T>* trace;
  const T* recurrent_mask = nullptr;  // [B, R] or null: W_hh reads h_{t-1} * it (kept in the trace)
  // Zoneout's seed (training only: a trace, which keeps the masks it draws, network.hpp's
  // zoneout_masks), or null: the probabilities of dims (cell_kernel.hpp's Zoneout); `cell` is k*D + d.
  const std::uint64_t* zoneout_seed = nullptr;
  Index cell = 0;
  Index row0 = 0;  // the packed row of x's row 0 in the whole call (a checkpointed segment's: its masks' rows)
};

// The arrays of one cell's backward (backpropagation through time). trace and x: what the forward
// kept and saw; dstate_n: the gradient w.r.t. state_n (either pointer null: zeros); dx: [N, I],
// overwritten (DxMode::kWrite) or incremented (kAdd: the second direction of a layer); dstate0:
// written, the gradient w.r.t. state0; grads: the cell's weight gradients, overwritten, or with
// `accumulate` (a checkpointed backward's segments after the first) each block's terms added to them.
enum class DxMode { kWrite, kAdd };
template <typename T>
struct BackwardArrays {
  const CellTrace<T>& trace;
  const T* x;
  StridedRows<const T*> dy;
  StatePointers<const T*> dstate_n;
  T* dx;
  DxMode dx_mode;
  StatePointers<T*> dstate0;
  const CellGrads<T>& grads;
  bool accumulate = false;
};

// The cell kernels of one instruction set and element type; `lanes` is its SIMD width, which the
// plan needs (a member of a unit-split team owns whole packets of units).
template <typename T>
struct CellKernels {
  void (*forward)(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                  const ForwardArrays<T>& arrays);
  void (*backward)(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                   const BackwardArrays<T>& arrays);
  Index lanes;
};

// One cell's training forward and backward (checkpoint.cpp): the kernels over the whole sequence, or,
// when plan.checkpoint > 0, over its segments, the trace keeping only the states between them and the
// backward running each segment's forward again. `zoneout_seed`: the forward's (ForwardArrays), or null.
template <typename T>
void train_forward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                   const ForwardArrays<T>& arrays);
template <typename T>
void train_backward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                    const BackwardArrays<T>& arrays, const std::uint64_t* zoneout_seed, Index cell);

// One cell of a frozen model over a sequence (frozen.hpp has the types and the contract).
struct FrozenCell;
struct FrozenSteps;
struct FrozenArrays;
using FrozenForward = void (*)(const CellDims& dims, const CellPlan& plan, const FrozenCell& cell,
                               const FrozenSteps& steps, const FrozenArrays& arrays);

// Float multiply-adds per second one thread sustains for about `seconds` with this ISA's widest
// packets (independent accumulator chains, so FMA throughput, not latency, is the limit), in GFLOP/s
// counting a multiply-add as 2. The benchmark's measure of the machine's peak.
using FmaThroughput = double (*)(double seconds);
// The same for the multiply-add instruction of the frozen products of a precision (bf16, int8) on
// this ISA and CPU, with the dot instructions `dot` allows, in GOP/s (dot_probe.cpp).
using DotThroughput = double (*)(Precision p, const DotInstructions& dot, double seconds);

// Everything compiled per instruction set (kernel_table.cpp, once per ISA, each build in its own
// namespace, detail::<isa>::kernel_table; dispatch.cpp lists them from cmake/isas.cmake's list).
struct KernelTable {
  const char* isa;
  DotInstructions dot;  // the dot instructions this build's products can run where the CPU has them
  CellKernels<float> f32;
  CellKernels<double> f64;
  FrozenForward frozen_forward;
  FmaThroughput fma_throughput;
  DotThroughput dot_throughput;
  void (*round_bf16)(float* v, Index n);  // bf16 training: n floats rounded to bfloat16 in place
};

// The table of the ISA in use (dispatch.cpp): the best this CPU runs, or LSTM_FAST_ISA's choice.
const KernelTable& active_kernels();

// The dot instructions the plan may give the products (dispatch.cpp): those the active kernels were
// built for and this CPU has, unless turned off (LSTM_FAST_NO_DOT_INSTRUCTIONS set in the environment,
// or allow_dot_instructions(false)).
DotInstructions dot_instructions();
// Process-wide, for tests: false plans the other paths on a CPU that has the instructions, true
// gives back what the CPU has. Calls already planned keep their plan.
void allow_dot_instructions(bool allowed);
// Process-wide, for tests: true plans the frozen products that would run on the tile unit on its
// emulation (kernels/tiles.hpp's EmulatedTiles), on any CPU; false gives back the CPU's tile unit, if any.
void emulate_tiles(bool emulated);

template <typename T>
const CellKernels<T>& cell_kernels();
template <>
inline const CellKernels<float>& cell_kernels<float>() {
  return active_kernels().f32;
}
template <>
inline const CellKernels<double>& cell_kernels<double>() {
  return active_kernels().f64;
}

}  // namespace lstm_fast::detail
