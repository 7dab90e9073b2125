// The backward pass of one cell as an object (backward.cpp defines its members; included there only,
// so compiled once per ISA): what it keeps between steps and blocks, and its small per-row helpers.
#pragma once

#include <utility>

#include "cell/product_kinds.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// P: the kind of products (training_products.hpp), its Backward.
template <typename T, typename P>
struct BackwardPass : PassShape {
  BackwardPass(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& w, const Sequence& sequence,
               const BackwardArrays<T>& io);
  void run();

  // The walk's hooks (cell_walk.hpp). The unit split: slice j is hidden units [u0, u1) for the gate
  // kernel and columns [r0, r1) of dh for the recurrent product dh_{t-1} = dZ_t W_hh. Without a
  // projection the two coincide, so a slice reads only its own part of dh and one meeting per step
  // suffices (dZ_t complete before the product); a projection's dm = dh W_hr needs all of dh, a second.
  // The row split (plan.hpp; no projection): slice j is rows j, j + team, ... of every step, all units;
  // the products' packing before the first step (the unit split's: at its first step, each slice its own).
  bool prepares() const { return plan.split == Split::kRows && P::kPacks; }
  void prepare(int j) { products.pack(j, plan.team, member_slice<T>(dims, plan.team, j)); }
  void step(int j, Index q) {
    unit_step_start(j, plan.team, q);
    if (!dims.projection) unit_step_gates(member_slice<T>(dims, plan.team, j), q);
  }
  void project(int j, Index q) { unit_step_gates(member_slice<T>(dims, plan.team, j), q); }
  void row_step(int k, Index q);
  void gradients(int j, Index block) { weight_gradients(j, plan.team, block); }
  void project_gradients(int j, Index block) { projection_gradient(member_slice<T>(dims, plan.team, j), block); }
  void finish(int j) { hidden_gradient(j, plan.team, 0); }  // dh_{-1}

  void unit_step_start(int j, int team, Index q);
  void unit_step_gates(const MemberSlice& slice, Index q);
  void hidden_gradient(int j, int team, Index q);
  void weight_gradients(int j, int team, Index block);
  void input_gradient(int j, Index n0, Index n1, Index slot0);
  void projection_gradient(const MemberSlice& slice, Index block);
  void peephole_gradient(const MemberSlice& slice, Index block);
  // The packed rows [first, end) of block b (steps [b K, (b + 1) K) in processing order), and where a
  // packed row of step q (processing order) lies in the two slots.
  std::pair<Index, Index> block_rows(Index b) const {
    const Index q0 = b * plan.gradient_block, q1 = std::min(steps, q0 + plan.gradient_block);
    return reverse ? std::pair<Index, Index>{s.offsets[steps - q1], s.offsets[steps - q0]}
                   : std::pair<Index, Index>{s.offsets[q0], s.offsets[q1]};
  }
  Index slot_start(Index b) const { return (b & 1) * slot_rows; }
  Index slot(Index q, Index row) const {
    const Index b = q / plan.gradient_block;
    return slot_start(b) + row - block_rows(b).first;
  }
  // The block the backward visits first (the last in processing order): its sums assign, the others add
  // (all of them when accumulating into a checkpointed backward's gradients).
  bool first_visited(Index b) const { return !io.accumulate && b == (steps - 1) / plan.gradient_block; }
  Index largest_block() const {
    Index rows = 0;
    for (Index b = 0; b * plan.gradient_block < steps; ++b)
      rows = std::max(rows, block_rows(b).second - block_rows(b).first);
    return rows;
  }
  const Index slot_rows;  // rows of a slot: a block's most (N when one block holds every step)
  // Layer norm, per row (layer_norm.hpp), packed row `row`, state row r, slice j: before the gate kernel
  // the gradient through LN(c_t) added to dc (dm: the row's gradient w.r.t. m); after it, the gradients
  // w.r.t. h W_hh^T and x W_ih^T from the row's dZ. Each adds its row's terms of the gains' and the
  // cell's bias's gradients into slice j's sums (while the row is in cache).
  void ln_cell(Index row, Index r, const T* dm_row, int j) {
    T* dn = dn_rows.data() + r * H;
    const T* hat = trace.ln_cell_hat.data() + row * H;
    cell_layer_norm_backward(H, dm_row, trace.gates.data() + row * G + 3 * H, trace.ln_tanh.data() + row * H,
                             w.ln_cell_weight, hat, trace.ln_std[row * 3 + 2], dn, dc.data() + r * H);
    accumulate_row<T>(H, dn, hat, d_ln_cell.data() + 2 * j * H);
    accumulate_row<T>(H, dn, nullptr, d_ln_cell.data() + (2 * j + 1) * H);
  }
  void ln_gates(Index row, Index at, int j) {  // (at: the row's slot)
    const T* dz = dZ_buffer.data() + at * G;
    const T* hat_ih = trace.ln_ih_hat.data() + row * G;
    const T* hat_hh = trace.ln_hh_hat.data() + row * G;
    layer_norm_backward<false>(G, dz, w.ln_hh_weight, hat_hh, trace.ln_std[row * 3 + 1], dA_h.data() + at * G);
    layer_norm_backward<false>(G, dz, w.ln_ih_weight, hat_ih, trace.ln_std[row * 3], dA_x.data() + at * G);
    accumulate_row<T>(G, dz, hat_ih, d_ln_gates.data() + 2 * j * G);
    accumulate_row<T>(G, dz, hat_hh, d_ln_gates.data() + (2 * j + 1) * G);
  }
  // The gradients w.r.t. W_hh h_{t-1} and W_ih x_t, the left operands of dh_{t-1}, dX and the weight
  // gradients: dZ itself (its copy rounded to bfloat16 in bf16 training), or through layer norm.
  const T* recurrent_gradient() const {
    return ln ? dA_h.data() : plan.precision == Precision::bf16 ? dZ_rounded.data() : dZ_buffer.data();
  }
  const T* projection_input_gradient() const {
    return ln ? dA_x.data() : plan.precision == Precision::bf16 ? dZ_rounded.data() : dZ_buffer.data();
  }
  // bf16: the operands of the products written at `at` (a slot row) for units [u0, u0 + n) of each gate.
  void round_operands(Index at, Index u0, Index n) {
    if (plan.precision != Precision::bf16) return;
    for (Index gate = 0; gate < 4; ++gate) {
      const Index col = gate * H + u0;
      if (ln) {  // (a whole row: layer norm's unit slice is every unit)
        round_block(Map<T>(dA_h.data() + at * G + col, 1, n));
        round_block(Map<T>(dA_x.data() + at * G + col, 1, n));
      } else if constexpr (std::is_same_v<T, float>) {
        round_bf16_to(dZ_buffer.data() + at * G + col, dZ_rounded.data() + at * G + col, n);
      }
    }
  }

