// Streams: many independent streams over one model, stepped together. A stream's state lives in its
// slot; step() gathers the listed streams' states into the [L, n, *] layout of ModelData::step_arrays and
// runs one batched step (the weights read once for all n). The states stay in that batch (resident)
// while the next steps list the same streams in the same order, and go back to their slots when a
// step lists others or the stream is closed. Rows do not interact in a step (each row's products,
// scales and gates are its own), so a stream's outputs do not depend on which other streams share it.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "api/model_data.hpp"
#include "lstm_fast/lstm_fast.hpp"

namespace lstm_fast {
namespace {

constexpr int kSlotBits = 32;  // an id is generation << kSlotBits | slot
constexpr Index kSlotMask = (Index(1) << kSlotBits) - 1;

}  // namespace

namespace detail {

// What a Streams holds behind its handle. Every member is a value, so that a copy is a deep copy:
// the model's copy shares its (immutable) weights, the slots and the batch are copied.
struct StreamsData {
  explicit StreamsData(const Model& m);

  Index open(const float* h, const float* c);
  void close(Index id, float* h, float* c);
  void state(Index id, float* h, float* c) const;
  void step(const Index* ids, Index n, const float* x, float* y);
  std::vector<Index> ids() const;

  Index find(Index id) const;                       // its slot, or -1 unless id is open
  Index slot_of(Index id, const char* what) const;  // its slot; throws Error naming `what` unless open
  void exchange(bool into_batch);                   // the resident states into the batch, or back
  // A slot's h [L, R] and c [L, H]; layer k of the i-th resident stream in the batch [L, n, *].
  float* slot_h(Index slot) { return h_.data() + slot * L_ * R_; }
  float* slot_c(Index slot) { return c_.data() + slot * L_ * H_; }
  const float* slot_h(Index slot) const { return h_.data() + slot * L_ * R_; }
  const float* slot_c(Index slot) const { return c_.data() + slot * L_ * H_; }
  Index resident() const { return static_cast<Index>(resident_.size()); }
  float* batch_h(Index k, Index i) { return batch_h_.data() + (k * resident() + i) * R_; }
  float* batch_c(Index k, Index i) { return batch_c_.data() + (k * resident() + i) * H_; }
  const float* batch_h(Index k, Index i) const { return batch_h_.data() + (k * resident() + i) * R_; }
  const float* batch_c(Index k, Index i) const { return batch_c_.data() + (k * resident() + i) * H_; }

