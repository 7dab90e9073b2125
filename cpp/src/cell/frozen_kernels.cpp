// The cell of a frozen model (fp32, bf16, int8) over a sequence, on the plan's team (frozen.hpp; compiled
// once per ISA, like cell_kernel.hpp's files, and with -ffp-contract=off: every float operation here
// is the one written, fused only where written, so that int8 results are bitwise the same on every
// instruction set).
//
// Each slice j of the team owns hidden units (whole blocks of 16 of every gate: the unit split of
// forward.cpp): per chunk of steps it computes its units' columns of the input projection
// Z = X W_ih^T + b for the chunk's rows, one product; per step Z_t += h_{t-1} W_hh^T for its units and
// their gates. With a projection, h_t = W_hr m_t follows, each slice owning outputs. A product converts its left
// operand first (frozen.hpp), whole rows, since an int8 row's scale is its largest value: each slice converts the rows
// it needs into its own buffer, so no slice waits for another's conversion. The products are frozen_products.hpp's.
// int8's pointwise part uses its own tanh and sigmoid of additions, multiplications, fused
// multiply-adds (std::fma on the baseline build) and divisions, each the same IEEE operation on every
// build (gates.hpp's use FMAs only where the ISA has them, which would change the last bits). Layer norm
// (layer_norm.hpp's packets) is outside that promise: an int8 model with it is bitwise per ISA only.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

#include "cell/cell_kernel.hpp"
#include "cell/frozen_cell.hpp"
#include "kernels/frozen_products.hpp"
#include "kernels/tile_products.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// ---- the pointwise part of int8 ------------------------------------------------------------------

// tanh(x) = p / q, a rational function of x (Eigen's and TensorFlow's float coefficients: a few ulp),
// with fused multiply-adds (Horner) and multiplications only; the caller divides. q is in [0.0048, 0.9].
using S = Simd<float>;
using Packet = S::Packet;

struct Ratio {
  Packet p, q;
};

// a * b + c rounded once: the same IEEE operation on every build (the FMA instructions of the AVX2
// and AVX-512 builds; std::fma lane by lane on the baseline build, exact there too).
inline Packet fused(const Packet& a, const Packet& b, const Packet& c) {
#if defined(__FMA__)
  return Eigen::internal::pmadd(a, b, c);
#else
  float la[S::kWidth], lb[S::kWidth], lc[S::kWidth];
  S::store(la, a);
  S::store(lb, b);
  S::store(lc, c);
  for (Index k = 0; k < S::kWidth; ++k) la[k] = std::fma(la[k], lb[k], lc[k]);
  return S::load(la);
#endif
}

inline Ratio tanh_ratio(const Packet& x_in) {
  const Packet clamp = S::set1(7.90531110763549805f);
  const Packet x = Eigen::internal::pmax(Eigen::internal::pmin(x_in, clamp), S::set1(-7.90531110763549805f));
  const Packet x2 = S::mul(x, x);
  Packet p = S::set1(-2.76076847742355e-16f);
  for (float a : {2.00018790482477e-13f, -8.60467152213735e-11f, 5.12229709037114e-08f, 1.48572235717979e-05f,
                  6.37261928875436e-04f, 4.89352455891786e-03f})
    p = fused(p, x2, S::set1(a));
  Packet q = S::set1(1.19825839466702e-06f);
  for (float b : {1.18534705686654e-04f, 2.26843463243900e-03f, 4.89352518554385e-03f}) q = fused(q, x2, S::set1(b));
  return {S::mul(p, x), q};
}

// sigmoid(x) = (1 + tanh(x / 2)) / 2 = (q + p) / 2q for tanh(x / 2) = p / q.
inline Ratio sigmoid_ratio(const Packet& x) {
  const Ratio t = tanh_ratio(S::mul(S::set1(0.5f), x));
  return {S::add(t.q, t.p), S::add(t.q, t.q)};
}

