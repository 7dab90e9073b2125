// A small strict JSON parser (RFC 8259), for the headers of untrusted model files (see json.hpp).
#include "io/json.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace lstm_fast::detail {
namespace {

constexpr int kMaxDepth = 64;

class JsonParser {
 public:
  JsonParser(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  Json parse_document() {
    skip_whitespace();
    Json value = parse_value(0);
    skip_whitespace();
    if (pos_ != s_.size()) fail("unexpected text after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(what_ + ": " + problem + " at byte " + std::to_string(pos_));
  }
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_whitespace() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect_literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal (expected " + std::string(word) + ")");
    pos_ += word.size();
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) fail("JSON nested deeper than " + std::to_string(kMaxDepth));
    if (at_end()) fail("unexpected end of JSON");
    Json v;
    switch (s_[pos_]) {
      case '{': parse_object(v, depth); break;
      case '[': parse_array(v, depth); break;
      case '"':
        v.kind = Json::Kind::String;
        v.string = parse_string();
        break;
      case 't':
        expect_literal("true");
        v.kind = Json::Kind::Bool;
        v.boolean = true;
        break;
      case 'f':
        expect_literal("false");
        v.kind = Json::Kind::Bool;
        v.boolean = false;
        break;
      case 'n':
        expect_literal("null");
        v.kind = Json::Kind::Null;
        break;
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9'))
          parse_number(v);
        else
          fail(std::string("unexpected character '") + printable(s_[pos_]) + "'");
    }
    return v;
  }

  static std::string printable(char ch) {
    const auto u = static_cast<unsigned char>(ch);
    if (u >= 0x20 && u < 0x7f) return std::string(1, ch);
    static const char* hex = "0123456789abcdef";
    return std::string("\\x") + hex[u >> 4] + hex[u & 15];
  }

  // The members of an object or the items of an array, after its opening bracket: `element` parses
  // one, which is followed by ',' or by `close`.
  template <typename Element>
  void parse_elements(char close, const Element& element) {
    ++pos_;  // '{' or '['
    skip_whitespace();
    if (peek() == close) {
      ++pos_;
      return;
    }
    for (;;) {
      skip_whitespace();
      element();
      skip_whitespace();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == close) {
        ++pos_;
        return;
      }
      fail(std::string("expected ',' or '") + close + "'");
    }
  }

  void parse_object(Json& v, int depth) {
    v.kind = Json::Kind::Object;
    std::unordered_set<std::string> keys;  // a header may hold many tensors: no quadratic search
    parse_elements('}', [&] {
      if (peek() != '"') fail("expected a string (object key)");
      std::string key = parse_string();
      if (!keys.insert(key).second) fail("duplicate key \"" + key + "\"");
      skip_whitespace();
      if (peek() != ':') fail("expected ':'");
      ++pos_;
      skip_whitespace();
      v.members.emplace_back(std::move(key), parse_value(depth + 1));
    });
  }

  void parse_array(Json& v, int depth) {
    v.kind = Json::Kind::Array;
    parse_elements(']', [&] { v.items.push_back(parse_value(depth + 1)); });
  }

  // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  void parse_number(Json& v) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (!at_end() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail("invalid number (leading zero)");
    } else if (digits() == 0) {
      fail("invalid number");
    }
    bool integral = true;
    if (peek() == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) fail("invalid number (no digits after '.')");
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      integral = false;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (digits() == 0) fail("invalid number (no digits in the exponent)");
    }
    const std::string text(s_.substr(start, pos_ - start));
    v.kind = Json::Kind::Number;
    // from_chars: the nearest double whatever the C locale. Out of range, it sets nothing: +-inf past
    // the largest double, 0 below the smallest (a negative exponent).
    if (std::from_chars(text.data(), text.data() + text.size(), v.number).ec == std::errc::result_out_of_range) {
      const bool tiny = text.find("e-") != std::string::npos || text.find("E-") != std::string::npos;
      v.number = tiny ? 0.0 : std::numeric_limits<double>::infinity();
      if (text[0] == '-') v.number = -v.number;
    }
    if (integral) {
      // Exact int64, or not an integer for our purposes (e.g. 1e30 written out).
      const bool negative = text[0] == '-';
      std::uint64_t magnitude = 0;
      bool fits = true;
      for (size_t k = negative ? 1 : 0; k < text.size() && fits; ++k) {
        const std::uint64_t d = static_cast<std::uint64_t>(text[k] - '0');
        if (magnitude > (std::numeric_limits<std::uint64_t>::max() - d) / 10)
          fits = false;
        else
          magnitude = magnitude * 10 + d;
      }
      const std::uint64_t limit = negative ? std::uint64_t(1) << 63 : (std::uint64_t(1) << 63) - 1;
      if (fits && magnitude <= limit) {
        v.is_integer = true;
        v.integer = negative ? static_cast<std::int64_t>(0 - magnitude) : static_cast<std::int64_t>(magnitude);
      }
    }
  }

  unsigned hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned value = 0;
    for (int k = 0; k < 4; ++k) {
      const char ch = s_[pos_++];
      value <<= 4;
      if (ch >= '0' && ch <= '9')
        value |= static_cast<unsigned>(ch - '0');
      else if (ch >= 'a' && ch <= 'f')
        value |= static_cast<unsigned>(ch - 'a' + 10);
      else if (ch >= 'A' && ch <= 'F')
        value |= static_cast<unsigned>(ch - 'A' + 10);
      else
        fail("invalid \\u escape");
    }
    return value;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One well-formed UTF-8 sequence (no overlongs, no surrogates, <= U+10FFFF), copied to out.
  void copy_utf8_sequence(std::string& out) {
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF)
      len = 2;
    else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else
      fail("invalid UTF-8 in a string");
    if (pos_ + len > s_.size()) fail("truncated UTF-8 in a string");
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s_[pos_ + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) fail("invalid UTF-8 in a string");
    }
    out.append(s_.data() + pos_, len);
    pos_ += len;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated string");
      const auto ch = static_cast<unsigned char>(s_[pos_]);
      if (ch == '"') {
        ++pos_;
        return out;
      }
      if (ch < 0x20) fail("control character in a string");
      if (ch >= 0x80) {
        copy_utf8_sequence(out);
        continue;
      }
      if (ch != '\\') {
        out += static_cast<char>(ch);
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("unterminated string");
      const char esc = s_[pos_++];
      switch (esc) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in a \\u escape");
            pos_ += 2;
            const unsigned low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("unpaired surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; fail(std::string("invalid escape '\\") + printable(esc) + "'");
      }
    }
  }

  std::string_view s_;
  const std::string& what_;
  size_t pos_ = 0;
};

}  // namespace

const Json* Json::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

const char* Json::kind_name(Kind kind) {
  switch (kind) {
    case Kind::Null: return "null";
    case Kind::Bool: return "a bool";
    case Kind::Number: return "a number";
    case Kind::String: return "a string";
    case Kind::Array: return "an array";
    case Kind::Object: return "an object";
  }
  return "?";
}

Json parse_json(std::string_view text, const std::string& what) { return JsonParser(text, what).parse_document(); }

}  // namespace lstm_fast::detail
