// GoogleTest tests of the public C++ API (lstm_fast/lstm_fast.hpp: Model, State, Error, Config), built
// against the installed package (tests/test_cpp.py) or in-tree (cmake -DLSTM_FAST_BUILD_TESTS=ON;
// ctest). What uses the library's internals is in plan/, runtime/ and stack/; model_tool.cpp holds the command-line
// modes tests/test_cpp.py drives.
//
// The tests write their own model files (model_files.hpp), so they need no Python: step against
// forward, no allocation in step, float64 files, bidirectional forward, and every kind of bad file
// refused with an Error naming the problem.
#include <gtest/gtest.h>
#include <lstm_fast/lstm_fast.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "model_files.hpp"

// ---- Counting every heap allocation (to check that step allocates nothing) --------------------------
// operator new everywhere; on glibc also malloc and friends, which Eigen calls directly.
// Not under AddressSanitizer or valgrind (tools/sanitize.sh, tools/valgrind.sh), which must own
// malloc themselves to see every block: there the no-allocation check is skipped.
#if defined(LSTM_FAST_TEST_NO_ALLOC_HOOKS)
// set by CMake (-DLSTM_FAST_TEST_ALLOC_HOOKS=OFF)
#elif defined(__SANITIZE_ADDRESS__)
#define LSTM_FAST_TEST_NO_ALLOC_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LSTM_FAST_TEST_NO_ALLOC_HOOKS 1
#endif
#endif
static std::atomic<long> g_allocations{0};
#if !defined(LSTM_FAST_TEST_NO_ALLOC_HOOKS)
constexpr bool kCountsAllocations = true;

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

#if defined(__GLIBC__)
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
void* malloc(std::size_t n) {
  ++g_allocations;
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t s) {
  ++g_allocations;
  return __libc_calloc(n, s);
}
void* realloc(void* p, std::size_t n) {
  ++g_allocations;
  return __libc_realloc(p, n);
}
void* memalign(std::size_t a, std::size_t n) {
  ++g_allocations;
  return __libc_memalign(a, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  ++g_allocations;
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  ++g_allocations;
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;  // ENOMEM
}
void free(void* p) { __libc_free(p); }
}
#endif
#else
constexpr bool kCountsAllocations = false;
#endif