// i, f and g from their ratios with one division (a / b = a (c d) / (b c d)); coupled: f = 1 - i, the
// division shared by i and g only.
inline void exact_ifg(const Ratio& i, const Ratio& f, const Ratio& g, bool coupled, Packet& input_gate,
                      Packet& forget_gate, Packet& candidate) {
  if (coupled) {
    const auto inverse = Eigen::internal::pdiv(S::set1(1.0f), S::mul(i.q, g.q));
    input_gate = S::mul(S::mul(i.p, g.q), inverse);
    candidate = S::mul(S::mul(g.p, i.q), inverse);
    forget_gate = S::sub(S::set1(1.0f), input_gate);
    return;
  }
  const auto qfg = S::mul(f.q, g.q), qig = S::mul(i.q, g.q), qif = S::mul(i.q, f.q);
  const auto inverse = Eigen::internal::pdiv(S::set1(1.0f), S::mul(qif, g.q));
  input_gate = S::mul(S::mul(i.p, qfg), inverse);
  forget_gate = S::mul(S::mul(f.p, qig), inverse);
  candidate = S::mul(S::mul(g.p, qif), inverse);
}

// gates.hpp's forward_packet with tanh_ratio and sigmoid_ratio and no contracted operations. Divisions
// are the slow part: i, f and g share one, o and tanh(c) another.
template <bool kPeephole, unsigned kVariants>
void exact_packet(const ForwardRow<float>& r, Index j, const GateVariant<float>& v) {
  const Index H = r.stride;
  const auto c_prev = S::load(r.cell + j);
  auto zi = S::load(r.z + j), zf = S::load(r.z + H + j), zg = S::load(r.z + 2 * H + j), zo = S::load(r.z + 3 * H + j);
  if constexpr (kPeephole) {
    zi = S::add(zi, S::mul(S::load(r.peep + j), c_prev));
    zf = S::add(zf, S::mul(S::load(r.peep + H + j), c_prev));
  }
  if constexpr (kVariants & kClip) {
    zi = S::clamp(zi, v.clip);
    zf = S::clamp(zf, v.clip);
    zg = S::clamp(zg, v.clip);
  }
  Packet input_gate, forget_gate, candidate;
  exact_ifg(sigmoid_ratio(zi), sigmoid_ratio(zf), tanh_ratio(zg), (kVariants & kCoupled), input_gate, forget_gate,
            candidate);
  const auto cell = S::add(S::mul(forget_gate, c_prev), S::mul(input_gate, candidate));
  if constexpr (kPeephole) zo = S::add(zo, S::mul(S::load(r.peep + 2 * H + j), cell));
  if constexpr (kVariants & kClip) zo = S::clamp(zo, v.clip);
  const Ratio o = sigmoid_ratio(zo), t = tanh_ratio(cell);
  const auto m = Eigen::internal::pdiv(S::mul(o.p, t.p), S::mul(o.q, t.q));  // sigmoid(zo) tanh(c)
  if constexpr (kVariants & kLayerNorm)                                      // the pass's LN(c) reads o
    S::store(r.z + 3 * H + j, Eigen::internal::pdiv(o.p, o.q));
  else
    S::store(r.m + j, m);
  if constexpr (kVariants & kZoneC)  // zoneout: z c_{t-1} + (1 - z) c~_t, uncontracted
    S::store(r.cell + j, S::add(S::mul(S::set1(v.zone_c), c_prev), S::mul(S::set1(1.0f - v.zone_c), cell)));
  else
    S::store(r.cell + j, cell);
}

// `count` units of one row, the gate blocks (and peephole rows) `stride` apart: z in (left as it was),
// cell in/out, m out (gates.hpp's gates_forward_units with exact_packet).
template <bool kPeephole>
void exact_gates_units(Index count, Index stride, float* z, float* cell, float* m, const float* peep,
                       const GateVariant<float>& v) {
  with_variant(v, [&](auto variant) {
    over_units(count, stride, z, cell, m, kPeephole ? peep : nullptr, [&v](const ForwardRow<float>& row, Index j) {
      exact_packet<kPeephole, decltype(variant)::value>(row, j, v);
    });
  });
}

