// GoogleTest tests of the library's internals: the raw-array passes (lstm_fast::forward, backward and
// their Trace) and the recycled-block workspace allocator. They link the same
// static library as the public tests (the installed liblstm_fast.a holds these symbols too) and take
// the headers from the source tree.
#include <gtest/gtest.h>
#include <lstm_fast/lstm_fast.hpp>

#include <random>
#include <vector>

#include "stack/network.hpp"      // cpp/src: the raw-array stack
#include "runtime/workspace.hpp"  // cpp/src: the recycled-block allocator
#include "model_files.hpp"

namespace lstm_fast_test {
namespace {

// backward with a trace no training forward filled is refused, with the reason.
TEST(Backward, RefusesATraceNoTrainingForwardFilled) {
  std::vector<float> x(3 * 2 * 3), y(3 * 2 * 5);
  const std::vector<lstm_fast::CellWeights<float>> weights(1);  // never read: the trace is refused first
  lstm_fast::Trace<float> empty_trace;
  lstm_fast::BackwardOutputs<float> grads;
  grads.dx = x.data();
  grads.grads.resize(1);
  EXPECT_TRUE(throws_error([&] { lstm_fast::backward<float>(weights, empty_trace, {y.data()}, grads); },
                           "backward needs the trace of a training forward"));
}

// Training twice: the second call runs on blocks recycled from the first (uninitialised, dirty) and
// must give bitwise the same outputs and gradients; the cache holds the blocks between calls and
// workspace_release() empties it.
TEST(Workspace, RecycledBlocksGiveTheSameOutputsAndGradients) {
  lstm_fast::Config c;
  c.input_size = 8;
  c.hidden_size = 64;  // [N, 4H] floats with N = 400: 400 KiB blocks, above the cached minimum
  const Index T = 50, B = 8, N = T * B, H = c.hidden_size, I = c.input_size, G = 4 * H;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  auto random = [&](Index n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& e : v) e = normal(gen);
    return v;
  };
  auto w_ih = random(G * I), w_hh = random(G * H), b_ih = random(G), b_hh = random(G), x = random(N * I),
       dy = random(N * H);
  std::vector<lstm_fast::CellWeights<float>> w(1);
  w[0].weight_ih = w_ih.data();
  w[0].weight_hh = w_hh.data();
  w[0].bias_ih = b_ih.data();
  w[0].bias_hh = b_hh.data();
  const lstm_fast::Schedule s = lstm_fast::Schedule::dense(T, B);
  std::vector<float> results[2];
  lstm_fast::workspace_release();
  for (int run = 0; run < 2; ++run) {
    std::vector<float> y(N * H), h_n(B * H), c_n(B * H), dx(N * I), dh0(B * H), dc0(B * H);
    std::vector<float> g_ih(G * I), g_hh(G * H), g_bi(G), g_bh(G);
    lstm_fast::BackwardOutputs<float> grads{dx.data(), dh0.data(), dc0.data(), {}};
    grads.grads.resize(1);
    grads.grads[0].weight_ih = g_ih.data();
    grads.grads[0].weight_hh = g_hh.data();
    grads.grads[0].bias_ih = g_bi.data();
    grads.grads[0].bias_hh = g_bh.data();
    {
      lstm_fast::Trace<float> trace;
      lstm_fast::forward<float>(c, w, s, {x.data()}, {y.data(), h_n.data(), c_n.data(), &trace});
      lstm_fast::backward<float>(w, trace, {dy.data()}, grads);
    }
    for (const auto* v : {&y, &dx, &dh0, &dc0, &g_ih, &g_hh, &g_bi})
      results[run].insert(results[run].end(), v->begin(), v->end());
    EXPECT_GE(lstm_fast::workspace_cached_bytes(), size_t(N * G) * sizeof(float));
  }
  EXPECT_TRUE(results[0] == results[1]) << "the second training call differs from the first";
  lstm_fast::workspace_release();
  EXPECT_EQ(lstm_fast::workspace_cached_bytes(), 0u);
}

}  // namespace
}  // namespace lstm_fast_test
