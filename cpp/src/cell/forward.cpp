// The forward pass of one cell over a packed sequence (compiled once per ISA: cell_kernel.hpp):
//   Z = X W_ih^T + b for a chunk of steps as one GEMM ("input projection"), then per step one
//   recurrent GEMM  Z_t += h_{t-1} W_hh^T  and one fused pointwise kernel (gates.hpp);
//   with a projection, h_t = W_hr m_t after it.
// The products are the kind the plan chose (training_products.hpp: Eigen's, panels, vdpbf16ps).
// Everything is allocated in the constructor: nothing the team runs allocates or throws.
#include <algorithm>

#include "cell/product_kinds.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// A unit-split member's share: its slice and its peephole weights.
template <typename T>
struct UnitShare {
  int j;  // the slice
  MemberSlice slice;
  Index n;        // u1 - u0 units
  const T* peep;  // this member's p_i; rows H apart
};

// P: the kind of products (training_products.hpp), its Forward.
template <typename T, typename P>
struct ForwardPass : PassShape {
  ForwardPass(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& w, const Sequence& sequence,
              const ForwardArrays<T>& io);
  void run();

  // The walk's hooks (cell_walk.hpp).
  bool prepares() const { return P::kPacks || io.zoneout_seed; }
  void prepare(int j) {  // the products' packing, and slice j's rows of the zoneout masks
    products.pack(j, plan.team);
    draw_masks(j, plan.team);
  }
  bool projects_chunks() const { return P::kProjectsChunks; }
  void project_chunk(int j, const Chunk& c) { project_rows(j, plan.team, c.row0, c.rows, z_of(c)); }
  void step(int j, Index p, const Chunk& c) {
    const Share share = share_of(j, plan.team);
    if constexpr (!P::kProjectsChunks)
      if (p == c.first) project_units(share, c.row0, c.rows, z_of(c));
    step_units(share, p, c.row0, z_of(c));
  }
  void project(int j, Index p) { step_projection(share_of(j, plan.team), p); }
  void row_step(int k, Index p);

  using Share = UnitShare<T>;
  Share share_of(int j, int team);
  T* z_of(const Chunk& c) { return trace ? trace->gates.data() + c.row0 * G : z_chunk.data(); }  // its rows of z
  void project_rows(int j, int team, Index row0, Index rows, T* z);
  void project_units(const Share& share, Index row0, Index rows, T* z);
  void step_units(const Share& share, Index p, Index row0, T* z);
  void step_projection(const Share& share, Index p);
  // The unit split's recurrent product of step rows [0, b): the slice's units of each gate of a (+)= h W_hh^T
  // (written with layer norm, whose a is h W_hh^T alone; added into z otherwise).
  void unit_product(const UnitShare<T>& share, Index b, const Matrix<T>& h, T* a) {
    products.recurrent_units(share.j, share.slice, b, h, a, !ln);
  }
  Zoneout<T> keep_masks() {  // room in the trace for the zoneout masks (draw_masks fills it)
    trace->zoneout_h.resize(static_cast<size_t>(N * R));
    trace->zoneout_c.resize(static_cast<size_t>(N * H));
    return Zoneout<T>(trace->zoneout_h.data(), trace->zoneout_c.data(), dims);
  }
  void draw_masks(int j, int team) {  // slice j's share of the rows of the zoneout masks, before any step
    if (!io.zoneout_seed || !trace) return;
    const Index n0 = N * j / team, n1 = N * (j + 1) / team;  // (the masks' rows are the whole call's)
    zoneout_masks(*io.zoneout_seed, io.cell, io.row0 + n0, io.row0 + n1, R, H, dims.zoneout_h, dims.zoneout_c,
                  trace->zoneout_h.data() + n0 * R, trace->zoneout_c.data() + n0 * H);
  }
  // Zoneout after the kernel (training, or with layer norm, whose LN(c) reads c~): c_t of state rows
  // [r0, r1) (packed rows row + r), units [u0, u0 + n), mixed with c_{t-1} (the trace's, or c_keep's).
  void zone_cell(Index row, Index r0, Index r1, Index u0, Index n) {
    if (!(trace || ln) || !zoneout.on()) return;
    for (Index r = r0; r < r1; ++r) {
      const T* prev = trace ? trace->cell_prev.data() + (row + r) * H : c_keep.data() + r * H;
      zoneout.c.mix(row + r, u0, n, prev + u0, c.data() + r * H + u0);
    }
  }
  // Layer norm (layer_norm.hpp), per row: z = LN(x W_ih^T) + b with x W_ih^T in z; z += LN(a) with
  // a = h W_hh^T; and m = o * tanh(LN(c)) of state row r after the gate kernel. `row` is the packed row,
  // where the trace keeps what the backward needs.
  void ln_input(Index row, T* z) {
    T* hat = trace ? trace->ln_ih_hat.data() + row * G : nullptr;
    const T std = layer_norm<false>(G, z, w.ln_ih_weight, w.ln_ih_bias, hat, z);
    Map<T>(z, 1, G) += bias;
    if (trace) trace->ln_std[row * 3] = std;
  }
  void ln_recurrent(Index row, const T* a, T* z) {
    const T std =
        layer_norm<true>(G, a, w.ln_hh_weight, w.ln_hh_bias, trace ? trace->ln_hh_hat.data() + row * G : nullptr, z);
    if (trace) trace->ln_std[row * 3 + 1] = std;
  }
  void ln_cell(Index row, Index r, const T* gates, T* m_row) {
    T* hat = trace ? trace->ln_cell_hat.data() + row * H : nullptr;
    T* tanh_n = trace ? trace->ln_tanh.data() + row * H : nullptr;
    const T std =
        cell_layer_norm(H, c.data() + r * H, gates + 3 * H, w.ln_cell_weight, w.ln_cell_bias, hat, tanh_n, m_row);
    if (trace) trace->ln_std[row * 3 + 2] = std;
  }

