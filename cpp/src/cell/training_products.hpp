// The products of the training passes (forward.cpp, backward.cpp), one policy per kind; each pass is
// instantiated with the kind its plan chose (CellPlan::forward_product, backward_product) by
// with_products (product_kinds.hpp), so no product call tests the kind. A kind is a struct with two members:
//   Forward   z = x W_ih^T + b, and a (+)= h W_hh^T by units (the unit split) or by rows (the row split)
//   Backward  dh_{t-1} = dZ_t W_hh by outputs or by rows, dX (+)= dZ W_ih, dW (+)= dA^T M
// each holding what it packs or converts of the weights, allocated when constructed. The kinds:
//   Unpacked Eigen's GEMMs on the weights as they are (too few rows to pay for packing)
//   Panels   recurrent.hpp's panels, packed once per call at the walk's first meeting
//   Bf16Dot  vdpbf16ps (bf16_training.hpp) on the weights in bfloat16, converted once per call (float)
// A new kind is a struct with both members, in a file of its own, and a case in product_kinds.hpp's
// with_products.
#pragma once

#include <tuple>
#include <type_traits>

#include "cell/bf16_training.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// out = a, or out += a for every block after the first visited.
template <typename Out, typename Expr>
void accumulate(bool first_block, Out&& out, const Expr& a) {
  if (first_block)
    out.noalias() = a;
  else
    out.noalias() += a;
}

// What every kind reads: the cell's weights and sizes (G = 4H gate columns), its plan and the state's rows.
template <typename T>
struct ProductShape {
  ProductShape(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights, Index batch)
      : dims(d), plan(p), w(weights), I(d.input_size), H(d.hidden_size), R(d.output_size), G(4 * H), B(batch) {}
  const CellDims& dims;
  const CellPlan& plan;
  const CellWeights<T>& w;
  const Index I, H, R, G, B;
};

// ---- Unpacked ------------------------------------------------------------------------------------

