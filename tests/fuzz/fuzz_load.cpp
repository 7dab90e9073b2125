// libFuzzer target: lstm_fast::Model::load_from_bytes on arbitrary bytes (tools/fuzz.sh runs it).
//
// The contract under test: any input either loads or throws lstm_fast::Error. Anything else is a
// finding: a crash, an AddressSanitizer or UndefinedBehaviorSanitizer report, an exception of another
// type (std::bad_alloc from a size taken on trust, std::length_error...), which escapes and aborts,
// a hang (libFuzzer's -timeout), or an allocation beyond -malloc_limit_mb.
//
// A file that loads is also run, forward over a short sequence and (unidirectional) step by step, so
// that whatever weights and shapes a hostile file smuggles through reach the kernels; and so is its
// conversion on load to the other precisions (quantizing NaN, infinite or huge weights).
#include <lstm_fast/lstm_fast.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

void run(const lstm_fast::Model& model) {
  const lstm_fast::Index T = 3, B = 2;
  std::vector<float> x(static_cast<size_t>(T * B * model.input_size()), 0.5f);
  std::vector<float> y(static_cast<size_t>(T * B * model.output_size()));
  lstm_fast::State state = model.initial_state(B);
  model.forward(x.data(), T, B, y.data(), state);
  if (!model.bidirectional()) {
    state.reset();
    for (lstm_fast::Index t = 0; t < T; ++t)
      model.step(x.data() + t * B * model.input_size(), y.data() + t * B * model.output_size(), state);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    run(lstm_fast::Model::load_from_bytes(data, size, "fuzz input"));
  } catch (const lstm_fast::Error&) {
    return 0;  // refused with a message: the expected outcome for almost every input
  }
  for (lstm_fast::Precision p : {lstm_fast::Precision::fp32, lstm_fast::Precision::bf16, lstm_fast::Precision::int8}) {
    try {
      run(lstm_fast::Model::load_from_bytes(data, size, "fuzz input", p));
    } catch (const lstm_fast::Error&) {
      // a conversion may refuse too (int8 limits the depth of its products)
    }
  }
  return 0;
}
