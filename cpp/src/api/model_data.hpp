// What a Model is behind its handle (internal: not installed). A Model holds a
// std::shared_ptr<const ModelData>: the data is made once, when a file is read, and never changes
// after, so the model's copies share it and may run it on several threads at once.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "cell/cell_arrays.hpp"  // CellWeights
#include "lstm_fast/lstm_fast.hpp"
#include "plan/plan.hpp"
#include "weights/frozen.hpp"

namespace lstm_fast::detail {

// Where each tensor of a cell lives in ModelData::params (an offset in floats), -1 when absent.
struct CellOffsets {
  Index weight_ih = -1, weight_hh = -1, bias_ih = -1, bias_hh = -1, weight_hr = -1, weight_peep = -1;
  Index ln[6] = {-1, -1, -1, -1, -1, -1};  // ln_ih_weight, ln_ih_bias, ln_hh_*, ln_cell_* (that order)
  Index bias = -1;                         // b_ih + b_hh [4H], summed once for step
  // A tensor's offset by its number in the list of a cell's file tensors (ModelTensor::field): 0 .. 5
  // the six on the first line above, in order, 9 .. 14 ln's (6 .. 8 are the int8 row scales, which
  // params does not hold).
  Index& of(int field) {
    Index* fields[] = {&weight_ih, &weight_hh, &bias_ih, &bias_hh, &weight_hr, &weight_peep};
    return field < 6 ? *fields[field] : ln[field - 9];
  }
  Index of(int field) const { return const_cast<CellOffsets*>(this)->of(field); }
};

struct ModelData {
  Config config;
  std::string config_json;  // the file's "config" metadata
  Precision precision = Precision::fp32;
  // fp32: every tensor, one after another; bf16 and int8: the float32 ones (biases, peepholes, layer
  // norm's). Then one summed bias per cell.
  std::vector<float> params;
  std::vector<CellOffsets> cells;  // [L*D]
  // [L*D]: each cell's weights packed once at load in the model's precision, fp32 included, with
  // pointers to its float32 tensors in params. step and Streams run on them in every precision,
  // forward in bf16 and int8 (fp32's forward runs on params).
  std::vector<FrozenCell> frozen;

  ModelData() = default;
  // frozen points into params: a copy would point into the original. Shared, never copied.
  ModelData(const ModelData&) = delete;
  ModelData& operator=(const ModelData&) = delete;

  // The weights of each cell (layer k, direction d at k*D + d) as the fp32 sequence kernels take
  // them, pointing into params, for forward().
  std::vector<CellWeights<float>> cell_weights() const;
  // The whole stack over rows in the packed layout, from (h0, c0) to (h_n, c_n), each [L*D, B, *].
  void run(const float* x, const Index* batch_sizes, Index steps, Index batch, float* y, const float* h0,
           const float* c0, float* h_n, float* c_n) const;
  // One step (unidirectional): h [L, B, R] and c [L, B, H] in place, y [B, R] written; workspace:
  // step_workspace_floats(batch, slices) floats. The team is the plan's, at most `slices`.
  void step_arrays(const float* x, float* y, float* h, float* c, Index batch, int slices, float* workspace) const;
  LayerPlan frozen_plan(Index layer, Index batch, Index rows, Index steps) const;
  int step_slices(Index batch) const;                                // the team a step of a batch has now
  std::size_t step_workspace_floats(Index batch, int slices) const;  // State's workspace for a batch
};

// Throws Error naming `call` unless `state` has the sizes of a state of a model of `config`.
void check_state(const Config& config, const State& state, const char* call);

}  // namespace lstm_fast::detail
