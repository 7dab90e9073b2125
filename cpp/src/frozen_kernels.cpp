// The cell of a frozen bf16 or int8 model over a sequence (frozen.hpp; compiled once per ISA, like
// cell_kernel.hpp's files, and with -ffp-contract=off: every float operation here is the one written,
// never fused, so that int8 results are bitwise the same on every instruction set).
//
// Per chunk of steps the input projection Z = X W_ih^T + b is one product over the chunk's rows; per
// step Z_t += h_{t-1} W_hh^T, the gates, and h_t = W_hr m_t with a projection. Each product first
// converts its left operand's rows to the precision (frozen.hpp), then runs the ISA's kernel
// (frozen_products.hpp).
// int8's pointwise part uses its own tanh and sigmoid of additions, multiplications and a division
// only (gates.hpp's use FMAs where the ISA has them, which would change the last bits).
#include <immintrin.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cell_kernel.hpp"
#include "frozen.hpp"
#include "frozen_products.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {

void frozen_forward(Precision p, const CellDims& dims, const FrozenCell& cell, const FrozenSteps& steps, Index chunk,
                    const FrozenArrays& arrays);

namespace {

// ---- the pointwise part of int8 ------------------------------------------------------------------

// tanh as a rational function of x (Eigen's and TensorFlow's float coefficients: a few ulp), with
// additions, multiplications and one division only.
template <typename S, typename Packet = typename S::Packet>
Packet exact_tanh(const Packet& x_in) {
  const Packet clamp = S::set1(7.90531110763549805f);
  const Packet x = Eigen::internal::pmax(Eigen::internal::pmin(x_in, clamp), S::set1(-7.90531110763549805f));
  const Packet x2 = S::mul(x, x);
  Packet p = S::set1(-2.76076847742355e-16f);
  for (float a : {2.00018790482477e-13f, -8.60467152213735e-11f, 5.12229709037114e-08f, 1.48572235717979e-05f,
                  6.37261928875436e-04f, 4.89352455891786e-03f})
    p = S::add(S::mul(p, x2), S::set1(a));
  p = S::mul(p, x);
  Packet q = S::set1(1.19825839466702e-06f);
  for (float b : {1.18534705686654e-04f, 2.26843463243900e-03f, 4.89352518554385e-03f})
    q = S::add(S::mul(q, x2), S::set1(b));
  return Eigen::internal::pdiv(p, q);
}

template <typename S, typename Packet = typename S::Packet>
Packet exact_sigmoid(const Packet& x) {  // 1 / (1 + e^-x) = (1 + tanh(x / 2)) / 2
  const Packet half = S::set1(0.5f);
  return S::add(half, S::mul(half, exact_tanh<S>(S::mul(half, x))));
}

// gates.hpp's forward_packet with exact_tanh and exact_sigmoid, and no fused multiply-add.
template <bool kPeephole>
void exact_packet(const ForwardRow<float>& r, Index j) {
  using S = Simd<float>;
  const Index H = r.stride;
  const auto c_prev = S::load(r.cell + j);
  auto zi = S::load(r.z + j), zf = S::load(r.z + H + j), zo = S::load(r.z + 3 * H + j);
  if constexpr (kPeephole) {
    zi = S::add(zi, S::mul(S::load(r.peep + j), c_prev));
    zf = S::add(zf, S::mul(S::load(r.peep + H + j), c_prev));
  }
  const auto input_gate = exact_sigmoid<S>(zi), forget_gate = exact_sigmoid<S>(zf);
  const auto candidate = exact_tanh<S>(S::load(r.z + 2 * H + j));
  const auto cell = S::add(S::mul(forget_gate, c_prev), S::mul(input_gate, candidate));
  if constexpr (kPeephole) zo = S::add(zo, S::mul(S::load(r.peep + 2 * H + j), cell));
  S::store(r.cell + j, cell);
  S::store(r.m + j, S::mul(exact_sigmoid<S>(zo), exact_tanh<S>(cell)));
}

// One row of H units: z [4H] in (destroyed), cell in/out, m out. The tail as one zero-padded packet.
template <bool kPeephole>
void exact_gates_row(Index H, float* z, float* cell, float* m, const float* peep) {
  constexpr Index W = Simd<float>::kWidth;
  const Index body = H - H % W;
  for (Index j = 0; j < body; j += W) exact_packet<kPeephole>({z, cell, m, peep, H}, j);
  if (body == H) return;
  const Index n = H - body;
  float tz[4 * W] = {}, tcell[W] = {}, tm[W] = {}, tpeep[3 * W] = {};
  for (Index k = 0; k < 4; ++k) std::copy_n(z + k * H + body, n, tz + k * W);
  std::copy_n(cell + body, n, tcell);
  if constexpr (kPeephole)
    for (Index k = 0; k < 3; ++k) std::copy_n(peep + k * H + body, n, tpeep + k * W);
  exact_packet<kPeephole>({tz, tcell, tm, tpeep, W}, 0);
  std::copy_n(tcell, n, cell + body);
  std::copy_n(tm, n, m + body);
}

// ---- the cell ------------------------------------------------------------------------------------

struct FrozenPass {
  Precision p;
  const CellDims& dims;
  const FrozenCell& cell;
  const FrozenSteps& s;
  const FrozenArrays& io;
  FrozenWork layout;
  unsigned char* work;

