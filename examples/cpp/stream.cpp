// Streams frames through a model trained in Python: one frame in, one output out, no Python.
//
//   python -c "import lstm_fast as lf; lf.LSTM(16, 64, num_layers=2).save('model.safetensors')"
//   ./stream model.safetensors < frames.txt > outputs.txt
//
// stdin: one frame per line, input_size numbers separated by spaces.
// stdout: one line per frame, output_size numbers, written (and flushed) before the next frame is read,
// as a real-time loop would. The model must be unidirectional (a reverse direction needs the future).
#include <lstm_fast/lstm_fast.hpp>

#include <cstdio>
#include <exception>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors < frames > outputs\n", argv[0]);
    return 2;
  }
  try {
    const lstm_fast::Model model = lstm_fast::Model::load(argv[1]);
    lstm_fast::State state = model.initial_state(/*batch=*/1);
    std::vector<float> x(static_cast<size_t>(model.input_size()));   // [1, I]
    std::vector<float> y(static_cast<size_t>(model.output_size()));  // [1, R]

    std::string line;
    for (long frame = 1; std::getline(std::cin, line); ++frame) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      std::istringstream fields(line);
      size_t n = 0;
      for (float v; n <= x.size() && fields >> v; ++n)
        if (n < x.size()) x[n] = v;
      if (n != x.size() || !fields.eof()) {
        std::fprintf(stderr, "frame %ld: expected %zu numbers, got \"%s\"\n", frame, x.size(), line.c_str());
        return 1;
      }
      model.step(x.data(), y.data(), state);  // no allocation in here
      for (size_t j = 0; j < y.size(); ++j) std::printf(j ? " %.9g" : "%.9g", y[j]);
      std::printf("\n");
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