  const CellWeights<T>& w;
  const ForwardArrays<T>& io;
  CellTrace<T>* const trace;
  const bool ln;                 // layer norm: the cell runs with a team of one or split by rows (plan.hpp)
  const GateVariant<T> variant;  // the cell variant the gates fuse (gates.hpp)
  // Zoneout: h always mixed here after h~_t; c by the gate kernel in inference (variant.zone_c), here
  // after the trace took c~_t in training (the mix reads c_{t-1} from the trace) or LN(c~_t) was taken
  // (from c_keep in inference).
  const Zoneout<T> zoneout;
  Matrix<T> c_keep;       // [B, H] c_{t-1}: inference with layer norm and zoneout
  Matrix<T> recurrent_a;  // [B, 4H] h W_hh^T, layer-normalised before it joins z
  RowVector<T> bias;
  // The running state. h is double-buffered: step p reads hidden[p % 2] and writes hidden[(p+1) % 2],
  // so a thread never overwrites the h another thread's recurrent product is still reading. Rows not
  // active at a step carry their values over (packed-sequence semantics in both directions); c is
  // updated in place, each member touching only its own units (or rows).
  Matrix<T> hidden[2];
  // What W_hh reads, when it is not h itself: masked[p % 2] = hidden[p % 2] * r with recurrent dropout
  // (training; r: [B, R], io.recurrent_mask, else null), rounded to bfloat16 in bf16 training; each
  // writer of h_t's rows and columns writes that copy of them too.
  const T* mask = nullptr;
  const bool masking;
  Matrix<T> masked[2];
  const Matrix<T>& product_input(Index p) const { return masking ? masked[p & 1] : hidden[p & 1]; }
  void mask_block(Index p, Index r, Index rows, Index c0, Index cols) {  // masked[p % 2]'s block from hidden's
    auto block = masked[p & 1].block(r, c0, rows, cols);
    block = hidden[p & 1].block(r, c0, rows, cols);
    if (mask) block.array() *= ConstMap<T>(mask, B, R).block(r, c0, rows, cols).array();
    if (plan.precision == Precision::bf16) round_block(block);
  }
  Matrix<T> c;
  Matrix<T> m;        // [B, H] o * tanh(c) before the projection
  Buffer<T> z_chunk;  // inference: pre-activations of one chunk of steps
  typename P::Forward products;
};

