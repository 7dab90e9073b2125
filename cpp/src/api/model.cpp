// lstm_fast::Model: a handle to the ModelData made from a file's bytes (any precision, converted on
// load), the whole-sequence forward, and save. (The file format is model_file.cpp's; the per-step
// kernel step.cpp's.)
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "api/model_data.hpp"
#include "cell/cell.hpp"  // checked_mul
#include "cell/frozen_cell.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "stack/network.hpp"
#include "plan/plan.hpp"
#include "runtime/team.hpp"
#include "io/safetensors.hpp"

namespace lstm_fast {
namespace {

std::string str(Index v) { return std::to_string(v); }

// Weight tensor t of the file packed for the frozen kernels in `precision`: a file's own bf16 and int8
// values bit for bit, anything else through float32. W_ih and W_hh in four parts (the gates).
detail::FrozenMatrix frozen_matrix(const detail::ModelFile& file, const detail::ModelTensor& t, Precision precision,
                                   const float* scale, const std::string& what) {
  const detail::TensorInfo& info = file.info(t);
  const Index n = info.shape[0], K = info.shape[1];
  const Index parts = t.field == 4 ? 1 : 4;
  if (file.precision == precision && precision == Precision::int8)
    return detail::freeze_int8(reinterpret_cast<const std::int8_t*>(file.data + info.begin), scale, n, K, parts);
  if (file.precision == precision && precision == Precision::bf16)
    return detail::freeze_bf16(detail::tensor_words(info, file.data + info.begin).data(), n, K, parts);
  try {
    return detail::freeze_matrix(precision, detail::tensor_floats(file, t, scale, what).data(), n, K, parts);
  } catch (const Error& e) {
    throw Error(what + ": tensor " + t.name + ": " + e.what());
  }
}

// The model of a file's `size` bytes, in `precision` when given, else the file's.
std::shared_ptr<const detail::ModelData> from_bytes(const void* data_ptr, std::size_t size, const std::string& what,
                                                    const Precision* precision) {
  const auto* bytes = static_cast<const unsigned char*>(data_ptr);
  const detail::ModelFile file = detail::read_model_file(bytes, size, what);
  auto m = std::make_shared<detail::ModelData>();
  m->config = file.config;
  m->config_json = file.config_json;
  m->precision = precision ? *precision : file.precision;
  const bool frozen = m->precision != Precision::fp32;
  const Config& c = m->config;
  if (m->precision == Precision::int8 &&
      std::max({c.input_size, c.hidden_size, c.directions() * c.output_size()}) > detail::kMaxInt8Depth)
    throw Error(what + ": an int8 model needs input_size, hidden_size and D*R <= " + str(detail::kMaxInt8Depth) +
                " (its int32 sums must be exact)");
  m->cells.resize(static_cast<size_t>(c.num_cells()));
  const Index H = c.hidden_size;

  // The layout of params: the float tensors (all of them in fp32; the biases and peepholes of a
  // frozen model), then one summed bias per cell.
  auto offset_of = [&](const detail::ModelTensor& t) -> Index& { return m->cells[t.cell].of(t.field); };
  auto in_params = [&](const detail::ModelTensor& t) {
    return !detail::is_scale(t.field) && !(frozen && detail::is_weight(t.field));
  };
  Index total = 0;
  for (const detail::ModelTensor& t : file.tensors) {
    if (!in_params(t)) continue;
    offset_of(t) = total;
    total += static_cast<Index>(file.info(t).elements());
  }
  if (c.bias) {
    for (detail::CellOffsets& o : m->cells) {
      o.bias = total;
      total += 4 * H;
    }
  }
  std::vector<float>& params = m->params;
  params.assign(static_cast<size_t>(total), 0.0f);

  // An int8 file's row scales, by cell and weight (0 ih, 1 hh, 4 hr).
  std::vector<std::vector<float>> row_scales(static_cast<size_t>(c.num_cells() * 5));
  for (const detail::ModelTensor& t : file.tensors)
    if (detail::is_scale(t.field))
      row_scales[t.cell * 5 + (t.field == 8 ? 4 : t.field - 6)] = detail::row_scales(file, t, what);
  auto scale_of = [&](const detail::ModelTensor& t) {
    return file.precision == Precision::int8 && detail::is_weight(t.field) ? row_scales[t.cell * 5 + t.field].data()
                                                                           : nullptr;
  };

  std::vector<detail::FrozenCell> cells(static_cast<size_t>(c.num_cells()));
  for (const detail::ModelTensor& t : file.tensors) {  // parse_header checked that [begin, end) lies inside the data
    if (detail::is_scale(t.field)) continue;
    if (in_params(t)) {
      const std::vector<float> v = detail::tensor_floats(file, t, scale_of(t), what);
      std::copy(v.begin(), v.end(), params.begin() + offset_of(t));
    }
    if (detail::is_weight(t.field)) {
      detail::FrozenCell& cell = cells[t.cell];
      (t.field == 0   ? cell.ih
       : t.field == 1 ? cell.hh
                      : cell.hr) = frozen_matrix(file, t, m->precision, scale_of(t), what);
    }
  }
  if (c.bias) {
    for (detail::CellOffsets& o : m->cells)
      for (Index j = 0; j < 4 * H; ++j)
        params[static_cast<size_t>(o.bias + j)] =
            params[static_cast<size_t>(o.bias_ih + j)] + params[static_cast<size_t>(o.bias_hh + j)];
  }
  for (size_t k = 0; k < cells.size(); ++k) {
    const detail::CellOffsets& o = m->cells[k];
    cells[k].bias = o.bias < 0 ? nullptr : params.data() + o.bias;
    cells[k].peep = o.weight_peep < 0 ? nullptr : params.data() + o.weight_peep;
    for (int i = 0; i < 6; ++i) cells[k].ln[i] = o.ln[i] < 0 ? nullptr : params.data() + o.ln[i];
  }
  m->frozen = std::move(cells);  // (moving keeps the pointers into params valid)
  return m;
}

}  // namespace

void State::reset() {
  std::fill(h.begin(), h.end(), 0.0f);
  std::fill(c.begin(), c.end(), 0.0f);
}

Model Model::load(const std::string& path) {
  const std::string what = "model file '" + path + "'";
  // The whole file, then the parser works on bytes in memory (the code path the fuzzer exercises).
  const std::string bytes = detail::read_file(path, what);
  return Model(from_bytes(bytes.data(), bytes.size(), what, nullptr));
}

Model Model::load(const std::string& path, Precision precision) {
  const std::string what = "model file '" + path + "'";
  const std::string bytes = detail::read_file(path, what);
  return Model(from_bytes(bytes.data(), bytes.size(), what, &precision));
}

Model Model::load_from_bytes(const void* data, std::size_t size, const std::string& name) {
  if (!data && size > 0) throw Error("load_from_bytes: data must not be null when size > 0");
  return Model(from_bytes(static_cast<const unsigned char*>(data), size, "model bytes '" + name + "'", nullptr));
}

Model Model::load_from_bytes(const void* data, std::size_t size, const std::string& name, Precision precision) {
  if (!data && size > 0) throw Error("load_from_bytes: data must not be null when size > 0");
  return Model(from_bytes(static_cast<const unsigned char*>(data), size, "model bytes '" + name + "'", &precision));
}

const detail::ModelData& Model::data(const char* call) const {
  if (!data_) throw Error(std::string(call) + ": the model is empty (use Model::load)");
  return *data_;
}

Precision Model::precision() const { return data_ ? data_->precision : Precision::fp32; }

const Config& Model::config() const {
  static const Config empty;
  return data_ ? data_->config : empty;
}

const std::string& Model::config_json() const {
  static const std::string empty;
  return data_ ? data_->config_json : empty;
}

State Model::initial_state(Index batch) const {
  const detail::ModelData& m = data("initial_state");
  if (batch < 1) throw Error("initial_state: batch must be >= 1, got " + str(batch));
  const Index LD = m.config.num_cells(), H = m.config.hidden_size, R = m.config.output_size();
  if (detail::checked_mul(detail::checked_mul(LD, batch, kMaxElements), H, kMaxElements) < 0)
    throw Error("initial_state: batch " + str(batch) + " needs a state of more than 2^" +
                std::to_string(kMaxElementsLog2) + " numbers (L*D * batch * hidden_size)");
  State s;
  s.batch_ = batch;
  s.h.assign(static_cast<size_t>(LD * batch * R), 0.0f);
  s.c.assign(static_cast<size_t>(LD * batch * H), 0.0f);
  if (!m.config.bidirectional) s.workspace_.assign(m.step_workspace_floats(batch, 1), 0.0f);
  return s;
}

void Model::forward(const float* x, Index steps, Index batch, float* y, State& state) const {
  const Schedule dense = Schedule::dense(steps, batch);  // checks steps * batch before allocating
  forward(x, dense.batch_sizes.data(), steps, batch, y, state);
}

void Model::forward(const float* x, const Index* batch_sizes, Index steps, Index batch, float* y, State& state) const {
  const detail::ModelData& m = data("forward");
  detail::check_state(m.config, state, "forward");
  if (batch != state.batch_)
    throw Error("forward: batch must equal the state's batch " + str(state.batch_) + ", got " + str(batch));
  if (!x || !y || !batch_sizes) throw Error("forward: x, batch_sizes and y must not be null");
  std::vector<float> h_n(state.h.size()), c_n(state.c.size());
  m.run(x, batch_sizes, steps, batch, y, state.h.data(), state.c.data(), h_n.data(), c_n.data());
  state.h.swap(h_n);
  state.c.swap(c_n);
}

// The file's tensors from the model's arrays: the float32 ones from params (little-endian), the
// frozen weights unpacked to the file's BF16 or I8 with their row scales.
void Model::save(const std::string& path) const {
  const detail::ModelData& m = data("save");
  std::vector<detail::FileTensor> tensors;
  auto put = [&](const detail::ModelTensor& t, const char* dtype, const void* bytes, std::size_t size) {
    tensors.push_back(
        {t.name, dtype, detail::expected_shape(m.config, t), std::string(static_cast<const char*>(bytes), size)});
  };
  for (Index k = 0; k < m.config.num_layers; ++k) {
    for (Index d = 0; d < m.config.directions(); ++d) {
      for (const detail::ModelTensor& t : detail::cell_tensors(m.config, m.precision, k, d)) {
        const detail::CellOffsets& o = m.cells[t.cell];
        if (!detail::is_scale(t.field) && o.of(t.field) >= 0) {
          std::size_t elements = 1;
          for (std::int64_t e : detail::expected_shape(m.config, t)) elements *= static_cast<std::size_t>(e);
          put(t, "F32", m.params.data() + o.of(t.field), elements * 4);
          continue;
        }
        const detail::FrozenCell& cell = m.frozen[t.cell];
        const int weight = detail::is_scale(t.field) ? (t.field == 8 ? 4 : t.field - 6) : t.field;
        const detail::FrozenMatrix& w = weight == 0 ? cell.ih : weight == 1 ? cell.hh : cell.hr;
        if (detail::is_scale(t.field)) {
          put(t, "F32", w.scale.data(), w.scale.size() * 4);
        } else if (m.precision == Precision::int8) {
          const std::vector<std::int8_t> q = detail::unpack_int8(w);
          put(t, "I8", q.data(), q.size());
        } else {
          const std::vector<std::uint16_t> v = detail::unpack_bf16(w);
          put(t, "BF16", v.data(), v.size() * 2);
        }
      }
    }
  }
  detail::write_model_file(path, m.config_json, m.precision, tensors);
}

namespace detail {

void check_state(const Config& config, const State& state, const char* call) {
  const Index LD = config.num_cells(), B = state.batch(), H = config.hidden_size, R = config.output_size();
  if (B < 1) throw Error(std::string(call) + ": state must come from initial_state(batch)");
  if (static_cast<Index>(state.h.size()) != LD * B * R || static_cast<Index>(state.c.size()) != LD * B * H)
    throw Error(std::string(call) + ": state.h must hold [L*D, B, R] = [" + str(LD) + ", " + str(B) + ", " + str(R) +
                "] floats and state.c [" + str(LD) + ", " + str(B) + ", " + str(H) + "], got " +
                str(static_cast<Index>(state.h.size())) + " and " + str(static_cast<Index>(state.c.size())) +
                " (a state of another model?)");
}

std::vector<CellWeights<float>> ModelData::cell_weights() const {
  std::vector<CellWeights<float>> out;
  auto at = [&](Index offset) -> const float* { return offset < 0 ? nullptr : params.data() + offset; };
  for (const CellOffsets& o : cells)
    out.push_back({at(o.weight_ih), at(o.weight_hh), at(o.bias_ih), at(o.bias_hh), at(o.weight_hr), at(o.weight_peep),
                   at(o.ln[0]), at(o.ln[1]), at(o.ln[2]), at(o.ln[3]), at(o.ln[4]), at(o.ln[5])});
  return out;
}

void ModelData::run(const float* x, const Index* batch_sizes, Index steps, Index batch, float* y, const float* h0,
                    const float* c0, float* h_n, float* c_n) const {
  if (steps < 1) throw Error("forward: the sequence must have >= 1 steps, got " + str(steps));
  const Schedule schedule = Schedule::packed(std::vector<Index>(batch_sizes, batch_sizes + steps), batch);
  if (precision == Precision::fp32) {  // the sequence kernels of lf.LSTM (row split, panels per call)
    lstm_fast::forward<float>(config, cell_weights(), schedule, {x, h0, c0}, {y, h_n, c_n});
    return;
  }
  // bf16 and int8: layer by layer, each direction's cell by the frozen kernels on the plan's team, in
  // a work buffer of its own per direction when the two run side by side.
  const Index D = config.directions(), R = config.output_size(), H = config.hidden_size, B = batch;
  Buffer<unsigned char> work[2];
  const FrozenForward cell_forward = active_kernels().frozen_forward;
  over_layers(config.num_layers, schedule.rows(), D * R, x, y, [&](Index k, const float* in, float* out) {
    const CellDims dims = cell_dims(config, k);
    const LayerPlan plan = frozen_plan(k, B, schedule.rows(), steps);
    const std::size_t bytes = FrozenWork(dims, precision, B, plan.cell.chunk * B, plan.cell.team).bytes;
    const bool parallel = plan.directions_parallel && D == 2;
    for (Index d = 0; d < (parallel ? 2 : 1); ++d) work[d].resize(bytes);
    run_directions(D, parallel, [&](Index d) {
      const Index cell = k * D + d;
      const FrozenSteps s{B, steps, schedule.batch_sizes.data(), schedule.offsets.data(), d == 1};
      cell_forward(dims, plan.cell, frozen[static_cast<size_t>(cell)], s,
                   {in,
                    {h0 ? h0 + cell * B * R : nullptr, c0 ? c0 + cell * B * H : nullptr},
                    {out + d * R, D * R},
                    {h_n + cell * B * R, c_n + cell * B * H},
                    work[parallel ? d : 0].data()});
    });
  });
}

LayerPlan ModelData::frozen_plan(Index layer, Index batch, Index rows, Index steps) const {
  Problem problem = layer_problem(config, layer, batch, rows, steps);
  problem.threads = get_num_threads();
  problem.element_size = precision == Precision::int8 ? 1 : precision == Precision::bf16 ? 2 : 4;
  problem.precision = precision;
  problem.dot = dot_instructions();
  problem.l2_bytes = cache_sizes().l2;
  problem.lanes = kFrozenBlock;  // a member's hidden units are whole blocks
  return plan_layer(problem);
}

}  // namespace detail
}  // namespace lstm_fast
