// lstm_fast: the LSTM stack as a C++ function of raw arrays (no Python, no Eigen in this header).
//
// One call runs a whole sequence through every layer and direction ("Run" in haste's words); the
// training variant keeps a Trace so that `backward` can run backpropagation through time.
//
// Equations (torch.nn.LSTM, gate order i, f, g, o; `*` is elementwise):
//   z_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh                     z_t: [4H], blocks (i, f, g, o)
//   i = sigmoid(z_i + p_i * c_{t-1})   f = sigmoid(z_f + p_f * c_{t-1})   g = tanh(z_g)
//   c_t = f * c_{t-1} + i * g
//   o = sigmoid(z_o + p_o * c_t)
//   h_t = o * tanh(c_t)                 or, with a projection (LSTMP):  h_t = W_hr (o * tanh(c_t))
// The peephole weights p (Gers & Schmidhuber 2000) are present only when Config::peephole is set.
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

#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
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

// The shape of an LSTM stack: the constructor arguments of torch.nn.LSTM plus `peephole`.
struct Config {
  Index input_size = 0;   // I
  Index hidden_size = 0;  // H
  Index num_layers = 1;   // L
  Index proj_size = 0;    // 0: no projection; else R = proj_size < H
  bool bias = true;
  bool bidirectional = false;
  bool peephole = false;

  Index directions() const { return bidirectional ? 2 : 1; }           // D
  Index output_size() const { return proj_size > 0 ? proj_size : hidden_size; }  // R
  Index layer_input_size(Index layer) const {                          // I_k
    return layer == 0 ? input_size : directions() * output_size();
  }
  Index num_cells() const { return num_layers * directions(); }        // one cell per layer and direction
  // Throws Error naming the offending field: sizes >= 1 and <= kMaxSize, 0 <= proj_size < hidden_size,
  // and at most kMaxElements parameters in all.
  void validate() const;
};

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
};

// Which batch rows are active at each step (torch's PackedSequence.batch_sizes).
struct Schedule {
  Index batch = 0;                 // B: rows of the state
  std::vector<Index> batch_sizes;  // [T], each in 1..B, non-increasing
  std::vector<Index> offsets;      // [T + 1], offsets[t] = sum_{s<t} batch_sizes[s]

  static Schedule dense(Index steps, Index batch);                  // every row active at every step
  static Schedule packed(std::vector<Index> batch_sizes, Index batch);  // validates
  Index steps() const { return static_cast<Index>(batch_sizes.size()); }  // T
  Index rows() const { return offsets.empty() ? 0 : offsets.back(); }     // N
};

// Memory for traces and workspaces. Training allocates tens of megabytes per call (the trace, dZ);
// fresh pages from the system cost a page fault each and used to take a third of a training step.
// Blocks of 64 KiB and more are therefore recycled by the library: a freed block goes to a bounded
// cache (at most 16 blocks, 1 GiB) that later calls take from, best fit. Memory comes uninitialised,
// 64-byte aligned. Thread-safe. workspace_release() returns the cached blocks to the system.
namespace detail {
// Blocks from this size on are cached (workspace.cpp); the bindings' outputs from this size on use them.
constexpr std::size_t kRecycledMinBytes = std::size_t(64) << 10;
void* workspace_allocate(std::size_t bytes);             // throws std::bad_alloc
void workspace_free(void* block, std::size_t bytes) noexcept;
}  // namespace detail
void workspace_release() noexcept;
std::size_t workspace_cached_bytes() noexcept;  // what the cache holds now

