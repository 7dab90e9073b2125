// The execution plan: everything about how one layer's call runs (packing, chunk of steps, team,
// split, directions side by side) decided once, from the call's shape and the thread budget, before
// any kernel starts. The kernels read it and decide nothing; a policy changes here and only here,
// and test_plan.cpp checks it without timing anything. The constants' measurements are in
// docs/PERFORMANCE.md ("How the plan decides").
#pragma once

#include <cstddef>

#include "lstm_fast/config.hpp"
#include "runtime/caches.hpp"

namespace lstm_fast::detail {

struct CellDims {
  Index input_size;   // I_k
  Index hidden_size;  // H
  Index output_size;  // R (== H without projection)
  bool projection;
  bool peephole;
  double cell_clip;    // 0: none (gates.hpp's GateVariant)
  bool coupled_gates;  // f = 1 - i
  double zoneout_h;    // inference zoneout probabilities (Config); 0: none
  double zoneout_c;
  bool layer_norm;  // its statistics need every unit of a row: a team of one, or the row split
};

// The dims of any cell of layer `layer` of a stack (both directions of a layer have the same).
inline CellDims cell_dims(const Config& config, Index layer) {
  return {config.layer_input_size(layer),
          config.hidden_size,
          config.output_size(),
          config.proj_size > 0,
          config.peephole,
          config.cell_clip,
          config.coupled_gates,
          config.zoneout_h,
          config.zoneout_c,
          config.layer_norm};
}

// The dot-product instructions the products may use beyond the ISA's float packets: what the CPU has,
// where the active kernels were built for it (dispatch.cpp's dot_instructions()).
// The tile unit the frozen bf16 and int8 products may run on (kernels/tiles.hpp): none, the AMX
// instructions, or their emulation (for tests: the tile products' whole path on any CPU).
enum class TileUnit { none, amx, emulated };

struct DotInstructions {
  bool bf16 = false;                // vdpbf16ps (AVX512_BF16)
  bool int8 = false;                // vpdpbusd (AVX512_VNNI)
  TileUnit tiles = TileUnit::none;  // TDPBF16PS and TDPBSSD (AMX-BF16, AMX-INT8)
  // Every one: what the AVX-512 build compiles kernels for (cell/kernel_table.cpp), each for it alone;
  // the amx build adds the tiles.
  static constexpr DotInstructions all() { return {true, true, TileUnit::none}; }
  static constexpr DotInstructions all_and_tiles() { return {true, true, TileUnit::amx}; }
};

// What a plan is computed from: one layer of a call.
struct Problem {
  CellDims dims;
  Index directions = 1;   // D
  Index batch = 1;        // B: rows of the state
  Index rows = 1;         // N: rows of the packed sequence (sum of the steps' batch sizes)
  Index steps = 1;        // T
  bool training = false;  // a trace is kept (a training forward, or the backward)
  Index checkpoint = 0;   // training: steps a segment of a checkpointed trace asks (0: none, -1: "auto")
  // A frozen model's (inference), or training's: bf16 rounds the products' operands (network.hpp's Training).
  Precision precision = Precision::fp32;
  DotInstructions dot;           // what this CPU and the active kernels offer
  int threads = 1;               // the budget: get_num_threads()
  std::size_t element_size = 4;  // bytes per weight: sizeof(T), or 2 (bf16) and 1 (int8) for a frozen model
  Index lanes = 1;               // numbers per SIMD packet of the active ISA for this element type
  std::size_t l2_bytes = kDefaultCacheSizes.l2;  // the machine's L2 a core (runtime/caches.hpp)
};

// The Problem of layer `layer` of a stack over `rows` packed rows of `steps` steps and `batch` sequences;
// the budget, the element type and training are the caller's to set.
inline Problem layer_problem(const Config& config, Index layer, Index batch, Index rows, Index steps) {
  Problem p;
  p.dims = cell_dims(config, layer);
  p.directions = config.directions();
  p.batch = batch;
  p.rows = rows;
  p.steps = steps;
  return p;
}

// What each member of a cell's team owns.
enum class Split {
  kUnits,  // hidden units [u0, u1) (all four gates of them), on packet boundaries; a barrier per step
  kRows,   // batch rows k, k + team, k + 2 team, ... with every unit of them; no barrier in the time loop
};

// The kernels of a training pass's products (cell/training_products.hpp).
enum class TrainingProduct {
  unpacked,  // Eigen's GEMMs on the weights as they are
  panels,    // recurrent.hpp's panels, packed once per call
  bf16_dot,  // bf16 training on vdpbf16ps, the weights converted once per call
};

struct CellPlan {
  int team = 1;  // threads sharing one cell's time steps (the caller and team - 1 workers)
  Split split = Split::kUnits;
  bool packing = false;  // W_ih and W_hh packed into panels once per call (recurrent.hpp)
  Index chunk = 1;       // steps whose input projection is one GEMM (all steps when training)
  Index segment = 1;     // row split: steps each member runs between meetings of the team
  // Backward: the weight gradients are summed over blocks of this many steps (a multiple of the row
  // split's segment whatever the split), each as its steps complete, so the gradients w.r.t. the gates
  // are kept for two blocks, not all rows.
  Index gradient_block = 1;
  // Checkpointed training (checkpoint.cpp): the trace is kept only as the state before each segment
  // of this many steps (processing order; a multiple of gradient_block, < steps), each segment's forward
  // run again by the backward. 0: the trace of every step kept.
  Index checkpoint = 0;
  // The products' precision: a frozen model's, or bf16 training's, whose products' operands are all
  // rounded to bfloat16 (the weights and x by the caller, the rest where the kernels write them) and
  // summed in float.
  Precision precision = Precision::fp32;
  // The precision's products on the CPU's dot instruction (vdpbf16ps, vpdpbusd), in the forward (or
  // inference); else the ISA's float packets.
  bool dot = false;
  // A frozen bf16 or int8 model's products on the tile unit (tile_products.hpp) instead; none: the dot
  // instruction or the float packets, as `dot` says.
  TileUnit tiles = TileUnit::none;
  // Training: the products' kernels, of the forward and of the backward.
  TrainingProduct forward_product = TrainingProduct::unpacked;
  TrainingProduct backward_product = TrainingProduct::unpacked;
};

struct LayerPlan {
  bool directions_parallel = false;  // a bidirectional layer's two directions on two threads
  CellPlan cell;                     // each direction's cell
};

// Rows (sum of the steps' batch sizes) from which packing the weights once per call beats Eigen's
// product on them.
constexpr Index kPackMinRows = 64;

// Inference projects a chunk of steps at a time, so the gate buffer is O(chunk * B * 4H) whatever T
// is: as many steps as keep it near kInferenceChunkNumbers, at least one, at most
// kInferenceChunkMaxSteps.
constexpr Index kInferenceChunkNumbers = 16384;
constexpr Index kInferenceChunkMaxSteps = 64;

// A big step of the frozen models goes in groups of kFrozenRowGroup rows per member: each group's
// input projection, recurrent product and gates run while its pre-activations (kFrozenRowGroup * 4H
// floats) are in L2, instead of a pass over all of z per product that leaves cache past a few
// hundred rows.
constexpr Index kFrozenRowGroup = 64;

// A frozen model's products run on the tile unit from kTileMinRows rows per step (B): a tile holds 16
// rows, so fewer leave most of each TDPBSSD / TDPBF16PS idle while the weights' traffic, which is
// the same on either unit, bounds the step; a streaming step of one or a few rows stays on
// VNNI / AVX512_BF16. Not measured yet: no AMX CPU has run this plan (docs/PERFORMANCE.md).
constexpr Index kTileMinRows = 4;

// The row split needs at least kRowsPerMemberMin rows per member and W_ih and W_hh together at most
// the machine's L2 a core (Problem::l2_bytes: each member reads all of them every step). A small cell,
// whose unit split would leave each member fewer than kUnitsPerMemberMin hidden units (a barrier a step
// for a few hundred multiply-adds), takes it from kSmallCellRowsPerMember rows per member, and also
// where a step is too small for any team but a segment of kRowSegmentSteps steps of a member's rows is
// not; whether such a step gets a team at all is decided on kRowSplitWeightBytes, the same on every
// machine (a team's size may change bits, the split it takes does not: guarantees.md).
constexpr Index kRowsPerMemberMin = 8;  // a full AVX-512 tile
constexpr Index kUnitsPerMemberMin = 32;
constexpr Index kSmallCellRowsPerMember = 4;
constexpr std::size_t kRowSplitWeightBytes = 512 << 10;
// The row split's members meet every kRowSegmentSteps steps, where the rows of a late (descheduled)
// member pass to another (team.hpp): a meeting costs about a microsecond, a step of the split tens.
constexpr Index kRowSegmentSteps = 16;

// The backward's blocks of weight gradients hold at least kGradientBlockRows rows (B per step): big
// enough that their products run at the speed of one over all rows.
constexpr Index kGradientBlockRows = 1024;

// Work thresholds in multiply-adds: directions side by side from kParallelDirectionsWork in all
// (N 4H (I_k + R)); a team from kTeamStepWork per step (B 4H R) and kTeamCallWork in all.
constexpr double kParallelDirectionsWork = 1e6;
constexpr double kTeamStepWork = 32768.0;
constexpr double kTeamCallWork = 2e5;

LayerPlan plan_layer(const Problem& problem);

}  // namespace lstm_fast::detail