// ---- the cell ------------------------------------------------------------------------------------

// The cell of a frozen model on the products of one kind (frozen_products.hpp: F32Product, Bf16Product,
// Int8Product; tile_products.hpp: Int8TileProduct, Bf16TileProduct).
template <typename Product>
struct FrozenPass {
  const CellDims& dims;
  const CellPlan& plan;
  const FrozenCell& cell;
  const FrozenSteps& s;
  const FrozenArrays& io;
  FrozenWork layout;
  Index H, R, G;
  GateVariant<float> variant;  // the cell variant the gates fuse (gates.hpp)
  Zoneout<float> zoneout;      // inference: the probabilities (c's in the gate kernel, but with layer norm)

  FrozenPass(const CellDims& d, const CellPlan& pl, const FrozenCell& c, const FrozenSteps& st,
             const FrozenArrays& arrays)
      : dims(d),
        plan(pl),
        cell(c),
        s(st),
        io(arrays),
        layout(d, pl.precision, st.batch, pl.chunk * st.batch, pl.team),
        H(d.hidden_size),
        R(d.output_size),
        G(4 * d.hidden_size),
        variant(gate_variant<float>(d.cell_clip, d.coupled_gates, d.layer_norm ? 0.0 : d.zoneout_c, d.layer_norm)),
        zoneout(nullptr, nullptr, d) {}

  float* buffer(std::size_t offset) const { return reinterpret_cast<float*>(io.work + offset); }
  Index step_at(Index q) const { return s.reverse ? s.steps - 1 - q : q; }  // the step processed q-th
  // h read by the q-th step processed: the given h0 itself first (only ever read), then the buffers.
  float* hidden(Index q) const {
    return q == 0 && io.state0.h ? const_cast<float*>(io.state0.h) : buffer(layout.h[q & 1]);
  }
  // The running c, updated in place unit by unit: state_n.c itself (c0 copied there first).
  float* cell_state() const { return io.state_n.c; }

  unsigned char* operand(int j) const { return io.work + layout.a + static_cast<std::size_t>(j) * layout.a_bytes; }
  float* scales(int j) const { return buffer(layout.scale + static_cast<std::size_t>(j) * layout.scale_bytes); }

  // A product's left operand: rows lda apart, in the product's kind (and scales(j) for int8).
  struct Operand {
    const void* rows;
    Index lda;
  };

  // Rows [0, rows) of a [rows, K] (lda apart) in the product's kind: converted into slice j's buffer,
  // or (fp32) a itself.
  Operand convert(int j, Index rows, Index K, const float* a, Index lda) const {
    if constexpr (Product::kConverts)
      return {Product::convert(rows, K, a, lda, operand(j), layout.a_stride, scales(j)), layout.a_stride};
    else
      return {a, lda};
  }

  // out (+)= a W^T over blocks [b0, b1) of W for rows [0, rows) of the operand a.
  void multiply(int j, Index rows, Operand a, const FrozenMatrix& W, Index b0, Index b1, const Output& out) const {
    Product::multiply(rows, a.rows, a.lda, scales(j), W, b0, b1, out, plan.dot);
  }

  // The gates of `count` units of one row from unit u0 (gate blocks H apart): z in, c in/out, m out;
  // the exact ones above (the same bits on every ISA) where the kind asks, else gates.hpp's.
  void gates(Index count, float* z, float* c, float* m, Index u0) const {
    with_peephole(dims.peephole, [&](auto peephole) {
      constexpr bool kPeep = decltype(peephole)::value;
      const float* peep = kPeep ? cell.peep + u0 : nullptr;
      if constexpr (Product::kExactGates)
        exact_gates_units<kPeep>(count, H, z, c, m, peep, variant);
      else
        gates_forward_units<kPeep>(count, H, z, c, m, peep, variant);
    });
  }

