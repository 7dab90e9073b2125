// The plan policy (cpp/src/plan/plan.hpp) on its own: which decisions a call shape and a thread budget
// lead to. No timing: the thresholds' measurements are in docs/PERFORMANCE.md.
#include <gtest/gtest.h>

#include "plan/plan.hpp"

namespace {

using lstm_fast::Index;
using lstm_fast::Precision;
using lstm_fast::detail::DotInstructions;
using lstm_fast::detail::kTileMinRows;
using lstm_fast::detail::LayerPlan;
using lstm_fast::detail::plan_layer;
using lstm_fast::detail::Problem;
using lstm_fast::detail::Split;
using lstm_fast::detail::TileUnit;
using lstm_fast::detail::TrainingProduct;

// One unidirectional layer, dense T x B, float, 16 lanes (AVX-512), inference.
Problem problem(Index T, Index B, Index I, Index H, int threads) {
  Problem p;
  p.dims = {I, H, H, false, false};
  p.batch = B;
  p.steps = T;
  p.rows = T * B;
  p.threads = threads;
  p.element_size = sizeof(float);
  p.lanes = 16;
  return p;
}

TEST(Plan, FewRowsAreNotPacked) {
  EXPECT_FALSE(plan_layer(problem(/*T=*/63, /*B=*/1, 64, 256, 2)).cell.packing);
  EXPECT_TRUE(plan_layer(problem(/*T=*/64, /*B=*/1, 64, 256, 2)).cell.packing);
  EXPECT_TRUE(plan_layer(problem(/*T=*/2, /*B=*/32, 64, 256, 2)).cell.packing);
}

TEST(Plan, OneThreadMeansATeamOfOne) {
  const LayerPlan plan = plan_layer(problem(1000, 64, 256, 512, 1));
  EXPECT_EQ(plan.cell.team, 1);
  EXPECT_EQ(plan.cell.split, Split::kUnits);
  EXPECT_FALSE(plan.directions_parallel);
}

TEST(Plan, LittleWorkPerStepKeepsOneThread) {
  // B 4H R = 1 * 64 * 16 numbers per step: far below a team's worth.
  EXPECT_EQ(plan_layer(problem(1000, 1, 16, 16, 4)).cell.team, 1);
}

TEST(Plan, TeamGetsTheBudgetAtMostOnePacketOfUnitsPerMember) {
  EXPECT_EQ(plan_layer(problem(1000, 1, 256, 256, 2)).cell.team, 2);
  // H = 32 with 16 lanes: two packets of units, so at most two members whatever the budget.
  Problem p = problem(1000, 64, 256, 32, 8);
  EXPECT_EQ(plan_layer(p).cell.team, 2);
}

TEST(Plan, BigBatchOnSmallWeightsSplitsRows) {
  // T 100, B 32, I 64, H 128: W_ih and W_hh are 4 * 128 * (64 + 128) floats = 384 KiB.
  const LayerPlan plan = plan_layer(problem(100, 32, 64, 128, 2));
  EXPECT_EQ(plan.cell.team, 2);
  EXPECT_TRUE(plan.cell.packing);
  EXPECT_EQ(plan.cell.split, Split::kRows);
  EXPECT_EQ(plan.cell.segment, lstm_fast::detail::kRowSegmentSteps);  // the team meets every few steps
}

// The bound is the machine's L2 a core: 1.25 MiB of weights split rows on a core of 2 MiB, 384 KiB split
// units on one of 256 KiB. A step too small for a team asks the same constant on every machine, and the
// weight gradients' blocks are the same whichever split is taken (so the split changes no bits).
TEST(Plan, RowSplitBoundIsTheMachinesL2) {
  Problem p = problem(100, 32, 64, 256, 2);
  p.l2_bytes = 2 << 20;
  EXPECT_EQ(plan_layer(p).cell.split, Split::kRows);
  Problem q = problem(100, 32, 64, 128, 2);
  q.l2_bytes = 256 << 10;
  const LayerPlan units = plan_layer(q);
  EXPECT_EQ(units.cell.split, Split::kUnits);
  EXPECT_EQ(units.cell.team, 2);
  EXPECT_EQ(units.cell.gradient_block, plan_layer(problem(100, 32, 64, 128, 2)).cell.gradient_block);
  Problem small = problem(1000, 16, 2, 16, 2);  // a step of 16 * 64 * 18 multiply-adds: a team by segments
  const int team = plan_layer(small).cell.team;
  small.l2_bytes = 1 << 10;
  EXPECT_EQ(plan_layer(small).cell.team, team);
}

TEST(Plan, UnitSplitMeetsEveryStep) { EXPECT_EQ(plan_layer(problem(100, 4, 64, 256, 2)).cell.segment, 1); }

TEST(Plan, RowSplitNeedsEnoughRowsPerMemberAndSmallWeights) {
  EXPECT_EQ(plan_layer(problem(100, 15, 64, 128, 2)).cell.split, Split::kUnits);  // < 8 rows a member
  EXPECT_EQ(plan_layer(problem(100, 32, 64, 256, 2)).cell.split, Split::kUnits);  // 1.25 MiB of weights
  Problem p = problem(100, 32, 64, 128, 2);
  p.element_size = sizeof(double);  // 768 KiB in double
  EXPECT_EQ(plan_layer(p).cell.split, Split::kUnits);
}

TEST(Plan, SmallCellSplitsRowsFromFourAMember) {
  // H 32 with 8 lanes (AVX2): the unit split would leave each of 2 members 16 units, a barrier a step
  // for B 4H R / 2 = 16384 multiply-adds; the row split meets every kRowSegmentSteps steps.
  Problem p = problem(1000, 8, 2, 32, 2);
  p.lanes = 8;
  p.training = true;
  EXPECT_EQ(plan_layer(p).cell.team, 2);
  EXPECT_EQ(plan_layer(p).cell.split, Split::kRows);
  p.batch = 7;  // fewer than 4 rows a member
  p.rows = 7 * 1000;
  EXPECT_EQ(plan_layer(p).cell.split, Split::kUnits);
  // H 64: 32 units a member, so the unit split's barrier is paid for and 8 rows a member are needed.
  Problem q = problem(1000, 8, 24, 64, 2);
  q.lanes = 8;
  EXPECT_EQ(plan_layer(q).cell.team, 2);
  EXPECT_EQ(plan_layer(q).cell.split, Split::kUnits);
}

TEST(Plan, StepTooSmallForATeamButSegmentsAreNotSplitsRows) {
  // B 16, H 16: B 4H R = 16384 a step, below a team; a member's segment, 16 steps x 8 rows x 4H (I + R),
  // is not.
  Problem p = problem(1000, 16, 2, 16, 2);
  p.lanes = 8;
  EXPECT_EQ(plan_layer(p).cell.team, 2);
  EXPECT_EQ(plan_layer(p).cell.split, Split::kRows);
  p.threads = 1;
  EXPECT_EQ(plan_layer(p).cell.team, 1);
  Problem tiny = problem(1000, 8, 2, 8, 2);  // a segment of 4 rows: 16 x 4 x 32 x 10 multiply-adds
  tiny.lanes = 8;
  EXPECT_EQ(plan_layer(tiny).cell.team, 1);
  Problem one_packet = problem(1000, 16, 2, 16, 2);  // 16 lanes: one packet of units, one member
  EXPECT_EQ(plan_layer(one_packet).cell.team, 1);
}

TEST(Plan, ProjectionIsNeverSplitByRows) {
  Problem p = problem(100, 32, 64, 128, 2);
  p.dims = {64, 128, 64, true, false};
  const LayerPlan plan = plan_layer(p);
  EXPECT_GT(plan.cell.team, 1);
  EXPECT_EQ(plan.cell.split, Split::kUnits);
}

TEST(Plan, LayerNormSplitsRowsOnAnyWeightsElseRunsOnOneThread) {
  // Its statistics need every unit of a row: the row split (whatever the weights), or a team of one.
  Problem p = problem(100, 64, 256, 256, 2);  // 2 MiB of weights: the plain cell splits units
  EXPECT_EQ(plan_layer(p).cell.split, Split::kUnits);
  p.dims.layer_norm = true;
  EXPECT_EQ(plan_layer(p).cell.split, Split::kRows);
  EXPECT_EQ(plan_layer(p).cell.team, 2);
  for (Problem q : {problem(100, 4, 64, 256, 2), problem(100, 64, 256, 256, 2)}) {
    q.dims.layer_norm = true;
    q.dims.projection = q.batch == 64;  // few rows, or a projection: one thread
    EXPECT_EQ(plan_layer(q).cell.team, 1);
    EXPECT_EQ(plan_layer(q).cell.split, Split::kUnits);
  }
}

TEST(Plan, WeightGradientBlocksHoldEnoughRowsAndEndWhereTheRowSplitMeets) {
  // At least kGradientBlockRows rows a block, whole segments of the row split.
  EXPECT_EQ(plan_layer(problem(100, 64, 256, 256, 2)).cell.gradient_block, 16);  // unit split: 16 x 64
  EXPECT_EQ(plan_layer(problem(1000, 1, 64, 256, 2)).cell.gradient_block, 1024);
  EXPECT_EQ(plan_layer(problem(100, 20, 64, 256, 1)).cell.gradient_block, 64);  // one thread: 52 -> 64
  const LayerPlan rows = plan_layer(problem(100, 41, 64, 128, 2));              // 25 steps of 41, in segments of 16
  EXPECT_EQ(rows.cell.split, Split::kRows);
  EXPECT_EQ(rows.cell.gradient_block, 32);
}

TEST(Plan, CheckpointedSegmentsAreWholeBlocksOfATrainingCall) {
  auto checkpoint = [](Problem p, Index asked, bool training = true) {
    p.training = training;
    p.checkpoint = asked;
    return plan_layer(p).cell.checkpoint;
  };
  const Problem p = problem(100, 64, 256, 256, 2);  // blocks of 16 steps
  EXPECT_EQ(checkpoint(p, 0), 0);                   // none asked
  EXPECT_EQ(checkpoint(p, 1), 16);                  // rounded up to a block
  EXPECT_EQ(checkpoint(p, 17), 32);
  EXPECT_EQ(checkpoint(p, -1), 16);                                // auto: sqrt(100) = 10 steps, one block
  EXPECT_EQ(checkpoint(p, 99), 0);                                 // one segment would hold every step: the whole trace
  EXPECT_EQ(checkpoint(p, 1, false), 0);                           // inference keeps no trace
  EXPECT_EQ(checkpoint(problem(20000, 16, 64, 256, 2), -1), 192);  // sqrt(20000) = 142 -> 3 blocks of 64
  EXPECT_EQ(checkpoint(problem(3, 16, 64, 256, 2), 1), 0);         // 48 rows: not packed
  const Problem rows = problem(100, 41, 64, 128, 2);               // row split: blocks of 32 steps, whole meetings
  EXPECT_EQ(checkpoint(rows, 20), 32);
}

TEST(Plan, BigBidirectionalLayerRunsDirectionsSideBySideWithHalfTheTeam) {
  Problem p = problem(100, 32, 256, 256, 4);
  p.directions = 2;
  const LayerPlan plan = plan_layer(p);
  EXPECT_TRUE(plan.directions_parallel);
  EXPECT_EQ(plan.cell.team, 2);
  p.directions = 1;
  EXPECT_FALSE(plan_layer(p).directions_parallel);
  EXPECT_EQ(plan_layer(p).cell.team, 4);
}

TEST(Plan, SmallBidirectionalLayerKeepsDirectionsInOrder) {
  Problem p = problem(10, 1, 8, 8, 4);  // 10 * 32 * 16 multiply-adds
  p.directions = 2;
  EXPECT_FALSE(plan_layer(p).directions_parallel);
}

TEST(Plan, InferenceChunkIsClamped) {
  // 16384 numbers / (B 4H): B = 1, H = 8 would give 512 steps, clamped to 64.
  EXPECT_EQ(plan_layer(problem(1000, 1, 8, 8, 1)).cell.chunk, 64);
  EXPECT_EQ(plan_layer(problem(1000, 4, 8, 128, 1)).cell.chunk, 8);
  // A step bigger than the chunk's numbers still projects one step at a time.
  EXPECT_EQ(plan_layer(problem(1000, 64, 8, 512, 1)).cell.chunk, 1);
}

TEST(Plan, TrainingProjectsEveryStepAtOnce) {
  Problem p = problem(1000, 4, 8, 128, 1);
  p.training = true;
  EXPECT_EQ(plan_layer(p).cell.chunk, 1000);
}

}  // namespace

