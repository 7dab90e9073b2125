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
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lstm_fast/config.hpp"  // Index, Error, the limits, Config, threads and instruction set

namespace lstm_fast {

class Model;
class Streams;
// Not part of the API: what Model and Streams hold behind their handles, defined in the library's
// own sources (nothing of it is installed).
namespace detail {
struct ModelData;    // a model's config and weights, made once at load and never changed after
struct StreamsData;  // a Streams' slots and batch, and its own copy of the Model
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

// An LSTM stack with its weights, as read from a model file. A Model is a handle to weights that never
// change after load: a copy is cheap (no weights are copied) and shares them, and it runs on its own
// after the model it was copied from is gone. A default-made or moved-from Model is empty: its config()
// is a default Config (input and hidden size 0), and initial_state, step, forward and save throw Error.
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

  Precision precision() const;  // fp32 for an empty model

  const Config& config() const;                               // a default Config for an empty model
  Index input_size() const { return config().input_size; }    // I
  Index hidden_size() const { return config().hidden_size; }  // H
  Index num_layers() const { return config().num_layers; }    // L
  Index proj_size() const { return config().proj_size; }      // 0 or R
  bool bidirectional() const { return config().bidirectional; }
  Index output_size() const { return config().directions() * config().output_size(); }  // D*R

  // Zero state for B >= 1 streams, with step's scratch memory allocated here once.
  State initial_state(Index batch) const;

  // One time step through every layer. Unidirectional models only (throws Error otherwise).
  //   x: [B, I] this step's input;  y: [B, R] written, the last layer's output;
  //   state: from initial_state(B), updated in place to the state after this step.
  // Never allocates memory; it throws (before touching anything) only when the model is
  // bidirectional or empty or `state` is not one of this model's (wrong sizes). Runs on the calling
  // thread, on the weights packed at load, in the model's precision; the B rows share each read of them.
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
  // batch_first or dtype, which do not change what the C++ API computes. Empty for an empty model.
  const std::string& config_json() const;

 private:
  friend struct detail::ModelAccess;
  friend struct detail::StreamsData;
  explicit Model(std::shared_ptr<const detail::ModelData> data) : data_(std::move(data)) {}
  const detail::ModelData& data(const char* call) const;  // throws Error naming `call` when empty

  std::shared_ptr<const detail::ModelData> data_;  // null: an empty model
};

// Many independent streams over one unidirectional Model: a slot per open stream holding its state
// (h [L, R], c [L, H]), and step(), which advances any of them by one time step as one batched step
// of the model, so that the weights are read once for all of them. Each stream's outputs are those of
// stepping it alone with Model::step (bitwise in int8). A Streams keeps its own copy of the Model (a
// handle to the same weights): the model it was made from may go away.
// An id names one stream for as long as it is open; a closed id is never valid again. Not
// thread-safe: one thread at a time (the Python batcher serialises its own calls).
// A copy holds copies of every stream (the same ids, states and model) that then go on independently
// of the original's. A moved-from Streams has no streams and an empty model: size() is 0, ids() empty,
// and open, close, state and step throw Error until another Streams is assigned to it.
class Streams {
 public:
  explicit Streams(const Model& model);  // throws Error for an empty or bidirectional model
  Streams(const Streams& other);
  Streams(Streams&& other) noexcept;
  Streams& operator=(const Streams& other);
  Streams& operator=(Streams&& other) noexcept;
  ~Streams();

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

  Index size() const;              // open streams
  std::vector<Index> ids() const;  // their ids, oldest slot first
  const Model& model() const;      // this Streams' copy of the model

 private:
  std::unique_ptr<detail::StreamsData> data_;  // null once moved from
};

}  // namespace lstm_fast
