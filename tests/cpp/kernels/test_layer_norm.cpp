// Layer normalisation of one row (cpp/src/kernels/layer_norm.hpp) against its equations written out in
// scalars, for float and double, compiled and run once per instruction set (kernels.cmake):
//   LN(v; g, b) = g v^ + b,  v^ = (v - mean v) / std,  std = sqrt(var v + 1e-5),
//   backward  dv = (dv^ - mean dv^ - v^ mean(dv^ v^)) / std,  dv^ = g dLN,
// the cell's forms (m = o tanh(LN(c)) and back through it), and the row sums. Row lengths 1, 3, 15, 17,
// 33 and W - 1, W, W + 1, 2W + 3 (packets and the zero-padded tail), the add-into forms, the optional
// outputs absent. Then the header's claim that a row's numbers do not depend on where it lies.
// Tolerance: relative to max(1, |value|), 4 (n + 4) eps: each value comes from sums of n terms
// (float's bound about n u |terms|, the terms of order 1 here: v in [-2, 2], the backward's std in
// [0.5, 2]) and a few operations after them, tanh's few ulp (gates.hpp) included.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernel_test.hpp"
#include "kernels/layer_norm.hpp"

namespace lstm_fast::test {
namespace {

using detail::Simd;

template <typename T>
std::vector<Index> lengths() {
  constexpr Index W = Simd<T>::kWidth;
  std::vector<Index> n = {1, 3, 15, 17, 33, W - 1, W, W + 1, 2 * W + 3};
  std::sort(n.begin(), n.end());
  n.erase(std::unique(n.begin(), n.end()), n.end());
  n.erase(std::remove(n.begin(), n.end(), Index(0)), n.end());
  return n;
}

template <typename T>
::testing::AssertionResult close(const char* what, Index n, const std::vector<T>& got,
                                 const std::vector<Wide<T>>& want) {
  for (size_t j = 0; j < want.size(); ++j) {
    const Wide<T> error = std::abs(Wide<T>(got[j]) - want[j]);
    if (!(error <= 4 * (n + 4) * kEpsilon<T> * std::max(Wide<T>(1), std::abs(want[j]))))
      return ::testing::AssertionFailure() << what << "[" << j << "] of " << want.size() << ": " << got[j]
                                           << ", equations " << double(want[j]) << " (error " << double(error) << ")";
  }
  return ::testing::AssertionSuccess();
}

// The forward's equations in the wide type: v^ and std.
template <typename T>
std::vector<Wide<T>> normalised(const std::vector<T>& v, Wide<T>* std_out) {
  using X = Wide<T>;
  X mean = 0, var = 0;
  for (T x : v) mean += x;
  mean /= X(v.size());
  for (T x : v) var += (x - mean) * (x - mean);
  const X std = std::sqrt(var / X(v.size()) + X(1e-5));
  std::vector<X> hat;
  for (T x : v) hat.push_back((x - mean) / std);
  *std_out = std;
  return hat;
}

template <typename T>
class LayerNorm : public ::testing::Test {};
TYPED_TEST_SUITE(LayerNorm, Precisions);

TYPED_TEST(LayerNorm, ForwardFollowsTheEquations) {
  using T = TypeParam;
  using X = Wide<T>;
  for (Index n : lengths<T>())
    for (bool add : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << (add ? ", added" : ""));
      const std::vector<T> v = random_values<T>(n, unsigned(n), T(-2), T(2)), g = random_values<T>(n, unsigned(n) + 1),
                           b = random_values<T>(n, unsigned(n) + 2), out0 = random_values<T>(n, unsigned(n) + 3);
      std::vector<T> hat(static_cast<size_t>(n), quiet_nan<T>()), out = out0;
      const T std = add ? detail::layer_norm<true>(n, v.data(), g.data(), b.data(), hat.data(), out.data())
                        : detail::layer_norm<false>(n, v.data(), g.data(), b.data(), hat.data(), out.data());
      X want_std;
      const std::vector<X> want_hat = normalised(v, &want_std);
      std::vector<X> want_out;
      for (Index j = 0; j < n; ++j) want_out.push_back(X(g[j]) * want_hat[j] + b[j] + (add ? X(out0[j]) : X(0)));
      EXPECT_TRUE(close("std", n, std::vector<T>{std}, {want_std}));
      EXPECT_TRUE(close("v^", n, hat, want_hat));
      EXPECT_TRUE(close("LN", n, out, want_out));
      std::vector<T> in_place = v;  // out may be v itself, v^ not kept
      detail::layer_norm<false>(n, in_place.data(), g.data(), b.data(), static_cast<T*>(nullptr), in_place.data());
      if (!add) EXPECT_TRUE(bitwise_equal(in_place, out));
    }
}

TYPED_TEST(LayerNorm, CellOutputFollowsTheEquations) {
  using T = TypeParam;
  using X = Wide<T>;
  for (Index n : lengths<T>()) {
    SCOPED_TRACE(::testing::Message() << "H " << n);
    const std::vector<T> c = random_values<T>(n, unsigned(n), T(-2), T(2)), o = random_values<T>(n, unsigned(n) + 1),
                         g = random_values<T>(n, unsigned(n) + 2), b = random_values<T>(n, unsigned(n) + 3);
    std::vector<T> hat(static_cast<size_t>(n), quiet_nan<T>()), tanh_n = hat, m = hat, m_inference = hat;
    const T std =
        detail::cell_layer_norm(n, c.data(), o.data(), g.data(), b.data(), hat.data(), tanh_n.data(), m.data());
    const T std_inference = detail::cell_layer_norm(n, c.data(), o.data(), g.data(), b.data(), static_cast<T*>(nullptr),
                                                    static_cast<T*>(nullptr), m_inference.data());
    X want_std;
    const std::vector<X> want_hat = normalised(c, &want_std);
    std::vector<X> want_tanh, want_m;
    for (Index j = 0; j < n; ++j) {
      want_tanh.push_back(std::tanh(X(g[j]) * want_hat[j] + b[j]));
      want_m.push_back(X(o[j]) * want_tanh.back());
    }
    EXPECT_TRUE(close("std", n, std::vector<T>{std}, {want_std}));
    EXPECT_TRUE(close("c^", n, hat, want_hat));
    EXPECT_TRUE(close("tanh(n)", n, tanh_n, want_tanh));
    EXPECT_TRUE(close("m", n, m, want_m));
    EXPECT_TRUE(bitwise_equal(m_inference, m));  // the same numbers without the trace's outputs
    EXPECT_TRUE(bitwise_equal(std::vector<T>{std_inference}, {std}));
  }
}

// The backward of LN from its inputs (d_out, g, v^, std): dv = (dv^ - mean dv^ - v^ mean(dv^ v^)) / std.
template <typename T>
std::vector<Wide<T>> layer_norm_gradient(const std::vector<T>& d_out, const std::vector<T>& g,
                                         const std::vector<T>& hat, T std) {
  using X = Wide<T>;
  const size_t n = d_out.size();
  X mean = 0, mean_hat = 0;
  for (size_t j = 0; j < n; ++j) {
    mean += X(d_out[j]) * g[j];
    mean_hat += X(d_out[j]) * g[j] * hat[j];
  }
  mean /= X(n);
  mean_hat /= X(n);
  std::vector<X> d;
  for (size_t j = 0; j < n; ++j) d.push_back((X(d_out[j]) * g[j] - mean - X(hat[j]) * mean_hat) / std);
  return d;
}

TYPED_TEST(LayerNorm, BackwardFollowsTheEquations) {
  using T = TypeParam;
  using X = Wide<T>;
  for (Index n : lengths<T>())
    for (bool add : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << (add ? ", added" : ""));
      const std::vector<T> d_out = random_values<T>(n, unsigned(n)), g = random_values<T>(n, unsigned(n) + 1),
                           hat = random_values<T>(n, unsigned(n) + 2, T(-2), T(2)),
                           d0 = random_values<T>(n, unsigned(n) + 3);
      const T std = random_values<T>(1, unsigned(n) + 4, T(0.5), T(2))[0];
      std::vector<T> d = d0;
      if (add)
        detail::layer_norm_backward<true>(n, d_out.data(), g.data(), hat.data(), std, d.data());
      else
        detail::layer_norm_backward<false>(n, d_out.data(), g.data(), hat.data(), std, d.data());
      std::vector<X> want = layer_norm_gradient(d_out, g, hat, std);
      for (Index j = 0; j < n && add; ++j) want[j] += d0[j];
      EXPECT_TRUE(close("dv", n, d, want));
    }
}

