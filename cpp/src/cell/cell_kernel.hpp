// What the per-ISA kernel sources share (forward.cpp, backward.cpp, frozen_kernels.cpp, fma_probe.cpp,
// kernel_table.cpp). Each of them is compiled once per instruction set (CMake sets LSTM_FAST_ISA and
// the -m flags), and with Eigen's namespace renamed per build (-DEigen=lstm_fast_eigen_<isa>):
// otherwise the linker would merge the identically named Eigen template instances of different
// builds and could run AVX2 code on a CPU without it. Hence also the anonymous namespace below:
// each build keeps its own copy of every helper.
#pragma once

#include <immintrin.h>

#include <Eigen/Core>
#include <type_traits>

#include "cell/cell.hpp"
#include "cell/cell_walk.hpp"
#include "cell/frozen_cell.hpp"
#include "cell/zoneout.hpp"
#include "kernels/gates.hpp"
#include "kernels/layer_norm.hpp"
#include "kernels/recurrent.hpp"
#include "runtime/team.hpp"

#ifndef LSTM_FAST_ISA
#define LSTM_FAST_ISA baseline
#endif

// Defines the entry point `name` (cell.hpp's CellKernels signature) of a pass object: builds the
// pass on the kind of products the plan's field `product` names (product_kinds.hpp's with_products;
// the pass takes the kind's member `Kind`), which allocates everything it needs, then runs it on the
// plan's team. Instantiated for the element types of the kernel table (KernelTable::f32, f64).
#define LSTM_FAST_CELL_ENTRY(name, Pass, Arrays, product, Kind)                                                  \
  template <typename T>                                                                                          \
  void name(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence, \
            const Arrays<T>& arrays) {                                                                           \
    with_products<T>(plan.product, [&](auto kind) {                                                              \
      Pass<T, typename decltype(kind)::Kind>(dims, plan, weights, sequence, arrays).run();                       \
    });                                                                                                          \
  }                                                                                                              \
  template void name(const CellDims&, const CellPlan&, const CellWeights<float>&, const Sequence&,               \
                     const Arrays<float>&);                                                                      \
  template void name(const CellDims&, const CellPlan&, const CellWeights<double>&, const Sequence&,              \
                     const Arrays<double>&);

namespace lstm_fast::detail::LSTM_FAST_ISA {

// The entry points of this build (cell.hpp documents them); kernel_table.cpp lists them.
template <typename T>
void cell_forward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                  const ForwardArrays<T>& arrays);
template <typename T>
void cell_backward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                   const BackwardArrays<T>& arrays);
void frozen_forward(const CellDims& dims, const CellPlan& plan, const FrozenCell& cell, const FrozenSteps& steps,
                    const FrozenArrays& arrays);
double fma_throughput(double seconds);
double dot_throughput(Precision p, const DotInstructions& dot, double seconds);