namespace lstm_fast_test {
namespace {

// Stepping through a sequence equals one forward over it, and step allocates nothing.
TEST(Model, StepMatchesForwardWithoutAllocating) {
  const ModelSpec specs[] = {
      {3, 5, 1, 0, true, false, false, "float32"},
      {4, 6, 3, 2, true, false, true, "float32"},   // layers, projection, peephole
      {2, 7, 2, 0, false, false, true, "float64"},  // no bias
  };
  unsigned seed = 1;
  for (const ModelSpec& spec : specs) {
    SCOPED_TRACE(spec.config_json());
    const lstm_fast::Model m = write_and_load(spec, seed++, spec.dtype == "float64" ? "F64" : "F32");
    const Index T = 9, B = 3, I = m.input_size(), O = m.output_size();
    EXPECT_EQ(I, spec.input_size);
    EXPECT_EQ(O, spec.proj_size > 0 ? spec.proj_size : spec.hidden_size);
    EXPECT_TRUE(m.hidden_size() == spec.hidden_size && m.num_layers() == spec.num_layers);
    const std::vector<float> x = random_vector(static_cast<size_t>(T * B * I), seed++);

    lstm_fast::State whole = m.initial_state(B);
    std::vector<float> y_whole(static_cast<size_t>(T * B * O));
    m.forward(x.data(), T, B, y_whole.data(), whole);

    const long before_state = g_allocations.load();
    lstm_fast::State st = m.initial_state(B);
    EXPECT_TRUE(!kCountsAllocations || g_allocations.load() > before_state) << "the counter works";
    std::vector<float> y_steps(static_cast<size_t>(T * B * O));
    const long before = g_allocations.load();
    for (Index t = 0; t < T; ++t) m.step(x.data() + t * B * I, y_steps.data() + t * B * O, st);
    EXPECT_EQ(g_allocations.load() - before, 0) << "step allocated";
    EXPECT_LT(max_abs_diff(y_steps, y_whole), 1e-5);
    EXPECT_LT(max_abs_diff(st.h, whole.h), 1e-5);
    EXPECT_LT(max_abs_diff(st.c, whole.c), 1e-5);

    // A batch of B streams is B independent streams: row 1 alone gives the same outputs.
    lstm_fast::State one = m.initial_state(1);
    std::vector<float> y1(static_cast<size_t>(O));
    double diff = 0.0;
    for (Index t = 0; t < T; ++t) {
      m.step(x.data() + (t * B + 1) * I, y1.data(), one);
      for (Index j = 0; j < O; ++j) diff = std::max(diff, std::abs(double(y1[j]) - y_whole[(t * B + 1) * O + j]));
    }
    EXPECT_LT(diff, 1e-5);

    st.reset();
    for (float v : st.h) EXPECT_EQ(v, 0.0f);
  }
}

// A copy is a model of its own: it outlives the model it was copied from, in every precision (a frozen
// model's packed cells point into its float parameters, the biases and peepholes). The freed blocks
// are filled with other numbers before the copy runs, so that reading them would show.
TEST(Model, ACopyOutlivesItsOriginal) {
  const ModelSpec spec{4, 8, 1, 0, true, false, true, "float32"};
  const std::string path = temp_path("copied.safetensors");
  write_and_load(spec, 5).save(path);
  for (const lstm_fast::Precision p :
       {lstm_fast::Precision::fp32, lstm_fast::Precision::bf16, lstm_fast::Precision::int8}) {
    const lstm_fast::Model fresh = lstm_fast::Model::load(path, p);
    const Index I = fresh.input_size(), O = fresh.output_size();
    const std::vector<float> x = random_vector(static_cast<size_t>(I), 9);
    std::vector<float> expected(static_cast<size_t>(O)), got(static_cast<size_t>(O));
    lstm_fast::State st = fresh.initial_state(1);
    fresh.step(x.data(), expected.data(), st);

    auto original = std::make_unique<lstm_fast::Model>(lstm_fast::Model::load(path, p));
    const lstm_fast::Model copy = *original;
    original.reset();
    std::vector<std::vector<float>> others;
    for (int k = 0; k < 256; ++k) others.emplace_back(static_cast<size_t>(8 + k % 64) * 4, 1e30f);
    lstm_fast::State st_copy = copy.initial_state(1);
    copy.step(x.data(), got.data(), st_copy);
    EXPECT_EQ(got, expected) << lstm_fast::precision_name(p);
  }
}

// Streams: each stream stepped in a changing company equals stepping it alone (bitwise in int8), bad
// ids throw before any state changes, and a step of no more streams than before allocates nothing.
TEST(Streams, EachStreamEqualsStepAloneAndSteadyStepsDoNotAllocate) {
  const ModelSpec spec{4, 64, 2, 0, true, false, true, "float32"};  // 64 streams at 2 threads: a team
  const std::string path = temp_path("streams.safetensors");
  write_and_load(spec, 3).save(path);
  const lstm_fast::Model m = lstm_fast::Model::load(path, lstm_fast::Precision::int8);
  const Index I = m.input_size(), O = m.output_size(), n = 64, T = 7;
  const int saved = lstm_fast::get_num_threads();
  for (int threads : {1, 2}) {
    SCOPED_TRACE(threads);
    lstm_fast::set_num_threads(threads);
    lstm_fast::Streams streams(m);
    std::vector<Index> ids;
    std::vector<lstm_fast::State> alone;
    for (Index k = 0; k < n; ++k) {
      ids.push_back(streams.open());
      alone.push_back(m.initial_state(1));
    }
    EXPECT_EQ(streams.size(), n);
    const std::vector<float> x = random_vector(static_cast<size_t>(T * n * I), 11);
    std::vector<float> y(static_cast<size_t>(n * O)), y1(static_cast<size_t>(O));
    long allocated = 0;
    for (Index t = 0; t < T; ++t) {
      // Steps 2s and 2s + 1 list streams s % 3 .. n - 1, in reverse order (the second finds them resident).
      std::vector<Index> chosen(ids.rbegin(), ids.rend() - t / 2 % 3);
      const long before = g_allocations.load();
      streams.step(chosen.data(), static_cast<Index>(chosen.size()), x.data() + t * n * I, y.data());
      if (t > 0) allocated += g_allocations.load() - before;
      for (size_t i = 0; i < chosen.size(); ++i) {
        const size_t k = static_cast<size_t>(n - 1) - i;
        m.step(x.data() + (t * n + static_cast<Index>(i)) * I, y1.data(), alone[k]);
        for (Index j = 0; j < O; ++j) ASSERT_EQ(y[i * static_cast<size_t>(O) + static_cast<size_t>(j)], y1[j]);
      }
    }
    EXPECT_EQ(allocated, 0) << "steady steps allocated";
    std::vector<float> h(static_cast<size_t>(m.num_layers() * O)),
        c(static_cast<size_t>(m.num_layers() * m.hidden_size()));
    streams.state(ids[2], h.data(), c.data());
    for (size_t j = 0; j < h.size(); ++j) EXPECT_EQ(h[j], alone[2].h[j]);
    // A repeated or closed id throws, and no stream moves.
    const Index twice[2] = {ids[0], ids[0]};
    EXPECT_THROW(streams.step(twice, 2, x.data(), y.data()), lstm_fast::Error);
    streams.close(ids[1]);
    const Index closed[2] = {ids[0], ids[1]};
    EXPECT_THROW(streams.step(closed, 2, x.data(), y.data()), lstm_fast::Error);
    std::vector<float> h_after(h.size()), c_after(c.size());
    streams.state(ids[2], h_after.data(), c_after.data());
    EXPECT_EQ(h_after, h);
    EXPECT_EQ(streams.size(), n - 1);
  }
  lstm_fast::set_num_threads(saved);
}

// A float64 file gives the float32 weights of the same numbers.
TEST(Model, Float64FileIsConverted) {
  ModelSpec spec{3, 4, 2, 0, true, false, false, "float64"};
  const lstm_fast::Model m64 = write_and_load(spec, 7, "F64");
  spec.dtype = "float32";
  const lstm_fast::Model m32 = write_and_load(spec, 7, "F32");
  const std::vector<float> x = random_vector(static_cast<size_t>(5 * 2 * 3), 3);
  std::vector<float> y64(5 * 2 * 4), y32(5 * 2 * 4);
  lstm_fast::State s64 = m64.initial_state(2), s32 = m32.initial_state(2);
  m64.forward(x.data(), 5, 2, y64.data(), s64);
  m32.forward(x.data(), 5, 2, y32.data(), s32);
  EXPECT_EQ(max_abs_diff(y64, y32), 0.0) << "float64 -> float32 rounds exactly as writing float32 does";
}

// forward runs bidirectional models; step refuses them; states of other shapes are refused.
TEST(Model, ForwardRunsBidirectionalModelsAndMisuseIsRefused) {
  const ModelSpec spec{3, 4, 2, 2, true, true, true, "float32"};
  const lstm_fast::Model m = write_and_load(spec, 11);
  EXPECT_EQ(m.output_size(), 2 * 2);
  const Index T = 6, B = 2;
  const std::vector<float> x = random_vector(static_cast<size_t>(T * B * 3), 5);
  std::vector<float> y(static_cast<size_t>(T * B * m.output_size()), NAN);
  lstm_fast::State st = m.initial_state(B);
  EXPECT_EQ(st.h.size(), static_cast<size_t>(2 * 2 * B * 2));
  EXPECT_EQ(st.c.size(), static_cast<size_t>(2 * 2 * B * 4));
  m.forward(x.data(), T, B, y.data(), st);
  for (float v : y) EXPECT_TRUE(std::isfinite(v));

  EXPECT_TRUE(throws_error([&] { m.step(x.data(), y.data(), st); }, "bidirectional"));
  EXPECT_TRUE(throws_error([&] { m.forward(x.data(), T, B + 1, y.data(), st); }, "batch"));
  EXPECT_TRUE(throws_error([&] { m.initial_state(0); }, "batch must be >= 1"));
  const lstm_fast::Model other = write_and_load(ModelSpec{3, 5}, 2);
  lstm_fast::State wrong = other.initial_state(B);
  EXPECT_TRUE(throws_error([&] { m.forward(x.data(), T, B, y.data(), wrong); }, "state.h"));
  EXPECT_TRUE(throws_error([&] { lstm_fast::Model().initial_state(1); }, "empty"));
  EXPECT_TRUE(throws_error([&] { lstm_fast::Model::load("/nonexistent/model.safetensors"); }, "cannot open"));
}

// Writes `bytes` to a file: Model::load must throw lstm_fast::Error whose message contains `expected`.
::testing::AssertionResult load_refuses(const std::string& bytes, const std::string& expected) {
  const std::string path = temp_path("bad.safetensors");
  write_file(path, bytes);
  ::testing::AssertionResult result = throws_error([&] { lstm_fast::Model::load(path); }, expected);
  std::remove(path.c_str());
  return result;
}

#define EXPECT_LOAD_ERROR(label, bytes, expected) \
  EXPECT_TRUE(load_refuses(bytes, expected)) << "bad file '" << label << "'"

// Every kind of malformed file is refused with a message naming the problem.
TEST(ModelFile, EveryKindOfBadFileIsRefusedWithAMessage) {
  const ModelSpec spec{3, 4, 2, 2, true, false, true, "float32"};
  const std::vector<Tensor> tensors = spec.tensors(3);
  const std::string meta = metadata_for(spec);
  const std::string good = safetensors_bytes(tensors, "F32", meta);
  {  // the good file loads
    const std::string path = temp_path("good.safetensors");
    write_file(path, good);
    const lstm_fast::Model m = lstm_fast::Model::load(path);
    EXPECT_TRUE(m.input_size() == 3 && m.output_size() == 2 && m.proj_size() == 2);
    std::remove(path.c_str());
  }
  std::uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(good[k]);
  const std::string header = good.substr(8, n), data = good.substr(8 + n);
  auto with_header = [&](const std::string& h, const std::string& d) {
    std::string f(8, '\0');
    for (int k = 0; k < 8; ++k) f[k] = static_cast<char>((std::uint64_t(h.size()) >> (8 * k)) & 0xff);
    return f + h + d;
  };
  auto replaced = [&](std::string s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    if (at == std::string::npos) {
      ADD_FAILURE() << "test bug: \"" << from << "\" not in the header";
      return s;
    }
    return s.replace(at, from.size(), to);
  };

  EXPECT_LOAD_ERROR("empty", "", "too short");
  EXPECT_LOAD_ERROR("truncated header", good.substr(0, 8 + n / 2), "exceeds the file");
  EXPECT_LOAD_ERROR("truncated data", good.substr(0, good.size() - 10), "outside the data buffer");
  EXPECT_LOAD_ERROR("trailing bytes", good + "xx", "cover");
  std::string huge = good;
  huge[7] = 0x7f;
  EXPECT_LOAD_ERROR("huge header length", huge, "header length");
  EXPECT_LOAD_ERROR("not JSON", with_header("{\"a\": nul}      ", data), "invalid literal");
  EXPECT_LOAD_ERROR("JSON cut short", with_header(header.substr(0, header.size() / 2), data), "header");
  EXPECT_LOAD_ERROR("not an object", with_header("[1, 2]", data), "does not start with '{'");
  EXPECT_LOAD_ERROR("duplicate key",
                    with_header(replaced(header, "{\"__metadata__\"", "{\"x\": 1, \"x\": 2, \"__metadata__\""), data),
                    "duplicate key");
  EXPECT_LOAD_ERROR("deep nesting", with_header("{\"a\": " + std::string(200, '[') + std::string(200, ']') + "}", data),
                    "nested deeper");
  EXPECT_LOAD_ERROR("bad UTF-8", with_header(replaced(header, "weight_ih_l0", "weight_ih_\xff\xfe"), data), "UTF-8");
  EXPECT_LOAD_ERROR("unknown dtype", with_header(replaced(header, "\"F32\"", "\"F31\""), data), "unknown dtype");
  EXPECT_LOAD_ERROR("offsets out of range",
                    with_header(replaced(header, "\"data_offsets\": [0, ", "\"data_offsets\": [0, 99999999"), data),
                    "outside the data buffer");
  EXPECT_LOAD_ERROR("negative offset",
                    with_header(replaced(header, "\"data_offsets\": [0, ", "\"data_offsets\": [-4, "), data),
                    "data_offsets");
  EXPECT_LOAD_ERROR("offsets disagree with shape",
                    with_header(replaced(header, "\"shape\": [16, 3]", "\"shape\": [16, 2]"), data), "need");
  ModelSpec wrong_config = spec;
  wrong_config.input_size = 5;  // weight_ih_l0 is (16, 3) in the file, the config now says (16, 5)
  EXPECT_LOAD_ERROR("shape inconsistent with config", safetensors_bytes(tensors, "F32", metadata_for(wrong_config)),
                    "weight_ih_l0 must have shape (16, 5), got (16, 3)");
  std::vector<Tensor> missing(tensors.begin() + 1, tensors.end());
  EXPECT_LOAD_ERROR("missing tensor", safetensors_bytes(missing, "F32", meta), "missing tensor weight_ih_l0");
  std::vector<Tensor> extra = tensors;
  extra.push_back({"weight_extra", {2}, {1.0, 2.0}});
  EXPECT_LOAD_ERROR("unexpected tensor", safetensors_bytes(extra, "F32", meta), "unexpected tensor \"weight_extra\"");
  EXPECT_LOAD_ERROR("no format", safetensors_bytes(tensors, "F32", "{\"config\": \"{}\"}"),
                    "not an lstm_fast model file");
  EXPECT_LOAD_ERROR("config not JSON",
                    safetensors_bytes(tensors, "F32", "{\"format\": \"lstm_fast/1\", \"config\": \"{input_size\"}"),
                    "metadata config");
  EXPECT_LOAD_ERROR(
      "config bad type",
      safetensors_bytes(
          tensors, "F32",
          "{\"format\": \"lstm_fast/1\", \"config\": \"{\\\"input_size\\\": 3.5, \\\"hidden_size\\\": 4}\"}"),
      "must be an integer");
  EXPECT_LOAD_ERROR("config proj too big",
                    safetensors_bytes(tensors, "F32",
                                      "{\"format\": \"lstm_fast/1\", \"config\": \"{\\\"input_size\\\": 3, "
                                      "\\\"hidden_size\\\": 4, \\\"proj_size\\\": 4}\"}"),
                    "proj_size");
  EXPECT_LOAD_ERROR(
      "config huge num_layers",
      safetensors_bytes(tensors, "F32",
                        "{\"format\": \"lstm_fast/1\", \"config\": \"{\\\"input_size\\\": 3, \\\"hidden_size\\\": 4, "
                        "\\\"num_layers\\\": 2000000000, \\\"proj_size\\\": 2, \\\"peephole\\\": true}\"}"),
      "missing tensor");
  // Two tensors sharing bytes: swap in the first tensor's offsets for the second one's.
  EXPECT_LOAD_ERROR("overlap",
                    with_header(replaced(header, "\"data_offsets\": [192, 320]", "\"data_offsets\": [0, 128]"), data),
                    "overlaps");
}
// A tensor of an integer dtype is refused even with consistent offsets.
TEST(ModelFile, IntegerDtypeIsRefused) {
  const ModelSpec spec{1, 1, 1, 0, false, false, false, "float32"};
  std::vector<Tensor> tensors = spec.tensors(1);  // weight_ih (4, 1), weight_hh (4, 1): 16 bytes each in F32
  std::string bytes = safetensors_bytes(tensors, "F32", metadata_for(spec));
  const size_t at = bytes.find("\"F32\"");
  bytes.replace(at, 5, "\"I32\"");
  EXPECT_LOAD_ERROR("I32 tensor", bytes, "expected F32 or F64");
}

// load_from_bytes: the same model as load from the same bytes, the same checks on bad ones.
TEST(ModelFile, LoadFromBytesGivesTheModelOfTheFile) {
  const ModelSpec spec{3, 4, 2, 2, true, false, true, "float32"};
  const std::string bytes = safetensors_bytes(spec.tensors(5), "F32", metadata_for(spec));
  const std::string path = temp_path("bytes.safetensors");
  write_file(path, bytes);
  const lstm_fast::Model from_file = lstm_fast::Model::load(path);
  std::remove(path.c_str());
  // Copied, so the buffer may go away (and need not be aligned: start one byte into a copy).
  std::string shifted = " " + bytes;
  const lstm_fast::Model from_memory = lstm_fast::Model::load_from_bytes(shifted.data() + 1, bytes.size(), "mem");
  shifted.assign(shifted.size(), 'x');
  EXPECT_EQ(from_memory.config_json(), from_file.config_json());
  const std::vector<float> x = random_vector(4 * 2 * 3, 9);
  std::vector<float> y1(4 * 2 * 2), y2(4 * 2 * 2);
  lstm_fast::State s1 = from_file.initial_state(2), s2 = from_memory.initial_state(2);
  from_file.forward(x.data(), 4, 2, y1.data(), s1);
  from_memory.forward(x.data(), 4, 2, y2.data(), s2);
  EXPECT_EQ(max_abs_diff(y1, y2), 0.0);
  EXPECT_TRUE(throws_error([&] { lstm_fast::Model::load_from_bytes(bytes.data(), bytes.size() - 3, "cut"); },
                           "model bytes 'cut': header: tensor"));
  EXPECT_TRUE(throws_error([&] { lstm_fast::Model::load_from_bytes(nullptr, 10); }, "data must not be null"));
  EXPECT_TRUE(throws_error([&] { lstm_fast::Model::load_from_bytes(nullptr, 0); }, "too short"));
  const char* dir = std::getenv("TMPDIR");
  EXPECT_TRUE(throws_error([&] { lstm_fast::Model::load(dir && *dir ? dir : "/tmp"); }, "model file"));  // a folder
}

// Absurd sizes and calls out of order throw Error with the numbers, before allocating anything.
TEST(Config, AbsurdSizesAndMisuseThrowErrorBeforeAllocating) {
  lstm_fast::Config c;
  c.input_size = 3;
  c.hidden_size = 4;
  c.validate();  // the baseline is fine
  c.input_size = Index(1) << 40;
  EXPECT_TRUE(throws_error([&] { c.validate(); }, "input_size must be <= 2^31 - 1, got 1099511627776"));
  c.input_size = 0x7fffffff;
  c.hidden_size = 0x7fffffff;  // 4H * I overflows 64 bits
  EXPECT_TRUE(throws_error([&] { c.validate(); }, "number more than 2^48"));
  c.input_size = 10;
  c.hidden_size = 1000;
  c.num_layers = 0x7fffffff;
  c.bidirectional = true;  // each layer is small, the stack is not
  EXPECT_TRUE(throws_error([&] { c.validate(); }, "num_layers=2147483647"));

  const lstm_fast::Model m = write_and_load(ModelSpec{3, 5}, 4);
  EXPECT_TRUE(throws_error([&] { m.initial_state(Index(1) << 60); }, "initial_state: batch 1152921504606846976"));
  lstm_fast::State st = m.initial_state(2);
  std::vector<float> x(3 * 2 * 3), y(3 * 2 * 5);
  EXPECT_TRUE(throws_error([&] { m.forward(x.data(), Index(1) << 50, 2, y.data(), st); }, "rows are more than 2^48"));
  EXPECT_TRUE(throws_error([&] { m.forward(x.data(), 0, 2, y.data(), st); }, ">= 1 steps"));
}

}  // namespace
}  // namespace lstm_fast_test