// dn = dm o (1 - tanh(n)^2), and dc += LN's backward of dn.
TYPED_TEST(LayerNorm, CellBackwardFollowsTheEquations) {
  using T = TypeParam;
  using X = Wide<T>;
  for (Index n : lengths<T>()) {
    SCOPED_TRACE(::testing::Message() << "H " << n);
    const std::vector<T> dm = random_values<T>(n, unsigned(n)), o = random_values<T>(n, unsigned(n) + 1, T(0), T(1)),
                         tanh_n = random_values<T>(n, unsigned(n) + 2), g = random_values<T>(n, unsigned(n) + 3),
                         hat = random_values<T>(n, unsigned(n) + 4, T(-2), T(2)),
                         dc0 = random_values<T>(n, unsigned(n) + 5);
    const T std = random_values<T>(1, unsigned(n) + 6, T(0.5), T(2))[0];
    std::vector<T> dn(static_cast<size_t>(n), quiet_nan<T>()), dc = dc0;
    detail::cell_layer_norm_backward(n, dm.data(), o.data(), tanh_n.data(), g.data(), hat.data(), std, dn.data(),
                                     dc.data());
    std::vector<X> want_dn;
    for (Index j = 0; j < n; ++j) want_dn.push_back(X(dm[j]) * o[j] * (1 - X(tanh_n[j]) * tanh_n[j]));
    std::vector<X> want_dc = layer_norm_gradient(dn, g, hat, std);  // from dn as the kernel wrote it
    for (Index j = 0; j < n; ++j) want_dc[j] += dc0[j];
    EXPECT_TRUE(close("dn", n, dn, want_dn));
    EXPECT_TRUE(close("dc", n, dc, want_dc));
  }
}

