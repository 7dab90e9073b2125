// Streams: many independent streams over one model, stepped together. A stream's state lives in its
// slot; step() gathers the listed streams' states into the [L, n, *] layout of Model::step_arrays and
// runs one batched step (the weights read once for all n). The states stay in that batch (resident)
// while the next steps list the same streams in the same order, and go back to their slots when a
// step lists others or the stream is closed. Rows do not interact in a step (each row's products,
// scales and gates are its own), so a stream's outputs do not depend on which other streams share it.
#include <algorithm>
#include <string>

#include "lstm_fast/lstm_fast.hpp"

namespace lstm_fast {
namespace {

constexpr int kSlotBits = 32;  // an id is generation << kSlotBits | slot
constexpr Index kSlotMask = (Index(1) << kSlotBits) - 1;

}  // namespace

Streams::Streams(const Model& model)
    : model_(&model), L_(model.num_layers()), R_(model.config().output_size()), H_(model.hidden_size()) {
  if (model.bidirectional()) throw Error("Streams: a stream steps forward in time; this model is bidirectional");
}

Index Streams::open() { return open(nullptr, nullptr); }

Index Streams::open(const float* h, const float* c) {
  Index slot;
  if (!free_.empty()) {
    slot = free_.back();
  } else {
    slot = static_cast<Index>(live_.size());
    if (slot > kSlotMask) throw Error("Streams.open: too many streams");
    // Grown together before anything is recorded: a failed allocation leaves the table as it was.
    h_.resize(static_cast<std::size_t>((slot + 1) * L_ * R_));
    c_.resize(static_cast<std::size_t>((slot + 1) * L_ * H_));
    generation_.reserve(live_.size() + 1);
    position_.reserve(live_.size() + 1);
    seen_.reserve(live_.size() + 1);
    live_.reserve(live_.size() + 1);
    free_.reserve(live_.size() + 1);
    generation_.push_back(0);
    position_.push_back(-1);
    seen_.push_back(0);
    live_.push_back(0);
    free_.push_back(slot);
  }
  free_.pop_back();
  float* hs = slot_h(slot);
  float* cs = slot_c(slot);
  if (h)
    std::copy_n(h, L_ * R_, hs);
  else
    std::fill_n(hs, L_ * R_, 0.0f);
  if (c)
    std::copy_n(c, L_ * H_, cs);
  else
    std::fill_n(cs, L_ * H_, 0.0f);
  live_[static_cast<std::size_t>(slot)] = 1;
  ++open_;
  return static_cast<Index>(generation_[static_cast<std::size_t>(slot)]) << kSlotBits | slot;
}

Index Streams::find(Index id) const {
  const Index slot = id & kSlotMask;
  const auto s = static_cast<std::size_t>(slot);
  if (id < 0 || s >= live_.size() || !live_[s] || static_cast<Index>(generation_[s]) != (id >> kSlotBits)) return -1;
  return slot;
}

Index Streams::slot_of(Index id, const char* what) const {
  const Index slot = find(id);
  if (slot < 0) throw Error(std::string(what) + " = " + std::to_string(id) + " is not an open stream");
  return slot;
}

void Streams::close(Index id, float* h, float* c) {
  const Index slot = slot_of(id, "Streams.close: id");
  free_.reserve(live_.size());  // before the state changes: a failed allocation changes nothing
  if (position_[static_cast<std::size_t>(slot)] >= 0) exchange(false);
  if (h) std::copy_n(slot_h(slot), L_ * R_, h);
  if (c) std::copy_n(slot_c(slot), L_ * H_, c);
  const auto s = static_cast<std::size_t>(slot);
  live_[s] = 0;
  ++generation_[s];  // the closed id never names a stream again
  free_.push_back(slot);
  --open_;
}

void Streams::state(Index id, float* h, float* c) const {
  const Index slot = slot_of(id, "Streams.state: id");
  const Index i = position_[static_cast<std::size_t>(slot)];
  for (Index k = 0; k < L_; ++k) {  // from the batch while the stream is in it, else from its slot
    std::copy_n(i >= 0 ? batch_h(k, i) : slot_h(slot) + k * R_, R_, h + k * R_);
    std::copy_n(i >= 0 ? batch_c(k, i) : slot_c(slot) + k * H_, H_, c + k * H_);
  }
}

std::vector<Index> Streams::ids() const {
  std::vector<Index> out;
  out.reserve(static_cast<std::size_t>(open_));
  for (std::size_t s = 0; s < live_.size(); ++s)
    if (live_[s]) out.push_back(static_cast<Index>(generation_[s]) << kSlotBits | static_cast<Index>(s));
  return out;
}

void Streams::step(const Index* ids, Index n, const float* x, float* y) {
  if (n < 0) throw Error("Streams.step: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return;
  if (!ids || !x || !y) throw Error("Streams.step: ids, x and y must not be null");
  // Every check and every allocation before the first state changes (resizing keeps the resident
  // batch's rows where they are).
  const int slices = model_->step_slices(n);
  const std::size_t work = model_->step_workspace_floats(n, slices);
  const auto rows = static_cast<std::size_t>(n);
  if (slots_.size() < rows) slots_.resize(rows);
  if (resident_.capacity() < rows) resident_.reserve(rows);
  if (batch_h_.size() < rows * static_cast<std::size_t>(L_ * R_))
    batch_h_.resize(rows * static_cast<std::size_t>(L_ * R_));
  if (batch_c_.size() < rows * static_cast<std::size_t>(L_ * H_))
    batch_c_.resize(rows * static_cast<std::size_t>(L_ * H_));
  if (work_.size() < work) work_.resize(work);
  const std::uint64_t step = ++steps_;
  for (Index i = 0; i < n; ++i) {
    const Index slot = find(ids[i]);
    if (slot < 0)
      throw Error("Streams.step: ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                  " is not an open stream");
    std::uint64_t& seen = seen_[static_cast<std::size_t>(slot)];
    if (seen == step)
      throw Error("Streams.step: ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                  " appears more than once in this step");
    seen = step;
    slots_[static_cast<std::size_t>(i)] = slot;
  }
  // The same streams in the same order as the last step (a server's frame clock): their states are
  // still in the batch. Otherwise those go back to their slots and these come out of theirs.
  if (!std::equal(resident_.begin(), resident_.end(), slots_.begin(), slots_.begin() + n)) {
    exchange(false);
    resident_.assign(slots_.begin(), slots_.begin() + n);
    exchange(true);
  }
  model_->step_arrays(x, y, batch_h_.data(), batch_c_.data(), n, slices, work_.data());
}

// The resident streams' states from their slots into the batch (`into_batch`), or back; back empties
// the batch.
void Streams::exchange(bool into_batch) {
  for (std::size_t i = 0; i < resident_.size(); ++i) {
    const Index slot = resident_[i];
    position_[static_cast<std::size_t>(slot)] = into_batch ? static_cast<Index>(i) : -1;
    for (Index k = 0; k < L_; ++k) {
      float* h = slot_h(slot) + k * R_;
      float* c = slot_c(slot) + k * H_;
      float* bh = batch_h(k, static_cast<Index>(i));
      float* bc = batch_c(k, static_cast<Index>(i));
      std::copy_n(into_batch ? h : bh, R_, into_batch ? bh : h);
      std::copy_n(into_batch ? c : bc, H_, into_batch ? bc : c);
    }
  }
  if (!into_batch) resident_.clear();
}

}  // namespace lstm_fast
