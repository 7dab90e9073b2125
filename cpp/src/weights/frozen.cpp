// Converting and packing the weights of a frozen model (frozen.hpp): once, when the model is made.
#include "weights/frozen.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace lstm_fast {

std::string precision_name(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
    default: return "fp32";
  }
}

Precision parse_precision(const std::string& name) {
  for (Precision p : {Precision::fp32, Precision::bf16, Precision::int8})
    if (name == precision_name(p)) return p;
  throw Error("precision must be \"fp32\", \"bf16\" or \"int8\", got \"" + name + "\"");
}

namespace detail {
namespace {

// Row j of W in block order: its block * kFrozenBlock + lane.
inline Index block_lane(const FrozenMatrix& m, Index j) {
  const Index part = j / m.part_n(), within = j % m.part_n();
  return (part * m.part_blocks() + within / kFrozenBlock) * kFrozenBlock + within % kFrozenBlock;
}

// Where W[j][k] goes in the packed layout (groups of g).
inline std::size_t packed_index(const FrozenMatrix& m, Index j, Index k, Index g) {
  const Index at = block_lane(m, j), block = at / kFrozenBlock, lane = at % kFrozenBlock;
  return static_cast<std::size_t>(((block * m.groups + k / g) * kFrozenBlock + lane) * g + k % g);
}

FrozenMatrix shaped(Precision p, Index n, Index K, Index parts) {
  FrozenMatrix m;
  m.n = n;
  m.K = K;
  m.parts = parts;
  const Index g = frozen_group(p);
  m.groups = (K + g - 1) / g;
  const auto size = static_cast<std::size_t>(m.padded_n() * m.groups * g);
  for (Index b = 0; b < m.blocks(); ++b) {  // looked up in the products' inner loops: no divisions there
    const Index first = b % m.part_blocks() * kFrozenBlock;
    m.block_column.push_back(b / m.part_blocks() * m.part_n() + first);
    m.block_width.push_back(std::min(kFrozenBlock, m.part_n() - first));
  }
  if (p == Precision::int8) {
    m.q.assign(size, 0);
    m.scale.assign(static_cast<std::size_t>(n), 1.0f);
    m.block_scale.assign(static_cast<std::size_t>(m.padded_n()), 1.0f);
    m.block_offset.assign(static_cast<std::size_t>(m.padded_n()), 0);
  } else if (p == Precision::bf16) {
    m.bf16.assign(size, 0);
  } else {
    m.f32.assign(size, 0.0f);
  }
  return m;
}

// q = rint(v / s) in [-127, 127] (v finite; NaN would give 0).
std::int8_t quantize(float v, float s) {
  const float r = std::nearbyint(v / s);
  if (!(r == r)) return 0;
  return static_cast<std::int8_t>(r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r));
}

}  // namespace

FrozenMatrix freeze_int8(const std::int8_t* q, const float* scale, Index n, Index K, Index parts) {
  FrozenMatrix m = shaped(Precision::int8, n, K, parts);
  for (Index j = 0; j < n; ++j) {
    std::int32_t sum = 0;
    for (Index k = 0; k < K; ++k) {
      m.q[packed_index(m, j, k, 4)] = q[j * K + k];
      sum += q[j * K + k];
    }
    m.scale[static_cast<std::size_t>(j)] = scale[j];
    m.block_scale[static_cast<std::size_t>(block_lane(m, j))] = scale[j];
    m.block_offset[static_cast<std::size_t>(block_lane(m, j))] = 128 * sum;
  }
  return m;
}

FrozenMatrix freeze_bf16(const std::uint16_t* values, Index n, Index K, Index parts) {
  FrozenMatrix m = shaped(Precision::bf16, n, K, parts);
  for (Index j = 0; j < n; ++j) {  // W[j][k] at row j's lane + (k / 2) 32 + k % 2 (packed_index)
    std::uint16_t* lane = m.bf16.data() + packed_index(m, j, 0, 2);
    for (Index k = 0; k < K; ++k) lane[(k >> 1) * 2 * kFrozenBlock + (k & 1)] = values[j * K + k];
  }
  return m;
}

FrozenMatrix freeze_bf16_transposed(const float* W, Index n, Index K) {
  FrozenMatrix m = shaped(Precision::bf16, K, n, 1);
  std::vector<std::size_t> lanes(static_cast<std::size_t>(K));
  for (Index j = 0; j < K; ++j) lanes[static_cast<std::size_t>(j)] = packed_index(m, j, 0, 2);
  for (Index k = 0; k < n; ++k) {  // W^T[j][k] = W[k][j]: W read row by row
    const std::size_t step = static_cast<std::size_t>((k >> 1) * 2 * kFrozenBlock + (k & 1));
    for (Index j = 0; j < K; ++j) m.bf16[lanes[static_cast<std::size_t>(j)] + step] = to_bf16(W[k * K + j]);
  }
  return m;
}

FrozenMatrix freeze_matrix(Precision p, const float* W, Index n, Index K, Index parts) {
  if (p == Precision::fp32) {
    FrozenMatrix m = shaped(p, n, K, parts);
    for (Index j = 0; j < n; ++j)
      for (Index k = 0; k < K; ++k) m.f32[packed_index(m, j, k, 1)] = W[j * K + k];
    return m;
  }
  if (p == Precision::bf16) {
    std::vector<std::uint16_t> values(static_cast<std::size_t>(n * K));
    for (std::size_t e = 0; e < values.size(); ++e) values[e] = to_bf16(W[e]);
    return freeze_bf16(values.data(), n, K, parts);
  }
  std::vector<std::int8_t> q(static_cast<std::size_t>(n * K));
  std::vector<float> scale(static_cast<std::size_t>(n));
  for (Index j = 0; j < n; ++j) {
    float top = 0.0f;
    for (Index k = 0; k < K; ++k) {
      if (!std::isfinite(W[j * K + k]))
        throw Error("int8 needs finite weights, got " + std::to_string(W[j * K + k]) + " in row " + std::to_string(j));
      top = std::max(top, std::fabs(W[j * K + k]));
    }
    const float s = top > 0.0f ? top / 127.0f : 1.0f;
    scale[static_cast<std::size_t>(j)] = s;
    for (Index k = 0; k < K; ++k) q[static_cast<std::size_t>(j * K + k)] = quantize(W[j * K + k], s);
  }
  return freeze_int8(q.data(), scale.data(), n, K, parts);
}

std::vector<std::int8_t> unpack_int8(const FrozenMatrix& m) {
  std::vector<std::int8_t> out(static_cast<std::size_t>(m.n * m.K));
  for (Index j = 0; j < m.n; ++j)
    for (Index k = 0; k < m.K; ++k) out[static_cast<std::size_t>(j * m.K + k)] = m.q[packed_index(m, j, k, 4)];
  return out;
}

std::vector<std::uint16_t> unpack_bf16(const FrozenMatrix& m) {
  std::vector<std::uint16_t> out(static_cast<std::size_t>(m.n * m.K));
  for (Index j = 0; j < m.n; ++j)
    for (Index k = 0; k < m.K; ++k) out[static_cast<std::size_t>(j * m.K + k)] = m.bf16[packed_index(m, j, k, 2)];
  return out;
}

}  // namespace detail
}  // namespace lstm_fast
