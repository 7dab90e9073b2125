// Zoneout's training masks (Krueger et al. 2016), drawn where the training forward needs them (its
// team sharing the rows, a checkpointed backward drawing a segment's again) and shown to Python as
// lstm_fast._core.zoneout_masks.
#pragma once

#include <cstdint>

#include "lstm_fast/config.hpp"

namespace lstm_fast {

// Zoneout's training masks of cell `cell` (docs/api.md): d = 1 with probability z (to 2^-24), independently
// for every unit of every packed row, drawn from `seed`: d_h [N, R] (probability z_h) and d_c [N, H]
// (z_c), 0 or 1. Each row from its own splitmix64 stream (seeded by seed, cell and row), so that any
// rows can be drawn again alone: this writes rows [row0, row1) of d_h and d_c, which point at row row0's
// place. What the training forward uses (its team sharing the rows, a checkpointed backward drawing a
// segment's again); lstm_fast._core.zoneout_masks shows it.
template <typename T>
void zoneout_masks(std::uint64_t seed, Index cell, Index row0, Index row1, Index R, Index H, double z_h, double z_c,
                   T* d_h, T* d_c);

}  // namespace lstm_fast
