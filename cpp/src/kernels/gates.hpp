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

  // x clamped to [-bound, bound]; a NaN stays NaN.
  static Packet clamp(const Packet& x, T bound) {
    using Eigen::PropagateNaN;
    return Eigen::internal::pmin<PropagateNaN>(Eigen::internal::pmax<PropagateNaN>(x, set1(-bound)), set1(bound));
  }
  // value where lo < gate < hi, else 0.
  static Packet inside(const Packet& value, const Packet& gate, T lo, T hi) {
    using Eigen::internal::pcmp_lt;
    return Eigen::internal::pand(Eigen::internal::pand(pcmp_lt(set1(lo), gate), pcmp_lt(gate, set1(hi))), value);
  }

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

// The cell variants fused into the pointwise kernels (docs/api.md "Constructor"): ONNX's clip, the gates'
// pre-activations clamped to [-clip, clip] (clip 0: none), and input_forget, f = 1 - i (coupled). The
// backward finds a clipped gate from its activated value: a gate at sigmoid(+-clip) or tanh(+-clip),
// computed by the forward's own functions, passes no gradient (nor one whose pre-activation was within
// rounding of the bound, whose activation rounds to the bound's).
//
// Zoneout's inference form on the cell (zone_c > 0, a forward without a trace): the kernel keeps
// c_t = z_c c_{t-1} + (1 - z_c) c~_t, the output gate's peephole and m reading c~_t. (A training
// forward mixes after the kernel, since its trace keeps c~_t; h's zoneout follows the projection.)
template <typename T>
struct GateVariant {
  T clip = 0;
  bool coupled = false;
  T sigmoid_lo = 0, sigmoid_hi = 0, tanh_lo = 0, tanh_hi = 0;  // the activated gates at -clip, clip
  T zone_c = 0;
  // Layer norm (layer_norm.hpp): m = o * tanh(LN(c_t)) is the pass's to write after the kernel, and
  // the backward reads tanh(LN(c_t)) and a dc that already holds the gradient through LN(c_t).
  bool layer_norm = false;
  unsigned bits() const;  // below
};

// The variants as bits of the kernels' template argument kVariants, so that no packet loop tests one.
enum VariantBit : unsigned { kClip = 1, kCoupled = 2, kZoneC = 4, kLayerNorm = 8, kVariantCombinations = 16 };

template <typename T>
unsigned GateVariant<T>::bits() const {
  return (clip > 0 ? kClip : 0u) | (coupled ? kCoupled : 0u) | (zone_c > 0 ? kZoneC : 0u) |
         (layer_norm ? kLayerNorm : 0u);
}

// Calls f(std::integral_constant<unsigned, v.bits()>): the kernels take the variant as a template
// argument (kVariants), one instantiation per combination.
template <unsigned kBits = 0, typename T, typename F>
inline void with_variant(const GateVariant<T>& v, const F& f) {
  if constexpr (kBits < kVariantCombinations) {
    if (v.bits() == kBits) return f(std::integral_constant<unsigned, kBits>{});
    with_variant<kBits + 1>(v, f);
  }
}

template <typename T>
inline GateVariant<T> gate_variant(double clip, bool coupled, double zone_c = 0, bool layer_norm = false) {
  using S = Simd<T>;
  GateVariant<T> v;
  v.layer_norm = layer_norm;
  v.clip = static_cast<T>(clip);
  v.coupled = coupled;
  v.zone_c = static_cast<T>(zone_c);
  if (clip > 0) {
    auto lane = [](const typename S::Packet& p) {
      T lanes[S::kWidth];
      S::store(lanes, p);
      return lanes[0];
    };
    v.sigmoid_lo = lane(S::sigmoid(S::set1(-v.clip)));
    v.sigmoid_hi = lane(S::sigmoid(S::set1(v.clip)));
    v.tanh_lo = lane(S::tanh(S::set1(-v.clip)));
    v.tanh_hi = lane(S::tanh(S::set1(v.clip)));
  }
  return v;
}