namespace {

template <typename T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;
template <typename T>
using Map = Eigen::Map<Matrix<T>>;
template <typename T>
using ConstMap = Eigen::Map<const Matrix<T>>;
template <typename T>
using StridedMap = Eigen::Map<Matrix<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedMap = Eigen::Map<const Matrix<T>, 0, Eigen::OuterStride<>>;

// Calls f(std::true_type) or f(std::false_type): the gate kernels take the peephole as a template
// argument, so that the loop without one carries no test.
template <typename F>
inline void with_peephole(bool peephole, const F& f) {
  if (peephole)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// Slice k of `parts` (a team's member k) gets [split(n, k), split(n, k + 1)): boundaries on multiples of
// `align` (a SIMD width) so that only the last slice has a partial packet.
inline Index split(Index n, int parts, int k, Index align) {
  if (k >= parts) return n;
  const Index units = (n + align - 1) / align;
  return std::min(n, units * k / parts * align);
}

// Member k's share of the column blocks of a panel (recurrent.hpp), so that a team packs a panel
// together: of all n columns of W^T for W [n, K] (pack_transposed), or of all n columns of W [K, n]
// (pack_columns), at P.
template <typename T>
void pack_transposed_share(int k, int team, const T* W, Index n, Index K, T* P) {
  const Index j0 = split(n, team, k, kPanel<T>), j1 = split(n, team, k + 1, kPanel<T>);
  pack_transposed(W, K, j0, 0, j1 - j0, K, P + j0 * K);
}
template <typename T>
void pack_columns_share(int k, int team, const T* W, Index n, Index K, T* P) {
  const Index j0 = split(n, team, k, kPanel<T>), j1 = split(n, team, k + 1, kPanel<T>);
  pack_columns(W, n, j0, j1 - j0, K, P + j0 * K);
}

// What member k of a unit-split team owns: hidden units [u0, u1) (their four gates), on SIMD-width
// boundaries, and outputs [r0, r1) of h; without a projection (R == H) the two ranges coincide.
struct MemberSlice {
  Index u0, u1, r0, r1;
};

template <typename T>
MemberSlice member_slice(const CellDims& dims, int team, int k) {
  const Index H = dims.hidden_size, R = dims.output_size, W = Simd<T>::kWidth;
  const Index u0 = split(H, team, k, W), u1 = split(H, team, k + 1, W);
  if (!dims.projection) return {u0, u1, u0, u1};
  return {u0, u1, split(R, team, k, 1), split(R, team, k + 1, 1)};
}

// Zoneout of one state (h or c) of a cell (docs/api.md; Krueger et al. 2016): a unit keeps its previous
// value with mask d, 0/1 per unit, step and row ([N, width] in the packed rows: a training forward's),
// or with the probability z itself where d is null (inference).
template <typename T>
struct ZoneoutMask {
  const T* d;
  T z;
  Index width;  // R for h, H for c
  // Units [u0, u0 + n) of packed row `row`: state = d prev + (1 - d) state.
  void mix(Index row, Index u0, Index n, const T* prev, T* state) const {
    const T* dr = d ? d + row * width + u0 : nullptr;
    for (Index k = 0; k < n; ++k) {
      const T dk = dr ? dr[k] : z;
      state[k] = dk * prev[k] + (T(1) - dk) * state[k];
    }
  }
  // The backward of mix: keep = d grad (reaches prev), grad = (1 - d) grad (reaches the new state).
  void split(Index row, Index u0, Index n, T* grad, T* keep) const {
    const T* dr = d ? d + row * width + u0 : nullptr;
    for (Index k = 0; k < n; ++k) {
      const T dk = dr ? dr[k] : z;
      keep[k] = dk * grad[k];
      grad[k] = (T(1) - dk) * grad[k];
    }
  }
};

// Both states' zoneout: the masks d_h [N, R], d_c [N, H], or null for the probabilities of dims.
template <typename T>
struct Zoneout {
  ZoneoutMask<T> h, c;
  Zoneout(const T* masks_h, const T* masks_c, const CellDims& dims)
      : h{masks_h, static_cast<T>(dims.zoneout_h), dims.output_size},
        c{masks_c, static_cast<T>(dims.zoneout_c), dims.hidden_size} {}
  bool on() const { return h.d || h.z > 0 || c.z > 0; }
};

// n floats of v rounded to the nearest bfloat16 into out (which may be v; to_bf16's rounding, a packet
// at a time).
inline void round_bf16_to(const float* v, float* out, Index n) {
  Index k = 0;
#if defined(__AVX512F__)
  const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u)), quiet = _mm512_set1_epi32(0x00400000);
  for (; k + 16 <= n; k += 16) {
    const __m512 x = _mm512_loadu_ps(v + k);
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(bits, half), odd);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), _mm512_or_si512(bits, quiet));
    _mm512_storeu_ps(out + k, _mm512_castsi512_ps(_mm512_and_si512(r, high)));
  }
#endif
  for (; k < n; ++k) out[k] = from_bf16(to_bf16(v[k]));
}
inline void round_bf16(float* v, Index n) { round_bf16_to(v, v, n); }

// bf16 training (CellPlan::precision bf16): the values of a block of floats (a row-major Eigen block or map)
// rounded to bfloat16 in place, where they become a product's operand. (Never called on doubles.)
template <typename Block>
void round_block(Block&& block) {
  if constexpr (std::is_same_v<typename std::decay_t<Block>::Scalar, float>)
    if (block.cols() > 0)
      for (Index r = 0; r < block.rows(); ++r) round_bf16(&block.coeffRef(r, 0), block.cols());
}

// What a pass (ForwardPass, BackwardPass) reads of the call besides its arrays: the sizes, the plan
// and the schedule. (A base class that does not depend on T, so the passes name its members plainly.)
struct PassShape {
  PassShape(const CellDims& d, const CellPlan& p, const Sequence& sequence)
      : dims(d),
        plan(p),
        s(sequence.schedule),
        reverse(sequence.reverse),
        I(d.input_size),
        H(d.hidden_size),
        R(d.output_size),
        G(4 * d.hidden_size),
        B(s.batch),
        N(s.rows()),
        steps(s.steps()) {}
  // The step of the schedule processed p-th (the forward's order; the backward walks it back).
  Index step_at(Index p) const { return reverse ? steps - 1 - p : p; }
  Walk walk() const { return {steps, s.offsets.data(), reverse, dims.projection}; }

  const CellDims& dims;
  const CellPlan& plan;
  const Schedule& s;
  const bool reverse;
  const Index I, H, R, G, B, N, steps;  // G = 4H gate columns; N rows of the packed sequence
};

}  // namespace
}  // namespace lstm_fast::detail::LSTM_FAST_ISA