namespace {

// A frozen model's multiply-adds weigh element_size / 4 of float32's (int8: a quarter), so a step that
// just earns a team in float32 (B 4H R = 32768 multiply-adds) does not in int8; four times the work does.
TEST(Plan, FrozenReducedPrecisionNeedsMoreWorkForATeam) {
  Problem fp32 = problem(/*T=*/100, /*B=*/2, 64, 64, 2);  // 2 * 256 * 64 = 32768 per step
  EXPECT_EQ(plan_layer(fp32).cell.team, 2);
  Problem int8 = fp32;
  int8.element_size = 1;
  EXPECT_EQ(plan_layer(int8).cell.team, 1);
  int8.batch = 8;
  int8.rows = 800;
  EXPECT_EQ(plan_layer(int8).cell.team, 2);
  Problem f64 = fp32;  // float64 counts as float32: its plans are unchanged
  f64.element_size = 8;
  EXPECT_EQ(plan_layer(f64).cell.team, 2);
}

// int8 weights take a quarter of float32's bytes, so more of them sit whole in each core's L2: the
// medium shape's (I = H = 256: 512 KiB in int8, 1 MiB in bf16) split rows in int8 only.
TEST(Plan, FrozenInt8SplitsRowsOnWeightsThatFitInL2) {
  Problem int8 = problem(/*T=*/100, /*B=*/64, 256, 256, 2);
  int8.element_size = 1;
  EXPECT_EQ(plan_layer(int8).cell.split, Split::kRows);
  Problem bf16 = int8;
  bf16.element_size = 2;
  EXPECT_EQ(plan_layer(bf16).cell.split, Split::kUnits);
}

// The dot instructions are the plan's to hand out: a frozen model's precision takes its own where the CPU
// offers it, never the other's; fp32 takes none.
TEST(Plan, AFrozenModelRunsOnItsPrecisionsDotInstruction) {
  for (const bool has : {false, true}) {
    Problem p = problem(/*T=*/10, /*B=*/4, 64, 64, 1);
    p.dot = {has, has};
    for (const Precision precision : {Precision::bf16, Precision::int8}) {
      p.precision = precision;
      EXPECT_EQ(plan_layer(p).cell.dot, has);
    }
    p.precision = Precision::fp32;
    EXPECT_FALSE(plan_layer(p).cell.dot);
  }
  Problem int8 = problem(/*T=*/10, /*B=*/4, 64, 64, 1);
  int8.precision = Precision::int8;
  int8.dot = {true, false};  // vdpbf16ps but no vpdpbusd
  EXPECT_FALSE(plan_layer(int8).cell.dot);
}

// bf16 training runs on vdpbf16ps only on packed weights with 16 float lanes (a frozen block a packet),
// and its backward not with a projection shared out among a team.
TEST(Plan, Bf16TrainingRunsOnTheDotInstructionOnPackedWeightsOf16Lanes) {
  Problem p = problem(/*T=*/100, /*B=*/64, 256, 256, 2);
  p.training = true;
  p.precision = Precision::bf16;
  p.dot = {true, true};
  EXPECT_TRUE(plan_layer(p).cell.dot);
  EXPECT_EQ(plan_layer(p).cell.backward_product, TrainingProduct::bf16_dot);
  Problem avx2 = p;
  avx2.lanes = 8;
  EXPECT_FALSE(plan_layer(avx2).cell.dot);
  Problem few = p;
  few.steps = 1;
  few.batch = 8;
  few.rows = 8;
  ASSERT_FALSE(plan_layer(few).cell.packing);
  EXPECT_FALSE(plan_layer(few).cell.dot);
  Problem projection = p;
  projection.dims.projection = true;
  projection.dims.output_size = 128;
  ASSERT_GT(plan_layer(projection).cell.team, 1);
  EXPECT_TRUE(plan_layer(projection).cell.dot);
  EXPECT_EQ(plan_layer(projection).cell.backward_product, TrainingProduct::panels);
  Problem fp32 = p;
  fp32.precision = Precision::fp32;
  EXPECT_FALSE(plan_layer(fp32).cell.dot);
}

// The training passes' products: vdpbf16ps where the dot instruction is chosen, else panels on packed
// weights, else Eigen's on the weights as they are; an inference of the training passes never the dot.
TEST(Plan, TheTrainingPassesProductsFollowThePackingAndTheDotInstruction) {
  Problem p = problem(/*T=*/100, /*B=*/64, 256, 256, 2);
  p.training = true;
  p.precision = Precision::bf16;
  p.dot = {true, true};
  EXPECT_EQ(plan_layer(p).cell.forward_product, TrainingProduct::bf16_dot);
  p.dot = {false, false};
  EXPECT_EQ(plan_layer(p).cell.forward_product, TrainingProduct::panels);
  EXPECT_EQ(plan_layer(p).cell.backward_product, TrainingProduct::panels);
  Problem few = p;
  few.steps = 1;
  few.batch = 8;
  few.rows = 8;
  EXPECT_EQ(plan_layer(few).cell.forward_product, TrainingProduct::unpacked);
  EXPECT_EQ(plan_layer(few).cell.backward_product, TrainingProduct::unpacked);
  Problem inference = problem(/*T=*/100, /*B=*/64, 256, 256, 2);
  inference.dot = {true, true};
  EXPECT_EQ(plan_layer(inference).cell.forward_product, TrainingProduct::panels);
}

TEST(Plan, AFrozenModelsProductsRunOnTheTileUnitFromEnoughRows) {
  for (const TileUnit unit : {TileUnit::amx, TileUnit::emulated})
    for (const Precision precision : {Precision::int8, Precision::bf16}) {
      Problem p = problem(/*T=*/10, /*B=*/kTileMinRows, 64, 256, 1);
      p.precision = precision;
      p.dot = {true, true, unit};
      EXPECT_EQ(plan_layer(p).cell.tiles, unit);
      Problem few = p;  // a streaming step of a few rows stays on the dot instructions
      few.batch = kTileMinRows - 1;
      few.rows = few.batch * few.steps;
      EXPECT_EQ(plan_layer(few).cell.tiles, TileUnit::none);
      Problem none = p;  // a CPU without the tiles
      none.dot.tiles = TileUnit::none;
      EXPECT_EQ(plan_layer(none).cell.tiles, TileUnit::none);
      Problem training = p;  // the training passes' products are not on tiles (yet)
      training.training = true;
      EXPECT_EQ(plan_layer(training).cell.tiles, TileUnit::none);
      Problem fp32 = p;
      fp32.precision = Precision::fp32;
      EXPECT_EQ(plan_layer(fp32).cell.tiles, TileUnit::none);
    }
}

}  // namespace