template <typename T, typename P>
ForwardPass<T, P>::ForwardPass(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights,
                               const Sequence& sequence, const ForwardArrays<T>& arrays)
    : PassShape(d, p, sequence),
      w(weights),
      io(arrays),
      trace(arrays.trace),
      ln(d.layer_norm),
      variant(gate_variant<T>(d.cell_clip, d.coupled_gates, arrays.trace || ln ? 0.0 : d.zoneout_c, ln)),
      zoneout(arrays.trace && arrays.zoneout_seed ? keep_masks() : Zoneout<T>(nullptr, nullptr, d)),
      masking(arrays.recurrent_mask || p.precision == Precision::bf16),
      products(d, p, weights, B) {
  bias = RowVector<T>::Zero(G);
  if (w.bias_ih) bias += ConstMap<T>(w.bias_ih, 1, G);
  if (w.bias_hh) bias += ConstMap<T>(w.bias_hh, 1, G);
  hidden[0].resize(B, R);
  hidden[1].resize(B, R);
  c.resize(B, H);
  if (io.state0.h)
    hidden[0] = ConstMap<T>(io.state0.h, B, R);
  else
    hidden[0].setZero();
  if (io.state0.c)
    c = ConstMap<T>(io.state0.c, B, H);
  else
    c.setZero();
  if (dims.projection) m.resize(B, H);
  if (ln) recurrent_a.resize(B, G);
  if (ln && !trace && zoneout.on()) c_keep.resize(B, H);
  if (io.recurrent_mask) {
    mask = io.recurrent_mask;
    if (trace) trace->recurrent_mask.assign(mask, mask + B * R);  // for the backward
  }
  if (masking) {
    masked[0].resize(B, R);
    masked[1].resize(B, R);
    mask_block(0, 0, B, 0, R);
  }
  if (trace) {
    trace->gates.resize(static_cast<size_t>(N * G));
    trace->cell.resize(static_cast<size_t>(N * H));
    trace->cell_prev.resize(static_cast<size_t>(N * H));
    trace->hidden_prev.resize(static_cast<size_t>(N * R));
    if (ln) {
      for (Buffer<T>* b : {&trace->ln_ih_hat, &trace->ln_hh_hat}) b->resize(static_cast<size_t>(N * G));
      for (Buffer<T>* b : {&trace->ln_cell_hat, &trace->ln_tanh}) b->resize(static_cast<size_t>(N * H));
      trace->ln_std.resize(static_cast<size_t>(N * 3));
    }
  } else {
    z_chunk.resize(static_cast<size_t>(std::min(plan.chunk, steps) * B * G));
  }
}

template <typename T, typename P>
void ForwardPass<T, P>::run() {
  on_team(plan, [this](const auto& share) { walk_forward(plan, walk(), *this, share); });
  Map<T>(io.state_n.h, B, R) = hidden[steps & 1];
  Map<T>(io.state_n.c, B, H) = c;
}

// The unit split: slice j is hidden units [u0, u1) (all four gates of them, so that the member that
// owns them keeps their rows of W_hh in its core's cache: the "persistent RNN" idea) and, with a
// projection, outputs [r0, r1). The row split (plan.hpp; no projection): slice j is rows j, j + team,
// ... of every step, all units; its rows depend on nothing else, so the team meets only every
// plan.segment steps (where a late member's rows pass to another).

template <typename T, typename P>
UnitShare<T> ForwardPass<T, P>::share_of(int j, int team) {
  const MemberSlice slice = member_slice<T>(dims, team, j);
  const Index n = slice.u1 - slice.u0;
  return {j, slice, n, dims.peephole ? w.weight_peep + slice.u0 : nullptr};
}

