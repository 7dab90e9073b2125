// GoogleTest tests of what Model and Streams are as handles (issue 29): a Model's copies share its
// weights and compute its numbers, a Streams' copies are deep (each goes on on its own), a copy made
// mid-stream continues exactly as the original does, and a moved-from handle is empty and says so.
// Built into test_model with api/test_model.cpp (the public API only).
#include <gtest/gtest.h>
#include <lstm_fast/lstm_fast.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model_files.hpp"

namespace {

using lstm_fast::Index;
using lstm_fast::Model;
using lstm_fast::Precision;
using lstm_fast::State;
using lstm_fast::Streams;
using lstm_fast_test::ModelSpec;
using lstm_fast_test::random_vector;
using lstm_fast_test::temp_path;
using lstm_fast_test::throws_error;
using lstm_fast_test::write_and_load;

constexpr Precision kPrecisions[] = {Precision::fp32, Precision::bf16, Precision::int8};

// A model file of two layers with a projection and peepholes, written once per test.
std::string model_file(const char* name) {
  const std::string path = temp_path(name);
  write_and_load(ModelSpec{4, 6, 2, 3, true, false, true, "float32"}, 17).save(path);
  return path;
}

// Steps `steps` frames of batch B (x [steps, B, I]) through m from st; returns y [steps, B, O].
std::vector<float> run_steps(const Model& m, State& st, const std::vector<float>& x, Index steps) {
  const Index B = st.batch(), I = m.input_size(), O = m.output_size();
  std::vector<float> y(static_cast<size_t>(steps * B * O));
  for (Index t = 0; t < steps; ++t) m.step(x.data() + t * B * I, y.data() + t * B * O, st);
  return y;
}

TEST(Handles, ModelCopiesGiveTheOriginalsNumbersAndOutliveIt) {
  const std::string path = model_file("handles_copy.safetensors");
  for (const Precision p : kPrecisions) {
    SCOPED_TRACE(lstm_fast::precision_name(p));
    auto original = std::make_unique<Model>(Model::load(path, p));
    const Index B = 2, T = 5;
    const std::vector<float> x = random_vector(static_cast<size_t>(T * B * original->input_size()), 3);
    State st = original->initial_state(B);
    const std::vector<float> expected = run_steps(*original, st, x, T);

    const Model copy = *original;
    Model assigned;
    assigned = *original;
    original.reset();  // the copies hold the weights now
    const Model* copies[] = {&copy, &assigned};
    for (const Model* m : copies) {
      EXPECT_EQ(m->precision(), p);
      EXPECT_EQ(m->config_json(), copy.config_json());
      EXPECT_EQ(m->output_size(), 3);
      State s = m->initial_state(B);
      EXPECT_EQ(run_steps(*m, s, x, T), expected);
      EXPECT_EQ(s.h, st.h);
      EXPECT_EQ(s.c, st.c);
    }
    // forward on the copy: the same numbers as stepping (to rounding; bitwise is not promised).
    State whole = copy.initial_state(B);
    std::vector<float> y(expected.size());
    copy.forward(x.data(), T, B, y.data(), whole);
    EXPECT_LT(lstm_fast_test::max_abs_diff(y, expected), 1e-5);
  }
  std::remove(path.c_str());
}

// A State is a value: a copy of it made mid-stream, run on a copy of the model, continues exactly as
// the original state on the original model.
TEST(Handles, ACopyMadeMidStreamContinuesIdentically) {
  const std::string path = model_file("handles_midstream.safetensors");
  for (const Precision p : kPrecisions) {
    SCOPED_TRACE(lstm_fast::precision_name(p));
    const Model m = Model::load(path, p);
    const Index B = 3, T = 6;
    const std::vector<float> x = random_vector(static_cast<size_t>(2 * T * B * m.input_size()), 5);
    State st = m.initial_state(B);
    run_steps(m, st, x, T);
    const Model m_copy = m;
    State st_copy = st;
    const std::vector<float> rest(x.begin() + T * B * m.input_size(), x.end());
    const std::vector<float> y = run_steps(m, st, rest, T);
    EXPECT_EQ(run_steps(m_copy, st_copy, rest, T), y);
    EXPECT_EQ(st_copy.h, st.h);
    EXPECT_EQ(st_copy.c, st.c);
  }
  std::remove(path.c_str());
}

TEST(Handles, AMovedFromModelIsEmptyAndSaysSo) {
  const std::string path = model_file("handles_moved.safetensors");
  Model a = Model::load(path, Precision::int8);
  const std::string json = a.config_json();
  const std::vector<float> x = random_vector(static_cast<size_t>(a.input_size()), 7);
  std::vector<float> expected(static_cast<size_t>(a.output_size())), got(expected.size());
  State st = a.initial_state(1);
  a.step(x.data(), expected.data(), st);

  Model b = std::move(a);
  EXPECT_EQ(a.input_size(), 0);  // NOLINT(bugprone-use-after-move): what a moved-from Model is
  EXPECT_EQ(a.hidden_size(), 0);
  EXPECT_TRUE(a.config_json().empty());
  EXPECT_EQ(a.precision(), Precision::fp32);
  EXPECT_TRUE(throws_error([&] { a.initial_state(1); }, "initial_state: the model is empty"));
  EXPECT_TRUE(throws_error([&] { a.step(x.data(), got.data(), st); }, "step: the model is empty"));
  EXPECT_TRUE(throws_error([&] { a.forward(x.data(), 1, 1, got.data(), st); }, "forward: the model is empty"));
  EXPECT_TRUE(throws_error([&] { a.save(path); }, "save: the model is empty"));
  EXPECT_TRUE(throws_error([&] { Streams s(a); }, "Streams: the model is empty"));

  EXPECT_EQ(b.config_json(), json);
  State sb = b.initial_state(1);
  b.step(x.data(), got.data(), sb);
  EXPECT_EQ(got, expected);
  a = std::move(b);  // a moved-from Model takes another's handle
  State sa = a.initial_state(1);
  a.step(x.data(), got.data(), sa);
  EXPECT_EQ(got, expected);
  std::remove(path.c_str());
}

// n streams stepped for T frames from x [T, n, I] in their order (the second frame on finds them
// resident in the batch); returns y [T, n, O].
std::vector<float> step_streams(Streams& s, const std::vector<Index>& ids, const float* x, Index T) {
  const Index n = static_cast<Index>(ids.size()), I = s.model().input_size(), O = s.model().output_size();
  std::vector<float> y(static_cast<size_t>(T * n * O));
  for (Index t = 0; t < T; ++t) s.step(ids.data(), n, x + t * n * I, y.data() + t * n * O);
  return y;
}

// Every stream's (h, c), one after another.
std::vector<float> states(const Streams& s) {
  const Model& m = s.model();
  const Index L = m.num_layers(), R = m.config().output_size(), H = m.hidden_size();
  std::vector<float> out;
  std::vector<float> h(static_cast<size_t>(L * R)), c(static_cast<size_t>(L * H));
  for (Index id : s.ids()) {
    s.state(id, h.data(), c.data());
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), c.begin(), c.end());
  }
  return out;
}

