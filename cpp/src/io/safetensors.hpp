// The safetensors container, read strictly: the file is untrusted input (the reliability work fuzzes
// these functions, which take bytes in memory and never read outside them).
//
// File layout (https://github.com/huggingface/safetensors):
//   [8 bytes]  N, little-endian u64: the header length
//   [N bytes]  JSON object {name: {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [b, e]},
//                           "__metadata__": {str: str}}   (padded with trailing spaces)
//   [rest]     the data buffer; tensor `name` is bytes [b, e) of it, little-endian, row-major.
// Internal header: not installed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/json.hpp"
#include "lstm_fast/config.hpp"

namespace lstm_fast::detail {

struct TensorInfo {
  std::string name;
  std::string dtype;                 // "F32", "F64", ...
  std::size_t itemsize = 0;          // bytes per element
  std::vector<std::int64_t> shape;   // each >= 0
  std::uint64_t begin = 0, end = 0;  // offsets into the data buffer
  std::uint64_t elements() const;
};

struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in the order the header lists them
  std::vector<std::pair<std::string, std::string>> metadata;
  const TensorInfo* find(std::string_view name) const;
  const std::string* meta(std::string_view key) const;
};

// Upper bound on N (the header length), as in the reference implementation.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

// The header length N from the first 8 bytes of a file of `file_size` bytes, checked against the
// bound above and the file size.
std::uint64_t header_length(const unsigned char first8[8], std::uint64_t file_size, const std::string& what);

// Parses and checks the header: every entry well-formed, known dtype, shape * itemsize equal to
// its byte range, ranges inside the data buffer of `data_size` bytes, covering it without overlap.
SafetensorsHeader parse_header(std::string_view header, std::uint64_t data_size, const std::string& what);

// The bytes of the file at `path`, read to its end. Throws Error("cannot open|read <what>: <reason>").
std::string read_file(const std::string& path, const std::string& what);

// One tensor of a model file: its torch name and where it goes in the cell order.
struct ModelTensor {
  std::string name;   // e.g. weight_ih_l0_reverse
  std::size_t cell;   // k*D + d
  int field;          // 0 weight_ih, 1 weight_hh, 2 bias_ih, 3 bias_hh, 4 weight_hr, 5 weight_peep,
                      // int8 files: 6, 7, 8 the row scales of weight_ih, weight_hh, weight_hr;
                      // layer norm: 9 .. 14 ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias,
                      // ln_cell_weight, ln_cell_bias
  std::size_t index;  // into ModelFile::header.tensors
};

// An lstm_fast model file, checked: the container, the "format", "config" and "precision" metadata,
// and exactly the tensors the config and precision imply, each with the shape the config gives it and
// the dtype of its precision: F32 or F64 (fp32); the weights BF16 (bf16) or I8 with F32 row scales
// (int8), and the biases and peepholes F32.
// Nothing is copied: the tensors' bytes stay in the caller's buffer, at data + [begin, end).
struct ModelFile {
  Config config;
  std::string config_json;                // the "config" metadata as written (LSTM's constructor arguments)
  Precision precision = Precision::fp32;  // the "precision" metadata; fp32 when absent
  SafetensorsHeader header;
  std::vector<ModelTensor> tensors;  // in cell order, each cell's in field order
  const unsigned char* data = nullptr;

  const TensorInfo& info(const ModelTensor& t) const { return header.tensors[t.index]; }
};

// Reads and checks the `size` bytes of a model file (Model::load and Python's lf.load share it).
// Errors throw Error("<what>...") naming the problem; nothing is allocated on the file's word.
ModelFile read_model_file(const unsigned char* bytes, std::size_t size, const std::string& what);

// The shape config `c` gives tensor `t` (torch's shapes; peepholes (3, H); int8 scales one per row).
std::vector<std::int64_t> expected_shape(const Config& c, const ModelTensor& t);

// One tensor of a file being written: its name, safetensors dtype ("F32", "BF16", "I8"), shape and
// little-endian bytes.
struct FileTensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

// Writes a model file of `precision` holding `tensors` in that order (Model::save's), with the format,
// config and precision metadata, atomically: a temporary file, then renamed. Error("save: cannot
// write ...") when the system refuses.
void write_model_file(const std::string& path, const std::string& config_json, Precision precision,
                      const std::vector<FileTensor>& tensors);

// The tensors of cell k*D + d of a model file of precision p, in field order (index unset).
std::vector<ModelTensor> cell_tensors(const Config& c, Precision p, Index k, Index d);

// The weight fields (weight_ih, weight_hh, weight_hr): what bf16 and int8 files store reduced.
inline bool is_weight(int field) { return field == 0 || field == 1 || field == 4; }
// The int8 row scales' fields.
inline bool is_scale(int field) { return field >= 6 && field <= 8; }
constexpr int kLayerNormField = 9;  // the first of layer norm's six
constexpr const char* kLayerNormNames[] = {"ln_ih_weight", "ln_ih_bias",     "ln_hh_weight",
                                           "ln_hh_bias",   "ln_cell_weight", "ln_cell_bias"};

// A tensor's little-endian 16-bit words (BF16).
std::vector<std::uint16_t> tensor_words(const TensorInfo& info, const unsigned char* bytes);
// A tensor of the file as float32: F32 and F64 converted, BF16 widened, I8 times its row's scale
// (`scale`, one per row).
std::vector<float> tensor_floats(const ModelFile& f, const ModelTensor& t, const float* scale, const std::string& what);
// The row scales of an int8 weight (an F32 tensor): Error unless each is finite and > 0.
std::vector<float> row_scales(const ModelFile& f, const ModelTensor& t, const std::string& what);

// Converts one tensor's bytes (exactly end - begin of them, little-endian F32 or F64) to float.
void tensor_to_float(const TensorInfo& t, const unsigned char* bytes, float* out, const std::string& what);

}  // namespace lstm_fast::detail
