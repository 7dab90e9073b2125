// lstm_fast::Model: reading the file LSTM.save() writes (Model::load and, through _core, lf.load), and the
// whole-sequence forward. (The per-step kernel is in step.cpp.)
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cell.hpp"  // checked_mul
#include "lstm_fast/lstm_fast.hpp"
#include "network.hpp"
#include "safetensors.hpp"

namespace lstm_fast {
namespace {

using detail::Json;

constexpr const char* kFormat = "lstm_fast/1";  // the "format" entry of a model file's metadata

std::string str(Index v) { return std::to_string(v); }

std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The constructor arguments of LSTM(...) as saved by LSTM.config(): known keys only, ints as JSON
// integers, bools as JSON booleans, sizes the C++ Config accepts. (lf.load reads files through this
// too, then holds the values to the Python constructor's checks.)
Config parse_config(const std::string& text, const std::string& what) {
  const std::string where = what + ": metadata config";
  const Json root = detail::parse_json(text, where);
  if (root.kind != Json::Kind::Object) throw Error(where + " must be a JSON object");
  static const char* const known[] = {"input_size",  "hidden_size", "num_layers",    "bias",
                                      "batch_first", "dropout",     "bidirectional", "proj_size",
                                      "peephole",    "forget_bias", "dtype",         "seed"};
  for (const auto& m : root.members)
    if (std::find_if(std::begin(known), std::end(known), [&](const char* k) { return m.first == k; }) ==
        std::end(known))
      throw Error(where + " has an unknown argument \"" + m.first + "\"");

  // Sizes up to 2^31 - 1: the shape checks then compute in 64 bits without overflow.
  auto integer = [&](const char* key, Index fallback, bool required) -> Index {
    const Json* v = root.find(key);
    if (!v) {
      if (required) throw Error(where + " is missing \"" + key + "\"");
      return fallback;
    }
    if (v->kind != Json::Kind::Number || !v->is_integer)
      throw Error(where + ": \"" + key + "\" must be an integer, got " + Json::kind_name(v->kind));
    if (v->integer < 0 || v->integer > 0x7fffffff)
      throw Error(where + ": \"" + key + "\" must be in [0, 2^31), got " + std::to_string(v->integer));
    return static_cast<Index>(v->integer);
  };
  auto boolean = [&](const char* key, bool fallback) -> bool {
    const Json* v = root.find(key);
    if (!v) return fallback;
    if (v->kind != Json::Kind::Bool)
      throw Error(where + ": \"" + key + "\" must be true or false, got " + Json::kind_name(v->kind));
    return v->boolean;
  };
  Config c;
  c.input_size = integer("input_size", 0, true);
  c.hidden_size = integer("hidden_size", 0, true);
  c.num_layers = integer("num_layers", 1, false);
  c.proj_size = integer("proj_size", 0, false);
  c.bias = boolean("bias", true);
  c.bidirectional = boolean("bidirectional", false);
  c.peephole = boolean("peephole", false);
  boolean("batch_first", false);  // checked for type only: the C++ API is always (T, B, I)
  for (const char* key : {"dropout", "forget_bias"}) {
    const Json* v = root.find(key);
    if (v && v->kind != Json::Kind::Number)
      throw Error(where + ": \"" + key + "\" must be a number, got " + Json::kind_name(v->kind));
  }
  // seed only drives Python's initialisation and dropout, and Python's ints are unbounded: any number
  // here (one past int64 is not is_integer); the Python loader holds it to an int >= 0.
  if (const Json* seed = root.find("seed"); seed && seed->kind != Json::Kind::Null) {
    if (seed->kind != Json::Kind::Number)
      throw Error(where + ": \"seed\" must be an integer or null, got " + Json::kind_name(seed->kind));
    if (seed->is_integer && seed->integer < 0)
      throw Error(where + ": \"seed\" must be >= 0, got " + std::to_string(seed->integer));
  }
  if (const Json* dtype = root.find("dtype")) {
    if (dtype->kind != Json::Kind::String || (dtype->string != "float32" && dtype->string != "float64"))
      throw Error(where + ": \"dtype\" must be \"float32\" or \"float64\"");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  return c;
}

// The shape config `c` gives tensor `t` (torch's shapes; peepholes (3, H)).
std::vector<std::int64_t> expected_shape(const Config& c, const detail::ModelTensor& t) {
  const Index H = c.hidden_size, R = c.output_size();
  switch (t.field) {
    case 0: return {4 * H, c.layer_input_size(static_cast<Index>(t.cell) / c.directions())};
    case 1: return {4 * H, R};
    case 2:
    case 3: return {4 * H};
    case 4: return {R, H};
    default: return {3, H};
  }
}

// The tensors `c` implies, in the cell order k*D + d, each found in `st` (or an Error naming the
// first missing one), and no other tensor in `st`.
std::vector<detail::ModelTensor> expected_tensors(const Config& c, const detail::SafetensorsHeader& st,
                                                  const std::string& what) {
  std::unordered_map<std::string, std::size_t> by_name;
  for (std::size_t n = 0; n < st.tensors.size(); ++n) by_name.emplace(st.tensors[n].name, n);
  const Index L = c.num_layers, D = c.directions();
  std::vector<detail::ModelTensor> expected;
  for (Index k = 0; k < L; ++k) {
    for (Index d = 0; d < D; ++d) {
      // Checked cell by cell as the list grows: a huge num_layers in a hostile config stops at the
      // first missing tensor instead of allocating for all of them.
      const auto cell = static_cast<std::size_t>(k * D + d);
      const std::string sfx = "_l" + str(k) + (d == 1 ? "_reverse" : "");
      const std::size_t first = expected.size();
      expected.push_back({"weight_ih" + sfx, cell, 0, 0});
      expected.push_back({"weight_hh" + sfx, cell, 1, 0});
      if (c.bias) {
        expected.push_back({"bias_ih" + sfx, cell, 2, 0});
        expected.push_back({"bias_hh" + sfx, cell, 3, 0});
      }
      if (c.proj_size > 0) expected.push_back({"weight_hr" + sfx, cell, 4, 0});
      if (c.peephole) expected.push_back({"weight_peep" + sfx, cell, 5, 0});
      for (std::size_t n = first; n < expected.size(); ++n) {
        const auto found = by_name.find(expected[n].name);
        if (found == by_name.end())
          throw Error(what + " is missing tensor " + expected[n].name + " (expected shape " +
                      shape_str(expected_shape(c, expected[n])) + ")");
        expected[n].index = found->second;
      }
    }
  }
  if (expected.size() != st.tensors.size()) {
    std::unordered_set<std::string> names;
    for (const auto& e : expected) names.insert(e.name);
    for (const auto& t : st.tensors)
      if (!names.count(t.name)) throw Error(what + " has an unexpected tensor \"" + t.name + "\"");
  }
  return expected;
}

}  // namespace

namespace detail {

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error("cannot open " + what + ": " + std::strerror(errno));
  // Read in chunks to the end rather than sized by seek/tell, which is meaningless for a directory,
  // a pipe or a file that changes meanwhile: a read error is an Error, never a huge allocation.
  std::string bytes;
  std::vector<char> chunk(1 << 20);
  while (file) {
    file.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    bytes.append(chunk.data(), static_cast<size_t>(file.gcount()));
  }
  if (file.bad() || !file.eof()) throw Error("cannot read " + what + ": " + std::strerror(errno));
  return bytes;
}

ModelFile read_model_file(const unsigned char* bytes, std::size_t size, const std::string& what) {
  const auto file_size = static_cast<std::uint64_t>(size);
  unsigned char first8[8] = {};
  if (file_size >= 8) std::memcpy(first8, bytes, 8);
  const std::uint64_t header_bytes = header_length(first8, file_size, what);
  const std::string_view header(reinterpret_cast<const char*>(bytes) + 8, static_cast<size_t>(header_bytes));
  const std::uint64_t data_start = 8 + header_bytes;
  ModelFile f;
  f.header = parse_header(header, file_size - data_start, what);
  f.data = bytes + data_start;

  const std::string* format = f.header.meta("format");
  const std::string* config_text = f.header.meta("config");
  if (!format || *format != kFormat || !config_text)
    throw Error(what + " is not an lstm_fast model file: its metadata has no format=\"" + std::string(kFormat) +
                "\" and config");
  f.config = parse_config(*config_text, what);
  f.config_json = *config_text;
  f.tensors = expected_tensors(f.config, f.header, what);
  for (const ModelTensor& t : f.tensors) {
    const TensorInfo& info = f.info(t);
    if (info.dtype != "F32" && info.dtype != "F64")
      throw Error(what + ": tensor " + t.name + " has dtype " + info.dtype + ", expected F32 or F64");
    if (const auto shape = expected_shape(f.config, t); info.shape != shape)
      throw Error(what + ": tensor " + t.name + " must have shape " + shape_str(shape) + ", got " +
                  shape_str(info.shape));
  }
  return f;
}

}  // namespace detail

void State::reset() {
  std::fill(h.begin(), h.end(), 0.0f);
  std::fill(c.begin(), c.end(), 0.0f);
}

Model Model::load(const std::string& path) {
  const std::string what = "model file '" + path + "'";
  // The whole file, then the parser works on bytes in memory (the code path the fuzzer exercises).
  const std::string bytes = detail::read_file(path, what);
  return from_bytes(bytes.data(), bytes.size(), what);
}

Model Model::load_from_bytes(const void* data, std::size_t size, const std::string& name) {
  if (!data && size > 0) throw Error("load_from_bytes: data must not be null when size > 0");
  return from_bytes(static_cast<const unsigned char*>(data), size, "model bytes '" + name + "'");
}

Model Model::from_bytes(const void* data_ptr, std::size_t size, const std::string& what) {
  const auto* bytes = static_cast<const unsigned char*>(data_ptr);
  const detail::ModelFile file = detail::read_model_file(bytes, size, what);
  Model m;
  m.config_ = file.config;
  m.config_json_ = file.config_json;
  m.cells_.resize(static_cast<size_t>(m.config_.num_cells()));
  const Index H = m.config_.hidden_size;

  // The layout of params_: the tensors, then one summed bias per cell.
  auto offset_of = [&](const detail::ModelTensor& t) -> Index& {
    CellOffsets& o = m.cells_[t.cell];
    Index* fields[] = {&o.weight_ih, &o.weight_hh, &o.bias_ih, &o.bias_hh, &o.weight_hr, &o.weight_peep};
    return *fields[t.field];
  };
  Index total = 0;
  for (const detail::ModelTensor& t : file.tensors) {
    offset_of(t) = total;
    total += static_cast<Index>(file.info(t).elements());
  }
  if (m.config_.bias) {
    for (CellOffsets& o : m.cells_) {
      o.bias = total;
      total += 4 * H;
    }
  }
  m.params_.assign(static_cast<size_t>(total), 0.0f);

  for (const detail::ModelTensor& t : file.tensors) {  // parse_header checked that [begin, end) lies inside the data
    const detail::TensorInfo& info = file.info(t);
    detail::tensor_to_float(info, file.data + info.begin, m.params_.data() + offset_of(t), what);
  }
  if (m.config_.bias) {
    for (CellOffsets& o : m.cells_)
      for (Index j = 0; j < 4 * H; ++j)
        m.params_[static_cast<size_t>(o.bias + j)] =
            m.params_[static_cast<size_t>(o.bias_ih + j)] + m.params_[static_cast<size_t>(o.bias_hh + j)];
  }
  return m;
}

std::vector<CellWeights<float>> Model::cell_weights() const {
  std::vector<CellWeights<float>> cells;
  auto at = [&](Index offset) -> const float* { return offset < 0 ? nullptr : params_.data() + offset; };
  for (const CellOffsets& o : cells_)
    cells.push_back(
        {at(o.weight_ih), at(o.weight_hh), at(o.bias_ih), at(o.bias_hh), at(o.weight_hr), at(o.weight_peep)});
  return cells;
}

State Model::initial_state(Index batch) const {
  if (cells_.empty()) throw Error("initial_state: the model is empty (use Model::load)");
  if (batch < 1) throw Error("initial_state: batch must be >= 1, got " + str(batch));
  const Index LD = config_.num_cells(), H = config_.hidden_size, R = config_.output_size();
  if (detail::checked_mul(detail::checked_mul(LD, batch, kMaxElements), H, kMaxElements) < 0)
    throw Error("initial_state: batch " + str(batch) + " needs a state of more than 2^" +
                std::to_string(kMaxElementsLog2) + " numbers (L*D * batch * hidden_size)");
  State s;
  s.batch_ = batch;
  s.h.assign(static_cast<size_t>(LD * batch * R), 0.0f);
  s.c.assign(static_cast<size_t>(LD * batch * H), 0.0f);
  if (!config_.bidirectional) s.workspace_.assign(static_cast<size_t>(5 * H), 0.0f);  // one row at a time
  return s;
}

void Model::check_state(const State& state, const char* call) const {
  if (cells_.empty()) throw Error(std::string(call) + ": the model is empty (use Model::load)");
  const Index LD = config_.num_cells(), B = state.batch_, H = config_.hidden_size, R = config_.output_size();
  if (B < 1) throw Error(std::string(call) + ": state must come from initial_state(batch)");
  if (static_cast<Index>(state.h.size()) != LD * B * R || static_cast<Index>(state.c.size()) != LD * B * H)
    throw Error(std::string(call) + ": state.h must hold [L*D, B, R] = [" + str(LD) + ", " + str(B) + ", " + str(R) +
                "] floats and state.c [" + str(LD) + ", " + str(B) + ", " + str(H) + "], got " +
                str(static_cast<Index>(state.h.size())) + " and " + str(static_cast<Index>(state.c.size())) +
                " (a state of another model?)");
}

void Model::forward(const float* x, Index steps, Index batch, float* y, State& state) const {
  check_state(state, "forward");
  if (batch != state.batch_)
    throw Error("forward: batch must equal the state's batch " + str(state.batch_) + ", got " + str(batch));
  if (!x || !y) throw Error("forward: x and y must not be null");
  const Schedule schedule = Schedule::dense(steps, batch);
  std::vector<float> h_n(state.h.size()), c_n(state.c.size());
  lstm_fast::forward<float>(config_, cell_weights(), schedule, x, state.h.data(), state.c.data(), nullptr, y,
                            h_n.data(), c_n.data(), nullptr);
  state.h.swap(h_n);
  state.c.swap(c_n);
}

}  // namespace lstm_fast