  Model model_;  // its own copy: the weights are shared, and live as long as this
  Index L_, R_, H_;
  Index open_ = 0;
  std::vector<float> h_, c_;               // [slots, L, R], [slots, L, H]
  std::vector<std::uint32_t> generation_;  // [slots]: an id is generation << 32 | slot
  std::vector<char> live_;                 // [slots]
  std::vector<Index> free_;                // slots to reuse
  std::vector<std::uint64_t> seen_;        // [slots]: the step that last listed it (repeated ids)
  std::uint64_t steps_ = 0;
  std::vector<Index> slots_;              // this step's slots
  std::vector<Index> resident_;           // the slots whose states are in the batch, in its order
  std::vector<Index> position_;           // [slots]: its row in the batch, or -1
  std::vector<float> batch_h_, batch_c_;  // [L, n, R], [L, n, H]: the resident streams' states
  std::vector<float> work_;               // the working memory of the model's batched step
};

StreamsData::StreamsData(const Model& m)
    : model_(m), L_(m.num_layers()), R_(m.config().output_size()), H_(m.hidden_size()) {
  if (!m.data_) throw Error("Streams: the model is empty (use Model::load)");
  if (m.bidirectional()) throw Error("Streams: a stream steps forward in time; this model is bidirectional");
}

Index StreamsData::open(const float* h, const float* c) {
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

Index StreamsData::find(Index id) const {
  const Index slot = id & kSlotMask;
  const auto s = static_cast<std::size_t>(slot);
  if (id < 0 || s >= live_.size() || !live_[s] || static_cast<Index>(generation_[s]) != (id >> kSlotBits)) return -1;
  return slot;
}

Index StreamsData::slot_of(Index id, const char* what) const {
  const Index slot = find(id);
  if (slot < 0) throw Error(std::string(what) + " = " + std::to_string(id) + " is not an open stream");
  return slot;
}

void StreamsData::close(Index id, float* h, float* c) {
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

void StreamsData::state(Index id, float* h, float* c) const {
  const Index slot = slot_of(id, "Streams.state: id");
  const Index i = position_[static_cast<std::size_t>(slot)];
  for (Index k = 0; k < L_; ++k) {  // from the batch while the stream is in it, else from its slot
    std::copy_n(i >= 0 ? batch_h(k, i) : slot_h(slot) + k * R_, R_, h + k * R_);
    std::copy_n(i >= 0 ? batch_c(k, i) : slot_c(slot) + k * H_, H_, c + k * H_);
  }
}

std::vector<Index> StreamsData::ids() const {
  std::vector<Index> out;
  out.reserve(static_cast<std::size_t>(open_));
  for (std::size_t s = 0; s < live_.size(); ++s)
    if (live_[s]) out.push_back(static_cast<Index>(generation_[s]) << kSlotBits | static_cast<Index>(s));
  return out;
}

void StreamsData::step(const Index* ids, Index n, const float* x, float* y) {
  if (n < 0) throw Error("Streams.step: n must be >= 0, got " + std::to_string(n));
  if (n == 0) return;
  if (!ids || !x || !y) throw Error("Streams.step: ids, x and y must not be null");
  // Every check and every allocation before the first state changes (resizing keeps the resident
  // batch's rows where they are).
  const ModelData& model = *model_.data_;
  const int slices = model.step_slices(n);
  const std::size_t work = model.step_workspace_floats(n, slices);
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
  model.step_arrays(x, y, batch_h_.data(), batch_c_.data(), n, slices, work_.data());
}

// The resident streams' states from their slots into the batch (`into_batch`), or back; back empties
// the batch.
void StreamsData::exchange(bool into_batch) {
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

}  // namespace detail

Streams::Streams(const Model& model) : data_(std::make_unique<detail::StreamsData>(model)) {}
Streams::Streams(const Streams& other)
    : data_(other.data_ ? std::make_unique<detail::StreamsData>(*other.data_) : nullptr) {}
Streams::Streams(Streams&& other) noexcept = default;
Streams& Streams::operator=(Streams&& other) noexcept = default;
Streams::~Streams() = default;

Streams& Streams::operator=(const Streams& other) {
  if (this != &other) data_ = other.data_ ? std::make_unique<detail::StreamsData>(*other.data_) : nullptr;
  return *this;
}

namespace {

// The data of a Streams that has not been moved from; else Error naming `call`.
template <typename Data>
Data& live(const std::unique_ptr<Data>& data, const char* call) {
  if (!data) throw Error(std::string(call) + ": this Streams was moved from");
  return *data;
}

}  // namespace

Index Streams::open() { return live(data_, "Streams.open").open(nullptr, nullptr); }
Index Streams::open(const float* h, const float* c) { return live(data_, "Streams.open").open(h, c); }
void Streams::close(Index id, float* h, float* c) { live(data_, "Streams.close").close(id, h, c); }
void Streams::state(Index id, float* h, float* c) const { live(data_, "Streams.state").state(id, h, c); }
void Streams::step(const Index* ids, Index n, const float* x, float* y) {
  live(data_, "Streams.step").step(ids, n, x, y);
}
Index Streams::size() const { return data_ ? data_->open_ : 0; }
std::vector<Index> Streams::ids() const { return data_ ? data_->ids() : std::vector<Index>(); }

const Model& Streams::model() const {
  static const Model empty;
  return data_ ? data_->model_ : empty;
}

}  // namespace lstm_fast
