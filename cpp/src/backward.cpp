// The backward pass of one cell (backpropagation through time; compiled once per ISA: cell_kernel.hpp):
//   per step, in the reverse of the forward's order, one fused pointwise kernel (gates.hpp) gives
//   dZ_t, and one GEMM  dh_{t-1} = dZ_t W_hh;  after the time loop the weight gradients and dX are
//   single GEMMs over all steps:  dW_ih = dZ^T X,  dW_hh = dZ^T H_prev,  db = sum_rows dZ,
//   dX = dZ W_ih  (+ dW_hr = dH^T M with a projection, dp with peepholes).
// dh_{t-1} and dX read their weights packed once per call when the plan says so (recurrent.hpp); the
// weight gradients are Eigen's GEMMs. Everything is allocated in the constructor: nothing the team
// runs allocates or throws.
#include <algorithm>

#include "cell_kernel.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

template <typename T>
struct BackwardPass : PassShape {
  BackwardPass(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& w, const Sequence& sequence,
               const BackwardArrays<T>& io);
  void run();

  void unit_member(int k, int team, SpinBarrier& barrier);
  void unit_step(const MemberSlice& slice, const T* panel, Index q, SpinBarrier& barrier);
  void row_member(int k, int team, SpinBarrier& barrier);
  void row_step(int k, int team, Index q);
  void gradients(int k, int team, SpinBarrier& barrier);
  void input_gradient(Index n0, Index n1);
  void projection_gradient(const MemberSlice& slice, Index n0, Index n1, SpinBarrier& barrier);
  void peephole_gradient(const MemberSlice& slice);

  const CellWeights<T>& w;
  const BackwardArrays<T>& io;
  const CellTrace<T>& trace;
  // Running gradients w.r.t. each row's latest state; a row not active at a step keeps its value,
  // mirroring the forward's running state.
  Matrix<T> dh, dc;
  // The [N, *] workspaces come from the library's recycled blocks (no page faults call after call).
  Buffer<T> dZ_buffer;  // [N, 4H] gradient w.r.t. the gate pre-activations, all steps
  Matrix<T> dm;         // [B, H] gradient w.r.t. m = o * tanh(c) (projection only)
  Buffer<T> dH_buffer;  // [N, R] dh_t of every row (for dW_hr; projection only)
  Buffer<T> M_buffer;   // [N, H] m_t = o * tanh(c_t) (for dW_hr; projection only)
  // Column sums go to aligned buffers of our own first: Eigen vectorizes a reduction from an aligned
  // address of its destination, so summing straight into the caller's array would round differently
  // depending on where that array lies.
  Matrix<T> db, dP;
  // Packed when plan.packing. Unit split: W_hh's columns member by member, the panel of
  // W_hh[k][r0 + j] for the member's outputs [r0, r1), panel_size(nr, 4H) < 4H (nr + W) numbers; with a
  // projection r0 need not be on a packet boundary, so member k's panel starts at 4H (r0 + k W).
  // Row split: one panel of all R columns (panel_size(R, 4H) <= 4H (R + team W)). Either way W_ih as
  // one panel of its I columns for dX = dZ W_ih, each member packing its share of the column blocks.
  Buffer<T> packed, packed_ih;
};

template <typename T>
BackwardPass<T>::BackwardPass(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights,
                              const Sequence& sequence, const BackwardArrays<T>& arrays)
    : PassShape(d, p, sequence), w(weights), io(arrays), trace(arrays.trace), dh(B, R), dc(B, H), db(1, G), dP(3, H) {
  if (io.dstate_n.h)
    dh = ConstMap<T>(io.dstate_n.h, B, R);
  else
    dh.setZero();
  if (io.dstate_n.c)
    dc = ConstMap<T>(io.dstate_n.c, B, H);
  else
    dc.setZero();
  dZ_buffer.resize(static_cast<size_t>(N * G));
  if (dims.projection) {
    dm.resize(B, H);
    dH_buffer.resize(static_cast<size_t>(N * R));
    M_buffer.resize(static_cast<size_t>(N * H));
  }
  if (plan.packing) {
    packed.resize(static_cast<size_t>(G * (R + plan.team * Simd<T>::kWidth)));
    packed_ih.resize(static_cast<size_t>(panel_size<T>(I, G)));
  }
}

template <typename T>
void BackwardPass<T>::run() {
  run_members(plan, *this);
  Map<T>(io.dstate0.h, B, R) = dh;
  Map<T>(io.dstate0.c, B, H) = dc;
  if (w.bias_ih) {
    Map<T>(io.grads.bias_ih, 1, G) = db;
    Map<T>(io.grads.bias_hh, 1, G) = db;
  }
  if (dims.peephole) Map<T>(io.grads.weight_peep, 3, H) = dP;
}

