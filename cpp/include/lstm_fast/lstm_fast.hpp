// lstm_fast: run a model trained in Python from C++ (no Python, no Eigen in this header).
//
//   #include <lstm_fast/lstm_fast.hpp>
//
//   lstm_fast::Model m = lstm_fast::Model::load("model.safetensors");  // the file lstm.save() wrote
//   lstm_fast::State st = m.initial_state(/*batch=*/1);
//   for (each frame) m.step(x, y, st);  // x: [1, m.input_size()]  ->  y: [1, m.output_size()]
//
// Which call to use (haste's Run and Iterate):
//   - `step`    one time step through every layer, for streaming (audio, control loops): frames arrive
//               one at a time and the output is needed before the next one. Never allocates.
//               Unidirectional models only (a reverse direction needs the future).
//   - `forward` a whole sequence [T, B, I] at once, every configuration including bidirectional. The
//               input projection of all T steps is one matrix product, so it is faster per step than
//               `step` when the whole sequence is at hand. Allocates its working memory.
// Feeding a sequence step by step gives the outputs of one `forward` over it (to rounding).
//
// Numbers are float: a model saved in float64 is converted to float32 when loaded. A model computes in
// its precision (config.hpp's Precision): fp32, or bf16 / int8 from a file Model::save or Python's
// lf.Model.save wrote, or converted on load with Model::load(path, precision).
// Arrays are dense and row-major; sizes are in elements. Letters as in config.hpp:
//   I input_size, H hidden_size, L num_layers, D directions (2 when bidirectional, else 1),
//   R proj_size when > 0 else H (the output size of one direction of a layer), B batch, T steps.
// The equations and the weight layout are those of torch.nn.LSTM; see config.hpp.
//
// Errors (a file that is not a valid model, a state of the wrong model or batch, a step on a
// bidirectional model) throw lstm_fast::Error, a std::invalid_argument, whose what() names what is
// wrong. A Model is immutable after load: several threads may run it at once, each on its own State.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lstm_fast/config.hpp"  // Index, Error, the limits, Config, threads and instruction set

namespace lstm_fast {

class Model;
// Not part of the API: the library's own types, declared here only because Model's private members
// name them. Nothing below depends on what they are.
template <typename T>
struct CellWeights;  // one cell's weights as the sequence kernels take them
namespace detail {
struct FrozenCell;   // one cell's weights, packed once at load for the model's precision
struct LayerPlan;    // how one layer's call is run (threads, chunks)
struct ModelAccess;  // what the Python bindings call
}  // namespace detail

// The recurrent state of every layer and direction for a batch of B independent streams, plus the
// scratch memory `step` works in (so that `step` never allocates). Get one from
// Model::initial_state(B); it belongs to that model and that B.
class State {
 public:
  State() = default;

  Index batch() const { return batch_; }  // B

  // h[k*D + d] is layer k, direction d (d = 1 the reverse one), the layout of torch's (h_n, c_n).
  // Read or set them freely (e.g. to start from a saved state); keep their sizes.
  std::vector<float> h;  // [L*D, B, R] hidden state (the projected one when proj_size > 0)
  std::vector<float> c;  // [L*D, B, H] memory cell

  void reset();  // zeros h and c: the start of a new sequence

 private:
  friend class Model;
  Index batch_ = 0;
  // step's buffers: [B, R] of a layer's output, then the working memory of one step of B rows.
  std::vector<float> workspace_;
};

// An LSTM stack with its weights, as read from a model file.
class Model {
 public:
  Model() = default;  // an empty model; use load()

