// C++ tests of lstm_fast::Model, built against the installed package (tests/test_cpp.py) or in-tree
// (cmake -DLSTM_FAST_BUILD_TESTS=ON; ctest).
//
//   test_model                     the unit tests below; exit status 0 when all pass
//   test_model --load PATH         loads PATH; prints "ok I O" or "error: <message>" (exit 1)
//   test_model --forward PATH T B  reads T*B*I floats (text) from stdin, runs Model::forward over
//                                  [T, B, I] from a zero state, prints T*B*D*R floats, one step-row a line
//
// The unit tests write their own model files (a small safetensors writer below), so they need no Python:
// step against forward, no allocation in step, float64 files, bidirectional forward, and every kind of
// bad file refused with an Error naming the problem.
#include <lstm_fast/lstm_fast.hpp>

#include "../../cpp/src/network.hpp"  // internal: the raw-array stack and the allocator

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>  // getpid

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
void* malloc(std::size_t n) { ++g_allocations; return __libc_malloc(n); }
void* calloc(std::size_t n, std::size_t s) { ++g_allocations; return __libc_calloc(n, s); }
void* realloc(void* p, std::size_t n) { ++g_allocations; return __libc_realloc(p, n); }
void* memalign(std::size_t a, std::size_t n) { ++g_allocations; return __libc_memalign(a, n); }
void* aligned_alloc(std::size_t a, std::size_t n) { ++g_allocations; return __libc_memalign(a, n); }
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

namespace {

using lstm_fast::Index;

int g_failures = 0;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
      ++g_failures;                                                                  \
    }                                                                                \
  } while (0)

// ---- A minimal safetensors writer --------------------------------------------------------------------

struct Tensor {
  std::string name;
  std::vector<Index> shape;
  std::vector<double> values;
};

struct ModelSpec {
  Index input_size = 3, hidden_size = 5, num_layers = 1, proj_size = 0;
  bool bias = true, bidirectional = false, peephole = false;
  std::string dtype = "float32";

  std::string config_json() const {
    auto b = [](bool v) { return v ? "true" : "false"; };
    std::ostringstream s;
    s << "{\"input_size\": " << input_size << ", \"hidden_size\": " << hidden_size << ", \"num_layers\": "
      << num_layers << ", \"bias\": " << b(bias) << ", \"batch_first\": false, \"dropout\": 0.0, "
      << "\"bidirectional\": " << b(bidirectional) << ", \"proj_size\": " << proj_size << ", \"peephole\": "
      << b(peephole) << ", \"forget_bias\": 0.0, \"dtype\": \"" << dtype << "\", \"seed\": null}";
    return s.str();
  }

  // Random weights in +-1/sqrt(H), torch's names and shapes.
  std::vector<Tensor> tensors(unsigned seed) const {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> u(-1.0 / std::sqrt(double(hidden_size)), 1.0 / std::sqrt(double(hidden_size)));
    const Index D = bidirectional ? 2 : 1, R = proj_size > 0 ? proj_size : hidden_size, H = hidden_size;
    std::vector<Tensor> out;
    auto add = [&](const std::string& name, std::vector<Index> shape) {
      Index n = 1;
      for (Index d : shape) n *= d;
      Tensor t{name, shape, std::vector<double>(static_cast<size_t>(n))};
      for (double& v : t.values) v = u(gen);
      out.push_back(std::move(t));
    };
    for (Index k = 0; k < num_layers; ++k)
      for (Index d = 0; d < D; ++d) {
        const std::string sfx = "_l" + std::to_string(k) + (d ? "_reverse" : "");
        add("weight_ih" + sfx, {4 * H, k == 0 ? input_size : D * R});
        add("weight_hh" + sfx, {4 * H, R});
        if (bias) {
          add("bias_ih" + sfx, {4 * H});
          add("bias_hh" + sfx, {4 * H});
        }
        if (proj_size > 0) add("weight_hr" + sfx, {R, H});
        if (peephole) add("weight_peep" + sfx, {3, H});
      }
    return out;
  }
};

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