  template <typename U>
  U* at(std::size_t offset) const {
    return reinterpret_cast<U*>(work + offset);
  }

  // out (+)= a W^T for rows [0, rows) of a [rows, K] (lda apart), the operand converted first.
  void product(Index rows, Index K, const float* a, Index lda, const FrozenMatrix& W, const Output& out) const {
    if (p == Precision::int8) {
      std::int8_t* q = at<std::int8_t>(layout.a);
      float* scale = at<float>(layout.scale);
      quantize_rows(rows, K, a, lda, q, layout.a_stride, scale);
      int8_product(rows, q, layout.a_stride, scale, W, out);
    } else {
      std::uint16_t* b = at<std::uint16_t>(layout.a);
      round_rows(rows, K, a, lda, b, layout.a_stride);
      bf16_product(rows, b, layout.a_stride, W, out);
    }
  }

  void gates(Index b, float* z, float* c, float* m) const {
    const Index H = dims.hidden_size, G = 4 * H;
    with_peephole(dims.peephole, [&](auto peephole) {
      constexpr bool kPeep = decltype(peephole)::value;
      for (Index r = 0; r < b; ++r) {
        if (p == Precision::int8)
          exact_gates_row<kPeep>(H, z + r * G, c + r * H, m + r * H, cell.peep);
        else
          gates_forward_row<kPeep>(H, z + r * G, c + r * H, m + r * H, cell.peep);
      }
    });
  }

  void run(Index chunk) const {
    const Index I = dims.input_size, H = dims.hidden_size, R = dims.output_size, G = 4 * H, B = s.batch;
    float* h = at<float>(layout.h);
    float* c = at<float>(layout.c);
    float* z = at<float>(layout.z);
    float* m = dims.projection ? at<float>(layout.m) : h;
    if (io.state0.h)
      std::copy_n(io.state0.h, B * R, h);
    else
      std::fill_n(h, B * R, 0.0f);
    if (io.state0.c)
      std::copy_n(io.state0.c, B * H, c);
    else
      std::fill_n(c, B * H, 0.0f);
    for (Index first = 0; first < s.steps; first += chunk) {
      const Index count = std::min(chunk, s.steps - first);
      const Index t_lo = s.reverse ? s.steps - first - count : first;
      const Index row0 = s.offsets[t_lo], rows = s.offsets[t_lo + count] - row0;
      product(rows, I, io.x + row0 * I, I, cell.ih, {z, G, cell.bias, false});
      for (Index q = first; q < first + count; ++q) {
        const Index t = s.reverse ? s.steps - 1 - q : q, b = s.batch_sizes[t], row = s.offsets[t];
        float* zt = z + (row - row0) * G;
        product(b, R, h, R, cell.hh, {zt, G, nullptr, true});  // h converted before it is overwritten
        gates(b, zt, c, m);
        if (dims.projection) product(b, H, m, H, cell.hr, {h, R, nullptr, false});
        for (Index r = 0; r < b; ++r) std::copy_n(h + r * R, R, io.y.data + (row + r) * io.y.stride);
      }
    }
    std::copy_n(h, B * R, io.state_n.h);
    std::copy_n(c, B * H, io.state_n.c);
  }
};

}  // namespace

void frozen_forward(Precision p, const CellDims& dims, const FrozenCell& cell, const FrozenSteps& steps, Index chunk,
                    const FrozenArrays& arrays) {
  const FrozenPass pass{p,          dims, cell, steps, arrays, FrozenWork(dims, p, steps.batch, chunk * steps.batch),
                        arrays.work};
  pass.run(chunk);
}

}  // namespace lstm_fast::detail::LSTM_FAST_ISA
