// The safetensors header checks and the conversion of tensors (see safetensors.hpp).
#include "io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace lstm_fast::detail {
namespace {

struct DtypeInfo {
  const char* name;
  std::size_t itemsize;
};
// Every dtype of the safetensors format (the model loader then accepts F32 and F64 only).
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
};

bool little_endian_host() {
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace

std::uint64_t TensorInfo::elements() const {
  std::uint64_t n = 1;
  for (std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);  // checked in parse_header
  return n;
}

const TensorInfo* SafetensorsHeader::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const std::string* SafetensorsHeader::meta(std::string_view key) const {
  for (const auto& m : metadata)
    if (m.first == key) return &m.second;
  return nullptr;
}

std::uint64_t header_length(const unsigned char first8[8], std::uint64_t file_size, const std::string& what) {
  if (file_size < 8)
    throw Error(what + ": file too short for a safetensors header (" + std::to_string(file_size) + " bytes)");
  std::uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | first8[k];
  if (n < 2 || n > kMaxHeaderBytes)
    throw Error(what + ": header length " + std::to_string(n) + " is not in [2, " + std::to_string(kMaxHeaderBytes) +
                "]");
  if (n > file_size - 8)
    throw Error(what + ": header length " + std::to_string(n) + " exceeds the file (" + std::to_string(file_size) +
                " bytes; truncated?)");
  return n;
}

namespace {

// One tensor's entry of the header: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}, its
// byte range inside the data buffer of data_size bytes and exactly as long as shape and dtype need.
TensorInfo parse_tensor(const std::string& name, const Json& entry, std::uint64_t data_size, const std::string& where) {
  const std::string tw = where + ": tensor \"" + name + "\"";
  if (entry.kind != Json::Kind::Object) throw Error(tw + " must be an object");
  for (const auto& member : entry.members)
    if (member.first != "dtype" && member.first != "shape" && member.first != "data_offsets")
      throw Error(tw + " has an unknown field \"" + member.first + "\"");
  const Json* dtype = entry.find("dtype");
  const Json* shape = entry.find("shape");
  const Json* offsets = entry.find("data_offsets");
  if (!dtype || !shape || !offsets) throw Error(tw + " must have dtype, shape and data_offsets");

  TensorInfo t;
  t.name = name;
  if (dtype->kind != Json::Kind::String) throw Error(tw + ": dtype must be a string");
  for (const DtypeInfo& d : kDtypes)
    if (dtype->string == d.name) t.itemsize = d.itemsize;
  if (t.itemsize == 0) throw Error(tw + " has an unknown dtype \"" + dtype->string + "\"");
  t.dtype = dtype->string;

  if (shape->kind != Json::Kind::Array) throw Error(tw + ": shape must be an array of integers");
  std::uint64_t bytes = t.itemsize;  // shape * itemsize, checked against overflow via data_size
  bool overflow = false;
  for (const Json& d : shape->items) {
    if (d.kind != Json::Kind::Number || !d.is_integer || d.integer < 0)
      throw Error(tw + ": shape must be an array of integers >= 0");
    t.shape.push_back(d.integer);
    const auto du = static_cast<std::uint64_t>(d.integer);
    if (du != 0 && bytes > std::numeric_limits<std::uint64_t>::max() / du)
      overflow = true;
    else
      bytes *= du;
  }
  if (overflow) bytes = std::numeric_limits<std::uint64_t>::max();
  for (std::int64_t d : t.shape)
    if (d == 0) bytes = 0;

  if (offsets->kind != Json::Kind::Array || offsets->items.size() != 2)
    throw Error(tw + ": data_offsets must be [begin, end]");
  for (const Json& o : offsets->items)
    if (o.kind != Json::Kind::Number || !o.is_integer || o.integer < 0)
      throw Error(tw + ": data_offsets must be two integers >= 0");
  t.begin = static_cast<std::uint64_t>(offsets->items[0].integer);
  t.end = static_cast<std::uint64_t>(offsets->items[1].integer);
  if (t.end < t.begin)
    throw Error(tw + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                "] end before begin");
  if (t.end > data_size)
    throw Error(tw + ": data_offsets [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                "] lie outside the data buffer of " + std::to_string(data_size) + " bytes (truncated file?)");
  if (t.end - t.begin != bytes)
    throw Error(tw + ": data_offsets span " + std::to_string(t.end - t.begin) + " bytes but shape and dtype " +
                t.dtype + " need " + (overflow ? std::string("more than 2^64") : std::to_string(bytes)));
  return t;
}

// The byte ranges, in order, must tile the data buffer exactly: no overlap, no gap, no tail.
void check_tiling(const std::vector<TensorInfo>& tensors, std::uint64_t data_size, const std::string& where) {
  std::vector<const TensorInfo*> sorted;
  for (const auto& t : tensors) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  for (size_t k = 1; k < sorted.size(); ++k)  // overlaps first: they are the dangerous kind
    if (sorted[k]->begin < sorted[k - 1]->end)
      throw Error(where + ": tensor \"" + sorted[k]->name + "\" overlaps tensor \"" + sorted[k - 1]->name + "\"");
  std::uint64_t expected = 0;
  for (const TensorInfo* t : sorted) {
    if (t->begin > expected) throw Error(where + ": the data buffer has a gap before tensor \"" + t->name + "\"");
    expected = t->end;
  }
  if (expected != data_size)
    throw Error(where + ": the tensors cover " + std::to_string(expected) + " bytes of a data buffer of " +
                std::to_string(data_size));
}

}  // namespace

SafetensorsHeader parse_header(std::string_view header, std::uint64_t data_size, const std::string& what) {
  const std::string where = what + ": header";
  if (header.empty() || header[0] != '{') throw Error(where + " does not start with '{'");
  const Json root = parse_json(header, where);
  if (root.kind != Json::Kind::Object) throw Error(where + " is not a JSON object");

  SafetensorsHeader out;
  for (const auto& [name, entry] : root.members) {
    if (name != "__metadata__") {
      out.tensors.push_back(parse_tensor(name, entry, data_size, where));
      continue;
    }
    if (entry.kind != Json::Kind::Object) throw Error(where + ": __metadata__ must be an object of strings");
    for (const auto& [key, value] : entry.members) {
      if (value.kind != Json::Kind::String)
        throw Error(where + ": __metadata__[\"" + key + "\"] must be a string, got " + Json::kind_name(value.kind));
      out.metadata.emplace_back(key, value.string);
    }
  }
  check_tiling(out.tensors, data_size, where);
  return out;
}

void tensor_to_float(const TensorInfo& t, const unsigned char* bytes, float* out, const std::string& what) {
  const std::uint64_t n = t.elements();
  const bool swap = !little_endian_host();
  if (t.dtype == "F32") {
    for (std::uint64_t k = 0; k < n; ++k) {
      unsigned char b[4];
      std::memcpy(b, bytes + 4 * k, 4);
      if (swap) {
        std::swap(b[0], b[3]);
        std::swap(b[1], b[2]);
      }
      std::memcpy(out + k, b, 4);
    }
  } else if (t.dtype == "F64") {
    for (std::uint64_t k = 0; k < n; ++k) {
      unsigned char b[8];
      std::memcpy(b, bytes + 8 * k, 8);
      if (swap) std::reverse(b, b + 8);
      double v;
      std::memcpy(&v, b, 8);
      out[k] = static_cast<float>(v);
    }
  } else {
    throw Error(what + ": tensor \"" + t.name + "\" has dtype " + t.dtype + ", expected F32 or F64");
  }
}

}  // namespace lstm_fast::detail