// A copy of a Streams made mid-stream (the states resident in the batch) has the same ids and states,
// continues exactly as the original, and is independent of it: stepping or closing one leaves the
// other as it was. Copy assignment replaces what the target held.
TEST(Handles, StreamsCopiesAreDeepAndContinueIdentically) {
  const std::string path = model_file("handles_streams.safetensors");
  for (const Precision p : kPrecisions) {
    SCOPED_TRACE(lstm_fast::precision_name(p));
    const Model m = Model::load(path, p);
    const Index n = 4, T = 3, I = m.input_size();
    const std::vector<float> x = random_vector(static_cast<size_t>(3 * T * n * I), 9);
    Streams a(m);
    std::vector<Index> ids;
    for (Index k = 0; k < n; ++k) ids.push_back(a.open());
    step_streams(a, ids, x.data(), T);

    Streams b = a;
    Streams c(m);
    c.open();
    c = a;
    EXPECT_EQ(b.ids(), a.ids());
    EXPECT_EQ(c.ids(), a.ids());
    EXPECT_EQ(states(b), states(a));
    const float* next = x.data() + T * n * I;
    const std::vector<float> y = step_streams(a, ids, next, T);
    EXPECT_EQ(step_streams(b, ids, next, T), y);
    EXPECT_EQ(step_streams(c, ids, next, T), y);
    EXPECT_EQ(states(b), states(a));

    // Independent: b steps on and closes a stream; a is where it was, and c still follows a.
    const std::vector<float> a_states = states(a);
    step_streams(b, ids, x.data() + 2 * T * n * I, T);
    b.close(ids[1]);
    EXPECT_EQ(b.size(), n - 1);
    EXPECT_EQ(a.size(), n);
    EXPECT_EQ(states(a), a_states);
    EXPECT_EQ(step_streams(a, ids, x.data() + 2 * T * n * I, T), step_streams(c, ids, x.data() + 2 * T * n * I, T));
  }
  std::remove(path.c_str());
}

