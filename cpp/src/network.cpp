// The stack: layers one after another, the two directions of a layer side by side in the output
// ([N, D*R], forward direction in columns 0..R-1), dropout between layers.
#include <algorithm>
#include <atomic>
#include <exception>
#include <string>
#include <thread>
#include <utility>

#include "cell.hpp"
#include "lstm_fast/network.hpp"

namespace lstm_fast {
namespace {

std::string str(Index v) { return std::to_string(v); }

template <typename T>
void check_weights(const Config& config, const std::vector<CellWeights<T>>& weights) {
  if (static_cast<Index>(weights.size()) != config.num_cells())
    throw Error("weights must hold num_layers * directions = " + str(config.num_cells()) +
                " cells, got " + str(static_cast<Index>(weights.size())));
  for (Index cell = 0; cell < config.num_cells(); ++cell) {
    const CellWeights<T>& w = weights[cell];
    const std::string where = "weights of cell " + str(cell);
    if (!w.weight_ih || !w.weight_hh) throw Error(where + ": weight_ih and weight_hh are required");
    if (config.bias && (!w.bias_ih || !w.bias_hh))
      throw Error(where + ": bias_ih and bias_hh are required when bias=true");
    if (config.proj_size > 0 && !w.weight_hr)
      throw Error(where + ": weight_hr is required when proj_size > 0");
    if (config.peephole && !w.weight_peep)
      throw Error(where + ": weight_peep is required when peephole=true");
  }
}

std::atomic<int> g_num_threads{std::max(1, static_cast<int>(std::thread::hardware_concurrency()))};

// How a layer uses the thread budget. Starting a thread costs tens of microseconds and a barrier about
// a microsecond, so:
//   - a bidirectional layer runs its directions side by side when each has ~1e6 multiply-adds of work
//     in all (N * 4H * (I_k + R));
//   - a cell's time steps are shared by a team (its hidden units split between the members) when each
//     step's recurrent product has ~32k (B * 4H * R) and the cell ~1e6 in all; the team gets the
//     budget, halved when the directions already run side by side.
struct LayerThreads {
  bool directions_parallel;
  int step_threads;
};

LayerThreads layer_threads(const Config& config, const detail::CellDims& dims, const Schedule& schedule) {
  const double gates = 4.0 * double(dims.hidden_size);
  const double total = double(schedule.rows()) * gates * double(dims.input_size + dims.output_size);
  const double per_step = double(schedule.batch) * gates * double(dims.output_size);
  const int budget = g_num_threads.load();
  const bool parallel = config.directions() == 2 && budget >= 2 && total >= 1e6;
  const int team = (per_step >= 32768.0 && total >= 1e6) ? std::max(1, budget / (parallel ? 2 : 1)) : 1;
  return {parallel, team};
}

// Runs direction(0) here and direction(1) on a second thread when `parallel`, else both here in order;
// an exception from either is rethrown on the caller's thread.
template <typename Direction>
void run_directions(Index directions, bool parallel, Direction direction) {
  if (!parallel || directions == 1) {
    for (Index d = 0; d < directions; ++d) direction(d);
    return;
  }
  std::exception_ptr reverse_error;
  std::thread reverse([&] {
    try {
      direction(1);
    } catch (...) {
      reverse_error = std::current_exception();
    }
  });
  std::exception_ptr forward_error;
  try {
    direction(0);
  } catch (...) {
    forward_error = std::current_exception();
  }
  reverse.join();
  if (forward_error) std::rethrow_exception(forward_error);
  if (reverse_error) std::rethrow_exception(reverse_error);
}

}  // namespace

void set_num_threads(int num_threads) {
  if (num_threads < 1) throw Error("num_threads must be >= 1, got " + std::to_string(num_threads));
  g_num_threads.store(num_threads);
}

int get_num_threads() { return g_num_threads.load(); }

void Config::validate() const {
  if (input_size < 1) throw Error("input_size must be >= 1, got " + str(input_size));
  if (hidden_size < 1) throw Error("hidden_size must be >= 1, got " + str(hidden_size));
  if (num_layers < 1) throw Error("num_layers must be >= 1, got " + str(num_layers));
  if (proj_size < 0 || proj_size >= hidden_size)
    throw Error("proj_size must be >= 0 and < hidden_size (" + str(hidden_size) + "), got " +
                str(proj_size));
}

Schedule Schedule::dense(Index steps, Index batch) {
  if (steps < 1) throw Error("the sequence must have >= 1 steps, got " + str(steps));
  if (batch < 1) throw Error("the batch must have >= 1 rows, got " + str(batch));
  return packed(std::vector<Index>(static_cast<size_t>(steps), batch), batch);
}

Schedule Schedule::packed(std::vector<Index> batch_sizes, Index batch) {
  if (batch < 1) throw Error("the batch must have >= 1 rows, got " + str(batch));
  if (batch_sizes.empty()) throw Error("batch_sizes must have >= 1 steps, got 0");
  if (batch_sizes[0] != batch)
    throw Error("batch_sizes[0] must equal the batch size " + str(batch) + ", got " +
                str(batch_sizes[0]));
  Schedule s;
  s.batch = batch;
  s.offsets.assign(batch_sizes.size() + 1, 0);
  for (size_t t = 0; t < batch_sizes.size(); ++t) {
    const Index b = batch_sizes[t];
    if (b < 1 || (t > 0 && b > batch_sizes[t - 1]))
      throw Error("batch_sizes must be >= 1 and non-increasing, got " + str(b) + " at step " +
                  str(static_cast<Index>(t)));
    s.offsets[t + 1] = s.offsets[t] + b;
  }
  s.batch_sizes = std::move(batch_sizes);
  return s;
}

template <typename T>
void forward(const Config& config, const std::vector<CellWeights<T>>& weights, const Schedule& schedule,
             const T* x, const T* h0, const T* c0, const T* const* dropout_masks, T* y, T* h_n, T* c_n,
             Trace<T>* trace) {
  config.validate();
  check_weights(config, weights);
  const Index L = config.num_layers, D = config.directions(), R = config.output_size();
  const Index H = config.hidden_size, B = schedule.batch, N = schedule.rows();
  if (trace) {
    trace->config = config;
    trace->schedule = schedule;
    trace->layer_inputs.assign(static_cast<size_t>(L), {});
    trace->dropout_masks.assign(static_cast<size_t>(L - 1), {});
    trace->cells.assign(static_cast<size_t>(L * D), {});
  }
  std::vector<T> layer_in, layer_out;  // [N, D*R] between layers
  const T* in = x;
  for (Index k = 0; k < L; ++k) {
    const detail::CellDims dims = detail::cell_dims(config, k);
    if (trace) trace->layer_inputs[k].assign(in, in + N * dims.input_size);
    T* out = y;
    if (k < L - 1) {
      layer_out.resize(static_cast<size_t>(N * D * R));
      out = layer_out.data();
    }
    // The directions write disjoint columns of `out` and their own state and trace.
    // Plain variables, not a structured binding: C++17 does not let the lambda below capture one
    // (GCC accepts it, clang rejects it).
    const LayerThreads plan = layer_threads(config, dims, schedule);
    const bool parallel = plan.directions_parallel;
    const int threads = plan.step_threads;
    run_directions(D, parallel, [&](Index d) {
      const Index cell = k * D + d;
      detail::cell_kernels<T>().forward(dims, weights[cell], schedule, d == 1, in, h0 ? h0 + cell * B * R : nullptr,
                              c0 ? c0 + cell * B * H : nullptr, out + d * R, D * R, h_n + cell * B * R,
                              c_n + cell * B * H, trace ? &trace->cells[cell] : nullptr, threads);
    });
    if (k < L - 1) {
      if (dropout_masks && dropout_masks[k]) {
        const T* mask = dropout_masks[k];
        for (Index e = 0; e < N * D * R; ++e) out[e] *= mask[e];
        if (trace) trace->dropout_masks[k].assign(mask, mask + N * D * R);
      }
      std::swap(layer_in, layer_out);
      in = layer_in.data();
    }
  }
}

template <typename T>
void backward(const std::vector<CellWeights<T>>& weights, const Trace<T>& trace, const T* dy,
              const T* dh_n, const T* dc_n, T* dx, T* dh0, T* dc0, const std::vector<CellGrads<T>>& grads) {
  const Config& config = trace.config;
  const Schedule& schedule = trace.schedule;
  check_weights(config, weights);
  if (static_cast<Index>(grads.size()) != config.num_cells())
    throw Error("grads must hold " + str(config.num_cells()) + " cells, got " +
                str(static_cast<Index>(grads.size())));
  const Index L = config.num_layers, D = config.directions(), R = config.output_size();
  const Index H = config.hidden_size, B = schedule.batch, N = schedule.rows();

  std::vector<T> dlayer_out, dlayer_in;  // [N, D*R]: gradient w.r.t. a hidden layer's output
  std::vector<T> dx_reverse;             // [N, I_k]: the reverse direction's dX when run on its own thread
  const T* dout = dy;
  for (Index k = L - 1; k >= 0; --k) {
    const detail::CellDims dims = detail::cell_dims(config, k);
    T* din = dx;
    if (k > 0) {
      dlayer_in.resize(static_cast<size_t>(N * dims.input_size));
      din = dlayer_in.data();
    }
    // Both directions read the same input, so dX is the sum of theirs: in sequence the reverse
    // direction adds into din; in parallel it writes its own buffer, added after the join.
    // Plain variables, not a structured binding: C++17 does not let the lambda below capture one
    // (GCC accepts it, clang rejects it).
    const LayerThreads plan = layer_threads(config, dims, schedule);
    const bool parallel = plan.directions_parallel;
    const int threads = plan.step_threads;
    if (parallel) dx_reverse.resize(static_cast<size_t>(N * dims.input_size));
    run_directions(D, parallel, [&](Index d) {
      const Index cell = k * D + d;
      T* dx_cell = (d == 1 && parallel) ? dx_reverse.data() : din;
      detail::cell_kernels<T>().backward(dims, weights[cell], schedule, d == 1, trace.cells[cell],
                               trace.layer_inputs[k].data(), dout + d * R, D * R,
                               dh_n ? dh_n + cell * B * R : nullptr, dc_n ? dc_n + cell * B * H : nullptr,
                               dx_cell, d == 1 && !parallel, dh0 + cell * B * R, dc0 + cell * B * H, grads[cell],
                               threads);
    });
    if (parallel)
      for (Index e = 0; e < N * dims.input_size; ++e) din[e] += dx_reverse[e];
    if (k > 0) {
      const std::vector<T>& mask = trace.dropout_masks[k - 1];
      if (!mask.empty())
        for (Index e = 0; e < N * D * R; ++e) din[e] *= mask[e];
      std::swap(dlayer_out, dlayer_in);
      dout = dlayer_out.data();
    }
  }
}

#define LSTM_FAST_INSTANTIATE(T)                                                                     \
  template void forward<T>(const Config&, const std::vector<CellWeights<T>>&, const Schedule&,      \
                           const T*, const T*, const T*, const T* const*, T*, T*, T*, Trace<T>*);    \
  template void backward<T>(const std::vector<CellWeights<T>>&, const Trace<T>&, const T*, const T*, \
                            const T*, T*, T*, T*, const std::vector<CellGrads<T>>&);
LSTM_FAST_INSTANTIATE(float)
LSTM_FAST_INSTANTIATE(double)
#undef LSTM_FAST_INSTANTIATE

}  // namespace lstm_fast
