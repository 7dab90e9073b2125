// A small strict JSON parser: the safetensors header and the model config of a file are untrusted
// input, read by these functions from bytes in memory (the fuzz targets exercise them).
// Internal header: not installed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lstm_fast/config.hpp"

namespace lstm_fast::detail {

// A JSON value. Objects keep their members in file order (duplicate names are rejected).
struct Json {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  bool is_integer = false;  // the number was written without fraction or exponent and fits int64
  std::int64_t integer = 0;
  double number = 0;   // any number, as the nearest double (+-inf past its range)
  std::string string;  // UTF-8
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* find(std::string_view key) const;  // the member named key, or null
  static const char* kind_name(Kind kind);
};

// Parses one JSON text (RFC 8259; trailing whitespace allowed, nothing else after the value; UTF-8
// validated; nesting at most 64 deep). Errors throw Error("<what>: <problem> at byte <n>").
Json parse_json(std::string_view text, const std::string& what);

}  // namespace lstm_fast::detail
