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
// kernel of gates.hpp.
#include <Eigen/Core>
#include <cstring>

#include "gates.hpp"
#include "lstm_fast/lstm_fast.hpp"

namespace lstm_fast {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const RowMatrix>;
using ConstVectorMap = Eigen::Map<const Eigen::VectorXf>;
using VectorMap = Eigen::Map<Eigen::VectorXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

// The gates and the cell for one row, with the same kernel as the sequence path (gates.hpp), so a
// sequence fed step by step gives the same outputs as the whole sequence:
//   z [4H] pre-activations (overwritten with the gates), c [H] c_{t-1} in and c_t out,
//   m [H] o * tanh(c_t) out; peep [3, H] rows (i, f, o) or null.
inline void pointwise(Index H, float* z, float* c, float* m, const float* peep) {
  if (peep)
    detail::gates_forward_row<true>(H, z, c, m, peep);
  else
    detail::gates_forward_row<false>(H, z, c, m, peep);
}

}  // namespace

void Model::step(const float* x, float* y, State& state) const {
  if (config_.bidirectional)
    throw Error("step: runs unidirectional models only; this model is bidirectional (use forward)");
  check_state(state, "step");
  const Index B = state.batch_, I = config_.input_size, H = config_.hidden_size, R = config_.output_size();
  const Index L = config_.num_layers, G = 4 * H;
  if (static_cast<Index>(state.workspace_.size()) < 5 * H)
    throw Error("step: state has no workspace (make it with initial_state)");
  if (!x || !y) throw Error("step: x and y must not be null");
  const bool projection = config_.proj_size > 0;
  float* z = state.workspace_.data();  // [4H]
  float* m = z + G;                    // [H], with a projection
  const float* p = params_.data();

  for (Index k = 0; k < L; ++k) {
    const CellOffsets& o = cells_[static_cast<size_t>(k)];
    const Index in_size = k == 0 ? I : R;
    const float* in = k == 0 ? x : state.h.data() + (k - 1) * B * R;  // [B, I_k]
    ConstMatrixMap W_ih(p + o.weight_ih, G, in_size);
    ConstMatrixMap W_hh(p + o.weight_hh, G, R);
    const float* peep = o.weight_peep < 0 ? nullptr : p + o.weight_peep;
    for (Index r = 0; r < B; ++r) {
      float* h = state.h.data() + (k * B + r) * R;
      float* c = state.c.data() + (k * B + r) * H;
      VectorMap zv(z, G);
      zv.noalias() = W_ih * ConstVectorMap(in + r * in_size, in_size);
      zv.noalias() += W_hh * ConstVectorMap(h, R);
      if (o.bias >= 0) zv += ConstVectorMap(p + o.bias, G);
      if (projection) {
        pointwise(H, z, c, m, peep);
        VectorMap(h, R).noalias() = ConstMatrixMap(p + o.weight_hr, R, H) * ConstVectorMap(m, H);
      } else {
        pointwise(H, z, c, h, peep);
      }
    }
  }
  std::memcpy(y, state.h.data() + (L - 1) * B * R, sizeof(float) * static_cast<size_t>(B * R));
}

}  // namespace lstm_fast
