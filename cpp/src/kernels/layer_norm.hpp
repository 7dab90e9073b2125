// Layer normalisation of one row for the passes (forward.cpp, backward.cpp; Ba, Kiros & Hinton 2016):
//   LN(v; g, b) = g * v^ + b,   v^ = (v - mean v) / std,   std = sqrt(var v + eps)   over the row's n,
// and its backward   dv = (dv^ - mean dv^ - v^ mean(dv^ v^)) / std,   dv^ = g * dLN.
// Packets as in gates.hpp: the last n % W numbers go as one zero-padded packet and the sums run in a
// fixed order, so that a row's numbers do not depend on where it lies (nor on the split that runs it).
#pragma once

#include <algorithm>
#include <cmath>

#include "kernels/gates.hpp"

namespace lstm_fast::detail {
namespace {

constexpr double kLayerNormEps = 1e-5;

// Up to four rows read and three written, at the same unit.
template <typename T>
struct RowStreams {
  const T* in[4];
  T* out[3];
};

// op(rows, j) for the packets of n units; the last n % W as op(padded copies, 0) (outputs copied in
// first, so that an op may accumulate into them).
template <typename T, typename Op>
inline void over_row(Index n, const RowStreams<T>& rows, const Op& op) {
  constexpr Index W = Simd<T>::kWidth;
  const Index body = n - n % W;
  for (Index j = 0; j < body; j += W) op(rows, j);
  if (body == n) return;
  T tin[4][W] = {}, tout[3][W] = {};
  RowStreams<T> tail{};
  for (int k = 0; k < 4; ++k)
    if (rows.in[k]) tail.in[k] = std::copy_n(rows.in[k] + body, n - body, tin[k]) - (n - body);
  for (int k = 0; k < 3; ++k)
    if (rows.out[k]) tail.out[k] = std::copy_n(rows.out[k] + body, n - body, tout[k]) - (n - body);
  op(tail, 0);
  for (int k = 0; k < 3; ++k)
    if (rows.out[k]) std::copy_n(tout[k], n - body, rows.out[k] + body);
}

// sum_j a_j (b_j or 1), in packets (padding zeros add nothing), then across the lanes.
template <typename T>
inline T row_sum(Index n, const T* a, const T* b) {
  using S = Simd<T>;
  auto acc = S::set1(T(0));
  over_row<T>(n, {{a, b, nullptr, nullptr}, {}}, [&acc](const RowStreams<T>& r, Index j) {
    const auto x = S::load(r.in[0] + j);
    acc = r.in[1] ? S::madd(x, S::load(r.in[1] + j), acc) : S::add(acc, x);
  });
  return Eigen::internal::predux(acc);
}

// v^ = (v - mean) / std into `hat` (when not null), and g v^ + b into `out` (added to it when kAdd; out
// may be v itself). Returns std.
template <bool kAdd, typename T>
inline T layer_norm(Index n, const T* v, const T* g, const T* b, T* hat, T* out) {
  using S = Simd<T>;
  const T mean = row_sum<T>(n, v, nullptr) / T(n);
  // A second pass for the variance, over v - mean (no cancellation); the last n % W one by one.
  const Index body = n - n % S::kWidth;
  auto squares = S::set1(T(0));
  for (Index j = 0; j < body; j += S::kWidth) {
    const auto d = S::sub(S::load(v + j), S::set1(mean));
    squares = S::madd(d, d, squares);
  }
  T var = Eigen::internal::predux(squares);
  for (Index j = body; j < n; ++j) var += (v[j] - mean) * (v[j] - mean);
  const T std = std::sqrt(var / T(n) + T(kLayerNormEps)), inverse = T(1) / std;
  over_row<T>(n, {{v, g, b, nullptr}, {out, hat, nullptr}}, [&](const RowStreams<T>& r, Index j) {
    const auto h = S::mul(S::sub(S::load(r.in[0] + j), S::set1(mean)), S::set1(inverse));
    auto y = S::madd(S::load(r.in[1] + j), h, S::load(r.in[2] + j));
    if constexpr (kAdd) y = S::add(S::load(r.out[0] + j), y);
    S::store(r.out[0] + j, y);
    if (hat) S::store(r.out[1] + j, h);
  });
  return std;
}

// The cell's output with layer norm: n = LN(c) over H, m = o * tanh(n); v^ and tanh(n) kept when
// `hat` and `tanh_n` are given (training). Returns std.
template <typename T>
inline T cell_layer_norm(Index H, const T* c, const T* o, const T* g, const T* b, T* hat, T* tanh_n, T* m) {
  using S = Simd<T>;
  T* n = m;  // LN(c) first into m, then m = o * tanh(m)
  const T std = layer_norm<false>(H, c, g, b, hat, n);
  over_row<T>(H, {{o, nullptr, nullptr, nullptr}, {m, tanh_n, nullptr}}, [&](const RowStreams<T>& r, Index j) {
    const auto t = S::tanh(S::load(r.out[0] + j));
    if (tanh_n) S::store(r.out[1] + j, t);
    S::store(r.out[0] + j, S::mul(S::load(r.in[0] + j), t));
  });
  return std;
}

// The gradient w.r.t. LN's input from d_out (the gradient w.r.t. its output): written to d_in, or
// added to it when kAdd.
template <bool kAdd, typename T>
inline void layer_norm_backward(Index n, const T* d_out, const T* g, const T* hat, T std, T* d_in) {
  using S = Simd<T>;
  auto sum = S::set1(T(0)), sum_hat = S::set1(T(0));
  over_row<T>(n, {{d_out, g, hat, nullptr}, {}}, [&](const RowStreams<T>& r, Index j) {
    const auto d_hat = S::mul(S::load(r.in[0] + j), S::load(r.in[1] + j));
    sum = S::add(sum, d_hat);
    sum_hat = S::madd(d_hat, S::load(r.in[2] + j), sum_hat);
  });
  const T mean = Eigen::internal::predux(sum) / T(n), mean_hat = Eigen::internal::predux(sum_hat) / T(n);
  const T inverse = T(1) / std;
  over_row<T>(n, {{d_out, g, hat, nullptr}, {d_in, nullptr, nullptr}}, [&](const RowStreams<T>& r, Index j) {
    const auto d_hat = S::mul(S::load(r.in[0] + j), S::load(r.in[1] + j));
    const auto centred = S::sub(S::sub(d_hat, S::set1(mean)), S::mul(S::load(r.in[2] + j), S::set1(mean_hat)));
    auto d = S::mul(centred, S::set1(inverse));
    if constexpr (kAdd) d = S::add(S::load(r.out[0] + j), d);
    S::store(r.out[0] + j, d);
  });
}

// sum += a * b over n numbers (b null: sum += a), in packets: each number's sum in the same operations
// wherever the rows lie (the gains' gradients, a row at a time).
template <typename T>
inline void accumulate_row(Index n, const T* a, const T* b, T* sum) {
  using S = Simd<T>;
  over_row<T>(n, {{a, b, nullptr, nullptr}, {sum, nullptr, nullptr}}, [](const RowStreams<T>& r, Index j) {
    const auto x = S::load(r.in[0] + j), s = S::load(r.out[0] + j);
    S::store(r.out[0] + j, r.in[1] ? S::madd(x, S::load(r.in[1] + j), s) : S::add(s, x));
  });
}

// The cell's part of the backward with layer norm, before the gate kernel: from dm (the gradient w.r.t.
// m = o * tanh(n)), dn = dm o (1 - tanh(n)^2) into `dn` (kept for the gains' gradients), and the
// gradient through LN(c) added to dc.
template <typename T>
inline void cell_layer_norm_backward(Index H, const T* dm, const T* o, const T* tanh_n, const T* g, const T* hat, T std,
                                     T* dn, T* dc) {
  using S = Simd<T>;
  over_row<T>(H, {{dm, o, tanh_n, nullptr}, {dn, nullptr, nullptr}}, [](const RowStreams<T>& r, Index j) {
    const auto t = S::load(r.in[2] + j);
    const auto slope = S::sub(S::set1(T(1)), S::mul(t, t));
    S::store(r.out[0] + j, S::mul(S::mul(S::load(r.in[0] + j), S::load(r.in[1] + j)), slope));
  });
  layer_norm_backward<true>(H, dn, g, hat, std, dc);
}

}  // namespace
}  // namespace lstm_fast::detail
