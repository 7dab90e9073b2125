// The pointwise kernels of cpp/src/kernels/gates.hpp against the LSTM equations written out in scalars (gate
// order i, f, g, o; peepholes p_i, p_f on c_{t-1} and p_o on c_t), for float and double, compiled and
// run once per instruction set (kernels.cmake). Unit counts with tails (1, W - 1, W + 1, ...), whole
// rows and a team member's slice of the units (count < stride); nothing outside the slice written.
// Then the header's claim that results depend on the values alone: bit for bit the same at any
// alignment of the buffers and for any cut of a row into slices.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/gates.hpp"
#include "kernel_test.hpp"

namespace lstm_fast::test {
namespace {

using detail::Simd;

// The flags of kernels.cmake reached the compiler: the packet is as wide as the instruction set's.
TEST(Simd, PacketsAreAsWideAsTheInstructionSetsRegisters) {
  const std::string isa = LSTM_FAST_TEST_ISA_NAME;
  const Index bytes = isa == "avx512" ? 64 : isa == "avx2" ? 32 : 16;
  EXPECT_EQ(Simd<float>::kWidth * Index(sizeof(float)), bytes) << isa;
  EXPECT_EQ(Simd<double>::kWidth * Index(sizeof(double)), bytes) << isa;
}

// The activations' stated accuracy (gates.hpp: float's are rational approximations of a few ulp,
// double's are exp and std::tanh, about 1 ulp), compounded through a cell: about 8 ulp, relative to
// max(1, |value|). (Measured: at most 3 ulp in float, 2 in double, on every instruction set.)
template <typename T>
constexpr double kTolerance = std::is_same_v<T, float> ? 1e-6 : 2e-15;

template <typename T>
Wide<T> sigmoid(Wide<T> x) {
  return 1 / (1 + std::exp(-x));
}

template <typename T>
::testing::AssertionResult close(const char* what, Index unit, T got, Wide<T> want) {
  const Wide<T> error = std::abs(Wide<T>(got) - want);
  if (error <= kTolerance<T> * std::max(Wide<T>(1), std::abs(want))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << " of unit " << unit << ": " << got << ", equations " << double(want)
                                       << " (error " << double(error) << ")";
}

// A row of H units: what the forward kernel reads and writes.
template <typename T>
struct ForwardRow {
  static constexpr detail::GateVariant<T> kPlain{};  // no clip, f not coupled
  Index H;
  std::vector<T> z, cell, m, peep;  // [4H] pre-activations (i, f, g, o), [H] c_{t-1}, [H] out, [3H]

  ForwardRow(Index H_, unsigned seed)
      : H(H_),
        z(random_values<T>(4 * H_, seed, T(-6), T(6))),
        cell(random_values<T>(H_, seed + 1, T(-3), T(3))),
        m(static_cast<size_t>(H_), quiet_nan<T>()),
        peep(random_values<T>(3 * H_, seed + 2)) {}

  // Units [u0, u0 + count) through the kernel, with the row's buffers or others of the same layout.
  void run(bool peephole, Index u0, Index count, T* z_, T* cell_, T* m_, const T* peep_) const {
    if (peephole)
      detail::gates_forward_units<true>(count, H, z_ + u0, cell_ + u0, m_ + u0, peep_ + u0, kPlain);
    else
      detail::gates_forward_units<false>(count, H, z_ + u0, cell_ + u0, m_ + u0, static_cast<const T*>(nullptr),
                                         kPlain);
  }
  void run(bool peephole, Index u0, Index count) {
    run(peephole, u0, count, z.data(), cell.data(), m.data(), peep.data());
  }
};

// after = before through the equations on units [u0, u0 + count), every other number unchanged.
template <typename T>
::testing::AssertionResult forward_follows_the_equations(const ForwardRow<T>& before, const ForwardRow<T>& after,
                                                         bool peephole, Index u0, Index count) {
  const Index H = before.H;
  for (Index u = 0; u < H; ++u) {
    if (u < u0 || u >= u0 + count) {
      for (Index gate = 0; gate < 4; ++gate)
        if (auto same = bitwise_equal(std::vector<T>{after.z[gate * H + u]}, {before.z[gate * H + u]}); !same)
          return same << " (gate " << gate << " of unit " << u << ", outside the slice)";
      if (auto same = bitwise_equal(std::vector<T>{after.cell[u], after.m[u]}, {before.cell[u], before.m[u]}); !same)
        return same << " (c, m of unit " << u << ", outside the slice)";
      continue;
    }
    using X = Wide<T>;
    const X c_prev = before.cell[u], p_i = peephole ? X(before.peep[u]) : X(0);
    const X p_f = peephole ? X(before.peep[H + u]) : X(0), p_o = peephole ? X(before.peep[2 * H + u]) : X(0);
    const X i = sigmoid<T>(X(before.z[u]) + p_i * c_prev);
    const X f = sigmoid<T>(X(before.z[H + u]) + p_f * c_prev);
    const X g = std::tanh(X(before.z[2 * H + u]));
    const X c = f * c_prev + i * g;
    const X o = sigmoid<T>(X(before.z[3 * H + u]) + p_o * c);
    const X m = o * std::tanh(c);
    for (auto result :
         {close("i", u, after.z[u], i), close("f", u, after.z[H + u], f), close("g", u, after.z[2 * H + u], g),
          close("o", u, after.z[3 * H + u], o), close("c", u, after.cell[u], c), close("m", u, after.m[u], m)})
      if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

// Unit counts with every kind of tail; laid out as a whole row (stride == count, u0 = 0) or as a
// team member's slice [3, 3 + count) of a row of count + 8 units.
template <typename T>
std::vector<Index> unit_counts() {
  constexpr Index W = Simd<T>::kWidth;
  std::vector<Index> n = {1, W - 1, W, W + 1, 2 * W + 3, 37};
  n.erase(std::remove(n.begin(), n.end(), Index(0)), n.end());
  return n;
}

template <typename T>
class Gates : public ::testing::Test {};
TYPED_TEST_SUITE(Gates, Precisions);

TYPED_TEST(Gates, ForwardFollowsTheEquations) {
  using T = TypeParam;
  for (bool peephole : {false, true})
    for (Index count : unit_counts<T>())
      for (Index u0 : {0, 3}) {
        SCOPED_TRACE(::testing::Message()
                     << "count " << count << ", first unit " << u0 << (peephole ? ", peephole" : ""));
        const ForwardRow<T> before(u0 ? count + 8 : count, unsigned(count * 10 + u0));
        ForwardRow<T> after = before;
        after.run(peephole, u0, count);
        EXPECT_TRUE(forward_follows_the_equations(before, after, peephole, u0, count));
      }
}

// A row of H units: what the backward kernel reads and writes.
template <typename T>
struct BackwardRow {
  static constexpr detail::GateVariant<T> kPlain{};  // no clip, f not coupled
  Index H;
  std::vector<T> gates, cell, cell_prev, dm, dc, dz, peep;  // [4H] activated (i, f, g, o), [H] c_t, [H] c_{t-1},
                                                            // [H] dL/dm, [H] dc_t in / dc_{t-1} out, [4H] out, [3H]
  BackwardRow(Index H_, unsigned seed)
      : H(H_),
        gates(random_values<T>(4 * H_, seed, T(-4), T(4))),
        cell(random_values<T>(H_, seed + 1, T(-3), T(3))),
        cell_prev(random_values<T>(H_, seed + 2, T(-3), T(3))),
        dm(random_values<T>(H_, seed + 3)),
        dc(random_values<T>(H_, seed + 4)),
        dz(static_cast<size_t>(4 * H_), quiet_nan<T>()),
        peep(random_values<T>(3 * H_, seed + 5)) {
    for (Index u = 0; u < 4 * H; ++u)  // activated: i, f, o in (0, 1), g in (-1, 1)
      gates[u] = u / H == 2 ? T(std::tanh(gates[u])) : T(1 / (1 + std::exp(-gates[u])));
  }

  // Units [u0, u0 + count) through the kernel, on buffers of the row's layout (the row's own or copies).
  struct Buffers {
    const T *gates, *cell, *cell_prev, *dm;
    T *dc, *dz;
    const T* peep;
  };
  void run(bool peephole, Index u0, Index count, const Buffers& b) const {
    const T* p = peephole ? b.peep + u0 : nullptr;
    if (peephole)
      detail::gates_backward_units<true>(count, H, b.gates + u0, b.cell + u0, b.cell_prev + u0, b.dm + u0, b.dc + u0,
                                         b.dz + u0, p, kPlain);
    else
      detail::gates_backward_units<false>(count, H, b.gates + u0, b.cell + u0, b.cell_prev + u0, b.dm + u0, b.dc + u0,
                                          b.dz + u0, p, kPlain);
  }
  void run(bool peephole, Index u0, Index count) {
    const Buffers own{gates.data(), cell.data(), cell_prev.data(), dm.data(), dc.data(), dz.data(), peep.data()};
    run(peephole, u0, count, own);
  }
};

// The backward equations (haste's form: in terms of the activated gates) on units [u0, u0 + count):
//   dc_t = dc + dm o (1 - tanh(c_t)^2) [+ dzo p_o],  dzo = dm tanh(c_t) o (1 - o),
//   dzi = dc_t g i (1 - i),  dzf = dc_t c_{t-1} f (1 - f),  dzg = dc_t i (1 - g^2),
//   dc_{t-1} = dc_t f [+ dzi p_i + dzf p_f];  dc and dz outside the slice unchanged.
template <typename T>
::testing::AssertionResult backward_follows_the_equations(const BackwardRow<T>& before, const BackwardRow<T>& after,
                                                          bool peephole, Index u0, Index count) {
  const Index H = before.H;
  for (Index u = 0; u < H; ++u) {
    if (u < u0 || u >= u0 + count) {
      std::vector<T> was{before.dc[u]}, is{after.dc[u]};
      for (Index gate = 0; gate < 4; ++gate) {
        was.push_back(before.dz[gate * H + u]);
        is.push_back(after.dz[gate * H + u]);
      }
      if (auto same = bitwise_equal(is, was); !same) return same << " (dc, dz of unit " << u << ", outside the slice)";
      continue;
    }
    using X = Wide<T>;
    const X i = before.gates[u], f = before.gates[H + u], g = before.gates[2 * H + u], o = before.gates[3 * H + u];
    const X tanh_c = std::tanh(X(before.cell[u])), dm = before.dm[u];
    const X dzo = dm * tanh_c * o * (1 - o);
    const X dc = before.dc[u] + dm * o * (1 - tanh_c * tanh_c) + (peephole ? dzo * X(before.peep[2 * H + u]) : X(0));
    const X dzi = dc * g * i * (1 - i), dzf = dc * X(before.cell_prev[u]) * f * (1 - f), dzg = dc * i * (1 - g * g);
    const X dc_prev = dc * f + (peephole ? dzi * X(before.peep[u]) + dzf * X(before.peep[H + u]) : X(0));
    for (auto result : {close("dz_i", u, after.dz[u], dzi), close("dz_f", u, after.dz[H + u], dzf),
                        close("dz_g", u, after.dz[2 * H + u], dzg), close("dz_o", u, after.dz[3 * H + u], dzo),
                        close("dc_prev", u, after.dc[u], dc_prev)})
      if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

TYPED_TEST(Gates, BackwardFollowsTheEquations) {
  using T = TypeParam;
  for (bool peephole : {false, true})
    for (Index count : unit_counts<T>())
      for (Index u0 : {0, 3}) {
        SCOPED_TRACE(::testing::Message()
                     << "count " << count << ", first unit " << u0 << (peephole ? ", peephole" : ""));
        const BackwardRow<T> before(u0 ? count + 8 : count, unsigned(count * 10 + u0));
        BackwardRow<T> after = before;
        after.run(peephole, u0, count);
        EXPECT_TRUE(backward_follows_the_equations(before, after, peephole, u0, count));
      }
}

// ---- Results depend on the values alone ------------------------------------------------------------

// Cuts of a row of H units into slices: packet-aligned or not, one unit, the whole row.
std::vector<std::vector<Index>> slicings(Index H, Index W) {
  return {{0, H}, {0, W, 2 * W, H}, {0, 1, W + 1, H - 2, H}, {0, 3, 3 + W, 3 + 2 * W + 1, H}};
}

TYPED_TEST(Gates, ForwardBitsDoNotDependOnAlignmentOrSlices) {
  using T = TypeParam;
  constexpr Index W = Simd<T>::kWidth;
  const Index H = 4 * W + 5;
  for (bool peephole : {false, true}) {
    const ForwardRow<T> before(H, 11);
    ForwardRow<T> whole = before;
    whole.run(peephole, 0, H);
    for (const std::vector<Index>& bounds : slicings(H, W))
      for (Index shift = 0; shift < W; ++shift) {
        Shifted<T> z(before.z, shift), cell(before.cell, (shift + 1) % W), m(before.m, (shift + 2) % W),
            peep(before.peep, (shift + 3) % W);
        for (size_t s = 0; s + 1 < bounds.size(); ++s)
          before.run(peephole, bounds[s], bounds[s + 1] - bounds[s], z.data(), cell.data(), m.data(), peep.data());
        SCOPED_TRACE(::testing::Message() << "second slice from " << bounds[1] << ", shift " << shift);
        EXPECT_TRUE(bitwise_equal(z.values(), whole.z));
        EXPECT_TRUE(bitwise_equal(cell.values(), whole.cell));
        EXPECT_TRUE(bitwise_equal(m.values(), whole.m));
      }
  }
}

TYPED_TEST(Gates, BackwardBitsDoNotDependOnAlignmentOrSlices) {
  using T = TypeParam;
  constexpr Index W = Simd<T>::kWidth;
  const Index H = 4 * W + 5;
  for (bool peephole : {false, true}) {
    const BackwardRow<T> before(H, 13);
    BackwardRow<T> whole = before;
    whole.run(peephole, 0, H);
    for (const std::vector<Index>& bounds : slicings(H, W))
      for (Index shift = 0; shift < W; ++shift) {
        Shifted<T> gates(before.gates, shift), cell(before.cell, (shift + 1) % W),
            cell_prev(before.cell_prev, (shift + 2) % W), dm(before.dm, (shift + 3) % W), dc(before.dc, shift),
            dz(before.dz, (shift + 1) % W), peep(before.peep, (shift + 2) % W);
        for (size_t s = 0; s + 1 < bounds.size(); ++s)
          before.run(peephole, bounds[s], bounds[s + 1] - bounds[s],
                     {gates.data(), cell.data(), cell_prev.data(), dm.data(), dc.data(), dz.data(), peep.data()});
        SCOPED_TRACE(::testing::Message() << "second slice from " << bounds[1] << ", shift " << shift);
        EXPECT_TRUE(bitwise_equal(dc.values(), whole.dc));
        EXPECT_TRUE(bitwise_equal(dz.values(), whole.dz));
      }
  }
}

}  // namespace
}  // namespace lstm_fast::test
