// The streaming step of one layer (Model::step; compiled once per ISA: cell_kernel.hpp). B is small
// when streaming, so each row is two matrix-vector products and the whole step reads each weight
// once per row:  z = W_ih x + W_hh h + (b_ih + b_hh), the fused gates kernel, then h = W_hr m or m.
#include "cell_kernel.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {

void step_rows(const CellDims& dims, const CellWeights<float>& w, const StepArrays& a) {
  using Vector = Eigen::Matrix<float, Eigen::Dynamic, 1>;
  const Index I = dims.input_size, H = dims.hidden_size, R = dims.output_size, G = 4 * H;
  ConstMap<float> W_ih(w.weight_ih, G, I);
  ConstMap<float> W_hh(w.weight_hh, G, R);
  float* z = a.workspace;  // [4H]
  float* m = z + G;        // [H], with a projection
  Eigen::Map<Vector> zv(z, G);
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index r = 0; r < a.batch; ++r) {
      float* hr = a.h + r * R;
      float* cr = a.c + r * H;
      // GEMVs on contiguous vectors work in place, without temporaries.
      zv.noalias() = W_ih * Eigen::Map<const Vector>(a.x + r * I, I);
      zv.noalias() += W_hh * Eigen::Map<const Vector>(hr, R);
      if (a.bias) zv += Eigen::Map<const Vector>(a.bias, G);
      float* out = dims.projection ? m : hr;  // h is overwritten only after W_hh h was read
      gates_forward_row<decltype(peephole)::value>(H, z, cr, out, w.weight_peep);
      if (dims.projection)
        Eigen::Map<Vector>(hr, R).noalias() = ConstMap<float>(w.weight_hr, R, H) * Eigen::Map<const Vector>(m, H);
    }
  });
}

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