  // Reads the safetensors file that LSTM.save() (Python) writes: float32 or float64 tensors, and the
  // metadata {"format": "lstm_fast/1", "config": JSON of the constructor arguments}. The tensors of
  // layer k and direction d are named as torch names them, <name>_l{k} for d = 0 and
  // <name>_l{k}_reverse for d = 1 (I_k: I for layer 0, else D*R):
  //   weight_ih [4H, I_k], weight_hh [4H, R]          always (rows in the gate order i, f, g, o)
  //   bias_ih [4H], bias_hh [4H]                      when bias
  //   weight_hr [R, H]                                when proj_size > 0
  //   weight_peep [3, H] (rows i, f, o)               when peephole
  //   ln_ih_weight [4H], ln_ih_bias [4H],             when layer_norm: layer norm's gains and biases,
  //   ln_hh_weight [4H], ln_hh_bias [4H],               of W_ih x_t, of W_hh h_{t-1}
  //   ln_cell_weight [H], ln_cell_bias [H]              and of c_t
  // The file is treated as untrusted: a bounded, well-formed header, known dtypes, every tensor
  // inside the file and of its declared size, no overlap, and exactly the tensors and shapes the
  // config implies. Anything else throws Error naming the problem. float64 weights become float32.
  static Model load(const std::string& path);

  // The same checks and result as load, on the bytes of a model file already in memory (embedded in
  // the program, read from an archive or a socket). `name` only labels error messages. The bytes are
  // copied and converted: they need not outlive the call, nor be aligned.
  static Model load_from_bytes(const void* data, std::size_t size, const std::string& name = "<memory>");

  // The same, converted on load to `precision` (Precision in config.hpp): a float file frozen to bf16 or
  // int8, or a bf16 or int8 file widened back to fp32. A file's own precision is kept bit for bit.
  // Files of every precision are read: the bf16 and int8 ones that save() writes hold the three
  // weights (weight_ih, weight_hh, weight_hr) as BF16 or I8 tensors of the shapes above, the int8 ones
  // each with its float32 scale per row, "<weight name>_scale" ([4H] for weight_ih and weight_hh, [R]
  // for weight_hr); every other tensor (biases, peepholes, layer norm's) as F32; and "precision" in
  // their metadata.
  static Model load(const std::string& path, Precision precision);
  static Model load_from_bytes(const void* data, std::size_t size, const std::string& name, Precision precision);

  // Writes the model file of this model's precision (atomically: a temporary file, then renamed).
  void save(const std::string& path) const;

  Precision precision() const { return precision_; }

  const Config& config() const { return config_; }
  Index input_size() const { return config_.input_size; }    // I
  Index hidden_size() const { return config_.hidden_size; }  // H
  Index num_layers() const { return config_.num_layers; }    // L
  Index proj_size() const { return config_.proj_size; }      // 0 or R
  bool bidirectional() const { return config_.bidirectional; }
  Index output_size() const { return config_.directions() * config_.output_size(); }  // D*R

  // Zero state for B >= 1 streams, with step's scratch memory allocated here once.
  State initial_state(Index batch) const;

  // One time step through every layer. Unidirectional models only (throws Error otherwise).
  //   x: [B, I] this step's input;  y: [B, R] written, the last layer's output;
  //   state: from initial_state(B), updated in place to the state after this step.
  // Never allocates memory; it throws (before touching anything) only when the model is
  // bidirectional or `state` is not one of this model's (wrong sizes). Runs on the calling thread,
  // on the weights packed at load, in the model's precision; the B rows share each read of them.
  void step(const float* x, float* y, State& state) const;

  // A whole dense sequence through every layer and direction.
  //   x: [T, B, I];  y: [T, B, D*R] written (forward direction in columns 0..R-1);
  //   state: from initial_state(B); read as (h0, c0) and overwritten with (h_n, c_n).
  // Every configuration, bidirectional included. Allocates its working memory.
  void forward(const float* x, Index steps, Index batch, float* y, State& state) const;

  // A packed sequence (torch's PackedSequence): the batch sorted by length, longest first, step t
  // holding the first batch_sizes[t] rows (non-increasing, batch_sizes[0] == batch), the rows of all
  // steps one after another: x [N, I], y [N, D*R] with N = sum(batch_sizes). The state's row b is
  // read as sequence b's start and left as its state after its last step.
  void forward(const float* x, const Index* batch_sizes, Index steps, Index batch, float* y, State& state) const;

  // The constructor arguments saved in the file (the "config" metadata, as JSON text), e.g. to read
  // batch_first or dtype, which do not change what the C++ API computes.
  const std::string& config_json() const { return config_json_; }