// The unit split: member k owns hidden units [u0, u1) for the gate kernel and columns [r0, r1) of dh
// for the recurrent product dh_{t-1} = dZ_t W_hh. Without a projection the two slices coincide, so
// a member reads only its own part of dh and one barrier per step suffices (dZ_t complete before
// the product); a projection's dm = dh W_hr needs all of dh.
template <typename T>
void BackwardPass<T>::unit_member(int k, int team, SpinBarrier& barrier) {
  const MemberSlice slice = member_slice<T>(dims, team, k);
  T* panel = plan.packing ? packed.data() + G * (slice.r0 + k * Simd<T>::kWidth) : nullptr;
  if (plan.packing) {
    pack_columns(w.weight_hh, R, slice.r0, slice.r1 - slice.r0, G, panel);
    pack_columns_share(k, team, w.weight_ih, I, G, packed_ih.data());
  }
  for (Index q = steps - 1; q >= 0; --q) unit_step(slice, panel, q, barrier);
  barrier.wait();  // dZ of every step complete (and W_ih's panel packed)
  gradients(k, team, barrier);
}

// Step q of the forward's processing order, for a unit-split member.
template <typename T>
void BackwardPass<T>::unit_step(const MemberSlice& slice, const T* panel, Index q, SpinBarrier& barrier) {
  const Index u0 = slice.u0, n = slice.u1 - slice.u0, r0 = slice.r0, nr = slice.r1 - slice.r0;
  const Index t = step_at(q);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  dh.block(0, r0, b, nr) +=
      ConstStridedMap<T>(io.dy.data + row * io.dy.stride, b, R, Eigen::OuterStride<>(io.dy.stride)).middleCols(r0, nr);
  if (dims.projection) {
    Map<T>(dH_buffer.data(), N, R).block(row, r0, b, nr) = dh.block(0, r0, b, nr);
    barrier.wait();  // all of dh for dm = dh W_hr
    ConstMap<T> W_hr(w.weight_hr, R, H);
    dm.block(0, u0, b, n).noalias() = dh.topRows(b) * W_hr.middleCols(u0, n);
  }
  const T* dm_all = dims.projection ? dm.data() : dh.data();     // [B, H]
  const T* peep = dims.peephole ? w.weight_peep + u0 : nullptr;  // this member's p_i; rows H apart
  T* dZ = dZ_buffer.data();
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index r = 0; r < b; ++r) {
      const Index at = (row + r) * G + u0;
      gates_backward_units<decltype(peephole)::value>(
          n, H, trace.gates.data() + at, trace.cell.data() + (row + r) * H + u0,
          trace.cell_prev.data() + (row + r) * H + u0, dm_all + r * H + u0, dc.data() + r * H + u0, dZ + at, peep);
    }
  });
  barrier.wait();  // dZ_t complete (and, with a projection, every dm read of dh done)
  if (plan.packing)
    panel_product<false>(b, nr, G, dZ + row * G, G, panel, dh.data() + r0, R);
  else
    dh.block(0, r0, b, nr).noalias() =
        ConstMap<T>(dZ, N, G).middleRows(row, b) * ConstMap<T>(w.weight_hh, G, R).middleCols(r0, nr);
}

// The row split (plan.hpp; no projection): member k runs rows k, k + team, ... of every step, all
// units, on one panel of all R columns of W_hh. The time loop has no wait.
template <typename T>
void BackwardPass<T>::row_member(int k, int team, SpinBarrier& barrier) {
  pack_columns_share(k, team, w.weight_hh, R, G, packed.data());
  pack_columns_share(k, team, w.weight_ih, I, G, packed_ih.data());
  barrier.wait();  // W_hh's panel whole before any member's first product
  for (Index q = steps - 1; q >= 0; --q) row_step(k, team, q);
  barrier.wait();  // dZ of every step complete
  gradients(k, team, barrier);
}

template <typename T>
void BackwardPass<T>::row_step(int k, int team, Index q) {
  const Index stride = team;  // between a member's rows
  const Index t = step_at(q);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  const Index active = rows_of(b, team, k);
  T* dZ = dZ_buffer.data();
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index i = 0; i < active; ++i) {
      const Index r = k + i * stride, at = (row + r) * G;
      dh.row(r) += ConstMap<T>(io.dy.data + (row + r) * io.dy.stride, 1, R);
      gates_backward_units<decltype(peephole)::value>(H, H, trace.gates.data() + at, trace.cell.data() + (row + r) * H,
                                                      trace.cell_prev.data() + (row + r) * H, dh.data() + r * H,
                                                      dc.data() + r * H, dZ + at, w.weight_peep);
    }
  });
  if (active > 0)  // dh_{t-1} = dZ_t W_hh for this member's rows
    panel_product<false>(active, R, G, dZ + (row + k) * G, stride * G, packed.data(), dh.data() + k * R, stride * R);
}

