// The backward pass of one cell (backpropagation through time; compiled once per ISA: cell_kernel.hpp):
//   per step, in the reverse of the forward's order, one fused pointwise kernel (gates.hpp) gives
//   dZ_t, and one GEMM  dh_{t-1} = dZ_t W_hh;  as each block of plan.gradient_block steps completes, the
//   weight gradients and dX of its rows as GEMMs:  dW_ih += dZ^T X,  dW_hh += dZ^T H_prev,
//   db += sum_rows dZ,  dX = dZ W_ih  (+ dW_hr += dH^T M with a projection, dp with peepholes), the
//   blocks summed in the order the backward visits them. dZ (and what else is kept a row) lives in two
//   slots of a block's rows, one for the block being processed and one for the block after it in time.
// The products are the kind the plan chose (training_products.hpp: Eigen's, dh_{t-1} and dX on panels
// packed once per call, or all of them on vdpbf16ps in bf16 training). Everything is allocated in the
// constructor: nothing the team runs allocates or throws.
#include <algorithm>

#include "cell/backward_pass.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

template <typename T, typename P>
BackwardPass<T, P>::BackwardPass(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights,
                                 const Sequence& sequence, const BackwardArrays<T>& arrays)
    : PassShape(d, p, sequence),
      slot_rows(largest_block()),
      w(weights),
      io(arrays),
      trace(arrays.trace),
      ln(d.layer_norm),
      variant(gate_variant<T>(d.cell_clip, d.coupled_gates, 0.0, d.layer_norm)),
      zoneout(arrays.trace.zoneout_h.empty() ? nullptr : arrays.trace.zoneout_h.data(),
              arrays.trace.zoneout_c.empty() ? nullptr : arrays.trace.zoneout_c.data(), d),
      dh(B, R),
      dc(B, H),
      db(1, G),
      dP(3, H),
      products(d, p, weights, B, slot_rows) {
  if (io.dstate_n.h)
    dh = ConstMap<T>(io.dstate_n.h, B, R);
  else
    dh.setZero();
  if (io.dstate_n.c)
    dc = ConstMap<T>(io.dstate_n.c, B, H);
  else
    dc.setZero();
  const Index blocks = (steps + plan.gradient_block - 1) / plan.gradient_block;
  const Index rows = blocks == 1 ? N : 2 * slot_rows;
  dZ_buffer.resize(static_cast<size_t>(rows * G));
  if (plan.precision == Precision::bf16 && !ln) dZ_rounded.resize(static_cast<size_t>(rows * G));
  if (ln) {
    dA_h.resize(static_cast<size_t>(rows * G));
    dA_x.resize(static_cast<size_t>(rows * G));
    dn_rows.resize(B, H);
    d_ln_gates.setZero(2 * plan.team, G);
    d_ln_cell.setZero(2 * plan.team, H);
    ln_gate_sums.resize(2, G);
    ln_cell_sums.resize(2, H);
  }
  if (io.accumulate) continue_sums();
  if (zoneout.on()) {
    dh_keep.resize(B, R);
    dc_keep.resize(B, H);
  }
  if (dims.projection) {
    dm.resize(B, H);
    dH_buffer.resize(static_cast<size_t>(rows * R));
    M_buffer.resize(static_cast<size_t>(rows * H));
  }
}

template <typename T, typename P>
void BackwardPass<T, P>::continue_sums() {
  if (w.bias_ih)
    db = ConstMap<T>(io.grads.bias_ih, 1, G);
  else if (ln)
    db = ConstMap<T>(io.grads.ln_ih_bias, 1, G);
  if (dims.peephole) dP = ConstMap<T>(io.grads.weight_peep, 3, H);
  if (ln) {
    ln_gate_sums.row(0) = ConstMap<T>(io.grads.ln_ih_weight, 1, G);
    ln_gate_sums.row(1) = ConstMap<T>(io.grads.ln_hh_weight, 1, G);
    ln_cell_sums.row(0) = ConstMap<T>(io.grads.ln_cell_weight, 1, H);
    ln_cell_sums.row(1) = ConstMap<T>(io.grads.ln_cell_bias, 1, H);
  }
}