// The bytes of a safetensors file: header entries with offsets as laid out, then the data.
std::string safetensors_bytes(const std::vector<Tensor>& tensors, const std::string& dtype,
                              const std::string& metadata_json) {
  const size_t itemsize = dtype == "F64" ? 8 : 4;
  std::string header = "{\"__metadata__\": " + metadata_json;
  std::string data;
  for (const Tensor& t : tensors) {
    const size_t begin = data.size();
    for (double v : t.values) {
      if (itemsize == 8) {
        data.append(reinterpret_cast<const char*>(&v), 8);  // the test hosts are little-endian
      } else {
        const float f = static_cast<float>(v);
        data.append(reinterpret_cast<const char*>(&f), 4);
      }
    }
    header += ", " + json_string(t.name) + ": {\"dtype\": \"" + dtype + "\", \"shape\": [";
    for (size_t k = 0; k < t.shape.size(); ++k) header += (k ? ", " : "") + std::to_string(t.shape[k]);
    header += "], \"data_offsets\": [" + std::to_string(begin) + ", " + std::to_string(data.size()) + "]}";
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::string file(8, '\0');
  std::uint64_t n = header.size();
  for (int k = 0; k < 8; ++k) file[k] = static_cast<char>((n >> (8 * k)) & 0xff);
  return file + header + data;
}

std::string metadata_for(const ModelSpec& spec) {
  return "{\"format\": \"lstm_fast/1\", \"config\": " + json_string(spec.config_json()) + "}";
}

std::string temp_path(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/lstm_fast_test_" + std::to_string(static_cast<long>(::getpid())) + "_" + name;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Writes `bytes` to a file and checks that Model::load throws lstm_fast::Error whose message
// contains `expected`.
void expect_load_error(const std::string& label, const std::string& bytes, const std::string& expected) {
  const std::string path = temp_path("bad.safetensors");
  write_file(path, bytes);
  try {
    lstm_fast::Model::load(path);
    std::fprintf(stderr, "bad file '%s': loaded without error\n", label.c_str());
    ++g_failures;
  } catch (const lstm_fast::Error& e) {
    if (std::string(e.what()).find(expected) == std::string::npos) {
      std::fprintf(stderr, "bad file '%s': message \"%s\" lacks \"%s\"\n", label.c_str(), e.what(), expected.c_str());
      ++g_failures;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bad file '%s': threw a non-Error exception: %s\n", label.c_str(), e.what());
    ++g_failures;
  }
  std::remove(path.c_str());
}

lstm_fast::Model write_and_load(const ModelSpec& spec, unsigned seed, const std::string& dtype = "F32") {
  const std::string path = temp_path("model.safetensors");
  write_file(path, safetensors_bytes(spec.tensors(seed), dtype, metadata_for(spec)));
  lstm_fast::Model m = lstm_fast::Model::load(path);
  std::remove(path.c_str());
  return m;
}

std::vector<float> random_vector(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(gen);
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t k = 0; k < a.size() && k < b.size(); ++k) m = std::max(m, std::abs(double(a[k]) - double(b[k])));
  return m;
}

// ---- The tests ---------------------------------------------------------------------------------------

// Stepping through a sequence equals one forward over it, and step allocates nothing.
void test_step_matches_forward_without_allocating() {
  const ModelSpec specs[] = {
      {3, 5, 1, 0, true, false, false, "float32"},
      {4, 6, 3, 2, true, false, true, "float32"},   // layers, projection, peephole
      {2, 7, 2, 0, false, false, true, "float64"},  // no bias
  };
  unsigned seed = 1;
  for (const ModelSpec& spec : specs) {
    const lstm_fast::Model m = write_and_load(spec, seed++, spec.dtype == "float64" ? "F64" : "F32");
    const Index T = 9, B = 3, I = m.input_size(), O = m.output_size();
    CHECK(I == spec.input_size);
    CHECK(O == (spec.proj_size > 0 ? spec.proj_size : spec.hidden_size));
    CHECK(m.hidden_size() == spec.hidden_size && m.num_layers() == spec.num_layers);
    const std::vector<float> x = random_vector(static_cast<size_t>(T * B * I), seed++);

    lstm_fast::State whole = m.initial_state(B);
    std::vector<float> y_whole(static_cast<size_t>(T * B * O));
    m.forward(x.data(), T, B, y_whole.data(), whole);

    const long before_state = g_allocations.load();
    lstm_fast::State st = m.initial_state(B);
    CHECK(!kCountsAllocations || g_allocations.load() > before_state);  // the counter works
    std::vector<float> y_steps(static_cast<size_t>(T * B * O));
    const long before = g_allocations.load();
    for (Index t = 0; t < T; ++t) m.step(x.data() + t * B * I, y_steps.data() + t * B * O, st);
    const long allocations = g_allocations.load() - before;
    if (allocations != 0) std::fprintf(stderr, "step allocated %ld times\n", allocations);
    CHECK(allocations == 0);
    CHECK(max_abs_diff(y_steps, y_whole) < 1e-5);
    CHECK(max_abs_diff(st.h, whole.h) < 1e-5);
    CHECK(max_abs_diff(st.c, whole.c) < 1e-5);

    // A batch of B streams is B independent streams: row 1 alone gives the same outputs.
    lstm_fast::State one = m.initial_state(1);
    std::vector<float> y1(static_cast<size_t>(O));
    double diff = 0.0;
    for (Index t = 0; t < T; ++t) {
      m.step(x.data() + (t * B + 1) * I, y1.data(), one);
      for (Index j = 0; j < O; ++j) diff = std::max(diff, std::abs(double(y1[j]) - y_whole[(t * B + 1) * O + j]));
    }
    CHECK(diff < 1e-5);

    st.reset();
    for (float v : st.h) CHECK(v == 0.0f);
  }
}

// A float64 file gives the float32 weights of the same numbers.
void test_float64_file_is_converted() {
  ModelSpec spec{3, 4, 2, 0, true, false, false, "float64"};
  const lstm_fast::Model m64 = write_and_load(spec, 7, "F64");
  spec.dtype = "float32";
  const lstm_fast::Model m32 = write_and_load(spec, 7, "F32");
  const std::vector<float> x = random_vector(static_cast<size_t>(5 * 2 * 3), 3);
  std::vector<float> y64(5 * 2 * 4), y32(5 * 2 * 4);
  lstm_fast::State s64 = m64.initial_state(2), s32 = m32.initial_state(2);
  m64.forward(x.data(), 5, 2, y64.data(), s64);
  m32.forward(x.data(), 5, 2, y32.data(), s32);
  CHECK(max_abs_diff(y64, y32) == 0.0);  // float64 -> float32 rounds exactly as writing float32 does
}

// Whether f throws lstm_fast::Error with `expected` in its message; says on stderr what came instead.
template <typename F>
bool throws_error(F f, const std::string& expected) {
  try {
    f();
  } catch (const lstm_fast::Error& e) {
    if (std::string(e.what()).find(expected) != std::string::npos) return true;
    std::fprintf(stderr, "message \"%s\" lacks \"%s\"\n", e.what(), expected.c_str());
    return false;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "a non-Error exception (expected \"%s\"): %s\n", expected.c_str(), e.what());
    return false;
  }
  std::fprintf(stderr, "no Error thrown (expected \"%s\")\n", expected.c_str());
  return false;
}

// forward runs bidirectional models; step refuses them; states of other shapes are refused.
void test_bidirectional_and_misuse() {
  const ModelSpec spec{3, 4, 2, 2, true, true, true, "float32"};
  const lstm_fast::Model m = write_and_load(spec, 11);
  CHECK(m.output_size() == 2 * 2);
  const Index T = 6, B = 2;
  const std::vector<float> x = random_vector(static_cast<size_t>(T * B * 3), 5);
  std::vector<float> y(static_cast<size_t>(T * B * m.output_size()), NAN);
  lstm_fast::State st = m.initial_state(B);
  CHECK(st.h.size() == static_cast<size_t>(2 * 2 * B * 2) && st.c.size() == static_cast<size_t>(2 * 2 * B * 4));
  m.forward(x.data(), T, B, y.data(), st);
  for (float v : y) CHECK(std::isfinite(v));

  CHECK(throws_error([&] { m.step(x.data(), y.data(), st); }, "bidirectional"));
  CHECK(throws_error([&] { m.forward(x.data(), T, B + 1, y.data(), st); }, "batch"));
  CHECK(throws_error([&] { m.initial_state(0); }, "batch must be >= 1"));
  const lstm_fast::Model other = write_and_load(ModelSpec{3, 5}, 2);
  lstm_fast::State wrong = other.initial_state(B);
  CHECK(throws_error([&] { m.forward(x.data(), T, B, y.data(), wrong); }, "state.h"));
  CHECK(throws_error([&] { lstm_fast::Model().initial_state(1); }, "empty"));
  CHECK(throws_error([&] { lstm_fast::Model::load("/nonexistent/model.safetensors"); }, "cannot open"));
}

// Every kind of malformed file is refused with a message naming the problem.
void test_bad_files() {
  const ModelSpec spec{3, 4, 2, 2, true, false, true, "float32"};
  const std::vector<Tensor> tensors = spec.tensors(3);
  const std::string meta = metadata_for(spec);
  const std::string good = safetensors_bytes(tensors, "F32", meta);
  {  // the good file loads
    const std::string path = temp_path("good.safetensors");
    write_file(path, good);
    const lstm_fast::Model m = lstm_fast::Model::load(path);
    CHECK(m.input_size() == 3 && m.output_size() == 2 && m.proj_size() == 2);
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
      std::fprintf(stderr, "test bug: \"%s\" not in the header\n", from.c_str());
      ++g_failures;
      return s;
    }
    return s.replace(at, from.size(), to);
  };

  expect_load_error("empty", "", "too short");
  expect_load_error("truncated header", good.substr(0, 8 + n / 2), "exceeds the file");
  expect_load_error("truncated data", good.substr(0, good.size() - 10), "outside the data buffer");
  expect_load_error("trailing bytes", good + "xx", "cover");
  std::string huge = good;
  huge[7] = 0x7f;
  expect_load_error("huge header length", huge, "header length");
  expect_load_error("not JSON", with_header("{\"a\": nul}      ", data), "invalid literal");
  expect_load_error("JSON cut short", with_header(header.substr(0, header.size() / 2), data), "header");
  expect_load_error("not an object", with_header("[1, 2]", data), "does not start with '{'");
  expect_load_error("duplicate key", with_header(replaced(header, "{\"__metadata__\"", "{\"x\": 1, \"x\": 2, \"__metadata__\""), data), "duplicate key");
  expect_load_error("deep nesting", with_header("{\"a\": " + std::string(200, '[') + std::string(200, ']') + "}", data), "nested deeper");
  expect_load_error("bad UTF-8", with_header(replaced(header, "weight_ih_l0", "weight_ih_\xff\xfe"), data), "UTF-8");
  expect_load_error("unknown dtype", with_header(replaced(header, "\"F32\"", "\"F31\""), data), "unknown dtype");
  expect_load_error("offsets out of range", with_header(replaced(header, "\"data_offsets\": [0, ", "\"data_offsets\": [0, 99999999"), data), "outside the data buffer");
  expect_load_error("negative offset", with_header(replaced(header, "\"data_offsets\": [0, ", "\"data_offsets\": [-4, "), data), "data_offsets");
  expect_load_error("offsets disagree with shape", with_header(replaced(header, "\"shape\": [16, 3]", "\"shape\": [16, 2]"), data), "need");
  ModelSpec wrong_config = spec;
  wrong_config.input_size = 5;  // weight_ih_l0 is (16, 3) in the file, the config now says (16, 5)
  expect_load_error("shape inconsistent with config", safetensors_bytes(tensors, "F32", metadata_for(wrong_config)),
                    "weight_ih_l0 must have shape (16, 5), got (16, 3)");
  std::vector<Tensor> missing(tensors.begin() + 1, tensors.end());
  expect_load_error("missing tensor", safetensors_bytes(missing, "F32", meta), "missing tensor weight_ih_l0");
  std::vector<Tensor> extra = tensors;
  extra.push_back({"weight_extra", {2}, {1.0, 2.0}});
  expect_load_error("unexpected tensor", safetensors_bytes(extra, "F32", meta), "unexpected tensor \"weight_extra\"");
  expect_load_error("no format", safetensors_bytes(tensors, "F32", "{\"config\": \"{}\"}"), "not an lstm_fast model file");
  expect_load_error("config not JSON", safetensors_bytes(tensors, "F32", "{\"format\": \"lstm_fast/1\", \"config\": \"{input_size\"}"), "metadata config");
  expect_load_error("config bad type", safetensors_bytes(tensors, "F32", "{\"format\": \"lstm_fast/1\", \"config\": \"{\\\"input_size\\\": 3.5, \\\"hidden_size\\\": 4}\"}"), "must be an integer");
  expect_load_error("config proj too big", safetensors_bytes(tensors, "F32", "{\"format\": \"lstm_fast/1\", \"config\": \"{\\\"input_size\\\": 3, \\\"hidden_size\\\": 4, \\\"proj_size\\\": 4}\"}"), "proj_size");
  expect_load_error("config huge num_layers", safetensors_bytes(tensors, "F32", "{\"format\": \"lstm_fast/1\", \"config\": \"{\\\"input_size\\\": 3, \\\"hidden_size\\\": 4, \\\"num_layers\\\": 2000000000, \\\"proj_size\\\": 2, \\\"peephole\\\": true}\"}"), "missing tensor");
  // Two tensors sharing bytes: swap in the first tensor's offsets for the second one's.
  expect_load_error("overlap", with_header(replaced(header, "\"data_offsets\": [192, 320]", "\"data_offsets\": [0, 128]"), data), "overlaps");
}

