// The command-line modes tests/test_cpp.py drives (no test framework, so they are built and used even
// where GoogleTest is missing):
//
//   model_tool --load PATH         loads PATH; prints "ok I O" or "error: <message>" (exit 1)
//   model_tool --forward PATH T B  reads T*B*I floats (text) from stdin, runs Model::forward over
//                                  [T, B, I] from a zero state, prints T*B*D*R floats, one step-row a line
#include <lstm_fast/lstm_fast.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

using lstm_fast::Index;

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

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--load") return run_load(argv[2]);
  if (argc == 5 && std::string(argv[1]) == "--forward")
    return run_forward(argv[2], std::atol(argv[3]), std::atol(argv[4]));
  std::fprintf(stderr, "usage: model_tool --load PATH | --forward PATH T B\n");
  return 2;
}