 private:
  // The weights of each cell (layer k, direction d at k*D + d) as the fp32 sequence kernels take them,
  // pointing into this model, for forward().
  std::vector<CellWeights<float>> cell_weights() const;
  // Where each tensor of a cell lives in params_ (an offset in floats), -1 when absent.
  struct CellOffsets {
    Index weight_ih = -1, weight_hh = -1, bias_ih = -1, bias_hh = -1, weight_hr = -1, weight_peep = -1;
    Index ln[6] = {-1, -1, -1, -1, -1, -1};  // ln_ih_weight, ln_ih_bias, ln_hh_*, ln_cell_* (that order)
    Index bias = -1;                         // b_ih + b_hh [4H], summed once for step
    // A tensor's offset by its number in the list of a cell's file tensors: 0 .. 5 the six on the first
    // line above, in order, 9 .. 14 ln's (6 .. 8 are the int8 row scales, which params_ does not hold).
    Index& of(int field) {
      Index* fields[] = {&weight_ih, &weight_hh, &bias_ih, &bias_hh, &weight_hr, &weight_peep};
      return field < 6 ? *fields[field] : ln[field - 9];
    }
    Index of(int field) const { return const_cast<CellOffsets*>(this)->of(field); }
  };
  void check_state(const State& state, const char* call) const;
  static Model from_bytes(const void* data, std::size_t size, const std::string& what, const Precision* precision);
  // The whole stack over rows in the packed layout, from (h0, c0) to (h_n, c_n), each [L*D, B, *].
  void run(const float* x, const Index* batch_sizes, Index steps, Index batch, float* y, const float* h0,
           const float* c0, float* h_n, float* c_n) const;
  void step_arrays(const float* x, float* y, float* h, float* c, Index batch, int slices, float* workspace) const;
  detail::LayerPlan frozen_plan(Index layer, Index batch, Index rows, Index steps) const;
  int step_slices(Index batch) const;                                // the team a step of a batch has now
  std::size_t step_workspace_floats(Index batch, int slices) const;  // State::workspace_ of a batch
  friend struct detail::ModelAccess;
  friend class Streams;

  Config config_;
  std::string config_json_;
  Precision precision_ = Precision::fp32;
  // fp32: every tensor, one after another; bf16 and int8: the float32 ones (biases, peepholes, layer
  // norm's). Then one summed bias per cell. Shared by the model's copies, as frozen_ is, whose cells
  // point into it.
  std::shared_ptr<const std::vector<float>> params_;
  std::vector<CellOffsets> cells_;  // [L*D]
  // [L*D]: each cell's weights packed once at load in the model's precision, fp32 included, with
  // pointers to its float32 tensors in params_. step and Streams run on them in every precision,
  // forward in bf16 and int8 (fp32's forward runs on params_).
  std::shared_ptr<const std::vector<detail::FrozenCell>> frozen_;
};

// Many independent streams over one unidirectional Model (keep the model alive as long as this): a
// slot per open stream holding its state (h [L, R], c [L, H]), and step(), which advances any of them
// by one time step as one batched step of the model, so that the weights are read once for all of
// them. Each stream's outputs are those of stepping it alone with Model::step (bitwise in int8).
// An id names one stream for as long as it is open; a closed id is never valid again. Not
// thread-safe: one thread at a time (the Python batcher serialises its own calls).
class Streams {
 public:
  explicit Streams(const Model& model);  // throws Error for a bidirectional model

  // A new stream from zeros, or from h [L, R] and c [L, H]; returns its id.
  Index open();
  Index open(const float* h, const float* c);
  // Ends stream `id`, its final state written to h and c when given.
  void close(Index id, float* h = nullptr, float* c = nullptr);
  // A copy of the state of stream `id`.
  void state(Index id, float* h, float* c) const;
  // One time step of the n streams ids[0..n) (distinct, open): x [n, I] their inputs, y [n, R] written.
  // Checks every id before it changes anything. Allocates nothing once n streams have been stepped
  // at once and as many opened before.
  void step(const Index* ids, Index n, const float* x, float* y);

  Index size() const { return open_; }  // open streams
  std::vector<Index> ids() const;       // their ids, oldest slot first
  const Model& model() const { return *model_; }

 private:
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

  const Model* model_;
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

}  // namespace lstm_fast
