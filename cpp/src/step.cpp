// Model::step: one time step through every layer for streaming, in buffers the State owns.
//
// Per layer k and batch row (B is small when streaming, so each row is a matrix-vector product and
// the whole step reads each weight once per row):
//   z = W_ih x + W_hh h + (b_ih + b_hh)             z: [4H] blocks (i, f, g, o); two GEMVs
//   i = sigmoid(z_i + p_i * c)   f = sigmoid(z_f + p_f * c)   g = tanh(z_g)
//   c = f * c + i * g
//   o = sigmoid(z_o + p_o * c)
//   m = o * tanh(c);   h = W_hr m with a projection, else h = m
// Layer k's input is layer k-1's new h, read in place from the state. The state is updated in place:
// h is only overwritten after W_hh h has been read. Nothing here allocates: Eigen's GEMV on a
// contiguous vector works directly on the mapped memory, and the pointwise part is the fused SIMD
// kernel of gates.hpp. The per-layer kernel (step_rows.cpp) is compiled per ISA.
#include <algorithm>
#include <cstring>

#include "cell.hpp"
#include "frozen.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "network.hpp"

namespace lstm_fast {

void Model::step(const float* x, float* y, State& state) const {
  if (config_.bidirectional)
    throw Error("step: runs unidirectional models only; this model is bidirectional (use forward)");
  check_state(state, "step");
  const Index B = state.batch_, H = config_.hidden_size, R = config_.output_size();
  const Index L = config_.num_layers;
  if (state.workspace_.size() < step_workspace_floats(B))
    throw Error("step: state has no workspace (make it with initial_state)");
  if (!x || !y) throw Error("step: x and y must not be null");
  if (frozen_) return step_frozen(x, y, state);
  // The kernel of the instruction set in use (step_rows.cpp, compiled per ISA, as the sequence kernels).
  const detail::StepRows step_rows = detail::active_kernels().step_rows;
  const float* p = params_.data();
  const auto at = [p](Index offset) { return offset < 0 ? nullptr : p + offset; };

  for (Index k = 0; k < L; ++k) {
    const CellOffsets& o = cells_[static_cast<size_t>(k)];
    const detail::CellDims dims = detail::cell_dims(config_, k);
    CellWeights<float> w;
    w.weight_ih = at(o.weight_ih);
    w.weight_hh = at(o.weight_hh);
    w.weight_hr = at(o.weight_hr);
    w.weight_peep = at(o.weight_peep);
    const float* in = k == 0 ? x : state.h.data() + (k - 1) * B * R;  // [B, I_k]: layer k-1's new h
    step_rows(dims, w,
              {B, at(o.bias), in, state.h.data() + k * B * R, state.c.data() + k * B * H, state.workspace_.data()});
  }
  std::memcpy(y, state.h.data() + (L - 1) * B * R, sizeof(float) * static_cast<size_t>(B * R));
}

std::size_t Model::step_workspace_floats(Index batch) const {
  if (!frozen_) return static_cast<std::size_t>(5 * config_.hidden_size);  // one row at a time
  std::size_t bytes = 0;
  for (Index k = 0; k < config_.num_layers; ++k)
    bytes = std::max(bytes, detail::FrozenWork(detail::cell_dims(config_, k), precision_, batch, batch).bytes);
  return bytes / sizeof(float) + static_cast<std::size_t>(batch * config_.output_size());
}

// bf16 and int8: each layer is the frozen kernels' cell over one step of B rows, in place on the state
// (the kernel reads the state before it writes it), its output then layer k+1's input.
void Model::step_frozen(const float* x, float* y, State& state) const {
  const Index B = state.batch_, H = config_.hidden_size, R = config_.output_size(), L = config_.num_layers;
  const std::size_t work_floats = step_workspace_floats(B) - static_cast<std::size_t>(B * R);
  unsigned char* work = reinterpret_cast<unsigned char*>(state.workspace_.data());
  float* out = state.workspace_.data() + work_floats;  // [B, R]
  const Index batch_sizes[1] = {B}, offsets[2] = {0, B};
  const detail::FrozenForward cell_forward = detail::active_kernels().frozen_forward;
  const float* in = x;
  for (Index k = 0; k < L; ++k) {
    float* h = state.h.data() + k * B * R;
    float* c = state.c.data() + k * B * H;
    cell_forward(precision_, detail::cell_dims(config_, k), (*frozen_)[static_cast<size_t>(k)],
                 {B, 1, batch_sizes, offsets, false}, 1, {in, {h, c}, {out, R}, {h, c}, work});
    in = h;
  }
  std::memcpy(y, state.h.data() + (L - 1) * B * R, sizeof(float) * static_cast<size_t>(B * R));
}

}  // namespace lstm_fast
