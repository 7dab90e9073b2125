// Model files for the C++ tests, written without Python: a minimal safetensors writer, the model's
// tensors (torch's names and shapes, random weights) and the metadata lstm_fast's loader expects;
// and the assertion that a call throws lstm_fast::Error with a given message.
#pragma once

#include <gtest/gtest.h>
#include <lstm_fast/lstm_fast.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>  // getpid

namespace lstm_fast_test {

using lstm_fast::Index;

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
    s << "{\"input_size\": " << input_size << ", \"hidden_size\": " << hidden_size << ", \"num_layers\": " << num_layers
      << ", \"bias\": " << b(bias) << ", \"batch_first\": false, \"dropout\": 0.0, "
      << "\"bidirectional\": " << b(bidirectional) << ", \"proj_size\": " << proj_size
      << ", \"peephole\": " << b(peephole) << ", \"forget_bias\": 0.0, \"dtype\": \"" << dtype << "\", \"seed\": null}";
    return s.str();
  }

  // Random weights in +-1/sqrt(H), torch's names and shapes.
  std::vector<Tensor> tensors(unsigned seed) const {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<double> u(-1.0 / std::sqrt(double(hidden_size)),
                                             1.0 / std::sqrt(double(hidden_size)));
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

inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

// The bytes of a safetensors file: header entries with offsets as laid out, then the data.
inline std::string safetensors_bytes(const std::vector<Tensor>& tensors, const std::string& dtype,
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

inline std::string metadata_for(const ModelSpec& spec) {
  return "{\"format\": \"lstm_fast/1\", \"config\": " + json_string(spec.config_json()) + "}";
}

inline std::string temp_path(const std::string& name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir && *dir ? dir : "/tmp") + "/lstm_fast_test_" + std::to_string(static_cast<long>(::getpid())) +
         "_" + name;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline lstm_fast::Model write_and_load(const ModelSpec& spec, unsigned seed, const std::string& dtype = "F32") {
  const std::string path = temp_path("model.safetensors");
  write_file(path, safetensors_bytes(spec.tensors(seed), dtype, metadata_for(spec)));
  lstm_fast::Model m = lstm_fast::Model::load(path);
  std::remove(path.c_str());
  return m;
}

inline std::vector<float> random_vector(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(gen);
  return v;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t k = 0; k < a.size() && k < b.size(); ++k) m = std::max(m, std::abs(double(a[k]) - double(b[k])));
  return m;
}

// Whether f throws lstm_fast::Error with `expected` in its message; says what came instead.
template <typename F>
::testing::AssertionResult throws_error(F f, const std::string& expected) {
  try {
    f();
  } catch (const lstm_fast::Error& e) {
    if (std::string(e.what()).find(expected) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "message \"" << e.what() << "\" lacks \"" << expected << "\"";
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "a non-Error exception (expected \"" << expected << "\"): " << e.what();
  }
  return ::testing::AssertionFailure() << "no Error thrown (expected \"" << expected << "\")";
}

}  // namespace lstm_fast_test
