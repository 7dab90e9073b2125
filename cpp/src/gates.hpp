// The fused pointwise kernels of the LSTM cell for one batch row, shared by the sequence kernels
// (forward.cpp, backward.cpp) and the frozen models' (frozen_kernels.cpp), and compiled for each ISA
// with the file that includes it (hence the anonymous namespace: each build keeps its own copy,
// never merged by the linker).
//
// Every element goes through the same SIMD instructions: packets are loaded unaligned and never
// peeled to an aligned address, and the last H % W elements are computed as one full packet of a
// zero-padded copy. Results therefore depend on the values alone, not on where the buffers lie in
// memory. (Eigen's own loops peel to alignment, so the first elements of a row took the scalar path
// or the packet path depending on malloc, and results differed in the last bit between runs.)
//
// Accuracy of the activations (the tests hold float32 to 1e-5 and float64 to 1e-12 against NumPy):
//   float:  sigmoid and tanh are Eigen's rational approximations, a few ulp.
//   double: sigmoid = 1 / (1 + exp(-x)) with Eigen's vectorized exp (about 1 ulp); tanh is std::tanh
//           lane by lane (Eigen 3.4 has no vectorized double tanh).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "lstm_fast/config.hpp"

namespace lstm_fast::detail {
namespace {

template <typename T>
struct Simd {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  static constexpr Index kWidth = Eigen::internal::unpacket_traits<Packet>::size;

  static Packet load(const T* p) { return Eigen::internal::ploadu<Packet>(p); }
  static void store(T* p, const Packet& v) { Eigen::internal::pstoreu(p, v); }
  static Packet set1(T v) { return Eigen::internal::pset1<Packet>(v); }
  static Packet add(const Packet& a, const Packet& b) { return Eigen::internal::padd(a, b); }
  static Packet sub(const Packet& a, const Packet& b) { return Eigen::internal::psub(a, b); }
  static Packet mul(const Packet& a, const Packet& b) { return Eigen::internal::pmul(a, b); }
  static Packet madd(const Packet& a, const Packet& b, const Packet& c) { return Eigen::internal::pmadd(a, b, c); }

