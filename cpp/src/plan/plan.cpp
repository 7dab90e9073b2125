// The plan policy (plan.hpp). Each rule is a threshold measured on the project's machines; the
// measurements are in docs/PERFORMANCE.md.
#include "plan/plan.hpp"

#include <algorithm>
#include <cmath>

namespace lstm_fast::detail {
namespace {

// The time of a multiply-add relative to float32's: a frozen bf16 model's take half as long
// (vdpbf16ps does two per lane), int8's a quarter (vpdpbusd four); float64's count as float32's.
double work_scale(const Problem& p) { return std::min(1.0, double(p.element_size) / 4.0); }

// The products' multiply-adds of `rows` rows of one cell: rows 4H (I_k + R), in float32's time.
double row_work(const Problem& p, double rows) {
  return rows * 4.0 * double(p.dims.hidden_size) * double(p.dims.input_size + p.dims.output_size) * work_scale(p);
}

// Handing work to a pooled worker costs microseconds and a barrier about one, so threads pay only
// above some work: the directions side by side when each has enough in all; a team (given the
// budget, halved when the directions already run side by side) when each step has enough.
int step_threads(const Problem& p, bool directions_parallel) {
  const double per_step =
      double(p.batch) * 4.0 * double(p.dims.hidden_size) * double(p.dims.output_size) * work_scale(p);
  if (per_step < kTeamStepWork || row_work(p, double(p.rows)) < kTeamCallWork) return 1;
  return std::max(1, p.threads / (directions_parallel ? 2 : 1));
}

bool parallel_directions(const Problem& p) {
  return p.directions == 2 && p.threads >= 2 && row_work(p, double(p.rows)) >= kParallelDirectionsWork;
}

// The row split: a big batch on weights of at most `weight_bytes` (to sit whole in each core's L2),
// packed, with no projection (h_t = W_hr m_t needs every unit of m). Layer norm takes it on any weights:
// the unit split would need a meeting a step for each of its three statistics, so its alternative is one
// thread.
bool split_rows(const Problem& p, int team, bool packing, std::size_t weight_bytes) {
  const std::size_t weights = p.element_size * static_cast<std::size_t>(4 * p.dims.hidden_size) *
                              static_cast<std::size_t>(p.dims.input_size + p.dims.output_size);
  const bool small_cell = p.dims.hidden_size < kUnitsPerMemberMin * team;
  const Index rows_min = small_cell ? kSmallCellRowsPerMember : kRowsPerMemberMin;
  return packing && team > 1 && !p.dims.projection && p.batch >= rows_min * team &&
         (weights <= weight_bytes || p.dims.layer_norm);
}

// The team of a row split where a step is too small for a team (step_threads gave one): the budget
// (halved when the directions run side by side, at most one member per kSmallCellRowsPerMember rows;
// plan_layer keeps a packet of units per member, as the backward's weight gradients share out units)
// when each member's segment of kRowSegmentSteps steps, and the call, hold a team's worth of work; else 1.
int segment_threads(const Problem& p, bool directions_parallel, bool packing) {
  const int budget = p.threads / (directions_parallel ? 2 : 1);
  const int team = static_cast<int>(std::min<Index>(budget, p.batch / kSmallCellRowsPerMember));
  if (team < 2 || !split_rows(p, team, packing, kRowSplitWeightBytes)) return 1;
  const double segment = row_work(p, double(kRowSegmentSteps * (p.batch / team)));
  return segment >= kTeamStepWork && row_work(p, double(p.rows)) >= kTeamCallWork ? team : 1;
}

// The steps of a checkpointed segment: the request rounded up to whole blocks of the backward's weight
// gradients, so that a segment's blocks and the row split's meetings are the whole call's (the
// gradients bitwise the full trace's). None when one segment would hold every step, or when the call
// is too small to pack its weights (its products then are Eigen's, whose order may depend on the rows).
// "auto" asks about sqrt(T) steps: O(sqrt(T)) states kept, O(sqrt(T)) steps of trace live at once
// (Chen et al. 2016).
Index checkpoint_steps(const Problem& p, const CellPlan& cell) {
  if (!p.training || p.checkpoint == 0 || !cell.packing) return 0;
  const Index asked =
      p.checkpoint > 0 ? p.checkpoint : static_cast<Index>(std::ceil(std::sqrt(static_cast<double>(p.steps))));
  const Index steps = (asked + cell.gradient_block - 1) / cell.gradient_block * cell.gradient_block;
  return steps < p.steps ? steps : 0;
}

// Whether the products run on the precision's dot instruction: a frozen model's wherever the CPU has it
// (its weights are always in blocks of 16 columns); bf16 training's on weights packed per call, a block
// of 16 columns being one packet of the float kernels' (16 lanes: the AVX-512 build), and in its
// backward not with a projection shared out among a team (a member's outputs of dh_{t-1} = dZ W_hh
// need not be whole blocks then). The training passes' products: on the dot instruction where it is
// chosen, else on panels where the weights are packed, else Eigen's.
void choose_dot(const Problem& p, CellPlan& cell) {
  const bool has = (p.precision == Precision::bf16 && p.dot.bf16) || (p.precision == Precision::int8 && p.dot.int8);
  cell.dot =
      p.training ? has && p.precision == Precision::bf16 && cell.packing && p.lanes == 16 && p.element_size == 4 : has;
  const bool bf16_dot = p.training && cell.dot;  // (a frozen model's passes read dot alone)
  const TrainingProduct floats = cell.packing ? TrainingProduct::panels : TrainingProduct::unpacked;
  cell.forward_product = bf16_dot ? TrainingProduct::bf16_dot : floats;
  cell.backward_product = bf16_dot && (!p.dims.projection || cell.team == 1) ? TrainingProduct::bf16_dot : floats;
}

// A frozen bf16 or int8 model's products on the tile unit, where the CPU has one, from kTileMinRows rows
// a step (plan.hpp).
TileUnit choose_tiles(const Problem& p) {
  const bool frozen = !p.training && (p.precision == Precision::bf16 || p.precision == Precision::int8);
  return frozen && p.batch >= kTileMinRows ? p.dot.tiles : TileUnit::none;
}

}  // namespace

LayerPlan plan_layer(const Problem& p) {
  LayerPlan plan;
  plan.directions_parallel = parallel_directions(p);
  CellPlan& cell = plan.cell;
  // At least one packet of hidden units per member.
  const Index packets = p.dims.hidden_size / std::max<Index>(1, p.lanes);
  cell.team = static_cast<int>(std::max<Index>(1, std::min<Index>(step_threads(p, plan.directions_parallel), packets)));
  cell.packing = p.rows >= kPackMinRows;
  if (cell.team == 1)
    cell.team = static_cast<int>(
        std::max<Index>(1, std::min<Index>(segment_threads(p, plan.directions_parallel, cell.packing), packets)));
  cell.split = split_rows(p, cell.team, cell.packing, p.l2_bytes) ? Split::kRows : Split::kUnits;
  if (p.dims.layer_norm && cell.split == Split::kUnits) cell.team = 1;  // its statistics span the row
  cell.chunk = p.training ? std::max<Index>(p.steps, 1)
                          : std::clamp<Index>(kInferenceChunkNumbers / (p.batch * 4 * p.dims.hidden_size), 1,
                                              kInferenceChunkMaxSteps);
  cell.segment = cell.split == Split::kRows ? kRowSegmentSteps : 1;
  // Whole segments of the row split whichever split runs, so that the weight gradients' blocks, and so
  // their bits, do not depend on the split.
  const Index block = (kGradientBlockRows + p.batch - 1) / std::max<Index>(1, p.batch);
  cell.gradient_block = (block + kRowSegmentSteps - 1) / kRowSegmentSteps * kRowSegmentSteps;
  cell.checkpoint = checkpoint_steps(p, cell);
  cell.precision = p.precision;
  choose_dot(p, cell);
  cell.tiles = choose_tiles(p);
  return plan;
}

}  // namespace lstm_fast::detail