  // Slice j of the q-th step processed: its hidden units' recurrent product and gates; without a
  // projection also their h_t and y_t. At the first step of a chunk (rows [row0, row0 + rows)) first
  // the input projection of the chunk's rows, its units' columns only: the other slices never read
  // them, so the projection needs no meeting of its own. A chunk of one big step instead goes in
  // groups of rows, each projected, multiplied and gated while its z is in cache (plan.hpp).
  void step_units(int j, Index q, bool first, Index row0, Index rows, float* z_chunk) const {
    const Index t = step_at(q), b = s.batch_sizes[t], row = s.offsets[t];
    const auto [ub0, ub1] = unit_blocks(j);
    const Index u0 = std::min(H, ub0 * kFrozenBlock), u1 = std::min(H, ub1 * kFrozenBlock);
    if (u1 <= u0) return;
    if (first && rows == b && b > kFrozenRowGroup) {
      for (Index r0 = 0; r0 < b; r0 += kFrozenRowGroup)
        unit_rows(j, q, r0, std::min(kFrozenRowGroup, b - r0), z_chunk, true);
    } else {
      if (first) project(j, rows, io.x + row0 * dims.input_size, z_chunk, ub0, ub1);
      unit_rows(j, q, 0, b, z_chunk + (row - row0) * G, false);
    }
    if (!dims.projection) outputs(q, u0, u1);
  }

  // Slice j's blocks [ub0, ub1) of each gate's hidden units.
  std::pair<Index, Index> unit_blocks(int j) const {
    const Index blocks = cell.hh.part_blocks();
    return {split(blocks, plan.team, j, 1), split(blocks, plan.team, j + 1, 1)};
  }

  // z (G apart) = x W_ih^T + bias over blocks [ub0, ub1) of each gate, for `rows` rows of x (I apart).
  void project(int j, Index rows, const float* x, float* z, Index ub0, Index ub1) const {
    const Index I = dims.input_size, blocks = cell.hh.part_blocks();
    const Operand a = convert(j, rows, I, x, I);
    for (Index gate = 0; gate < 4; ++gate)
      multiply(j, rows, a, cell.ih, gate * blocks + ub0, gate * blocks + ub1,
               {z, G, dims.layer_norm ? nullptr : cell.bias, false});
    if (dims.layer_norm)  // (a team of one: all columns) z = LN(x W_ih^T) + b
      for (Index r = 0; r < rows; ++r) ln_input(z + r * G);
  }

  // Layer norm (layer_norm.hpp), one row: z = LN(z) + b; z += LN(a); and m = o * tanh(LN(c)), o the
  // activated gate in z (and c mixed by zoneout after it, from c_keep).
  void ln_input(float* z) const {
    layer_norm<false>(G, z, cell.ln[0], cell.ln[1], static_cast<float*>(nullptr), z);
    if (cell.bias)
      for (Index k = 0; k < G; ++k) z[k] += cell.bias[k];
  }
  void ln_recurrent(const float* a, float* z) const {
    layer_norm<true>(G, a, cell.ln[2], cell.ln[3], static_cast<float*>(nullptr), z);
  }
  void ln_cell(Index r, const float* z, float* m) const {
    float* c = cell_state() + r * H;
    cell_layer_norm(H, c, z + 3 * H, cell.ln[4], cell.ln[5], static_cast<float*>(nullptr), static_cast<float*>(nullptr),
                    m);
    if (zoneout.c.z > 0) zoneout.c.mix(0, 0, H, buffer(layout.c_keep) + r * H, c);
  }