template <typename T>
struct WorkspaceAllocator {
  using value_type = T;
  WorkspaceAllocator() = default;
  template <typename U>
  WorkspaceAllocator(const WorkspaceAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(detail::workspace_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { detail::workspace_free(p, n * sizeof(T)); }
  // resize() default-initialises (no zero fill): every buffer is written before it is read.
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <typename U>
  bool operator==(const WorkspaceAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const WorkspaceAllocator<U>&) const noexcept { return false; }
};
template <typename T>
using Buffer = std::vector<T, WorkspaceAllocator<T>>;

// What one cell keeps for backpropagation through time: the activated gates and the states around
// each step. Rows follow the packed layout.
template <typename T>
struct CellTrace {
  Buffer<T> gates;        // [N, 4H] activated (i, f, g, o)
  Buffer<T> cell;         // [N, H] c_t
  Buffer<T> cell_prev;    // [N, H] c_{t-1} as seen by the row (c0 on its first step)
  Buffer<T> hidden_prev;  // [N, R] h_{t-1} as seen by the row (h0 on its first step)
};

// Everything a training forward leaves for backward.
template <typename T>
struct Trace {
  Config config;
  Schedule schedule;
  std::vector<Buffer<T>> layer_inputs;   // [L] of [N, I_k]: the input each layer saw
  std::vector<Buffer<T>> dropout_masks;  // [L-1] of [N, D*R] or empty: mask after layer k
  std::vector<CellTrace<T>> cells;            // [L*D]
};

// Threads the library may use at once (>= 1). A cell's time steps are shared by a team of threads
// (each owning a slice of the hidden units, with a barrier per step) when each step has enough work,
// and a bidirectional layer runs its two directions side by side; 1 keeps every call on the
// caller's thread. The default is the number of hardware threads. Process-wide; thread-safe. The
// helpers are a pool of worker threads started on first use and kept: between calls they spin for
// 200 us, then sleep; idle ones are joined at exit.
constexpr int kMaxThreads = 1024;
void set_num_threads(int num_threads);  // throws Error unless 1 <= num_threads <= kMaxThreads
int get_num_threads();

// The instruction set the kernels run with: "baseline" (what the compiler targets by default: SSE2 on
// x86-64), "avx2" (AVX2 + FMA) or "avx512" (AVX-512 F, BW, DQ, VL). The best one that is both compiled
// in and supported by this CPU is chosen on first use, unless the environment variable LSTM_FAST_ISA
// names another (an unsupported name makes every call throw Error saying so).
std::string isa();
std::vector<std::string> supported_isas();  // compiled in and runnable here, worst first
void set_isa(const std::string& name);      // process-wide; throws Error if not in supported_isas()

// The machine's float32 peak as the benchmark measures it: GFLOP/s (a multiply-add counts 2) that
// `threads` threads sustain together for `seconds` in independent chains of the active ISA's widest
// FMA. A diagnostic, not part of a model's work.
double fma_peak_gflops(double seconds, int threads);

// Runs the stack over a packed sequence.
//   weights: [L*D] cells.
//   x: [N, I];  h0: [L*D, B, R] or null (zeros);  c0: [L*D, B, H] or null (zeros).
//   dropout_masks: null, or [L-1] pointers, each null or [N, D*R]; layer k's output is multiplied by
//     mask k before it becomes layer k+1's input (the mask carries the 1/(1-p) scale).
//   y: [N, D*R] the last layer's output;  h_n: [L*D, B, R];  c_n: [L*D, B, H].
//   trace: null for inference; else filled with what backward needs (training).
template <typename T>
void forward(const Config& config, const std::vector<CellWeights<T>>& weights, const Schedule& schedule,
             const T* x, const T* h0, const T* c0, const T* const* dropout_masks, T* y, T* h_n, T* c_n,
             Trace<T>* trace);

// Backpropagation through time over the trace of a training forward with the same weights.
//   dy: [N, D*R];  dh_n: [L*D, B, R] or null;  dc_n: [L*D, B, H] or null.
//   dx: [N, I];  dh0: [L*D, B, R];  dc0: [L*D, B, H];  grads: [L*D] cells, overwritten.
template <typename T>
void backward(const std::vector<CellWeights<T>>& weights, const Trace<T>& trace, const T* dy,
              const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0, const std::vector<CellGrads<T>>& grads);

}  // namespace lstm_fast