// After the time loop (every dZ complete): the weight gradients and dX, single products over all
// steps, their outputs shared out by rows.
template <typename T>
void BackwardPass<T>::gradients(int k, int team, SpinBarrier& barrier) {
  const MemberSlice slice = member_slice<T>(dims, team, k);
  const Index g0 = split(G, team, k, Simd<T>::kWidth), g1 = split(G, team, k + 1, Simd<T>::kWidth);
  ConstMap<T> dZ(dZ_buffer.data(), N, G);
  Map<T>(io.grads.weight_ih, G, I).middleRows(g0, g1 - g0).noalias() =
      dZ.middleCols(g0, g1 - g0).transpose() * ConstMap<T>(io.x, N, I);
  Map<T>(io.grads.weight_hh, G, R).middleRows(g0, g1 - g0).noalias() =
      dZ.middleCols(g0, g1 - g0).transpose() * ConstMap<T>(trace.hidden_prev.data(), N, R);
  db.middleCols(g0, g1 - g0) = dZ.middleCols(g0, g1 - g0).colwise().sum();
  const Index n0 = N * k / team, n1 = N * (k + 1) / team;
  input_gradient(n0, n1);
  if (dims.projection) projection_gradient(slice, n0, n1, barrier);
  if (dims.peephole) peephole_gradient(slice);
}

// Rows [n0, n1) of dX (+)= dZ W_ih.
template <typename T>
void BackwardPass<T>::input_gradient(Index n0, Index n1) {
  Map<T> dX(io.dx + n0 * I, n1 - n0, I);
  const bool add = io.dx_mode == DxMode::kAdd;
  const T* dZ = dZ_buffer.data();
  if (plan.packing && add)
    panel_gemm<true>(n1 - n0, I, G, dZ + n0 * G, G, packed_ih.data(), dX.data(), I);
  else if (plan.packing)
    panel_gemm<false>(n1 - n0, I, G, dZ + n0 * G, G, packed_ih.data(), dX.data(), I);
  else if (add)
    dX.noalias() += ConstMap<T>(dZ, N, G).middleRows(n0, n1 - n0) * ConstMap<T>(w.weight_ih, G, I);
  else
    dX.noalias() = ConstMap<T>(dZ, N, G).middleRows(n0, n1 - n0) * ConstMap<T>(w.weight_ih, G, I);
}

// m_t = o * tanh(c_t), recomputed from the trace for rows [n0, n1); then dW_hr = dH^T M, each member
// taking its own outputs [r0, r1).
template <typename T>
void BackwardPass<T>::projection_gradient(const MemberSlice& slice, Index n0, Index n1, SpinBarrier& barrier) {
  ConstStridedMap<T> O(trace.gates.data() + 3 * H, N, H, Eigen::OuterStride<>(G));
  ConstMap<T> C(trace.cell.data(), N, H);
  Map<T> M(M_buffer.data(), N, H);
  M.middleRows(n0, n1 - n0) = O.middleRows(n0, n1 - n0).array() * C.middleRows(n0, n1 - n0).array().tanh();
  barrier.wait();  // all of M
  const Index r0 = slice.r0, nr = slice.r1 - slice.r0;
  Map<T>(io.grads.weight_hr, R, H).middleRows(r0, nr).noalias() =
      Map<T>(dH_buffer.data(), N, R).middleCols(r0, nr).transpose() * M;
}

// dp_i = sum_rows dz_i * c_{t-1};  dp_f = sum_rows dz_f * c_{t-1};  dp_o = sum_rows dz_o * c_t,
// for the member's units [u0, u1).
template <typename T>
void BackwardPass<T>::peephole_gradient(const MemberSlice& slice) {
  const Index u0 = slice.u0, n = slice.u1 - slice.u0;
  ConstMap<T> dZ(dZ_buffer.data(), N, G);
  ConstMap<T> C(trace.cell.data(), N, H);
  ConstMap<T> C_prev(trace.cell_prev.data(), N, H);
  dP.block(0, u0, 1, n) = (dZ.middleCols(u0, n).array() * C_prev.middleCols(u0, n).array()).colwise().sum();
  dP.block(1, u0, 1, n) = (dZ.middleCols(H + u0, n).array() * C_prev.middleCols(u0, n).array()).colwise().sum();
  dP.block(2, u0, 1, n) = (dZ.middleCols(3 * H + u0, n).array() * C.middleCols(u0, n).array()).colwise().sum();
}

}  // namespace

LSTM_FAST_CELL_ENTRY(cell_backward, BackwardPass, BackwardArrays)

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