template <typename T>
struct Unpacked {
  struct Forward : ProductShape<T> {
    using ProductShape<T>::ProductShape;
    using ProductShape<T>::w, ProductShape<T>::I, ProductShape<T>::H, ProductShape<T>::R, ProductShape<T>::G;
    static constexpr bool kPacks = false;           // nothing for a meeting before the first step
    static constexpr bool kProjectsChunks = false;  // each slice its own units' columns: input_units
    void pack(int, int) {}
    // z [rows, 4H] = x W_ih^T (+ bias) for `rows` rows of x.
    void input_rows(int, Index rows, const T* x, T* z, const RowVector<T>* bias) {
      Map<T> Z(z, rows, G);
      Z.noalias() = ConstMap<T>(x, rows, I) * ConstMap<T>(w.weight_ih, G, I).transpose();
      if (bias) Z.rowwise() += *bias;
    }
    // Columns of units [u0, u0 + n) of each gate of z = x W_ih^T (+ bias) for `rows` rows of x.
    void input_units(const MemberSlice& slice, Index rows, const T* x, T* z, const RowVector<T>* bias) const {
      const Index n = slice.u1 - slice.u0;
      for (Index gate = 0; gate < 4; ++gate) {
        const Index col = gate * H + slice.u0;
        StridedMap<T> Z(z + col, rows, n, Eigen::OuterStride<>(G));
        Z.noalias() = ConstMap<T>(x, rows, I) * ConstMap<T>(w.weight_ih, G, I).middleRows(col, n).transpose();
        if (bias) Z.rowwise() += bias->middleCols(col, n);
      }
    }
    // Units [u0, u1) of each gate of a [b, 4H] (+)= h W_hh^T for rows [0, b) of h.
    void recurrent_units(int, const MemberSlice& slice, Index b, const Matrix<T>& h, T* a, bool add) {
      const Index u0 = slice.u0, n = slice.u1 - slice.u0;
      for (Index gate = 0; gate < 4; ++gate) {
        auto out = Map<T>(a, b, G).middleCols(gate * H + u0, n);
        const auto W = ConstMap<T>(w.weight_hh, G, R).middleRows(gate * H + u0, n).transpose();
        if (add)
          out.noalias() += h.topRows(b) * W;
        else
          out.noalias() = h.topRows(b) * W;
      }
    }
    // The row split's products over all 4H columns: out (+)= A W_hh^T (recurrent), else A W_ih^T, for
    // `rows` rows of A (lda apart) into rows of out (ldo apart).
    void rows(int, Index rows, const T* A, Index lda, bool recurrent, T* out, Index ldo, bool add) {
      const Index K = recurrent ? R : I;
      ConstStridedMap<T> a(A, rows, K, Eigen::OuterStride<>(lda));
      StridedMap<T> o(out, rows, G, Eigen::OuterStride<>(ldo));
      const auto W = ConstMap<T>(recurrent ? w.weight_hh : w.weight_ih, G, K).transpose();
      if (add)
        o.noalias() += a * W;
      else
        o.noalias() = a * W;
    }
  };
  struct Backward : ProductShape<T> {
    Backward(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights, Index batch, Index)
        : ProductShape<T>(d, p, weights, batch) {}
    using ProductShape<T>::w, ProductShape<T>::I, ProductShape<T>::R, ProductShape<T>::G;
    static constexpr bool kPacks = false;
    void pack(int, int, const MemberSlice&) {}
    // dh[:, r0:r1] = dZ W_hh[:, r0:r1] for rows [0, b) of dZ [b, 4H] (dh [B, R]).
    void hidden(int, const MemberSlice& slice, Index b, const T* dZ, Matrix<T>& dh) {
      const Index r0 = slice.r0, nr = slice.r1 - slice.r0;
      dh.block(0, r0, b, nr).noalias() = ConstMap<T>(dZ, b, G) * ConstMap<T>(w.weight_hh, G, R).middleCols(r0, nr);
    }
    // The row split's dh rows (ldh apart) = dZ rows (lda apart) W_hh, all R columns.
    void hidden_rows(int, Index rows, const T* dZ, Index lda, T* dh, Index ldh) {
      StridedMap<T>(dh, rows, R, Eigen::OuterStride<>(ldh)).noalias() =
          ConstStridedMap<T>(dZ, rows, G, Eigen::OuterStride<>(lda)) * ConstMap<T>(w.weight_hh, G, R);
    }
    // dX (+)= dZ W_ih for `rows` rows (dZ [rows, 4H], dX [rows, I]).
    void input(int, Index rows, const T* dZ, T* dX, bool add) {
      Map<T> out(dX, rows, I);
      if (add)
        out.noalias() += ConstMap<T>(dZ, rows, G) * ConstMap<T>(w.weight_ih, G, I);
      else
        out.noalias() = ConstMap<T>(dZ, rows, G) * ConstMap<T>(w.weight_ih, G, I);
    }
    // Gate rows [g0, g1) of dW_ih (+)= dA_x^T X and dW_hh (+)= dA_h^T H_prev over n rows.
    void weights(int, Index g0, Index g1, Index n, const T* dA_x, const T* X, const T* dA_h, const T* H_prev,
                 const CellGrads<T>& grads, bool assign) {
      ConstMap<T> dAx(dA_x, n, G), dAh(dA_h, n, G);
      accumulate(assign, Map<T>(grads.weight_ih, G, I).middleRows(g0, g1 - g0),
                 dAx.middleCols(g0, g1 - g0).transpose() * ConstMap<T>(X, n, I));
      accumulate(assign, Map<T>(grads.weight_hh, G, R).middleRows(g0, g1 - g0),
                 dAh.middleCols(g0, g1 - g0).transpose() * ConstMap<T>(H_prev, n, R));
    }
  };
};

// ---- Panels --------------------------------------------------------------------------------------