// A tensor of an integer dtype is refused even with consistent offsets.
void test_integer_dtype_refused() {
  const ModelSpec spec{1, 1, 1, 0, false, false, false, "float32"};
  std::vector<Tensor> tensors = spec.tensors(1);  // weight_ih (4, 1), weight_hh (4, 1): 16 bytes each in F32
  std::string bytes = safetensors_bytes(tensors, "F32", metadata_for(spec));
  const size_t at = bytes.find("\"F32\"");
  bytes.replace(at, 5, "\"I32\"");
  expect_load_error("I32 tensor", bytes, "expected F32 or F64");
}


// load_from_bytes: the same model as load from the same bytes, the same checks on bad ones.
void test_load_from_bytes() {
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
  CHECK(from_memory.config_json() == from_file.config_json());
  const std::vector<float> x = random_vector(4 * 2 * 3, 9);
  std::vector<float> y1(4 * 2 * 2), y2(4 * 2 * 2);
  lstm_fast::State s1 = from_file.initial_state(2), s2 = from_memory.initial_state(2);
  from_file.forward(x.data(), 4, 2, y1.data(), s1);
  from_memory.forward(x.data(), 4, 2, y2.data(), s2);
  CHECK(max_abs_diff(y1, y2) == 0.0);
  CHECK(throws_error([&] { lstm_fast::Model::load_from_bytes(bytes.data(), bytes.size() - 3, "cut"); },
                     "model bytes 'cut': header: tensor"));
  CHECK(throws_error([&] { lstm_fast::Model::load_from_bytes(nullptr, 10); }, "data must not be null"));
  CHECK(throws_error([&] { lstm_fast::Model::load_from_bytes(nullptr, 0); }, "too short"));
  const char* dir = std::getenv("TMPDIR");
  CHECK(throws_error([&] { lstm_fast::Model::load(dir && *dir ? dir : "/tmp"); }, "model file"));  // a folder
}