// Input projection of rows [row0, row0 + rows): Z = X W_ih^T + b_ih + b_hh, one GEMM for the chunk,
// its rows shared out, all 4H columns of each.
template <typename T, typename P>
void ForwardPass<T, P>::project_rows(int j, int team, Index row0, Index rows, T* z) {
  const Index q0 = rows * j / team, q1 = rows * (j + 1) / team;
  products.input_rows(j, q1 - q0, io.x + (row0 + q0) * I, z + q0 * G, ln ? nullptr : &bias);
  if (ln)
    for (Index q = q0; q < q1; ++q) ln_input(row0 + q, z + q * G);
}

// Few rows (a streaming step): the slice's own columns of the projection, from its rows of W_ih alone
// (which stay in its member's cache from call to call); the next steps of the chunk read them only in
// the same slice, so no segment of their own.
template <typename T, typename P>
void ForwardPass<T, P>::project_units(const Share& share, Index row0, Index rows, T* z) {
  products.input_units(share.slice, rows, io.x + row0 * I, z, ln ? nullptr : &bias);
  if (ln)  // (a team of one: every column is here)
    for (Index q = 0; q < rows; ++q) ln_input(row0 + q, z + q * G);
}

// Step p (in processing order) of a unit slice: the recurrent product and the gates of its units;
// without a projection also its part of h_t and y_t. z holds the chunk's pre-activations from row0.
template <typename T, typename P>
void ForwardPass<T, P>::step_units(const Share& share, Index p, Index row0, T* z) {
  const Index u0 = share.slice.u0, r0 = share.slice.r0, r1 = share.slice.r1, n = share.n;
  const Index t = step_at(p);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  const Matrix<T>& h = product_input(p);
  Matrix<T>& h_next = hidden[(p + 1) & 1];
  T* zt = z + (row - row0) * G;
  T* a = ln ? recurrent_a.data() : zt;  // layer norm: h W_hh^T apart, normalised, then added
  unit_product(share, b, h, a);
  if (ln)
    for (Index r = 0; r < b; ++r) ln_recurrent(row + r, a + r * G, zt + r * G);
  if (c_keep.size()) c_keep.topRows(b) = c.topRows(b);
  if (trace) {
    Map<T>(trace->hidden_prev.data() + row * R, b, R).middleCols(r0, r1 - r0) = h.block(0, r0, b, r1 - r0);
    Map<T>(trace->cell_prev.data() + row * H, b, H).middleCols(u0, n) = c.block(0, u0, b, n);
  }
  T* out = dims.projection ? m.data() : h_next.data();  // [B, H]: o * tanh(c)
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index r = 0; r < b; ++r)
      gates_forward_units<decltype(peephole)::value>(n, H, zt + r * G + u0, c.data() + r * H + u0, out + r * H + u0,
                                                     share.peep, variant);
  });
  if (ln)
    for (Index r = 0; r < b; ++r) ln_cell(row + r, r, zt + r * G, out + r * H);
  if (plan.precision == Precision::bf16 && dims.projection) round_block(m.block(0, u0, b, n));  // (W_hr's operand)
  if (trace) Map<T>(trace->cell.data() + row * H, b, H).middleCols(u0, n) = c.block(0, u0, b, n);
  zone_cell(row, 0, b, u0, n);
  if (!dims.projection) step_projection(share, p);  // only the carry and y: h_t is m_t
}

// Step p's outputs [r0, r1) of a slice: h_t = W_hr m_t with a projection (every unit of m complete),
// rows that ended carried over, and y_t.
template <typename T, typename P>
void ForwardPass<T, P>::step_projection(const Share& share, Index p) {
  const Index r0 = share.slice.r0, r1 = share.slice.r1;
  const Index t = step_at(p);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  const Matrix<T>& h = hidden[p & 1];
  Matrix<T>& h_next = hidden[(p + 1) & 1];
  for_ended_rows(plan, share.j, b, B,
                 [&](Index r) { h_next.row(r).segment(r0, r1 - r0) = h.row(r).segment(r0, r1 - r0); });
  if (dims.projection) {
    ConstMap<T> W_hr(w.weight_hr, R, H);
    h_next.block(0, r0, b, r1 - r0).noalias() = m.topRows(b) * W_hr.middleRows(r0, r1 - r0).transpose();
  }
  if (zoneout.on())
    for (Index r = 0; r < b; ++r)
      zoneout.h.mix(row + r, r0, r1 - r0, h.data() + r * R + r0, h_next.data() + r * R + r0);
  StridedMap<T>(io.y.data + row * io.y.stride, b, R, Eigen::OuterStride<>(io.y.stride)).middleCols(r0, r1 - r0) =
      h_next.block(0, r0, b, r1 - r0);
  if (masking) mask_block(p + 1, 0, B, r0, r1 - r0);
}