template <typename T, typename P>
void BackwardPass<T, P>::run() {
  on_team(plan, [this](const auto& share) { walk_backward(plan, walk(), *this, share); });
  Map<T>(io.dstate0.h, B, R) = dh;
  Map<T>(io.dstate0.c, B, H) = dc;
  if (w.bias_ih) {  // db: the column sums of dZ, computed with or without biases
    Map<T>(io.grads.bias_ih, 1, G) = db;
    Map<T>(io.grads.bias_hh, 1, G) = db;
  }
  if (dims.peephole) Map<T>(io.grads.weight_peep, 3, H) = dP;
  if (ln) {  // (the biases of LN(x W_ih^T) and LN(h W_hh^T) add to z like b_ih and b_hh)
    Map<T>(io.grads.ln_ih_weight, 1, G) = ln_gate_sums.row(0);
    Map<T>(io.grads.ln_hh_weight, 1, G) = ln_gate_sums.row(1);
    Map<T>(io.grads.ln_ih_bias, 1, G) = db;
    Map<T>(io.grads.ln_hh_bias, 1, G) = db;
    Map<T>(io.grads.ln_cell_weight, 1, H) = ln_cell_sums.row(0);
    Map<T>(io.grads.ln_cell_bias, 1, H) = ln_cell_sums.row(1);
  }
}

// The start of step q (the forward's processing order) of slice j: the product of the step after it
// (or the packing, at the first step), then dh += dy (kept for dW_hr with a projection).
template <typename T, typename P>
void BackwardPass<T, P>::unit_step_start(int j, int team, Index q) {
  const MemberSlice slice = member_slice<T>(dims, team, j);
  if (q < steps - 1) {
    hidden_gradient(j, team, q + 1);
  } else if (P::kPacks) {
    products.pack(j, team, slice);
  }
  const Index r0 = slice.r0, nr = slice.r1 - slice.r0;
  const Index t = step_at(q);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  dh.block(0, r0, b, nr) +=
      ConstStridedMap<T>(io.dy.data + row * io.dy.stride, b, R, Eigen::OuterStride<>(io.dy.stride)).middleCols(r0, nr);
  if (zoneout.on())
    for (Index r = 0; r < b; ++r) zone_split(row, r, r0, nr, slice.u0, slice.u1 - slice.u0);
  if (dims.projection) {  // (bf16: rounded, the operand of dm = dh W_hr and of dW_hr)
    auto dH = Map<T>(dH_buffer.data() + slot(q, row) * R, b, R).middleCols(r0, nr);
    dH = dh.block(0, r0, b, nr);
    if (plan.precision == Precision::bf16) round_block(dH);
  }
}

// dZ_t of the slice's units (with a projection, after dm = dh W_hr from all of dh).
template <typename T, typename P>
void BackwardPass<T, P>::unit_step_gates(const MemberSlice& slice, Index q) {
  const Index u0 = slice.u0, n = slice.u1 - slice.u0;
  const Index t = step_at(q);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  if (dims.projection) {
    ConstMap<T> W_hr(w.weight_hr, R, H);
    if (plan.precision == Precision::bf16)
      dm.block(0, u0, b, n).noalias() = ConstMap<T>(dH_buffer.data() + slot(q, row) * R, b, R) * W_hr.middleCols(u0, n);
    else
      dm.block(0, u0, b, n).noalias() = dh.topRows(b) * W_hr.middleCols(u0, n);
  }
  const T* dm_all = dims.projection ? dm.data() : dh.data();     // [B, H]
  const T* peep = dims.peephole ? w.weight_peep + u0 : nullptr;  // this slice's p_i; rows H apart
  const Index at = slot(q, row);
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index r = 0; r < b; ++r) {                    // (layer norm: a team of one, u0 = 0 and n = H)
      if (ln) ln_cell(row + r, r, dm_all + r * H, 0);  // (a team of one)
      gates_backward_units<decltype(peephole)::value>(
          n, H, trace.gates.data() + (row + r) * G + u0, trace.cell.data() + (row + r) * H + u0,
          trace.cell_prev.data() + (row + r) * H + u0, dm_all + r * H + u0, dc.data() + r * H + u0,
          dZ_buffer.data() + (at + r) * G + u0, peep, variant, ln ? trace.ln_tanh.data() + (row + r) * H : nullptr);
      if (ln) ln_gates(row + r, at + r, 0);
      round_operands(at + r, u0, n);
    }
  });
  if (zoneout.on()) dc.block(0, u0, b, n) += dc_keep.block(0, u0, b, n);
}