// Absurd sizes and calls out of order throw Error with the numbers, before allocating anything.
void test_absurd_sizes_and_misuse() {
  lstm_fast::Config c;
  c.input_size = 3;
  c.hidden_size = 4;
  c.validate();  // the baseline is fine
  c.input_size = Index(1) << 40;
  CHECK(throws_error([&] { c.validate(); }, "input_size must be <= 2^31 - 1, got 1099511627776"));
  c.input_size = 0x7fffffff;
  c.hidden_size = 0x7fffffff;  // 4H * I overflows 64 bits
  CHECK(throws_error([&] { c.validate(); }, "number more than 2^48"));
  c.input_size = 10;
  c.hidden_size = 1000;
  c.num_layers = 0x7fffffff;
  c.bidirectional = true;  // each layer is small, the stack is not
  CHECK(throws_error([&] { c.validate(); }, "num_layers=2147483647"));

  const lstm_fast::Model m = write_and_load(ModelSpec{3, 5}, 4);
  CHECK(throws_error([&] { m.initial_state(Index(1) << 60); }, "initial_state: batch 1152921504606846976"));
  lstm_fast::State st = m.initial_state(2);
  std::vector<float> x(3 * 2 * 3), y(3 * 2 * 5);
  CHECK(throws_error([&] { m.forward(x.data(), Index(1) << 50, 2, y.data(), st); }, "rows are more than 2^48"));
  CHECK(throws_error([&] { m.forward(x.data(), 0, 2, y.data(), st); }, ">= 1 steps"));

  // backward with a trace no training forward filled.
  const std::vector<lstm_fast::CellWeights<float>> weights(1);
  lstm_fast::Trace<float> empty_trace;
  std::vector<lstm_fast::CellGrads<float>> grads(1);
  CHECK(throws_error([&] {
    lstm_fast::backward<float>(weights, empty_trace, y.data(), nullptr, nullptr, x.data(), nullptr, nullptr, grads);
  }, "backward needs the trace of a training forward"));
}