  // Rows [r0, r0 + n) of the q-th step processed, slice j's units: (their input projection into z
  // first if `project_x`), the recurrent product added into z (row r0's pre-activations at z), gates.
  void unit_rows(int j, Index q, Index r0, Index n, float* z, bool project_x) const {
    const Index row = s.offsets[step_at(q)], blocks = cell.hh.part_blocks();
    const auto [ub0, ub1] = unit_blocks(j);
    const Index u0 = std::min(H, ub0 * kFrozenBlock), u1 = std::min(H, ub1 * kFrozenBlock);
    if (project_x) project(j, n, io.x + (row + r0) * dims.input_size, z, ub0, ub1);
    const Operand a = convert(j, n, R, hidden(q) + r0 * R, R);
    float* rec = dims.layer_norm ? buffer(layout.recurrent) + r0 * G : z;  // layer norm: apart, then LN
    for (Index gate = 0; gate < 4; ++gate)
      multiply(j, n, a, cell.hh, gate * blocks + ub0, gate * blocks + ub1, {rec, G, nullptr, !dims.layer_norm});
    float* m = dims.projection ? buffer(layout.m) : hidden(q + 1);  // [B, H]: o * tanh(c)
    float* c = cell_state();
    for (Index r = r0; r < r0 + n; ++r) {
      float* zr = z + (r - r0) * G;
      if (dims.layer_norm) {
        ln_recurrent(rec + (r - r0) * G, zr);
        std::copy_n(c + r * H, H, buffer(layout.c_keep) + r * H);
      }
      gates(u1 - u0, zr + u0, c + r * H + u0, m + r * H + u0, u0);
      if (dims.layer_norm) ln_cell(r, zr, m + r * H);
    }
  }

  // Slice j of the projection of the q-th step processed: h_t = W_hr m_t, outputs of its blocks.
  void step_projection(int j, Index q) const {
    const Index t = step_at(q), b = s.batch_sizes[t];
    const Index blocks = cell.hr.blocks();
    const Index rb0 = split(blocks, plan.team, j, 1), rb1 = split(blocks, plan.team, j + 1, 1);
    const Index r0 = std::min(R, rb0 * kFrozenBlock), r1 = std::min(R, rb1 * kFrozenBlock);
    if (r1 <= r0) return;
    const Operand a = convert(j, b, H, buffer(layout.m), H);
    multiply(j, b, a, cell.hr, rb0, rb1, {hidden(q + 1), R, nullptr, false});
    outputs(q, r0, r1);
  }

  // Outputs [r0, r1) of the q-th step processed: rows that ended carried over, y_t of the others
  // (zoneout first: z h_{t-1} + (1 - z) h~_t).
  void outputs(Index q, Index r0, Index r1) const {
    const Index t = step_at(q), b = s.batch_sizes[t], row = s.offsets[t];
    const float* h = hidden(q);
    float* h_next = hidden(q + 1);
    for_ended_rows(plan, 0, b, s.batch,
                   [&](Index r) { std::copy(h + r * R + r0, h + r * R + r1, h_next + r * R + r0); });
    for (Index r = 0; r < b; ++r) {
      if (zoneout.h.z > 0) zoneout.h.mix(0, r0, r1 - r0, h + r * R + r0, h_next + r * R + r0);
      std::copy(h_next + r * R + r0, h_next + r * R + r1, io.y.data + (row + r) * io.y.stride + r0);
    }
  }

