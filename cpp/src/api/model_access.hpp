// What the Python bindings reach of a Model beyond the public C++ API (internal: not installed): the
// stack over a packed sequence from and to NumPy's state arrays, without a State in between.
#pragma once

#include "api/model_data.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "runtime/workspace.hpp"

namespace lstm_fast::detail {

struct ModelAccess {
  // x [N, I], y [N, D*R]; h0, c0 [L*D, B, *] or null (zeros); h_n, c_n written.
  static void run(const Model& m, const float* x, const Index* batch_sizes, Index steps, Index batch, float* y,
                  const float* h0, const float* c0, float* h_n, float* c_n) {
    m.data("forward").run(x, batch_sizes, steps, batch, y, h0, c0, h_n, c_n);
  }
  // One step of `batch` rows on h [L, B, R] and c [L, B, H] in place (unidirectional models), with
  // working memory of its own: no State to make per call.
  static void step(const Model& m, const float* x, float* y, float* h, float* c, Index batch);
};

inline void ModelAccess::step(const Model& m, const float* x, float* y, float* h, float* c, Index batch) {
  const ModelData& data = m.data("step");
  if (data.config.bidirectional) throw Error("step: runs unidirectional models only; this model is bidirectional");
  const int slices = data.step_slices(batch);
  // The thread's working memory, kept between calls: a streaming loop allocates it once.
  thread_local Buffer<float> work;
  const std::size_t floats = data.step_workspace_floats(batch, slices);
  if (work.size() < floats) work.resize(floats);
  data.step_arrays(x, y, h, c, batch, slices, work.data());
}

}  // namespace lstm_fast::detail
