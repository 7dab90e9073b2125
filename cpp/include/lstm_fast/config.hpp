// lstm_fast: the shape of an LSTM stack, the library's errors and limits, and its process-wide
// settings (threads, instruction set). No Python, no Eigen in this header.
//
// Equations (torch.nn.LSTM, gate order i, f, g, o; `*` is elementwise):
//   z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                     z_t: [4H], blocks (i, f, g, o)
//   i = sigmoid(z_i + p_i * c_{t-1})   f = sigmoid(z_f + p_f * c_{t-1})   g = tanh(z_g)
//   c_t = f * c_{t-1} + i * g
//   o = sigmoid(z_o + p_o * c_t)
//   h_t = o * tanh(c_t)                 or, with a projection (LSTMP):  h_t = W_hr (o * tanh(c_t))
// The peephole weights p (Gers & Schmidhuber 2000) are present only when Config::peephole is set.
// Letters: I input_size, H hidden_size, L num_layers, D directions (2 when bidirectional, else 1),
// R proj_size when > 0 else H (the output size of one direction of a layer), B batch, T steps.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace lstm_fast {

using Index = std::ptrdiff_t;

// Every error the library raises on bad input. Derives from std::invalid_argument, so pybind11 turns
// it into Python's ValueError.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Limits on sizes, so that every product of them the library forms fits an Index: each of input_size,
// hidden_size and num_layers at most kMaxSize, and any one array (the parameters of a stack, a
// sequence's [N, F] arrays) at most kMaxElements numbers. Larger ones throw Error before allocating.
constexpr Index kMaxSize = 0x7fffffff;  // 2^31 - 1
constexpr int kMaxElementsLog2 = 48;    // 2^48 numbers: 1 PiB of float, beyond any machine
constexpr Index kMaxElements = Index(1) << kMaxElementsLog2;

// At most this many threads: set_num_threads, the worker pool and the peak-throughput probes all stop
// here, so that a typo like 10**6 cannot have the pool start thousands of threads.
constexpr int kMaxThreads = 1024;

// The shape of an LSTM stack: the constructor arguments of torch.nn.LSTM plus `peephole`.
struct Config {
  Index input_size = 0;   // I
  Index hidden_size = 0;  // H
  Index num_layers = 1;   // L
  Index proj_size = 0;    // 0: no projection; else R = proj_size < H
  bool bias = true;
  bool bidirectional = false;
  bool peephole = false;
  // The cell variants (docs/api.md, "Constructor"): ONNX's clip, the gates'
  // pre-activations clamped to [-cell_clip, cell_clip] (0: none), and ONNX's input_forget, f = 1 - i.
  double cell_clip = 0.0;
  bool coupled_gates = false;
  // Zoneout (Krueger et al. 2016) in its inference form: c_t = z_c c_{t-1} + (1 - z_c) c~_t and
  // h_t = z_h h_{t-1} + (1 - z_h) h~_t, c~ and h~ the cell's new state; 0: none. A training forward
  // (Python's lf.LSTM) uses 0/1 masks per unit, step and row instead; a Model runs inference only.
  double zoneout_h = 0.0;
  double zoneout_c = 0.0;
  // The layer-normalised LSTM (Ba, Kiros & Hinton 2016, eqs. 20-22): z = LN(W_ih x_t) + LN(W_hh h_{t-1})
  // + b_ih + b_hh, each LN over the row's 4H numbers, and h_t = o * tanh(LN(c_t)) over H; each LN with
  // its own gain and bias (the ln_* tensors of a model file: lstm_fast.hpp), eps 1e-5.
  bool layer_norm = false;

  Index directions() const { return bidirectional ? 2 : 1; }                     // D
  Index output_size() const { return proj_size > 0 ? proj_size : hidden_size; }  // R
  Index layer_input_size(Index layer) const {                                    // I_k
    return layer == 0 ? input_size : directions() * output_size();
  }
  Index num_cells() const { return num_layers * directions(); }  // one cell per layer and direction
  // Throws Error naming the offending field: sizes >= 1 and <= kMaxSize, 0 <= proj_size < hidden_size,
  // and at most kMaxElements parameters in all.
  void validate() const;
};

// The arithmetic of a frozen inference Model (lstm_fast.hpp; docs/api.md "Inference models and precision"):
//   fp32  float32 throughout;
//   bf16  the weights and the inputs of every matrix product (x_t, h_{t-1}, m_t) rounded to bfloat16
//         (nearest even), the products summed in float32; everything else float32;
//   int8  the weights quantized per output row (symmetric, scale max|row| / 127), the inputs of every
//         product quantized per row and step the same way, the products summed exactly in int32, then
//         dequantized; everything else float32. Bitwise the same on every instruction set and thread count.
enum class Precision { fp32, bf16, int8 };
std::string precision_name(Precision p);             // "fp32", "bf16", "int8"
Precision parse_precision(const std::string& name);  // throws Error for any other name

// Threads the library may use at once (>= 1). A cell's time steps are shared by a team of threads
// when each step has enough work (the members own slices of the hidden units, or, for a big batch
// on small weights, rows of the batch), and a bidirectional layer runs its two directions side by
// side; 1 keeps every call on the caller's thread. The default is the number of hardware threads.
// Process-wide; thread-safe. The helpers are a pool of worker threads started on first use and
// kept: between calls they spin briefly, then sleep; idle ones are joined at exit.
void set_num_threads(int num_threads);  // throws Error unless 1 <= num_threads <= kMaxThreads
int get_num_threads();

// The instruction set the kernels run with: "baseline" (what the compiler targets by default: SSE2 on
// x86-64), "avx2" (AVX2 + FMA) or "avx512" (AVX-512 F, BW, DQ, VL). The best one that is both compiled
// in and supported by this CPU is chosen on first use, unless the environment variable LSTM_FAST_ISA
// names another (an unsupported name makes every call throw Error saying so).
std::string isa();
std::vector<std::string> supported_isas();  // compiled in and runnable here, worst first
void set_isa(const std::string& name);      // process-wide; throws Error if not in supported_isas()

}  // namespace lstm_fast
