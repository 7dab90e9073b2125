// Checkpointed backpropagation through time (Chen et al. 2016; Gruslys et al. 2016). With
// plan.checkpoint = K > 0 a cell's training forward runs its sequence as segments of K steps (in
// processing order) and keeps, instead of the trace of every step, the state before each segment; the
// backward visits the segments last to first, runs each one's forward again from its state into a
// trace of the segment's rows, and backpropagates through that. Memory: the trace of K steps and
// T / K states instead of the trace of T steps; time: one more forward.
//
// Every segment runs the kernels with the whole call's plan and starts on a multiple of its gradient
// block (plan.cpp), so that each row goes through the same operations in the same order as in one
// call over the whole sequence: the backward's blocks are the same blocks, summed in the same order
// (BackwardArrays::accumulate), and the gradients are bitwise those of the full trace.
#include <algorithm>
#include <vector>

#include "cell/cell.hpp"

namespace lstm_fast::detail {
namespace {

// Segment k of a cell's sequence: processing positions [k K, (k + 1) K), run alone: the schedule of its
// steps (its batch the rows active at its first step) and the packed row where its rows start.
struct Segment {
  Schedule schedule;
  Index row0;
};

Segment segment_of(const Sequence& sequence, Index length, Index k) {
  const Schedule& s = sequence.schedule;
  const Index T = s.steps(), p0 = k * length, p1 = std::min(T, p0 + length);
  const Index first = sequence.reverse ? T - p1 : p0, end = sequence.reverse ? T - p0 : p1;
  std::vector<Index> sizes(s.batch_sizes.begin() + first, s.batch_sizes.begin() + end);
  const Index batch = sizes.front();
  return {Schedule::packed(std::move(sizes), batch), s.offsets[first]};
}

Index segment_count(const Sequence& sequence, Index length) {
  return (sequence.schedule.steps() + length - 1) / length;
}

// The state of B rows a cell carries from segment to segment: (h [B, R], c [B, H]), from `from` (null:
// zeros).
template <typename T>
struct RowState {
  Buffer<T> h, c;
  RowState(Index B, Index R, Index H, StatePointers<const T*> from) : h(B * R, T(0)), c(B * H, T(0)) {
    if (from.h) std::copy(from.h, from.h + B * R, h.begin());
    if (from.c) std::copy(from.c, from.c + B * H, c.begin());
  }
};

// The forward of segment k from its kept state: `io` is the whole call's (x, masks, seed), y the
// segment's rows of the output; writes the rows' last state to state_n and the segment's trace.
template <typename T>
void segment_forward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& w, const Sequence& sequence,
                     const Segment& segment, Index k, const ForwardArrays<T>& io, const CellTrace<T>& kept,
                     StridedRows<T*> y, StatePointers<T*> state_n, CellTrace<T>& trace) {
  const Index B = sequence.schedule.batch, R = dims.output_size, H = dims.hidden_size;
  const ForwardArrays<T> arrays{io.x + segment.row0 * dims.input_size,
                                {kept.segment_h.data() + k * B * R, kept.segment_c.data() + k * B * H},
                                y,
                                state_n,
                                &trace,
                                io.recurrent_mask,
                                io.zoneout_seed,
                                io.cell,
                                segment.row0};
  cell_kernels<T>().forward(dims, plan, w, {segment.schedule, sequence.reverse}, arrays);
}

template <typename T>
void checkpointed_forward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& w, const Sequence& sequence,
                          const ForwardArrays<T>& io) {
  const Index B = sequence.schedule.batch, R = dims.output_size, H = dims.hidden_size;
  const Index segments = segment_count(sequence, plan.checkpoint);
  CellTrace<T>& kept = *io.trace;
  kept.segment_h.resize(static_cast<size_t>(segments * B * R));
  kept.segment_c.resize(static_cast<size_t>(segments * B * H));
  if (io.recurrent_mask) kept.recurrent_mask.assign(io.recurrent_mask, io.recurrent_mask + B * R);
  // Each segment continues the rows from the state the one before left; rows that start later (the
  // reverse direction's shorter sequences) still hold the initial state there.
  RowState<T> state(B, R, H, io.state0);
  CellTrace<T> trace;  // one segment's, rewritten by each
  for (Index k = 0; k < segments; ++k) {
    std::copy(state.h.begin(), state.h.end(), kept.segment_h.begin() + k * B * R);
    std::copy(state.c.begin(), state.c.end(), kept.segment_c.begin() + k * B * H);
    const Segment segment = segment_of(sequence, plan.checkpoint, k);
    segment_forward(dims, plan, w, sequence, segment, k, io, kept,
                    {io.y.data + segment.row0 * io.y.stride, io.y.stride}, {state.h.data(), state.c.data()}, trace);
  }
  std::copy(state.h.begin(), state.h.end(), io.state_n.h);
  std::copy(state.c.begin(), state.c.end(), io.state_n.c);
}