// dh_{t-1} = (dZ_t W_hh) * r for the slice's columns [r0, r1) (r: the recurrent dropout mask, if any), t
// the step processed q-th (every dZ_t complete, and every read of dh for dm done).
template <typename T, typename P>
void BackwardPass<T, P>::hidden_gradient(int j, int team, Index q) {
  const MemberSlice slice = member_slice<T>(dims, team, j);
  const Index r0 = slice.r0, nr = slice.r1 - slice.r0;
  const Index t = step_at(q);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  products.hidden(j, slice, b, recurrent_gradient() + slot(q, row) * G, dh);
  if (!trace.recurrent_mask.empty())
    dh.block(0, r0, b, nr).array() *= ConstMap<T>(trace.recurrent_mask.data(), B, R).block(0, r0, b, nr).array();
  if (zoneout.on()) dh.block(0, r0, b, nr) += dh_keep.block(0, r0, b, nr);
}

// Step q of slice k of the row split: its rows' gradients through the gates and their dh_{t-1}.
template <typename T, typename P>
void BackwardPass<T, P>::row_step(int k, Index q) {
  const int team = plan.team;
  const Index stride = team;  // between a member's rows
  const Index t = step_at(q);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  const Index active = rows_of(b, team, k), at0 = slot(q, row);
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index i = 0; i < active; ++i) {
      const Index r = k + i * stride, at = (row + r) * G;
      dh.row(r) += ConstMap<T>(io.dy.data + (row + r) * io.dy.stride, 1, R);
      if (zoneout.on()) zone_split(row, r, 0, R, 0, H);
      if (ln) ln_cell(row + r, r, dh.data() + r * H, k);
      gates_backward_units<decltype(peephole)::value>(
          H, H, trace.gates.data() + at, trace.cell.data() + (row + r) * H, trace.cell_prev.data() + (row + r) * H,
          dh.data() + r * H, dc.data() + r * H, dZ_buffer.data() + (at0 + r) * G, w.weight_peep, variant,
          ln ? trace.ln_tanh.data() + (row + r) * H : nullptr);
      if (zoneout.on()) dc.row(r) += dc_keep.row(r);
      if (ln) ln_gates(row + r, at0 + r, k);
      round_operands(at0 + r, 0, H);
    }
  });
  if (active > 0)  // dh_{t-1} = (dZ_t W_hh) * r for this member's rows
    products.hidden_rows(k, active, recurrent_gradient() + (at0 + k) * G, stride * G, dh.data() + k * R, stride * R);
  if (!trace.recurrent_mask.empty())
    for (Index i = 0; i < active; ++i) {
      const Index r = k + i * stride;
      dh.row(r).array() *= ConstMap<T>(trace.recurrent_mask.data() + r * R, 1, R).array();
    }
  if (zoneout.on())
    for (Index i = 0; i < active; ++i) dh.row(k + i * stride) += dh_keep.row(k + i * stride);
}