// A Streams keeps its own copy of the model: the Model it was made from may go away.
TEST(Handles, StreamsOutliveTheModelTheyWereMadeFrom) {
  const std::string path = model_file("handles_outlive.safetensors");
  const Model alone = Model::load(path, Precision::bf16);
  auto model = std::make_unique<Model>(Model::load(path, Precision::bf16));
  Streams s(*model);
  model.reset();
  const Index id = s.open();
  const std::vector<float> x = random_vector(static_cast<size_t>(4 * alone.input_size()), 11);
  const std::vector<float> y = step_streams(s, {id}, x.data(), 4);
  State st = alone.initial_state(1);
  EXPECT_EQ(y, run_steps(alone, st, x, 4));
  EXPECT_EQ(s.model().config_json(), alone.config_json());
  std::remove(path.c_str());
}

TEST(Handles, AMovedFromStreamsIsEmptyAndSaysSo) {
  const std::string path = model_file("handles_streams_moved.safetensors");
  const Model m = Model::load(path);
  const Index I = m.input_size(), O = m.output_size();
  const std::vector<float> x = random_vector(static_cast<size_t>(4 * I), 13);
  std::vector<float> y(static_cast<size_t>(2 * O));
  Streams a(m);
  const std::vector<Index> ids = {a.open(), a.open()};
  step_streams(a, ids, x.data(), 1);

  Streams b = std::move(a);
  EXPECT_EQ(a.size(), 0);  // NOLINT(bugprone-use-after-move): what a moved-from Streams is
  EXPECT_TRUE(a.ids().empty());
  EXPECT_EQ(a.model().input_size(), 0);
  std::vector<float> h(static_cast<size_t>(m.num_layers() * O)),
      c(static_cast<size_t>(m.num_layers() * m.hidden_size()));
  EXPECT_TRUE(throws_error([&] { a.open(); }, "Streams.open: this Streams was moved from"));
  EXPECT_TRUE(throws_error([&] { a.state(ids[0], h.data(), c.data()); }, "Streams.state: this Streams was moved"));
  EXPECT_TRUE(throws_error([&] { a.close(ids[0]); }, "Streams.close: this Streams was moved from"));
  EXPECT_TRUE(throws_error([&] { a.step(ids.data(), 2, x.data(), y.data()); }, "Streams.step: this Streams was"));

  // b holds the streams, their states and the model; a takes them back by move assignment.
  EXPECT_EQ(b.ids(), ids);
  Streams twin = b;
  const std::vector<float> y_b = step_streams(b, ids, x.data() + 2 * I, 1);
  a = std::move(b);
  EXPECT_EQ(a.ids(), ids);
  EXPECT_EQ(step_streams(twin, ids, x.data() + 2 * I, 1), y_b);
  EXPECT_EQ(states(a), states(twin));
  a = Streams(m);  // assigned a fresh one: no streams
  EXPECT_EQ(a.size(), 0);
  EXPECT_TRUE(throws_error([&] { a.close(ids[0]); }, "is not an open stream"));
  std::remove(path.c_str());
}

}  // namespace