template <typename T>
struct Panels {
  // Unit split: W_hh member by member, for each gate the panel of W_hh[gate H + u0 + j][k] (4
  // panel_size(n, R) numbers; the members' u0 are on packet boundaries, so member k's panels start at
  // 4 R u0). Row split: one panel of all 4H columns of W_hh^T (panel_size(4H, R), no more than the unit
  // split's). Either way W_ih^T as one panel of all 4H columns, each member packing its share of its blocks.
  struct Forward : ProductShape<T> {
    using ProductShape<T>::plan, ProductShape<T>::w, ProductShape<T>::I, ProductShape<T>::H, ProductShape<T>::R,
        ProductShape<T>::G;
    Forward(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights, Index batch)
        : ProductShape<T>(d, p, weights, batch),
          packed(static_cast<size_t>(4 * panel_size<T>(H, R))),
          packed_ih(static_cast<size_t>(panel_size<T>(G, I))) {}
    static constexpr bool kPacks = true;
    static constexpr bool kProjectsChunks = true;  // a chunk's rows shared out: input_rows
    void pack(int j, int team) {
      if (plan.split == Split::kRows) {
        pack_transposed_share(j, team, w.weight_hh, G, R, packed.data());
      } else {
        const MemberSlice slice = member_slice<T>(this->dims, team, j);
        const Index n = slice.u1 - slice.u0;
        for (Index gate = 0; gate < 4; ++gate)
          pack_transposed(w.weight_hh, R, gate * H + slice.u0, 0, n, R, panels(slice) + gate * panel_size<T>(n, R));
      }
      pack_transposed_share(j, team, w.weight_ih, G, I, packed_ih.data());
    }
    T* panels(const MemberSlice& slice) { return packed.data() + 4 * R * slice.u0; }
    // z [rows, 4H] (ldz apart) = x W_ih^T (+ bias) for `rows` rows of x.
    void input_rows(int, Index rows, const T* x, T* z, const RowVector<T>* bias) {
      panel_gemm<false>(rows, G, I, x, I, packed_ih.data(), z, G);
      if (bias) Map<T>(z, rows, G).rowwise() += *bias;
    }
    void recurrent_units(int, const MemberSlice& slice, Index b, const Matrix<T>& h, T* a, bool add) {
      const Index u0 = slice.u0, n = slice.u1 - slice.u0, panel = panel_size<T>(n, R);
      for (Index gate = 0; gate < 4; ++gate) {
        const T* P = panels(slice) + gate * panel;
        if (add)
          panel_product<true>(b, n, R, h.data(), R, P, a + gate * H + u0, G);
        else
          panel_product<false>(b, n, R, h.data(), R, P, a + gate * H + u0, G);
      }
    }
    void rows(int, Index rows, const T* A, Index lda, bool recurrent, T* out, Index ldo, bool add) {
      const T* P = recurrent ? packed.data() : packed_ih.data();
      const Index K = recurrent ? R : I;
      if (add)
        panel_product<true>(rows, G, K, A, lda, P, out, ldo);
      else
        panel_product<false>(rows, G, K, A, lda, P, out, ldo);
    }
    Buffer<T> packed, packed_ih;
  };
  // Unit split: W_hh's columns member by member, the panel of W_hh[k][r0 + j] for the member's outputs
  // [r0, r1), panel_size(nr, 4H) < 4H (nr + W) numbers; with a projection r0 need not be on a packet
  // boundary, so member k's panel starts at 4H (r0 + k W). Row split: one panel of all R columns
  // (panel_size(R, 4H) <= 4H (R + team W)). Either way W_ih as one panel of its I columns for
  // dX = dZ W_ih, each member packing its share of the column blocks.
  struct Backward : Unpacked<T>::Backward {
    using Base = typename Unpacked<T>::Backward;
    using Base::plan, Base::w, Base::I, Base::R, Base::G;
    Backward(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights, Index batch, Index slot_rows)
        : Base(d, p, weights, batch, slot_rows),
          packed(static_cast<size_t>(G * (R + p.team * Simd<T>::kWidth))),
          packed_ih(static_cast<size_t>(panel_size<T>(I, G))) {}
    static constexpr bool kPacks = true;
    T* panel_of(const MemberSlice& slice, int j) { return packed.data() + G * (slice.r0 + j * Simd<T>::kWidth); }
    void pack(int j, int team, const MemberSlice& slice) {
      if (plan.split == Split::kRows)
        pack_columns_share(j, team, w.weight_hh, R, G, packed.data());
      else
        pack_columns(w.weight_hh, R, slice.r0, slice.r1 - slice.r0, G, panel_of(slice, j));
      pack_columns_share(j, team, w.weight_ih, I, G, packed_ih.data());
    }
    void hidden(int j, const MemberSlice& slice, Index b, const T* dZ, Matrix<T>& dh) {
      panel_product<false>(b, slice.r1 - slice.r0, G, dZ, G, panel_of(slice, j), dh.data() + slice.r0, R);
    }
    void hidden_rows(int, Index rows, const T* dZ, Index lda, T* dh, Index ldh) {
      panel_product<false>(rows, R, G, dZ, lda, packed.data(), dh, ldh);
    }
    void input(int, Index rows, const T* dZ, T* dX, bool add) {
      if (add)
        panel_gemm<true>(rows, I, G, dZ, G, packed_ih.data(), dX, I);
      else
        panel_gemm<false>(rows, I, G, dZ, G, packed_ih.data(), dX, I);
    }
    Buffer<T> packed, packed_ih;
  };
};

// ---- Bf16Dot (float only) --------------------------------------------------------------------------