TYPED_TEST(LayerNorm, RowSums) {
  using T = TypeParam;
  using X = Wide<T>;
  for (Index n : lengths<T>()) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const std::vector<T> a = random_values<T>(n, unsigned(n)), b = random_values<T>(n, unsigned(n) + 1),
                         s0 = random_values<T>(n, unsigned(n) + 2);
    X sum = 0, dot = 0;
    for (Index j = 0; j < n; ++j) {
      sum += a[j];
      dot += X(a[j]) * b[j];
    }
    EXPECT_TRUE(close("sum a", n, std::vector<T>{detail::row_sum<T>(n, a.data(), nullptr)}, {sum}));
    EXPECT_TRUE(close("sum a b", n, std::vector<T>{detail::row_sum<T>(n, a.data(), b.data())}, {dot}));
    std::vector<T> s = s0, s_plain = s0;  // sum += a b, and sum += a
    detail::accumulate_row<T>(n, a.data(), b.data(), s.data());
    detail::accumulate_row<T>(n, a.data(), nullptr, s_plain.data());
    std::vector<X> want, want_plain;
    for (Index j = 0; j < n; ++j) {
      want.push_back(X(s0[j]) + X(a[j]) * b[j]);
      want_plain.push_back(X(s0[j]) + a[j]);
    }
    EXPECT_TRUE(close("sum + a b", n, s, want));
    EXPECT_TRUE(close("sum + a", n, s_plain, want_plain));
  }
}

// The same row at shifts 0 to W of its buffers: the same bits (the tail is a zero-padded packet, the
// sums' order fixed by the length alone).
TYPED_TEST(LayerNorm, BitsDoNotDependOnWhereTheRowLies) {
  using T = TypeParam;
  for (Index n : lengths<T>()) {
    SCOPED_TRACE(::testing::Message() << "n " << n);
    const std::vector<T> v = random_values<T>(n, unsigned(n), T(-2), T(2)), g = random_values<T>(n, unsigned(n) + 1),
                         b = random_values<T>(n, unsigned(n) + 2);
    std::vector<T> first_out, first_d;
    for (Index shift = 0; shift <= Simd<T>::kWidth; ++shift) {
      Shifted<T> sv(v, shift), sg(g, shift), sb(b, shift), hat(v, shift), out(v, shift), d(v, shift);
      const T std = detail::layer_norm<false>(n, sv.data(), sg.data(), sb.data(), hat.data(), out.data());
      detail::layer_norm_backward<false>(n, sv.data(), sg.data(), hat.data(), std, d.data());
      if (shift == 0) {
        first_out = out.values();
        first_d = d.values();
        continue;
      }
      EXPECT_TRUE(bitwise_equal(out.values(), first_out)) << "shift " << shift;
      EXPECT_TRUE(bitwise_equal(d.values(), first_d)) << "shift " << shift;
    }
  }
}

}  // namespace
}  // namespace lstm_fast::test