// The streams of one row at element j: gates (i, f, g, o) are H apart, peephole rows (i, f, o) too.
template <typename T>
struct ForwardRow {
  T* z;           // [4H] pre-activations in, activated gates out
  T* cell;        // [H] c_{t-1} in, c_t out
  T* m;           // [H] out: o * tanh(c_t)
  const T* peep;  // [3H] or null
  Index stride;   // H: distance between the gate blocks and between the peephole rows
};

// Zoneout: d * prev + (1 - d) * next, the state a unit keeps with probability (or mask) d.
template <typename Packet>
inline Packet zone(const Packet& d, const Packet& prev, const Packet& next) {
  using Eigen::internal::pmadd, Eigen::internal::pmul, Eigen::internal::psub, Eigen::internal::pset1;
  using Scalar = typename Eigen::internal::unpacket_traits<Packet>::type;
  return pmadd(d, prev, pmul(psub(pset1<Packet>(Scalar(1)), d), next));
}

template <bool kPeephole, unsigned kVariants, typename T>
inline void forward_packet(const ForwardRow<T>& r, Index j, const GateVariant<T>& v) {
  using S = Simd<T>;
  const Index H = r.stride;
  const auto c_prev = S::load(r.cell + j);
  auto zi = S::load(r.z + j), zf = S::load(r.z + H + j), zg = S::load(r.z + 2 * H + j), zo = S::load(r.z + 3 * H + j);
  if constexpr (kPeephole) {
    zi = S::madd(S::load(r.peep + j), c_prev, zi);
    zf = S::madd(S::load(r.peep + H + j), c_prev, zf);
  }
  if constexpr (kVariants & kClip) {
    zi = S::clamp(zi, v.clip);
    zf = S::clamp(zf, v.clip);
    zg = S::clamp(zg, v.clip);
  }
  const auto input_gate = S::sigmoid(zi);
  const auto forget_gate = (kVariants & kCoupled) ? S::sub(S::set1(T(1)), input_gate) : S::sigmoid(zf);
  const auto candidate = S::tanh(zg);
  const auto cell = S::madd(forget_gate, c_prev, S::mul(input_gate, candidate));  // c = f c_{t-1} + i g
  if constexpr (kPeephole) zo = S::madd(S::load(r.peep + 2 * H + j), cell, zo);
  if constexpr (kVariants & kClip) zo = S::clamp(zo, v.clip);
  const auto output_gate = S::sigmoid(zo);
  S::store(r.z + j, input_gate);
  S::store(r.z + H + j, forget_gate);
  S::store(r.z + 2 * H + j, candidate);
  S::store(r.z + 3 * H + j, output_gate);
  S::store(r.cell + j, (kVariants & kZoneC) ? zone(S::set1(v.zone_c), c_prev, cell) : cell);
  if constexpr (!(kVariants & kLayerNorm)) S::store(r.m + j, S::mul(output_gate, S::tanh(cell)));
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
inline void gates_forward_units(Index count, Index stride, T* z, T* cell, T* m, const T* peep,
                                const GateVariant<T>& v) {
  with_variant(v, [&](auto variant) {
    over_units(count, stride, z, cell, m, kPeephole ? peep : nullptr, [&v](const ForwardRow<T>& row, Index j) {
      forward_packet<kPeephole, decltype(variant)::value>(row, j, v);
    });
  });
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
  const T* tanh_n;     // [H] tanh(LN(c_t)) with layer norm, else null
  Index stride;        // H
};

template <bool kPeephole, unsigned kVariants, typename T>
inline void backward_packet(const BackwardRow<T>& r, Index j, const GateVariant<T>& v) {
  using S = Simd<T>;
  const Index H = r.stride;
  const auto one = S::set1(T(1));
  const auto i = S::load(r.gates + j), f = S::load(r.gates + H + j);
  const auto g = S::load(r.gates + 2 * H + j), o = S::load(r.gates + 3 * H + j);
  const bool ln = (kVariants & kLayerNorm);  // h = o tanh(LN(c)): dc holds LN's part already
  const auto tanh_c = ln ? S::load(r.tanh_n + j) : S::tanh(S::load(r.cell + j));
  const auto c_prev = S::load(r.cell_prev + j);
  const auto dm = S::load(r.dm + j);
  auto dzo = S::mul(S::mul(dm, tanh_c), S::mul(o, S::sub(one, o)));                      // do * o (1 - o)
  if constexpr (kVariants & kClip) dzo = S::inside(dzo, o, v.sigmoid_lo, v.sigmoid_hi);  // o clipped: 0
  auto dcell = ln ? S::load(r.dc + j) : S::madd(S::mul(dm, o), S::sub(one, S::mul(tanh_c, tanh_c)), S::load(r.dc + j));
  if constexpr (kPeephole) dcell = S::madd(dzo, S::load(r.peep + 2 * H + j), dcell);  // o saw c_t
  // di = dc_t g, df = dc_t c_{t-1}; coupled (f = 1 - i): di - df into i, nothing into f.
  const bool coupled = (kVariants & kCoupled);
  auto dzi = S::mul(S::mul(dcell, coupled ? S::sub(g, c_prev) : g), S::mul(i, S::sub(one, i)));
  auto dzf = coupled ? S::set1(T(0)) : S::mul(S::mul(dcell, c_prev), S::mul(f, S::sub(one, f)));
  auto dzg = S::mul(S::mul(dcell, i), S::sub(one, S::mul(g, g)));
  if constexpr (kVariants & kClip) {
    dzi = S::inside(dzi, i, v.sigmoid_lo, v.sigmoid_hi);
    dzf = S::inside(dzf, f, v.sigmoid_lo, v.sigmoid_hi);
    dzg = S::inside(dzg, g, v.tanh_lo, v.tanh_hi);
  }
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
                                 const T* dm, T* dc, T* dz, const T* peep, const GateVariant<T>& v,
                                 const T* tanh_n = nullptr) {
  constexpr Index W = Simd<T>::kWidth;
  const Index body = count - count % W;
  const BackwardRow<T> row{gates, cell, cell_prev, dm, dc, dz, peep, tanh_n, stride};
  with_variant(v, [&](auto variant) {
    for (Index j = 0; j < body; j += W) backward_packet<kPeephole, decltype(variant)::value>(row, j, v);
  });
  if (body == count) return;
  const Index n = count - body;
  T tgates[4 * W] = {}, tcell[W] = {}, tprev[W] = {}, tdm[W] = {}, tdc[W] = {}, tdz[4 * W] = {}, tpeep[3 * W] = {},
               ttanh[W] = {};
  if (tanh_n) std::copy_n(tanh_n + body, n, ttanh);
  for (Index k = 0; k < 4; ++k) std::copy_n(gates + k * stride + body, n, tgates + k * W);
  std::copy_n(cell + body, n, tcell);
  std::copy_n(cell_prev + body, n, tprev);
  std::copy_n(dm + body, n, tdm);
  std::copy_n(dc + body, n, tdc);
  if constexpr (kPeephole)
    for (Index k = 0; k < 3; ++k) std::copy_n(peep + k * stride + body, n, tpeep + k * W);
  const BackwardRow<T> tail{tgates, tcell, tprev, tdm, tdc, tdz, tpeep, ttanh, W};
  with_variant(v, [&](auto variant) { backward_packet<kPeephole, decltype(variant)::value>(tail, 0, v); });
  std::copy_n(tdc, n, dc + body);
  for (Index k = 0; k < 4; ++k) std::copy_n(tdz + k * W, n, dz + k * stride + body);
}

}  // namespace
}  // namespace lstm_fast::detail
