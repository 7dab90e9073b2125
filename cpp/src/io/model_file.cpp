// Model files: reading and checking the file LSTM.save() and Model::save write (Model::load and, through
// _core, lf.load and lf.load_model), and writing one from its tensors (write_model_file, for Model::save).
#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cell/cell.hpp"  // checked_mul
#include "weights/frozen.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "stack/network.hpp"
#include "io/safetensors.hpp"

namespace lstm_fast {
namespace detail {

// The shape config `c` gives tensor `t` (torch's shapes; peepholes (3, H); int8 scales one per row).
std::vector<std::int64_t> expected_shape(const Config& c, const ModelTensor& t) {
  const Index H = c.hidden_size, R = c.output_size();
  switch (t.field) {
    case 0: return {4 * H, c.layer_input_size(static_cast<Index>(t.cell) / c.directions())};
    case 1: return {4 * H, R};
    case 2:
    case 3:
    case 6:
    case 7: return {4 * H};
    case 4: return {R, H};
    case 8: return {R};
    case 9:
    case 10:
    case 11:
    case 12: return {4 * H};
    case 13:
    case 14: return {H};
    default: return {3, H};
  }
}

}  // namespace detail

namespace {

using detail::Json;

constexpr const char* kFormat = "lstm_fast/1";  // the "format" entry of a model file's metadata

std::string str(Index v) { return std::to_string(v); }

std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// "zoneout": a number z (z_h = z_c = z) or a pair [z_h, z_c], each in [0, 1).
void zoneout(const Json& root, const std::string& where, Config& c) {
  const Json* v = root.find("zoneout");
  if (!v) return;
  const bool pair = v->kind == Json::Kind::Array && v->items.size() == 2 && v->items[0].kind == Json::Kind::Number &&
                    v->items[1].kind == Json::Kind::Number;
  if (v->kind != Json::Kind::Number && !pair)
    throw Error(where + ": \"zoneout\" must be a number or a pair of numbers, got " + Json::kind_name(v->kind));
  c.zoneout_h = pair ? v->items[0].number : v->number;
  c.zoneout_c = pair ? v->items[1].number : v->number;
}

// The constructor arguments of LSTM(...) as saved by LSTM.config(): known keys only, ints as JSON
// integers, bools as JSON booleans, sizes the C++ Config accepts. (lf.load reads files through this
// too, then holds the values to the Python constructor's checks.)
Config parse_config(const std::string& text, const std::string& what) {
  const std::string where = what + ": metadata config";
  const Json root = detail::parse_json(text, where);
  if (root.kind != Json::Kind::Object) throw Error(where + " must be a JSON object");
  static const char* const known[] = {"input_size", "hidden_size",   "num_layers", "bias",          "batch_first",
                                      "dropout",    "bidirectional", "proj_size",  "peephole",      "forget_bias",
                                      "dtype",      "seed",          "cell_clip",  "coupled_gates", "recurrent_dropout",
                                      "zoneout",    "layer_norm"};
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
  c.coupled_gates = boolean("coupled_gates", false);
  c.layer_norm = boolean("layer_norm", false);
  if (const Json* clip = root.find("cell_clip"); clip && clip->kind != Json::Kind::Null) {
    if (clip->kind != Json::Kind::Number || !(clip->number > 0) || !std::isfinite(clip->number))
      throw Error(where + ": \"cell_clip\" must be null or a finite number > 0");
    c.cell_clip = clip->number;
  }
  zoneout(root, where, c);
  boolean("batch_first", false);  // checked for type only: the C++ API is always (T, B, I)
  for (const char* key : {"dropout", "forget_bias", "recurrent_dropout"}) {
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

// The dtypes a tensor has in a file of precision p, as errors name them.
std::string expected_dtypes(Precision p, int field) {
  if (p == Precision::fp32) return "F32 or F64";
  if (!detail::is_weight(field)) return "F32";
  return p == Precision::bf16 ? "BF16" : "I8";
}

// The tensors `c` and `p` imply, in the cell order k*D + d, each found in `st` (or an Error naming the
// first missing one), and no other tensor in `st`.
std::vector<detail::ModelTensor> expected_tensors(const Config& c, Precision p, const detail::SafetensorsHeader& st,
                                                  const std::string& what) {
  std::unordered_map<std::string, std::size_t> by_name;
  for (std::size_t n = 0; n < st.tensors.size(); ++n) by_name.emplace(st.tensors[n].name, n);
  std::vector<detail::ModelTensor> expected;
  // Checked cell by cell as the list grows: a huge num_layers in a hostile config stops at the first
  // missing tensor instead of allocating for all of them.
  for (Index k = 0; k < c.num_layers; ++k) {
    for (Index d = 0; d < c.directions(); ++d) {
      for (detail::ModelTensor t : detail::cell_tensors(c, p, k, d)) {
        const auto found = by_name.find(t.name);
        if (found == by_name.end())
          throw Error(what + " is missing tensor " + t.name + " (expected shape " + shape_str(expected_shape(c, t)) +
                      ")");
        t.index = found->second;
        expected.push_back(std::move(t));
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

// JSON string literal of s (the header of a file save writes).
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
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

// Little-endian 16-bit words and bytes of a tensor.
std::vector<std::uint16_t> tensor_words(const TensorInfo& info, const unsigned char* bytes) {
  std::vector<std::uint16_t> out(static_cast<std::size_t>(info.elements()));
  for (std::size_t e = 0; e < out.size(); ++e)
    out[e] = static_cast<std::uint16_t>(bytes[2 * e] | (static_cast<unsigned>(bytes[2 * e + 1]) << 8));
  return out;
}

// A tensor of the file as float32: F32 and F64 converted, BF16 widened, I8 times its row's scale.
std::vector<float> tensor_floats(const ModelFile& f, const ModelTensor& t, const float* scale,
                                 const std::string& what) {
  const TensorInfo& info = f.info(t);
  const unsigned char* bytes = f.data + info.begin;
  std::vector<float> out(static_cast<std::size_t>(info.elements()));
  if (info.dtype == "BF16") {
    const std::vector<std::uint16_t> v = tensor_words(info, bytes);
    for (std::size_t e = 0; e < out.size(); ++e) out[e] = from_bf16(v[e]);
  } else if (info.dtype == "I8") {
    const auto K = static_cast<std::size_t>(info.shape[1]);
    for (std::size_t e = 0; e < out.size(); ++e)
      out[e] = static_cast<float>(static_cast<std::int8_t>(bytes[e])) * scale[e / K];
  } else {
    tensor_to_float(info, bytes, out.data(), what);
  }
  return out;
}

// The row scales of an int8 weight: each finite and > 0, as freeze_matrix makes them.
std::vector<float> row_scales(const ModelFile& f, const ModelTensor& t, const std::string& what) {
  std::vector<float> s = tensor_floats(f, t, nullptr, what);
  for (float v : s)
    if (!(v > 0.0f && v <= 3.4e38f))
      throw Error(what + ": tensor " + t.name + " must hold finite scales > 0, got " + std::to_string(v));
  return s;
}

std::vector<ModelTensor> cell_tensors(const Config& c, Precision p, Index k, Index d) {
  const auto cell = static_cast<std::size_t>(k * c.directions() + d);
  const std::string sfx = "_l" + str(k) + (d == 1 ? "_reverse" : "");
  const bool int8 = p == Precision::int8;
  std::vector<ModelTensor> out;
  out.push_back({"weight_ih" + sfx, cell, 0, 0});
  if (int8) out.push_back({"weight_ih" + sfx + "_scale", cell, 6, 0});
  out.push_back({"weight_hh" + sfx, cell, 1, 0});
  if (int8) out.push_back({"weight_hh" + sfx + "_scale", cell, 7, 0});
  if (c.bias) {
    out.push_back({"bias_ih" + sfx, cell, 2, 0});
    out.push_back({"bias_hh" + sfx, cell, 3, 0});
  }
  if (c.proj_size > 0) {
    out.push_back({"weight_hr" + sfx, cell, 4, 0});
    if (int8) out.push_back({"weight_hr" + sfx + "_scale", cell, 8, 0});
  }
  if (c.peephole) out.push_back({"weight_peep" + sfx, cell, 5, 0});
  if (c.layer_norm)
    for (int k = 0; k < 6; ++k) out.push_back({kLayerNormNames[k] + sfx, cell, kLayerNormField + k, 0});
  return out;
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
  if (const std::string* precision = f.header.meta("precision")) {
    try {
      f.precision = parse_precision(*precision);
    } catch (const Error& e) {
      throw Error(what + ": metadata " + e.what());
    }
  }
  f.tensors = expected_tensors(f.config, f.precision, f.header, what);
  for (const ModelTensor& t : f.tensors) {
    const TensorInfo& info = f.info(t);
    const std::string expected = expected_dtypes(f.precision, t.field);
    if (info.dtype != expected && !(expected == "F32 or F64" && (info.dtype == "F32" || info.dtype == "F64")))
      throw Error(what + ": tensor " + t.name + " has dtype " + info.dtype + ", expected " + expected + " in a " +
                  precision_name(f.precision) + " model file");
    if (const auto shape = expected_shape(f.config, t); info.shape != shape)
      throw Error(what + ": tensor " + t.name + " must have shape " + shape_str(shape) + ", got " +
                  shape_str(info.shape));
  }
  return f;
}

}  // namespace detail

namespace detail {

void write_model_file(const std::string& path, const std::string& config_json, Precision precision,
                      const std::vector<FileTensor>& tensors) {
  std::string header = "{\"__metadata__\":{\"format\":" + json_string(kFormat) +
                       ",\"config\":" + json_string(config_json) +
                       ",\"precision\":" + json_string(precision_name(precision)) + "}";
  std::uint64_t at = 0;
  for (const FileTensor& e : tensors) {
    std::string shape;
    for (std::int64_t v : e.shape) shape += (shape.empty() ? "" : ",") + std::to_string(v);
    header += "," + json_string(e.name) + ":{\"dtype\":\"" + e.dtype + "\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + e.bytes.size()) + "]}";
    at += e.bytes.size();
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data 8-byte aligned, as safetensors writes it
  const std::string tmp = path + ".tmp-lstm_fast";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("save: cannot write '" + tmp + "': " + std::strerror(errno));
    unsigned char length[8];
    for (int b = 0; b < 8; ++b)
      length[b] = static_cast<unsigned char>(static_cast<std::uint64_t>(header.size()) >> (8 * b));
    out.write(reinterpret_cast<const char*>(length), 8);
    out << header;
    for (const FileTensor& e : tensors) out << e.bytes;
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error("save: cannot write '" + tmp + "': " + std::strerror(errno));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error("save: cannot write '" + path + "': " + reason);
  }
}

}  // namespace detail
}  // namespace lstm_fast