// Step p of slice k of the row split: its rows' products, gates and outputs.
template <typename T, typename P>
void ForwardPass<T, P>::row_step(int k, Index p) {
  const int team = plan.team;
  const Index stride = team;  // between a member's rows
  const Index t = step_at(p);
  const Index b = s.batch_sizes[t], row = s.offsets[t];
  const Matrix<T>& h = product_input(p);  // (the carried rows below: hidden's own, and then masked)
  Matrix<T>& h_next = hidden[(p + 1) & 1];
  const Index active = rows_of(b, team, k);
  for_ended_rows(plan, k, b, B, [&](Index r) {
    h_next.row(r) = hidden[p & 1].row(r);
    if (masking) mask_block(p + 1, r, 1, 0, R);
  });
  if (active == 0) return;
  // z rows of this member at step t: rows k, k + team, ... of the step's block of 4H columns.
  T* zt = (trace ? trace->gates.data() + row * G : z_chunk.data()) + k * G;
  // The same operations in the same order as the unit split: x W_ih^T, + bias, + h W_hh^T.
  products.rows(k, active, io.x + (row + k) * I, stride * I, false, zt, stride * G, false);
  if (ln) {  // z = LN(x W_ih^T) + b + LN(h W_hh^T), h W_hh^T in recurrent_a's rows of this member
    T* a = recurrent_a.data() + k * G;
    products.rows(k, active, h.data() + k * R, stride * R, true, a, stride * G, false);
    for (Index i = 0; i < active; ++i) {
      ln_input(row + k + i * stride, zt + i * stride * G);
      ln_recurrent(row + k + i * stride, a + i * stride * G, zt + i * stride * G);
    }
  } else {
    for (Index i = 0; i < active; ++i) Map<T>(zt + i * stride * G, 1, G) += bias;
    products.rows(k, active, h.data() + k * R, stride * R, true, zt, stride * G, true);
  }
  with_peephole(dims.peephole, [&](auto peephole) {
    for (Index i = 0; i < active; ++i) {
      const Index r = k + i * stride;
      if (trace) {
        std::copy(h.data() + r * R, h.data() + (r + 1) * R, trace->hidden_prev.data() + (row + r) * R);
        std::copy(c.data() + r * H, c.data() + (r + 1) * H, trace->cell_prev.data() + (row + r) * H);
      }
      if (c_keep.size()) c_keep.row(r) = c.row(r);
      gates_forward_units<decltype(peephole)::value>(H, H, zt + i * stride * G, c.data() + r * H, h_next.data() + r * R,
                                                     w.weight_peep, variant);
      if (ln) ln_cell(row + r, r, zt + i * stride * G, h_next.data() + r * R);
      if (trace) std::copy(c.data() + r * H, c.data() + (r + 1) * H, trace->cell.data() + (row + r) * H);
      zone_cell(row, r, r + 1, 0, H);
      if (zoneout.on()) zoneout.h.mix(row + r, 0, R, hidden[p & 1].data() + r * R, h_next.data() + r * R);
      std::copy(h_next.data() + r * R, h_next.data() + (r + 1) * R, io.y.data + (row + r) * io.y.stride);
      if (masking) mask_block(p + 1, r, 1, 0, R);
    }
  });
}

}  // namespace

LSTM_FAST_CELL_ENTRY(cell_forward, ForwardPass, ForwardArrays, forward_product, Forward)

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