// A block of steps complete (every dZ of its rows written): its rows' terms of the weight gradients and
// its rows of dX, each product's outputs shared out by rows or columns; with a projection, M first and
// dW_hr in a second meeting (project_gradients). The first block the backward visits (the last in
// processing order) assigns, the others add.
template <typename T, typename P>
void BackwardPass<T, P>::weight_gradients(int j, int team, Index block) {
  const Index g0 = split(G, team, j, Simd<T>::kWidth), g1 = split(G, team, j + 1, Simd<T>::kWidth);
  const auto [first, end] = block_rows(block);
  const Index n = end - first, s0 = slot_start(block);
  const bool assign = first_visited(block);
  ConstMap<T> dZ(dZ_buffer.data() + s0 * G, n, G);
  // dW_ih (+)= dA_x^T X and dW_hh (+)= dA_h^T H_prev, the member's gate rows [g0, g1)
  products.weights(j, g0, g1, n, projection_input_gradient() + s0 * G, io.x + first * I, recurrent_gradient() + s0 * G,
                   trace.hidden_prev.data() + first * R, io.grads, assign);
  accumulate(assign, db.middleCols(g0, g1 - g0), dZ.middleCols(g0, g1 - g0).colwise().sum());
  const Index n0 = n * j / team, n1 = n * (j + 1) / team;
  input_gradient(j, first + n0, first + n1, s0 + n0);
  if (dims.projection) {  // m_t = o * tanh(c_t) (or tanh(LN(c_t)), the trace's) of the slice's rows, for dW_hr
    ConstStridedMap<T> O(trace.gates.data() + (first + n0) * G + 3 * H, n1 - n0, H, Eigen::OuterStride<>(G));
    Map<T> M(M_buffer.data() + (s0 + n0) * H, n1 - n0, H);
    if (ln)
      M = O.array() * ConstMap<T>(trace.ln_tanh.data() + (first + n0) * H, n1 - n0, H).array();
    else
      M = O.array() * ConstMap<T>(trace.cell.data() + (first + n0) * H, n1 - n0, H).array().tanh();
    if (plan.precision == Precision::bf16) round_block(M);
  }
  if (dims.peephole) peephole_gradient(member_slice<T>(dims, team, j), block);
  if (ln) ln_block_sums(j, team, assign);
}

// Packed rows [n0, n1) of dX (+)= dZ W_ih, their dZ from `slot0` on.
template <typename T, typename P>
void BackwardPass<T, P>::input_gradient(int j, Index n0, Index n1, Index slot0) {
  Map<T> dX(io.dx + n0 * I, n1 - n0, I);
  const bool add = io.dx_mode == DxMode::kAdd;
  products.input(j, n1 - n0, projection_input_gradient() + slot0 * G, dX.data(), add);
}

// dW_hr (+)= dH^T M over the block's rows for the slice's outputs [r0, r1) (all of M complete).
template <typename T, typename P>
void BackwardPass<T, P>::projection_gradient(const MemberSlice& slice, Index block) {
  const Index r0 = slice.r0, nr = slice.r1 - slice.r0;
  const auto [first, end] = block_rows(block);
  const Index s0 = slot_start(block);
  accumulate(first_visited(block), Map<T>(io.grads.weight_hr, R, H).middleRows(r0, nr),
             Map<T>(dH_buffer.data() + s0 * R, end - first, R).middleCols(r0, nr).transpose() *
                 Map<T>(M_buffer.data() + s0 * H, end - first, H));
}

// dp_i += sum_rows dz_i * c_{t-1};  dp_f += sum_rows dz_f * c_{t-1};  dp_o += sum_rows dz_o * c_t over the
// block's rows, for the slice's units [u0, u1).
template <typename T, typename P>
void BackwardPass<T, P>::peephole_gradient(const MemberSlice& slice, Index block) {
  const Index u0 = slice.u0, n = slice.u1 - slice.u0;
  const auto [first, end] = block_rows(block);
  const Index rows = end - first;
  const bool assign = first_visited(block);
  ConstMap<T> dZ(dZ_buffer.data() + slot_start(block) * G, rows, G);
  ConstMap<T> C(trace.cell.data() + first * H, rows, H);
  ConstMap<T> C_prev(trace.cell_prev.data() + first * H, rows, H);
  accumulate(assign, dP.block(0, u0, 1, n),
             (dZ.middleCols(u0, n).array() * C_prev.middleCols(u0, n).array()).colwise().sum().matrix());
  accumulate(assign, dP.block(1, u0, 1, n),
             (dZ.middleCols(H + u0, n).array() * C_prev.middleCols(u0, n).array()).colwise().sum().matrix());
  accumulate(assign, dP.block(2, u0, 1, n),
             (dZ.middleCols(3 * H + u0, n).array() * C.middleCols(u0, n).array()).colwise().sum().matrix());
}

}  // namespace

LSTM_FAST_CELL_ENTRY(cell_backward, BackwardPass, BackwardArrays, backward_product, Backward)

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