  static Packet sigmoid(const Packet& x) { return Eigen::internal::scalar_logistic_op<T>().packetOp(x); }
  static Packet tanh(const Packet& x) {
    if constexpr (std::is_same_v<T, float>) {
      return Eigen::internal::ptanh(x);
    } else {
      T lanes[kWidth];
      store(lanes, x);
      for (Index k = 0; k < kWidth; ++k) lanes[k] = std::tanh(lanes[k]);
      return load(lanes);
    }
  }
};

// The streams of one row at element j: gates (i, f, g, o) are H apart, peephole rows (i, f, o) too.
template <typename T>
struct ForwardRow {
  T* z;           // [4H] pre-activations in, activated gates out
  T* cell;        // [H] c_{t-1} in, c_t out
  T* m;           // [H] out: o * tanh(c_t)
  const T* peep;  // [3H] or null
  Index stride;   // H: distance between the gate blocks and between the peephole rows
};

template <bool kPeephole, typename T>
inline void forward_packet(const ForwardRow<T>& r, Index j) {
  using S = Simd<T>;
  const Index H = r.stride;
  const auto c_prev = S::load(r.cell + j);
  auto zi = S::load(r.z + j), zf = S::load(r.z + H + j), zo = S::load(r.z + 3 * H + j);
  if constexpr (kPeephole) {
    zi = S::madd(S::load(r.peep + j), c_prev, zi);
    zf = S::madd(S::load(r.peep + H + j), c_prev, zf);
  }
  const auto input_gate = S::sigmoid(zi);
  const auto forget_gate = S::sigmoid(zf);
  const auto candidate = S::tanh(S::load(r.z + 2 * H + j));
  const auto cell = S::madd(forget_gate, c_prev, S::mul(input_gate, candidate));  // c = f c_{t-1} + i g
  if constexpr (kPeephole) zo = S::madd(S::load(r.peep + 2 * H + j), cell, zo);
  const auto output_gate = S::sigmoid(zo);
  S::store(r.z + j, input_gate);
  S::store(r.z + H + j, forget_gate);
  S::store(r.z + 2 * H + j, candidate);
  S::store(r.z + 3 * H + j, output_gate);
  S::store(r.cell + j, cell);
  S::store(r.m + j, S::mul(output_gate, S::tanh(cell)));
}

// Runs packet(row, j) (forward_packet, or another kernel of the same streams) over `count` units of one
// row, the gate blocks (and peephole rows) `stride` apart; the last count % W units as one full packet
// of zero-padded copies (gates W apart in the copy). peep may be null (no peephole).
template <typename T, typename Packet>
inline void over_units(Index count, Index stride, T* z, T* cell, T* m, const T* peep, const Packet& packet) {
  constexpr Index W = Simd<T>::kWidth;
  const Index body = count - count % W;
  const ForwardRow<T> row{z, cell, m, peep, stride};
  for (Index j = 0; j < body; j += W) packet(row, j);
  if (body == count) return;
  const Index n = count - body;
  T tz[4 * W] = {}, tcell[W] = {}, tm[W] = {}, tpeep[3 * W] = {};
  for (Index k = 0; k < 4; ++k) std::copy_n(z + k * stride + body, n, tz + k * W);
  std::copy_n(cell + body, n, tcell);
  if (peep)
    for (Index k = 0; k < 3; ++k) std::copy_n(peep + k * stride + body, n, tpeep + k * W);
  packet(ForwardRow<T>{tz, tcell, tm, tpeep, W}, 0);
  for (Index k = 0; k < 4; ++k) std::copy_n(tz + k * W, n, z + k * stride + body);
  std::copy_n(tcell, n, cell + body);
  std::copy_n(tm, n, m + body);
}

// The forward pointwise kernel for `count` units of one row, the gate blocks `stride` apart (a slice
// of the hidden units when a team of threads shares a step; count == stride == H for a whole row).
//   z: gate i of the first unit, pre-activations in, activated gates (i, f, g, o) out;
//   cell: c_{t-1} in, c_t out;  m: o * tanh(c_t) out;  peep: p_i of the first unit, rows `stride`
//   apart, read only when kPeephole.
template <bool kPeephole, typename T>
inline void gates_forward_units(Index count, Index stride, T* z, T* cell, T* m, const T* peep) {
  over_units(count, stride, z, cell, m, kPeephole ? peep : nullptr,
             [](const ForwardRow<T>& row, Index j) { forward_packet<kPeephole>(row, j); });
}

// One whole row: z [4H], cell [H], m [H], peep [3, H].
template <bool kPeephole, typename T>
inline void gates_forward_row(Index H, T* z, T* cell, T* m, const T* peep) {
  gates_forward_units<kPeephole>(H, H, z, cell, m, peep);
}

template <typename T>
struct BackwardRow {
  const T* gates;      // [4H] activated (i, f, g, o)
  const T* cell;       // [H] c_t
  const T* cell_prev;  // [H] c_{t-1}
  const T* dm;         // [H] gradient w.r.t. m = o * tanh(c_t)
  T* dc;               // [H] dc_t from the later step in, dc_{t-1} out
  T* dz;               // [4H] out: gradient w.r.t. the pre-activations (i, f, g, o)
  const T* peep;       // [3H] or null
  Index stride;        // H
};

template <bool kPeephole, typename T>
inline void backward_packet(const BackwardRow<T>& r, Index j) {
  using S = Simd<T>;
  const Index H = r.stride;
  const auto one = S::set1(T(1));
  const auto i = S::load(r.gates + j), f = S::load(r.gates + H + j);
  const auto g = S::load(r.gates + 2 * H + j), o = S::load(r.gates + 3 * H + j);
  const auto tanh_c = S::tanh(S::load(r.cell + j));
  const auto c_prev = S::load(r.cell_prev + j);
  const auto dm = S::load(r.dm + j);
  const auto dzo = S::mul(S::mul(dm, tanh_c), S::mul(o, S::sub(one, o)));                       // do * o (1 - o)
  auto dcell = S::madd(S::mul(dm, o), S::sub(one, S::mul(tanh_c, tanh_c)), S::load(r.dc + j));  // dc_t
  if constexpr (kPeephole) dcell = S::madd(dzo, S::load(r.peep + 2 * H + j), dcell);            // o saw c_t
  const auto dzi = S::mul(S::mul(dcell, g), S::mul(i, S::sub(one, i)));
  const auto dzf = S::mul(S::mul(dcell, c_prev), S::mul(f, S::sub(one, f)));
  const auto dzg = S::mul(S::mul(dcell, i), S::sub(one, S::mul(g, g)));
  auto dcell_prev = S::mul(dcell, f);
  if constexpr (kPeephole)
    dcell_prev = S::madd(dzi, S::load(r.peep + j), S::madd(dzf, S::load(r.peep + H + j), dcell_prev));
  S::store(r.dc + j, dcell_prev);
  S::store(r.dz + j, dzi);
  S::store(r.dz + H + j, dzf);
  S::store(r.dz + 2 * H + j, dzg);
  S::store(r.dz + 3 * H + j, dzo);
}

// The backward pointwise kernel for `count` units of one row, in terms of the activated gates, the
// gate blocks (and peephole rows) `stride` apart; pointers at the first unit (see BackwardRow).
template <bool kPeephole, typename T>
inline void gates_backward_units(Index count, Index stride, const T* gates, const T* cell, const T* cell_prev,
                                 const T* dm, T* dc, T* dz, const T* peep) {
  constexpr Index W = Simd<T>::kWidth;
  const Index body = count - count % W;
  const BackwardRow<T> row{gates, cell, cell_prev, dm, dc, dz, peep, stride};
  for (Index j = 0; j < body; j += W) backward_packet<kPeephole>(row, j);
  if (body == count) return;
  const Index n = count - body;
  T tgates[4 * W] = {}, tcell[W] = {}, tprev[W] = {}, tdm[W] = {}, tdc[W] = {}, tdz[4 * W] = {}, tpeep[3 * W] = {};
  for (Index k = 0; k < 4; ++k) std::copy_n(gates + k * stride + body, n, tgates + k * W);
  std::copy_n(cell + body, n, tcell);
  std::copy_n(cell_prev + body, n, tprev);
  std::copy_n(dm + body, n, tdm);
  std::copy_n(dc + body, n, tdc);
  if constexpr (kPeephole)
    for (Index k = 0; k < 3; ++k) std::copy_n(peep + k * stride + body, n, tpeep + k * W);
  backward_packet<kPeephole>(BackwardRow<T>{tgates, tcell, tprev, tdm, tdc, tdz, tpeep, W}, 0);
  std::copy_n(tdc, n, dc + body);
  for (Index k = 0; k < 4; ++k) std::copy_n(tdz + k * W, n, dz + k * stride + body);
}

}  // namespace
}  // namespace lstm_fast::detail
