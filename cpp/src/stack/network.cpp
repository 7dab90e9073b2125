// The stack: layers one after another, the two directions of a layer side by side in the output
// ([N, D*R], forward direction in columns 0..R-1), dropout between layers.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

#include "cell/cell.hpp"
#include "lstm_fast/config.hpp"
#include "stack/network.hpp"
#include "plan/plan.hpp"
#include "runtime/team.hpp"

namespace lstm_fast {
namespace {

std::string str(Index v) { return std::to_string(v); }

template <typename T>
void check_weights(const Config& config, const std::vector<CellWeights<T>>& weights) {
  if (static_cast<Index>(weights.size()) != config.num_cells())
    throw Error("weights must hold num_layers * directions = " + str(config.num_cells()) + " cells, got " +
                str(static_cast<Index>(weights.size())));
  for (Index cell = 0; cell < config.num_cells(); ++cell) {
    const CellWeights<T>& w = weights[cell];
    const std::string where = "weights of cell " + str(cell);
    if (!w.weight_ih || !w.weight_hh) throw Error(where + ": weight_ih and weight_hh are required");
    if (config.bias && (!w.bias_ih || !w.bias_hh))
      throw Error(where + ": bias_ih and bias_hh are required when bias=true");
    if (config.proj_size > 0 && !w.weight_hr) throw Error(where + ": weight_hr is required when proj_size > 0");
    if (config.peephole && !w.weight_peep) throw Error(where + ": weight_peep is required when peephole=true");
    if (config.layer_norm &&
        !(w.ln_ih_weight && w.ln_ih_bias && w.ln_hh_weight && w.ln_hh_bias && w.ln_cell_weight && w.ln_cell_bias))
      throw Error(where + ": the ln_* gains and biases are required when layer_norm=true");
  }
}

// The arrays of one call are [N, F] with F one of I, D*R, 4H (and the state [L*D, B, H or R]): each
// must have a size that Index arithmetic and the allocator can hold.
void check_schedule(const Config& config, const Schedule& schedule) {
  if (schedule.batch < 1 || schedule.steps() < 1 || static_cast<Index>(schedule.offsets.size()) != schedule.steps() + 1)
    throw Error("the schedule must come from Schedule::dense or Schedule::packed, with >= 1 step and row");
  const Index widest =
      std::max({config.input_size, config.directions() * config.output_size(), 4 * config.hidden_size});
  if (detail::checked_mul(schedule.rows(), widest, kMaxElements) < 0 ||
      detail::checked_mul(detail::checked_mul(schedule.batch, config.num_cells(), kMaxElements), config.hidden_size,
                          kMaxElements) < 0)
    throw Error("a sequence of " + str(schedule.rows()) + " rows (batch " + str(schedule.batch) +
                ") needs arrays of more than 2^" + str(kMaxElementsLog2) + " numbers for this model");
}

// bf16 training (Training::precision; float only): values rounded to bfloat16 in place.
template <typename T>
void round_to_bf16(T* v, Index n) {
  if constexpr (std::is_same_v<T, float>) detail::active_kernels().round_bf16(v, n);
}

// The weights a call's products read: the caller's, or for bf16 training copies of W_ih, W_hh and W_hr
// rounded to bfloat16 (the other parameters as they are).
template <typename T>
struct ProductWeights {
  std::vector<CellWeights<T>> rounded_cells;  // bf16: the caller's with the three replaced
  std::vector<Buffer<T>> rounded;
  const std::vector<CellWeights<T>>& cells;
  ProductWeights(const Config& config, const std::vector<CellWeights<T>>& weights, bool bf16)
      : cells(bf16 ? rounded_cells : weights) {
    if (!bf16) return;
    rounded_cells = weights;
    rounded.reserve(static_cast<size_t>(3 * config.num_cells()));
    const Index G = 4 * config.hidden_size, R = config.output_size(), H = config.hidden_size;
    for (Index cell = 0; cell < config.num_cells(); ++cell) {
      const Index I = config.layer_input_size(cell / config.directions());
      CellWeights<T>& w = rounded_cells[cell];
      for (auto [weight, size] : {std::pair<const T**, Index>{&w.weight_ih, G * I},
                                  {&w.weight_hh, G * R},
                                  {&w.weight_hr, config.proj_size > 0 ? R * H : 0}}) {
        if (size == 0) continue;
        rounded.emplace_back(*weight, *weight + size);
        round_to_bf16(rounded.back().data(), size);
        *weight = rounded.back().data();
      }
    }
  }
};

std::atomic<int> g_num_threads{std::max(1, static_cast<int>(std::thread::hardware_concurrency()))};

// The plan of layer k of a call (plan.hpp): decided here once, read by the kernels (a training
// forward's kept in its trace for the backward).
template <typename T>
detail::LayerPlan plan_of(const Config& config, Index layer, const Schedule& schedule, bool training,
                          const Training<T>& options) {
  detail::Problem problem = detail::layer_problem(config, layer, schedule.batch, schedule.rows(), schedule.steps());
  problem.training = training;
  problem.checkpoint = training ? options.checkpoint : 0;
  problem.precision = training ? options.precision : Precision::fp32;
  problem.dot = detail::dot_instructions();
  problem.l2_bytes = detail::cache_sizes().l2;
  problem.threads = g_num_threads.load();
  problem.element_size = sizeof(T);
  problem.lanes = detail::cell_kernels<T>().lanes;
  return detail::plan_layer(problem);
}

}  // namespace

void set_num_threads(int num_threads) {
  if (num_threads < 1 || num_threads > kMaxThreads)
    throw Error("num_threads must be in [1, " + std::to_string(kMaxThreads) + "], got " + std::to_string(num_threads));
  g_num_threads.store(num_threads);
}

int get_num_threads() { return g_num_threads.load(); }

void Config::validate() const {
  if (input_size < 1) throw Error("input_size must be >= 1, got " + str(input_size));
  if (hidden_size < 1) throw Error("hidden_size must be >= 1, got " + str(hidden_size));
  if (num_layers < 1) throw Error("num_layers must be >= 1, got " + str(num_layers));
  if (proj_size < 0 || proj_size >= hidden_size)
    throw Error("proj_size must be >= 0 and < hidden_size (" + str(hidden_size) + "), got " + str(proj_size));
  if (!(cell_clip >= 0.0) || !std::isfinite(cell_clip))
    throw Error("cell_clip must be 0 (none) or a finite number > 0, got " + std::to_string(cell_clip));
  for (const auto& [name, z] : {std::pair<const char*, double>{"zoneout_h", zoneout_h}, {"zoneout_c", zoneout_c}})
    if (!(z >= 0.0 && z < 1.0)) throw Error(std::string(name) + " must be in [0, 1), got " + std::to_string(z));
  // Each size below 2^31 and the whole parameter count below kMaxElements: then no product of sizes
  // the library forms (4H * I_k, L*D * B * H, ...) wraps around, and an absurd configuration fails
  // here with its numbers instead of as a failed allocation (or a wrapped one) later.
  for (const auto& [name, value] : {std::pair<const char*, Index>{"input_size", input_size},
                                    {"hidden_size", hidden_size},
                                    {"num_layers", num_layers}})
    if (value > kMaxSize) throw Error(std::string(name) + " must be <= 2^31 - 1, got " + str(value));
  const Index H = hidden_size, R = output_size();
  auto layer_params = [&](Index k) -> Index {  // -1 past kMaxElements
    // Per cell: W_ih [4H, I_k], W_hh [4H, R], two biases [4H]; W_hr [R, H]; peepholes [3, H]; layer
    // norm's 4 [4H] and 2 [H].
    const Index ln = layer_norm ? 1 : 0;
    const Index gates = detail::checked_mul(4 * H, layer_input_size(k) + R + 2 + 4 * ln, kMaxElements);
    return gates < 0 ? -1 : detail::checked_mul(gates + R * H + (3 + 2 * ln) * H, directions(), kMaxElements);
  };
  Index total = layer_params(0);
  if (total >= 0 && num_layers > 1) {  // layers 1.. are alike
    const Index one = layer_params(1);
    const Index rest = one < 0 ? -1 : detail::checked_mul(one, num_layers - 1, kMaxElements);
    total = (rest < 0 || rest > kMaxElements - total) ? -1 : total + rest;
  }
  if (total < 0)
    throw Error("the parameters of input_size=" + str(input_size) + ", hidden_size=" + str(hidden_size) +
                ", num_layers=" + str(num_layers) + ", proj_size=" + str(proj_size) +
                (bidirectional ? ", bidirectional" : "") + " number more than 2^" + str(kMaxElementsLog2) +
                ": too many to allocate");
}

Schedule Schedule::dense(Index steps, Index batch) {
  if (steps < 1) throw Error("the sequence must have >= 1 steps, got " + str(steps));
  if (batch < 1) throw Error("the batch must have >= 1 rows, got " + str(batch));
  if (detail::checked_mul(steps, batch, kMaxElements) < 0)
    throw Error("steps * batch = " + str(steps) + " * " + str(batch) + " rows are more than 2^" +
                str(kMaxElementsLog2) + ": no such input fits in memory");
  return packed(std::vector<Index>(static_cast<size_t>(steps), batch), batch);
}

Schedule Schedule::packed(std::vector<Index> batch_sizes, Index batch) {
  if (batch < 1) throw Error("the batch must have >= 1 rows, got " + str(batch));
  if (batch_sizes.empty()) throw Error("batch_sizes must have >= 1 steps, got 0");
  if (batch_sizes[0] != batch)
    throw Error("batch_sizes[0] must equal the batch size " + str(batch) + ", got " + str(batch_sizes[0]));
  Schedule s;
  s.batch = batch;
  s.offsets.assign(batch_sizes.size() + 1, 0);
  for (size_t t = 0; t < batch_sizes.size(); ++t) {
    const Index b = batch_sizes[t];
    if (b < 1 || (t > 0 && b > batch_sizes[t - 1]))
      throw Error("batch_sizes must be >= 1 and non-increasing, got " + str(b) + " at step " +
                  str(static_cast<Index>(t)));
    if (s.offsets[t] > kMaxElements - b)
      throw Error("batch_sizes add up to more than 2^" + str(kMaxElementsLog2) + " rows");
    s.offsets[t + 1] = s.offsets[t] + b;
  }
  s.batch_sizes = std::move(batch_sizes);
  return s;
}

template <typename T>
void forward(const Config& config, const std::vector<CellWeights<T>>& weights, const Schedule& schedule,
             const ForwardInputs<T>& inputs, const ForwardOutputs<T>& outputs, const Training<T>& training) {
  config.validate();
  Trace<T>* const trace = outputs.trace;
  const std::uint64_t* zoneout_seed = training.zoneout_seed;
  const bool bf16 = training.precision == Precision::bf16;
  if (training.precision == Precision::int8) throw Error("training runs in fp32 or bf16, not int8");
  if ((zoneout_seed || training.recurrent_masks || training.checkpoint != 0 || bf16) && !trace)
    throw Error("recurrent masks, zoneout's masks, checkpoint and bf16 are a training forward's: pass a trace");
  if (training.checkpoint < -1)
    throw Error("checkpoint must be >= 1 steps, 0 (none) or -1 (auto), got " + str(training.checkpoint));
  if (bf16 && !std::is_same_v<T, float>) throw Error("bf16 training needs a float32 model");
  check_weights(config, weights);
  const ProductWeights<T> product_weights(config, weights, bf16);
  check_schedule(config, schedule);
  const Index L = config.num_layers, D = config.directions(), R = config.output_size();
  const Index H = config.hidden_size, B = schedule.batch, N = schedule.rows();
  if (trace) {
    trace->config = config;
    trace->schedule = schedule;
    trace->layer_inputs.assign(static_cast<size_t>(L), {});
    trace->dropout_masks.assign(static_cast<size_t>(L - 1), {});
    trace->cells.assign(static_cast<size_t>(L * D), {});
    trace->plans.clear();
    trace->zoneout = zoneout_seed != nullptr;
    trace->zoneout_seed = zoneout_seed ? *zoneout_seed : 0;
  }
  over_layers(L, N, D * R, inputs.x, outputs.y, [&](Index k, const T* in, T* out) {
    const detail::CellDims dims = detail::cell_dims(config, k);
    if (trace) trace->layer_inputs[k].assign(in, in + N * dims.input_size);
    // The directions write disjoint columns of `out` and their own state and trace.
    const detail::LayerPlan plan = plan_of<T>(config, k, schedule, trace != nullptr, training);
    if (trace) trace->plans.push_back(plan);
    if (trace && bf16) {  // the products' left operand x, rounded once (and kept so for dW_ih)
      round_to_bf16(trace->layer_inputs[k].data(), N * dims.input_size);
      in = trace->layer_inputs[k].data();
    }
    detail::run_directions(D, plan.directions_parallel, [&](Index d) {
      const Index cell = k * D + d;
      const detail::ForwardArrays<T> arrays{
          in,
          {inputs.h0 ? inputs.h0 + cell * B * R : nullptr, inputs.c0 ? inputs.c0 + cell * B * H : nullptr},
          {out + d * R, D * R},
          {outputs.h_n + cell * B * R, outputs.c_n + cell * B * H},
          trace ? &trace->cells[cell] : nullptr,
          training.recurrent_masks ? training.recurrent_masks + cell * B * R : nullptr,
          zoneout_seed,
          cell};
      if (trace)
        detail::train_forward(dims, plan.cell, product_weights.cells[cell], {schedule, d == 1}, arrays);
      else
        detail::cell_kernels<T>().forward(dims, plan.cell, weights[cell], {schedule, d == 1}, arrays);
    });
    if (k < L - 1 && inputs.dropout_masks && inputs.dropout_masks[k]) {
      const T* mask = inputs.dropout_masks[k];
      for (Index e = 0; e < N * D * R; ++e) out[e] *= mask[e];
      if (trace) trace->dropout_masks[k].assign(mask, mask + N * D * R);
    }
  });
}

template <typename T>
void backward(const std::vector<CellWeights<T>>& weights, const Trace<T>& trace, const BackwardInputs<T>& inputs,
              const BackwardOutputs<T>& outputs) {
  const Config& config = trace.config;
  const Schedule& schedule = trace.schedule;
  // A Trace that no training forward filled (default-constructed, or from an inference call) has
  // nothing to backpropagate through: refuse it rather than index its empty vectors.
  if (trace.cells.empty() || static_cast<Index>(trace.cells.size()) != config.num_cells() ||
      static_cast<Index>(trace.layer_inputs.size()) != config.num_layers ||
      static_cast<Index>(trace.plans.size()) != config.num_layers || schedule.steps() < 1)
    throw Error("backward needs the trace of a training forward (forward with a non-null trace) first");
  config.validate();
  check_weights(config, weights);
  const ProductWeights<T> product_weights(config, weights, trace.plans[0].cell.precision == Precision::bf16);
  const std::vector<CellGrads<T>>& grads = outputs.grads;
  if (static_cast<Index>(grads.size()) != config.num_cells())
    throw Error("grads must hold " + str(config.num_cells()) + " cells, got " + str(static_cast<Index>(grads.size())));
  const Index L = config.num_layers, D = config.directions(), R = config.output_size();
  const Index H = config.hidden_size, B = schedule.batch, N = schedule.rows();

  Buffer<T> dlayer_out, dlayer_in;  // [N, D*R]: gradient w.r.t. a hidden layer's output
  Buffer<T> dx_reverse;             // [N, I_k]: the reverse direction's dX when run on its own thread
  const T* dout = inputs.dy;
  for (Index k = L - 1; k >= 0; --k) {
    const detail::CellDims dims = detail::cell_dims(config, k);
    T* din = outputs.dx;
    if (k > 0) {
      dlayer_in.resize(static_cast<size_t>(N * dims.input_size));
      din = dlayer_in.data();
    }
    // Both directions read the same input, so dX is the sum of theirs: in sequence the reverse
    // direction adds into din; in parallel it writes its own buffer, added after the join.
    const detail::LayerPlan& plan = trace.plans[k];
    const bool parallel = plan.directions_parallel;
    if (parallel) dx_reverse.resize(static_cast<size_t>(N * dims.input_size));
    detail::run_directions(D, parallel, [&](Index d) {
      const Index cell = k * D + d;
      T* dx_cell = (d == 1 && parallel) ? dx_reverse.data() : din;
      const detail::DxMode dx_mode = (d == 1 && !parallel) ? detail::DxMode::kAdd : detail::DxMode::kWrite;
      const detail::BackwardArrays<T> arrays{
          trace.cells[cell],
          trace.layer_inputs[k].data(),
          {dout + d * R, D * R},
          {inputs.dh_n ? inputs.dh_n + cell * B * R : nullptr, inputs.dc_n ? inputs.dc_n + cell * B * H : nullptr},
          dx_cell,
          dx_mode,
          {outputs.dh0 + cell * B * R, outputs.dc0 + cell * B * H},
          grads[cell]};
      detail::train_backward(dims, plan.cell, product_weights.cells[cell], {schedule, d == 1}, arrays,
                             trace.zoneout ? &trace.zoneout_seed : nullptr, cell);
    });
    if (parallel)
      for (Index e = 0; e < N * dims.input_size; ++e) din[e] += dx_reverse[e];
    if (k > 0) {
      const Buffer<T>& mask = trace.dropout_masks[k - 1];
      if (!mask.empty())
        for (Index e = 0; e < N * D * R; ++e) din[e] *= mask[e];
      std::swap(dlayer_out, dlayer_in);
      dout = dlayer_out.data();
    }
  }
}

template <typename T>
detail::LayerPlan layer_plan(const Config& config, Index layer, Index steps, Index batch, bool training,
                             Precision precision) {
  Training<T> options;
  options.precision = precision;
  return plan_of<T>(config, layer, Schedule::dense(steps, batch), training, options);
}

#define LSTM_FAST_INSTANTIATE(T)                                                                           \
  template detail::LayerPlan layer_plan<T>(const Config&, Index, Index, Index, bool, Precision);           \
  template void forward<T>(const Config&, const std::vector<CellWeights<T>>&, const Schedule&,             \
                           const ForwardInputs<T>&, const ForwardOutputs<T>&, const Training<T>&);         \
  template void backward<T>(const std::vector<CellWeights<T>>&, const Trace<T>&, const BackwardInputs<T>&, \
                            const BackwardOutputs<T>&);
LSTM_FAST_INSTANTIATE(float)
LSTM_FAST_INSTANTIATE(double)
#undef LSTM_FAST_INSTANTIATE

}  // namespace lstm_fast
