// Model::step: one time step through every layer for streaming, in place on the state. Each layer is
// the frozen kernels' cell (frozen_kernels.cpp) over one step of the B rows, on weights packed when
// the model was made, in the model's precision:
//   z = W_ih x + W_hh h + (b_ih + b_hh)             z: [B, 4H] blocks (i, f, g, o)
//   i = sigmoid(z_i + p_i * c)   f = sigmoid(z_f + p_f * c)   g = tanh(z_g)
//   c = f * c + i * g
//   o = sigmoid(z_o + p_o * c)
//   m = o * tanh(c);   h = W_hr m with a projection, else h = m
// Layer k's input is layer k-1's new h, read in place from the state (the kernel reads the state
// before it writes it). Nothing here allocates: the working memory is the State's (or the caller's).
#include <algorithm>
#include <cstring>

#include "api/model_data.hpp"
#include "cell/cell.hpp"
#include "cell/frozen_cell.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "stack/network.hpp"
#include "plan/plan.hpp"

namespace lstm_fast {

void Model::step(const float* x, float* y, State& state) const {
  const detail::ModelData& m = data("step");
  if (m.config.bidirectional)
    throw Error("step: runs unidirectional models only; this model is bidirectional (use forward)");
  detail::check_state(m.config, state, "step");
  if (state.workspace_.size() < m.step_workspace_floats(state.batch_, 1))
    throw Error("step: state has no workspace (make it with initial_state)");
  if (!x || !y) throw Error("step: x and y must not be null");
  // On the calling thread alone: leasing a team allocates, and step promises not to.
  m.step_arrays(x, y, state.h.data(), state.c.data(), state.batch_, 1, state.workspace_.data());
}

namespace detail {

int ModelData::step_slices(Index batch) const {
  int slices = 1;
  for (Index k = 0; k < config.num_layers; ++k) slices = std::max(slices, frozen_plan(k, batch, batch, 1).cell.team);
  return slices;
}

// [B, R] of a layer's output, then the frozen kernels' working memory for B rows.
std::size_t ModelData::step_workspace_floats(Index batch, int slices) const {
  std::size_t bytes = 0;
  for (Index k = 0; k < config.num_layers; ++k)
    bytes = std::max(bytes, FrozenWork(cell_dims(config, k), precision, batch, batch, slices).bytes);
  return static_cast<std::size_t>(batch * config.output_size()) + bytes / sizeof(float);
}

void ModelData::step_arrays(const float* x, float* y, float* h, float* c, Index B, int slices, float* workspace) const {
  const Index H = config.hidden_size, R = config.output_size(), L = config.num_layers;
  float* out = workspace;  // [B, R]
  unsigned char* work = reinterpret_cast<unsigned char*>(workspace + B * R);
  const Index batch_sizes[1] = {B}, offsets[2] = {0, B};
  const FrozenForward cell_forward = active_kernels().frozen_forward;
  const float* in = x;
  for (Index k = 0; k < L; ++k) {
    float* h_k = h + k * B * R;
    float* c_k = c + k * B * H;
    CellPlan plan = frozen_plan(k, B, B, 1).cell;
    plan.team = std::min(plan.team, slices);
    plan.chunk = 1;  // one step: the workspace has room for B rows of pre-activations
    cell_forward(cell_dims(config, k), plan, frozen[static_cast<size_t>(k)], {B, 1, batch_sizes, offsets, false},
                 {in, {h_k, c_k}, {out, R}, {h_k, c_k}, work});
    in = h_k;
  }
  std::memcpy(y, h + (L - 1) * B * R, sizeof(float) * static_cast<size_t>(B * R));
}

}  // namespace detail
}  // namespace lstm_fast