  const CellWeights<T>& w;
  const BackwardArrays<T>& io;
  const CellTrace<T>& trace;
  const bool ln;                 // layer norm (its gradients below)
  const GateVariant<T> variant;  // the cell variant the gates fuse (gates.hpp)
  // Zoneout (the trace's masks, or the probabilities): at each step the gradients w.r.t. h_t and c_t
  // split into the parts that reach h~_t, c~_t (through the gates) and those kept for h_{t-1}, c_{t-1}.
  const Zoneout<T> zoneout;
  Matrix<T> dh_keep, dc_keep;  // [B, R], [B, H]: the kept parts of the step being processed
  void zone_split(Index row, Index r, Index r0, Index nr, Index u0, Index n) {  // state row r, packed row + r
    zoneout.h.split(row + r, r0, nr, dh.data() + r * R + r0, dh_keep.data() + r * R + r0);
    zoneout.c.split(row + r, u0, n, dc.data() + r * H + u0, dc_keep.data() + r * H + u0);
  }
  // Running gradients w.r.t. each row's latest state; a row not active at a step keeps its value,
  // mirroring the forward's running state.
  Matrix<T> dh, dc;
  // The [N, *] workspaces come from the library's recycled blocks (no page faults call after call).
  Buffer<T> dZ_buffer;   // [slots, 4H] gradient w.r.t. the gate pre-activations (slot())
  Buffer<T> dZ_rounded;  // bf16 without layer norm: dZ rounded to bfloat16, the products' operand
  Matrix<T> dm;          // [B, H] gradient w.r.t. m = o * tanh(c) (projection only)
  Buffer<T> dH_buffer;   // [slots, R] dh_t of the rows (for dW_hr; projection only)
  Buffer<T> M_buffer;    // [slots, H] m_t = o * tanh(c_t) (for dW_hr; projection only)
  // Column sums go to aligned buffers of our own first: Eigen vectorizes a reduction from an aligned
  // address of its destination, so summing straight into the caller's array would round differently
  // depending on where that array lies.
  Matrix<T> db, dP;
  // Layer norm: [slots, 4H] the gradients w.r.t. h W_hh^T and x W_ih^T; [B, H] w.r.t. LN(c_t) of the rows
  // being processed; per slice j of the team the sums of its rows' terms of the gains' gradients over
  // the block being processed, rows 2j, 2j + 1: (ih gain, hh gain) [4H], (cell gain, cell bias) [H]; and
  // the sums over the blocks done, [2, 4H] and [2, H], each block's slices added in slice order.
  Buffer<T> dA_h, dA_x;
  Matrix<T> dn_rows, d_ln_gates, d_ln_cell, ln_gate_sums, ln_cell_sums;
  void ln_block_sums(int j, int team, bool assign) {  // member j's columns, at the end of a block
    const Index W = Simd<T>::kWidth;
    fold_slices(d_ln_gates, ln_gate_sums, split(G, team, j, W), split(G, team, j + 1, W), team, assign);
    fold_slices(d_ln_cell, ln_cell_sums, split(H, team, j, W), split(H, team, j + 1, W), team, assign);
  }
  static void fold_slices(Matrix<T>& slices, Matrix<T>& sums, Index c0, Index c1, int team, bool assign) {
    auto part = slices.middleCols(c0, c1 - c0);
    for (int k = 1; k < team; ++k) part.topRows(2) += part.middleRows(2 * k, 2);
    accumulate(assign, sums.middleCols(c0, c1 - c0), part.topRows(2));
    part.setZero();
  }
  void continue_sums();  // accumulate: the sums kept outside the blocks go on from the gradients
  typename P::Backward products;
};

}  // namespace
}  // namespace lstm_fast::detail::LSTM_FAST_ISA
