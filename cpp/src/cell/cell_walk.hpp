// The walk of one cell over its steps: the skeleton that the training forward (forward.cpp), the
// backward (backward.cpp) and inference (frozen_kernels.cpp) share. It owns the order of the steps, the
// chunks and segments the plan asks for, and the team's meetings: every member walks the same meetings
// in the same order (Seat::share), each meeting's work cut into plan.team slices. A pass supplies what
// a slice of each meeting computes (its hooks, below) and decides nothing the plan has not.
//
// Hooks of a pass (j: the slice; p: a step in processing order, t = p, or T-1-p when reversed):
//   prepares(), prepare(j)         a meeting before the first step (packing, masks), where prepares()
//   projects_chunks(),             forward, unit split: a meeting at each chunk's start, where
//     project_chunk(j, chunk)        projects_chunks(): the chunk's input projection shared out by rows
//   step(j, p, chunk)              forward, unit split: step p of the slice's units
//   step(j, p)                     backward, unit split: step p of the slice's units
//   project(j, p)                  unit split with a projection, step p's second meeting (h_t = W_hr m_t
//                                    needs every unit of m_t; the backward's dm = dh W_hr every unit of dh)
//   row_step(j, p)                 row split: step p of the slice's rows (no meeting a step)
//   gradients(j, block),           backward: each block of plan.gradient_block steps once its steps are
//     project_gradients(j, block)    done (the second with a projection: dW_hr reads all of M)
//   finish(j)                      backward, unit split: after the last step (dh_{-1})
#pragma once

#include <algorithm>

#include "plan/plan.hpp"
#include "runtime/team.hpp"

namespace lstm_fast::detail::LSTM_FAST_ISA {
namespace {

// Steps first .. first + count - 1 in processing order, whose packed rows are [row0, row0 + rows).
struct Chunk {
  Index first, count, row0, rows;
};

// The steps of a cell: offsets[t] is step t's first packed row (offsets[steps] = N); processed
// t = 0 .. steps-1, or steps-1 .. 0 when `reverse` (a bidirectional layer's second direction).
struct Walk {
  Index steps;
  const Index* offsets;
  bool reverse;
  bool projection;  // a second meeting a step in the unit split (project)

  // The chunk of up to `size` steps from `first`; in either order its rows are contiguous.
  Chunk chunk(Index first, Index size) const {
    const Index count = std::min(size, steps - first);
    const Index t_lo = reverse ? steps - first - count : first;
    return {first, count, offsets[t_lo], offsets[t_lo + count] - offsets[t_lo]};
  }
};

// Forward (training or inference). Unit split: [prepare], then per chunk of plan.chunk steps
// [project_chunk], and per step [step] ([project]). Row split: [prepare], then one meeting per
// plan.segment steps, in which each slice runs row_step over them. ([x]: a meeting.)
template <typename Pass, typename Share>
void walk_forward(const CellPlan& plan, const Walk& walk, Pass& pass, const Share& share) {
  if (pass.prepares()) share([&](int j) { pass.prepare(j); });
  if (plan.split == Split::kRows) {
    for (Index first = 0; first < walk.steps; first += plan.segment)
      share([&](int j) {
        for (Index p = first; p < std::min(walk.steps, first + plan.segment); ++p) pass.row_step(j, p);
      });
    return;
  }
  for (Index first = 0; first < walk.steps; first += plan.chunk) {
    const Chunk chunk = walk.chunk(first, plan.chunk);
    if (pass.projects_chunks()) share([&](int j) { pass.project_chunk(j, chunk); });
    for (Index p = first; p < first + chunk.count; ++p) {
      share([&](int j) { pass.step(j, p, chunk); });
      if (walk.projection) share([&](int j) { pass.project(j, p); });
    }
  }
}

// Backward: the forward's steps from the last. Unit split: per step [step] ([project]), after each
// block of plan.gradient_block steps [gradients] ([project_gradients]), then [finish]. Row split:
// [prepare], then one meeting per plan.segment steps (each slice's row_step over them, the last first),
// and the blocks' meetings as in the unit split (a block is a whole number of segments).
template <typename Pass, typename Share>
void walk_backward(const CellPlan& plan, const Walk& walk, Pass& pass, const Share& share) {
  const auto block_done = [&](Index q) {  // q: the block's first step
    if (q % plan.gradient_block != 0) return;
    const Index block = q / plan.gradient_block;
    share([&](int j) { pass.gradients(j, block); });
    if (walk.projection) share([&](int j) { pass.project_gradients(j, block); });
  };
  if (pass.prepares()) share([&](int j) { pass.prepare(j); });
  if (plan.split == Split::kRows) {
    for (Index last = walk.steps - 1; last >= 0;) {
      const Index first = last - last % plan.segment;
      share([&](int j) {
        for (Index q = last; q >= first; --q) pass.row_step(j, q);
      });
      block_done(first);
      last = first - 1;
    }
    return;
  }
  for (Index q = walk.steps - 1; q >= 0; --q) {
    share([&](int j) { pass.step(j, q); });
    if (walk.projection) share([&](int j) { pass.project(j, q); });
    block_done(q);
  }
  if (walk.steps > 0) share([&](int j) { pass.finish(j); });
}

// Rows of [0, b) that member k of a team owns in the row split: k, k + team, ... (count of them).
inline Index rows_of(Index b, int team, int k) { return b > k ? (b - k + team - 1) / team : 0; }

// Packed sequences: at a step with b rows active, rows [b, B) of the state belong to sequences that
// have ended, and keep h_{t-1} as h_t in either direction. ended(r) runs for those of slice k: every
// one in the unit split (each slice carries its own columns of them), member k's in the row split.
template <typename Ended>
void for_ended_rows(const CellPlan& plan, int k, Index b, Index B, const Ended& ended) {
  const bool rows = plan.split == Split::kRows;
  const Index stride = rows ? plan.team : 1;
  for (Index r = rows ? k + rows_of(b, plan.team, k) * stride : b; r < B; r += stride) ended(r);
}

// Runs walker(share) on the plan's team, share(work) running work(j) for the slices of a meeting: a
// team of one on the caller's thread with nothing leased or allocated, else a Team's members, each at
// its Seat.
template <typename Walker>
void on_team(const CellPlan& plan, const Walker& walker) {
  if (plan.team == 1) {
    walker([](const auto& work) { work(0); });
    return;
  }
  run_team(plan.team, [&walker](Seat& seat) { walker([&seat](const auto& work) { seat.share(work); }); });
}

}  // namespace
}  // namespace lstm_fast::detail::LSTM_FAST_ISA
