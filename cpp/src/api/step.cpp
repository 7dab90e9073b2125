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

#include "cell/cell.hpp"
#include "cell/frozen_cell.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "stack/network.hpp"
#include "plan/plan.hpp"

namespace lstm_fast {

void Model::step(const float* x, float* y, State& state) const {
  if (config_.bidirectional)
    throw Error("step: runs unidirectional models only; this model is bidirectional (use forward)");
  check_state(state, "step");
  if (state.workspace_.size() < step_workspace_floats(state.batch_, 1))
    throw Error("step: state has no workspace (make it with initial_state)");
  if (!x || !y) throw Error("step: x and y must not be null");
  // On the calling thread alone: leasing a team allocates, and step promises not to.
  step_arrays(x, y, state.h.data(), state.c.data(), state.batch_, 1, state.workspace_.data());
}

int Model::step_slices(Index batch) const {
  int slices = 1;
  for (Index k = 0; k < config_.num_layers; ++k) slices = std::max(slices, frozen_plan(k, batch, batch, 1).cell.team);
  return slices;
}

// [B, R] of a layer's output, then the frozen kernels' working memory for B rows.
std::size_t Model::step_workspace_floats(Index batch, int slices) const {
  std::size_t bytes = 0;
  for (Index k = 0; k < config_.num_layers; ++k)
    bytes = std::max(bytes, detail::FrozenWork(detail::cell_dims(config_, k), precision_, batch, batch, slices).bytes);
  return static_cast<std::size_t>(batch * config_.output_size()) + bytes / sizeof(float);
}

// h [L, B, R] and c [L, B, H] in place; workspace: step_workspace_floats(batch, slices) floats. The
// team is the plan's, at most `slices`.
void Model::step_arrays(const float* x, float* y, float* h, float* c, Index B, int slices, float* workspace) const {
  const Index H = config_.hidden_size, R = config_.output_size(), L = config_.num_layers;
  float* out = workspace;  // [B, R]
  unsigned char* work = reinterpret_cast<unsigned char*>(workspace + B * R);
  const Index batch_sizes[1] = {B}, offsets[2] = {0, B};
  const detail::FrozenForward cell_forward = detail::active_kernels().frozen_forward;
  const float* in = x;
  for (Index k = 0; k < L; ++k) {
    float* h_k = h + k * B * R;
    float* c_k = c + k * B * H;
    detail::CellPlan plan = frozen_plan(k, B, B, 1).cell;
    plan.team = std::min(plan.team, slices);
    plan.chunk = 1;  // one step: the workspace has room for B rows of pre-activations
    cell_forward(detail::cell_dims(config_, k), plan, (*frozen_)[static_cast<size_t>(k)],
                 {B, 1, batch_sizes, offsets, false}, {in, {h_k, c_k}, {out, R}, {h_k, c_k}, work});
    in = h_k;
  }
  std::memcpy(y, h + (L - 1) * B * R, sizeof(float) * static_cast<size_t>(B * R));
}

}  // namespace lstm_fast