template <typename T>
struct Bf16Dot {
  static_assert(std::is_same_v<T, float>, "bf16 training's dot products take float operands");
  // W_ih and W_hh in bf16, in gate parts (frozen.hpp's blocks of 16 columns).
  struct Forward : ProductShape<T> {
    using ProductShape<T>::w, ProductShape<T>::I, ProductShape<T>::H, ProductShape<T>::R, ProductShape<T>::G;
    Forward(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights, Index batch)
        : ProductShape<T>(d, p, weights, batch),
          ih(freeze_matrix(Precision::bf16, w.weight_ih, G, I, 4)),
          hh(freeze_matrix(Precision::bf16, w.weight_hh, G, R, 4)),
          operands(p.team, batch, std::max(I, R)) {}
    static constexpr bool kPacks = false;
    static constexpr bool kProjectsChunks = true;
    void pack(int, int) {}
    void input_rows(int j, Index rows, const T* x, T* z, const RowVector<T>* bias) {  // (bias added to each sum)
      operands.product(j, rows, x, I, ih, 0, ih.blocks(), {z, G, bias ? bias->data() : nullptr, false});
    }
    void recurrent_units(int j, const MemberSlice& slice, Index b, const Matrix<T>& h, T* a, bool add) {
      const std::uint16_t* h16 = operands.convert(j, b, R, h.data(), R);
      for (Index gate = 0; gate < 4; ++gate) {
        const auto [b0, b1] = blocks_of(hh, gate, slice.u0, slice.u1);
        Bf16Rows::multiply(h16, b, hh, b0, b1, {a, G, nullptr, add});
      }
    }
    void rows(int k, Index rows, const T* A, Index lda, bool recurrent, T* out, Index ldo, bool add) {
      const FrozenMatrix& W = recurrent ? hh : ih;
      operands.product(k, rows, A, lda, W, 0, W.blocks(), {out, ldo, nullptr, add});
    }
    FrozenMatrix ih, hh;
    Bf16Rows operands;
  };
  // W_hh^T and W_ih^T in bf16; the weight gradients in pair rows. (With a projection a member's outputs
  // [r0, r1) need not be whole blocks: the plan takes this kind then only for a team of one.)
  struct Backward : ProductShape<T> {
    using ProductShape<T>::w, ProductShape<T>::I, ProductShape<T>::R, ProductShape<T>::G;
    Backward(const CellDims& d, const CellPlan& p, const CellWeights<T>& weights, Index batch, Index slot_rows)
        : ProductShape<T>(d, p, weights, batch),
          hh_t(freeze_bf16_transposed(w.weight_hh, G, R)),
          ih_t(freeze_bf16_transposed(w.weight_ih, G, I)),
          operands(p.team, batch, G),
          slot_pairs((slot_rows + 1) / 2),
          pairs_per_member(slot_pairs * (round_up(G, 16) + round_up(std::max(I, R), 16))),
          pairs(static_cast<size_t>(p.team * pairs_per_member)) {}
    static constexpr bool kPacks = false;
    void pack(int, int, const MemberSlice&) {}
    // out[rows, columns c0..c1] (+)= A (W_hh or W_ih) for rows of A (floats holding bf16 values).
    void product(int j, Index rows, const T* A, Index lda, bool recurrent, Index c0, Index c1, T* out, Index ldo,
                 bool add) {
      const FrozenMatrix& W = recurrent ? hh_t : ih_t;
      const auto [b0, b1] = blocks_of(W, 0, c0, c1);
      operands.product(j, rows, A, lda, W, b0, b1, {out, ldo, nullptr, add});
    }
    void hidden(int j, const MemberSlice& slice, Index b, const T* dZ, Matrix<T>& dh) {
      product(j, b, dZ, G, true, slice.r0, slice.r1, dh.data(), R, false);
    }
    void hidden_rows(int k, Index rows, const T* dZ, Index lda, T* dh, Index ldh) {
      product(k, rows, dZ, lda, true, 0, R, dh, ldh, false);
    }
    void input(int j, Index rows, const T* dZ, T* dX, bool add) { product(j, rows, dZ, G, false, 0, I, dX, I, add); }
    void weights(int j, Index g0, Index g1, Index n, const T* dA_x, const T* X, const T* dA_h, const T* H_prev,
                 const CellGrads<T>& grads, bool assign) {
#if defined(__AVX512F__)
      std::uint32_t* a = pairs.data() + j * pairs_per_member;
      std::uint32_t* b = a + slot_pairs * round_up(G, 16);
      const Index lda = round_up(g1 - g0, 16);
      for (const auto& [dA, M, K, dW] : {std::tuple{dA_x, X, I, grads.weight_ih}, {dA_h, H_prev, R, grads.weight_hh}}) {
        pair_rows(n, dA, G, g0, g1, a, lda);
        pair_rows(n, M, K, 0, K, b, round_up(K, 16));
        pair_gemm(g1 - g0, K, (n + 1) / 2, a, lda, b, round_up(K, 16), dW + g0 * K, K, !assign);
      }
#endif
    }
    FrozenMatrix hh_t, ih_t;
    Bf16Rows operands;
    Index slot_pairs, pairs_per_member;
    std::vector<std::uint32_t> pairs;  // member j's pair rows of dA and of X or H_prev
  };
};

}  // namespace
}  // namespace lstm_fast::detail::LSTM_FAST_ISA