// Segments last to first: the forward again into `trace`, then the backward through it, its dstate_n the
// gradient w.r.t. the state the segment left (the next segment's dstate0, or the call's dstate_n for
// rows that end in it) and its weight gradients added to the later segments'.
template <typename T>
void checkpointed_backward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& w,
                           const Sequence& sequence, const BackwardArrays<T>& io, const std::uint64_t* zoneout_seed,
                           Index cell) {
  const Index B = sequence.schedule.batch, R = dims.output_size, H = dims.hidden_size, I = dims.input_size;
  const Index segments = segment_count(sequence, plan.checkpoint);
  const CellTrace<T>& kept = io.trace;
  const T* mask = kept.recurrent_mask.empty() ? nullptr : kept.recurrent_mask.data();
  const ForwardArrays<T> forward_io{io.x, {}, {}, {}, nullptr, mask, zoneout_seed, cell};
  RowState<T> dstate(B, R, H, io.dstate_n), end_state(B, R, H, {nullptr, nullptr});
  Buffer<T> y(static_cast<size_t>(plan.checkpoint * B * R));  // the segment's outputs (not needed again)
  CellTrace<T> trace;
  for (Index k = segments - 1; k >= 0; --k) {
    const Segment segment = segment_of(sequence, plan.checkpoint, k);
    segment_forward(dims, plan, w, sequence, segment, k, forward_io, kept, {y.data(), R},
                    {end_state.h.data(), end_state.c.data()}, trace);
    const Index row0 = segment.row0;
    const BackwardArrays<T> arrays{trace,
                                   io.x + row0 * I,
                                   {io.dy.data + row0 * io.dy.stride, io.dy.stride},
                                   {dstate.h.data(), dstate.c.data()},
                                   io.dx + row0 * I,
                                   io.dx_mode,
                                   {dstate.h.data(), dstate.c.data()},
                                   io.grads,
                                   k < segments - 1};
    cell_kernels<T>().backward(dims, plan, w, {segment.schedule, sequence.reverse}, arrays);
  }
  std::copy(dstate.h.begin(), dstate.h.end(), io.dstate0.h);
  std::copy(dstate.c.begin(), dstate.c.end(), io.dstate0.c);
}

}  // namespace

template <typename T>
void train_forward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                   const ForwardArrays<T>& arrays) {
  if (plan.checkpoint > 0)
    checkpointed_forward(dims, plan, weights, sequence, arrays);
  else
    cell_kernels<T>().forward(dims, plan, weights, sequence, arrays);
}

template <typename T>
void train_backward(const CellDims& dims, const CellPlan& plan, const CellWeights<T>& weights, const Sequence& sequence,
                    const BackwardArrays<T>& arrays, const std::uint64_t* zoneout_seed, Index cell) {
  if (plan.checkpoint > 0)
    checkpointed_backward(dims, plan, weights, sequence, arrays, zoneout_seed, cell);
  else
    cell_kernels<T>().backward(dims, plan, weights, sequence, arrays);
}

#define LSTM_FAST_INSTANTIATE(T)                                                                            \
  template void train_forward<T>(const CellDims&, const CellPlan&, const CellWeights<T>&, const Sequence&,  \
                                 const ForwardArrays<T>&);                                                  \
  template void train_backward<T>(const CellDims&, const CellPlan&, const CellWeights<T>&, const Sequence&, \
                                  const BackwardArrays<T>&, const std::uint64_t*, Index);
LSTM_FAST_INSTANTIATE(float)
LSTM_FAST_INSTANTIATE(double)
#undef LSTM_FAST_INSTANTIATE

}  // namespace lstm_fast::detail