  // The row split (plan.hpp; no projection): slice k is rows k, k + team, ... of every step, all units;
  // its rows depend on nothing else, so the team meets only every plan.segment steps. A row's numbers
  // are the unit split's: its operand scale, sums and gates do not depend on the other rows. The
  // slice's rows go in groups, each projected, multiplied and gated while its z is in cache.
  void row_step(int k, Index q) const {
    const int team = plan.team;
    const Index t = step_at(q), b = s.batch_sizes[t], row = s.offsets[t];
    const float* h = hidden(q);
    float* h_next = hidden(q + 1);
    const Index active = rows_of(b, team, k);
    for_ended_rows(plan, k, b, s.batch, [&](Index r) { std::copy_n(h + r * R, R, h_next + r * R); });
    const Index I = dims.input_size;
    float* zt = buffer(layout.z) + k * G;  // the group's rows of z_t, team * G apart
    float* c = cell_state();
    for (Index i0 = 0; i0 < active; i0 += kFrozenRowGroup) {
      const Index n = std::min(kFrozenRowGroup, active - i0), r0 = k + i0 * team;
      const Operand x = convert(k, n, I, io.x + (row + r0) * I, team * I);
      const bool ln = dims.layer_norm;
      multiply(k, n, x, cell.ih, 0, cell.ih.blocks(), {zt, team * G, ln ? nullptr : cell.bias, false});
      const Operand a = convert(k, n, R, h + r0 * R, team * R);
      float* rec = ln ? buffer(layout.recurrent) + r0 * G : zt;  // layer norm: rows r apart in it
      multiply(k, n, a, cell.hh, 0, cell.hh.blocks(), {rec, team * G, nullptr, !ln});
      for (Index i = 0, r = r0; i < n; ++i, r += team) {
        if (ln) {
          ln_input(zt + i * team * G);
          ln_recurrent(rec + i * team * G, zt + i * team * G);
          std::copy_n(c + r * H, H, buffer(layout.c_keep) + r * H);
        }
        gates(H, zt + i * team * G, c + r * H, h_next + r * R, 0);
        if (ln) ln_cell(r, zt + i * team * G, h_next + r * R);
        if (zoneout.h.z > 0) zoneout.h.mix(0, 0, R, h + r * R, h_next + r * R);
        std::copy_n(h_next + r * R, R, io.y.data + (row + r) * io.y.stride);
      }
    }
  }

  // The walk's hooks (cell_walk.hpp): no meetings but the steps'.
  bool prepares() const { return false; }
  void prepare(int) const {}
  bool projects_chunks() const { return false; }
  void project_chunk(int, const Chunk&) const {}
  void step(int j, Index q, const Chunk& c) const { step_units(j, q, q == c.first, c.row0, c.rows, buffer(layout.z)); }
  void project(int j, Index q) const { step_projection(j, q); }
  Walk walk() const { return {s.steps, s.offsets, s.reverse, dims.projection}; }

  void run() const {
    const Index B = s.batch;
    if (!io.state0.h) std::fill_n(hidden(0), B * R, 0.0f);
    float* c = cell_state();
    if (!io.state0.c)
      std::fill_n(c, B * H, 0.0f);
    else if (io.state0.c != c)
      std::copy_n(io.state0.c, B * H, c);
    // (A team of one leases nothing and allocates nothing: Model::step promises it.)
    on_team(plan, [this](const auto& share) { walk_forward(plan, walk(), *this, share); });
    if (hidden(s.steps) != io.state_n.h) std::copy_n(hidden(s.steps), B * R, io.state_n.h);
  }
};

}  // namespace

void frozen_forward(const CellDims& dims, const CellPlan& plan, const FrozenCell& cell, const FrozenSteps& steps,
                    const FrozenArrays& arrays) {
  // The product kind, chosen once for the call: the precision's, on the tile unit the plan names, if any.
  const auto run = [&](auto kind) { FrozenPass<decltype(kind)>(dims, plan, cell, steps, arrays).run(); };
  switch (plan.precision) {
    case Precision::int8:
      if (plan.tiles == TileUnit::amx) return run(Int8TileProduct<AmxTiles>{});
      if (plan.tiles == TileUnit::emulated) return run(Int8TileProduct<EmulatedTiles>{});
      return run(Int8Product{});
    case Precision::bf16:
      if (plan.tiles == TileUnit::amx) return run(Bf16TileProduct<AmxTiles>{});
      if (plan.tiles == TileUnit::emulated) return run(Bf16TileProduct<EmulatedTiles>{});
      return run(Bf16Product{});
    case Precision::fp32: return run(F32Product{});
  }
}

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
