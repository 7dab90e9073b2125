// One LSTM cell (one layer, one direction) over a packed sequence: the kernels network.cpp composes.
// Internal header: Eigen stays out of the public ones.
#pragma once

#include "lstm_fast/network.hpp"

namespace lstm_fast::detail {

// a * b for a, b >= 0, or -1 when the product exceeds `limit`: size products are checked before
// anything is allocated or indexed with them.
inline Index checked_mul(Index a, Index b, Index limit) {
  if (a != 0 && b > limit / a) return -1;
  return a * b;
}

struct CellDims {
  Index input_size;   // I_k
  Index hidden_size;  // H
  Index output_size;  // R (== H without projection)
  bool projection;
  bool peephole;
};

// The dims of any cell of layer `layer` of a stack (both directions of a layer have the same).
inline CellDims cell_dims(const Config& config, Index layer) {
  return {config.layer_input_size(layer), config.hidden_size, config.output_size(), config.proj_size > 0,
          config.peephole};
}

// The two cell kernels of one instruction set. cell.cpp is compiled once per ISA, each build in its
// own namespace (baseline, avx2, avx512) with its own table; network.cpp calls the active table.
//
// forward: over the schedule, steps in order t = 0..T-1, or T-1..0 when `reverse`.
//   x: [N, I];  h0: [B, R] or null;  c0: [B, H] or null.
//   y: rows of [N, *] with row stride ldy; the cell writes columns 0..R-1 (pass y + d*R for direction d).
//   h_n: [B, R];  c_n: [B, H];  trace: null for inference.
//   threads: how many threads share each step (the hidden units split between them), >= 1.
// backward: backpropagation through time for one cell.
//   x: [N, I] the input the forward saw;  dy: rows of [N, *] with stride ldy, columns 0..R-1;
//   dh_n: [B, R] or null;  dc_n: [B, H] or null.
//   dx: [N, I], overwritten, or incremented when accumulate_dx (the second direction of a layer);
//   dh0: [B, R];  dc0: [B, H];  g: the cell's weight gradients, overwritten.
template <typename T>
struct CellKernels {
  void (*forward)(const CellDims& dims, const CellWeights<T>& w, const Schedule& s, bool reverse, const T* x,
                  const T* h0, const T* c0, T* y, Index ldy, T* h_n, T* c_n, CellTrace<T>* trace, int threads);
  void (*backward)(const CellDims& dims, const CellWeights<T>& w, const Schedule& s, bool reverse,
                   const CellTrace<T>& trace, const T* x, const T* dy, Index ldy, const T* dh_n, const T* dc_n,
                   T* dx, bool accumulate_dx, T* dh0, T* dc0, const CellGrads<T>& g, int threads);
};

// One time step of one unidirectional layer for B rows, in place (Model::step, float only). Per row:
// z = W_ih x + W_hh h + bias (two GEMVs), the gates kernel, then h = W_hr m or h = m.
//   x: [B, I_k];  h: [B, R] in/out;  c: [B, H] in/out;  bias: [4H] b_ih + b_hh, or null;
//   workspace: [5H] (the gates of one row, then m). Never allocates.
using StepRows = void (*)(const CellDims& dims, const CellWeights<float>& w, const float* bias, Index B,
                          const float* x, float* h, float* c, float* workspace);

// Float multiply-adds per second one thread sustains for about `seconds` with this ISA's widest
// packets (independent accumulator chains, so FMA throughput, not latency, is the limit), in GFLOP/s
// counting a multiply-add as 2. The benchmark's measure of the machine's peak.
using FmaThroughput = double (*)(double seconds);

struct KernelTable {
  const char* isa;
  CellKernels<float> f32;
  CellKernels<double> f64;
  StepRows step_rows;
  FmaThroughput fma_throughput;
};

namespace baseline { extern const KernelTable kernel_table; }
namespace avx2 { extern const KernelTable kernel_table; }      // when LSTM_FAST_HAVE_AVX2
namespace avx512 { extern const KernelTable kernel_table; }    // when LSTM_FAST_HAVE_AVX512

// The table of the ISA in use (dispatch.cpp): the best this CPU runs, or LSTM_FAST_ISA's choice.
const KernelTable& active_kernels();

template <typename T>
const CellKernels<T>& cell_kernels();
template <>
inline const CellKernels<float>& cell_kernels<float>() { return active_kernels().f32; }
template <>
inline const CellKernels<double>& cell_kernels<double>() { return active_kernels().f64; }

}  // namespace lstm_fast::detail