// ---- Command-line modes for tests/test_cpp.py ---------------------------------------------------------

int run_load(const std::string& path) {
  try {
    const lstm_fast::Model m = lstm_fast::Model::load(path);
    std::printf("ok %ld %ld\n", static_cast<long>(m.input_size()), static_cast<long>(m.output_size()));
    return 0;
  } catch (const lstm_fast::Error& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}

int run_forward(const std::string& path, Index T, Index B) {
  const lstm_fast::Model m = lstm_fast::Model::load(path);
  std::vector<float> x(static_cast<size_t>(T * B * m.input_size()));
  for (float& v : x)
    if (!(std::cin >> v)) {
      std::fprintf(stderr, "expected %zu input floats\n", x.size());
      return 2;
    }
  std::vector<float> y(static_cast<size_t>(T * B * m.output_size()));
  lstm_fast::State st = m.initial_state(B);
  m.forward(x.data(), T, B, y.data(), st);
  for (Index row = 0; row < T * B; ++row) {
    for (Index j = 0; j < m.output_size(); ++j) std::printf(j ? " %.9g" : "%.9g", y[row * m.output_size() + j]);
    std::printf("\n");
  }
  return 0;
}

// Training twice: the second call runs on blocks recycled from the first (uninitialised, dirty) and
// must give bitwise the same outputs and gradients; the cache holds the blocks between calls and
// workspace_release() empties it.
void test_recycled_workspaces_give_the_same_gradients() {
  lstm_fast::Config c;
  c.input_size = 8;
  c.hidden_size = 64;  // [N, 4H] floats with N = 400: 400 KiB blocks, above the cached minimum
  const Index T = 50, B = 8, N = T * B, H = c.hidden_size, I = c.input_size, G = 4 * H;
  std::mt19937 gen(3);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  auto random = [&](Index n) { std::vector<float> v(static_cast<size_t>(n)); for (float& e : v) e = normal(gen); return v; };
  auto w_ih = random(G * I), w_hh = random(G * H), b_ih = random(G), b_hh = random(G), x = random(N * I), dy = random(N * H);
  std::vector<lstm_fast::CellWeights<float>> w(1);
  w[0].weight_ih = w_ih.data(); w[0].weight_hh = w_hh.data(); w[0].bias_ih = b_ih.data(); w[0].bias_hh = b_hh.data();
  const lstm_fast::Schedule s = lstm_fast::Schedule::dense(T, B);
  std::vector<float> results[2];
  lstm_fast::workspace_release();
  for (int run = 0; run < 2; ++run) {
    std::vector<float> y(N * H), h_n(B * H), c_n(B * H), dx(N * I), dh0(B * H), dc0(B * H);
    std::vector<float> g_ih(G * I), g_hh(G * H), g_bi(G), g_bh(G);
    std::vector<lstm_fast::CellGrads<float>> g(1);
    g[0].weight_ih = g_ih.data(); g[0].weight_hh = g_hh.data(); g[0].bias_ih = g_bi.data(); g[0].bias_hh = g_bh.data();
    {
      lstm_fast::Trace<float> trace;
      lstm_fast::forward<float>(c, w, s, x.data(), nullptr, nullptr, nullptr, y.data(), h_n.data(), c_n.data(), &trace);
      lstm_fast::backward<float>(w, trace, dy.data(), nullptr, nullptr, dx.data(), dh0.data(), dc0.data(), g);
    }
    for (const auto* v : {&y, &dx, &dh0, &dc0, &g_ih, &g_hh, &g_bi}) results[run].insert(results[run].end(), v->begin(), v->end());
    CHECK(lstm_fast::workspace_cached_bytes() >= size_t(N * G) * sizeof(float));
  }
  CHECK(results[0] == results[1]);
  lstm_fast::workspace_release();
  CHECK(lstm_fast::workspace_cached_bytes() == 0);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--load") return run_load(argv[2]);
  if (argc == 5 && std::string(argv[1]) == "--forward") return run_forward(argv[2], std::atol(argv[3]), std::atol(argv[4]));
  if (argc != 1) {
    std::fprintf(stderr, "usage: test_model [--load PATH | --forward PATH T B]\n");
    return 2;
  }
  test_step_matches_forward_without_allocating();
  test_float64_file_is_converted();
  test_bidirectional_and_misuse();
  test_bad_files();
  test_integer_dtype_refused();
  test_recycled_workspaces_give_the_same_gradients();
  test_load_from_bytes();
  test_absurd_sizes_and_misuse();
  if (g_failures) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return 1;
  }
  std::printf("all C++ model tests passed\n");
  return 0;
}
