// The raw-array stack's bindings that lf.LSTM and lstm_fast.torch.LSTM train on: _core.CellWeights,
// _core.forward, _core.backward and the training traces (module.cpp's rules: thin, arrays checked for
// exactly what the core reads, the GIL released around the work).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "lstm_fast/config.hpp"
#include "stack/network.hpp"  // internal: the raw-array stack

namespace lstm_fast::bindings {
namespace {

using lstm_fast::Config;
using lstm_fast::Precision;
using lstm_fast::Schedule;
using lstm_fast::Trace;

// _core.CellWeights: the arrays of one cell (layer k, direction d at k*D + d), weights or their
// gradients, each a NumPy array or None where the config has none. The fields are CELL_KINDS of
// _config.py, in its order, which is also the order of the core's CellWeights and CellGrads.
struct PyCellWeights {
  py::object weight_ih = py::none(), weight_hh = py::none(), bias_ih = py::none(), bias_hh = py::none();
  py::object weight_hr = py::none(), weight_peep = py::none();
  py::object ln_ih_weight = py::none(), ln_ih_bias = py::none(), ln_hh_weight = py::none();
  py::object ln_hh_bias = py::none(), ln_cell_weight = py::none(), ln_cell_bias = py::none();
};

struct Kind {
  const char* name;
  py::object PyCellWeights::*field;
};
constexpr int kKinds = 12;
constexpr Kind kCellKinds[kKinds] = {
    {"weight_ih", &PyCellWeights::weight_ih},
    {"weight_hh", &PyCellWeights::weight_hh},
    {"bias_ih", &PyCellWeights::bias_ih},
    {"bias_hh", &PyCellWeights::bias_hh},
    {"weight_hr", &PyCellWeights::weight_hr},
    {"weight_peep", &PyCellWeights::weight_peep},
    {"ln_ih_weight", &PyCellWeights::ln_ih_weight},
    {"ln_ih_bias", &PyCellWeights::ln_ih_bias},
    {"ln_hh_weight", &PyCellWeights::ln_hh_weight},
    {"ln_hh_bias", &PyCellWeights::ln_hh_bias},
    {"ln_cell_weight", &PyCellWeights::ln_cell_weight},
    {"ln_cell_bias", &PyCellWeights::ln_cell_bias},
};

// The core's pointers of one cell (CellWeights<T> or CellGrads<T>) in kCellKinds' order.
template <typename Cell>
auto core_fields(Cell& c) {
  return std::array<decltype(c.weight_ih)*, kKinds>{
      &c.weight_ih,    &c.weight_hh,  &c.bias_ih,      &c.bias_hh,    &c.weight_hr,      &c.weight_peep,
      &c.ln_ih_weight, &c.ln_ih_bias, &c.ln_hh_weight, &c.ln_hh_bias, &c.ln_cell_weight, &c.ln_cell_bias};
}

// The shape of kind k of `cell` (network.hpp's CellWeights), or none where the config has no such array.
std::optional<std::vector<Index>> kind_shape(const Config& c, Index cell, int k) {
  const Index H = c.hidden_size, R = c.output_size(), G = 4 * H;
  if (k == 0) return std::vector<Index>{G, c.layer_input_size(cell / c.directions())};
  if (k == 1) return std::vector<Index>{G, R};
  if ((k == 2 || k == 3) && c.bias) return std::vector<Index>{G};
  if (k == 4 && c.proj_size > 0) return std::vector<Index>{R, H};
  if (k == 5 && c.peephole) return std::vector<Index>{3, H};
  if (k >= 6 && c.layer_norm) return std::vector<Index>{k < 10 ? G : H};  // LN of W_ih x, W_hh h: 4H; of c: H
  return std::nullopt;
}

// The core's view of `weights` (a sequence of CellWeights, one per cell). The arrays read are appended
// to `keep`, which holds them while the GIL is released, whatever another thread rebinds meanwhile.
template <typename T>
std::vector<CellWeights<T>> cell_weights(const Config& c, const py::sequence& weights, std::vector<py::object>& keep) {
  if (static_cast<Index>(py::len(weights)) != c.num_cells())
    throw py::value_error("weights must hold " + std::to_string(c.num_cells()) + " cells, got " +
                          std::to_string(py::len(weights)));
  std::vector<CellWeights<T>> out(static_cast<size_t>(c.num_cells()));
  for (Index cell = 0; cell < c.num_cells(); ++cell) {
    const py::object item = weights[cell];
    if (!py::isinstance<PyCellWeights>(item))
      throw py::type_error("weights[" + std::to_string(cell) + "] must be a CellWeights, got " +
                           py::str(py::type::of(item)).cast<std::string>());
    const auto& w = item.cast<const PyCellWeights&>();
    const auto fields = core_fields(out[cell]);
    for (int k = 0; k < kKinds; ++k) {
      const auto shape = kind_shape(c, cell, k);
      if (!shape) continue;  // ignored where the config has none, as the core does
      const py::object& a = w.*kCellKinds[k].field;
      *fields[k] = array_data<T>(a, *shape, "cell " + std::to_string(cell) + " " + kCellKinds[k].name);
      keep.push_back(a);
    }
  }
  return out;
}

Precision training_precision(const std::string& precision) {
  if (precision == "fp32") return Precision::fp32;
  if (precision == "bf16") return Precision::bf16;
  throw py::value_error("precision must be \"fp32\" or \"bf16\", got \"" + precision + "\"");
}

// The arguments of _core.forward beside config, weights and x.
struct ForwardArgs {
  std::vector<Index> batch_sizes;
  Index batch;
  py::handle h0, c0;
  py::sequence dropout_masks;
  bool train;
  py::handle recurrent_masks, zoneout_seed;
  Index checkpoint;
  Precision precision;
};

template <typename T>
py::tuple forward(const Config& config, const py::sequence& weights, const py::handle& x, ForwardArgs a) {
  config.validate();
  const Schedule schedule = Schedule::packed(std::move(a.batch_sizes), a.batch);
  std::vector<py::object> keep;
  const auto cells = cell_weights<T>(config, weights, keep);
  const Index N = schedule.rows(), B = a.batch, LD = config.num_cells();
  const Index R = config.output_size(), H = config.hidden_size, DR = config.directions() * R;
  lstm_fast::ForwardInputs<T> inputs;
  inputs.x = array_data<T>(x, {N, config.input_size}, "x");
  inputs.h0 = array_data<T>(a.h0, {LD, B, R}, "h0", true);
  inputs.c0 = array_data<T>(a.c0, {LD, B, H}, "c0", true);
  const T* recurrent = array_data<T>(a.recurrent_masks, {LD, B, R}, "recurrent_masks", true);
  const std::uint64_t seed = a.zoneout_seed.is_none() ? 0 : a.zoneout_seed.cast<std::uint64_t>();
  std::vector<const T*> masks;
  if (py::len(a.dropout_masks) > 0) {
    if (static_cast<Index>(py::len(a.dropout_masks)) != config.num_layers - 1)
      throw py::value_error("dropout_masks must hold num_layers - 1 arrays");
    for (size_t k = 0; k < py::len(a.dropout_masks); ++k) {
      const py::object mask = a.dropout_masks[k];
      masks.push_back(array_data<T>(mask, {N, DR}, "dropout_masks[" + std::to_string(k) + "]", true));
      keep.push_back(mask);
    }
  }
  inputs.dropout_masks = masks.empty() ? nullptr : masks.data();
  auto y = empty<T>({N, DR});
  auto h_n = empty<T>({LD, B, R});
  auto c_n = empty<T>({LD, B, H});
  std::unique_ptr<Trace<T>> trace = a.train ? std::make_unique<Trace<T>>() : nullptr;
  {
    py::gil_scoped_release release;
    lstm_fast::forward<T>(config, cells, schedule, inputs,
                          {y.mutable_data(), h_n.mutable_data(), c_n.mutable_data(), trace.get()},
                          {recurrent, a.zoneout_seed.is_none() ? nullptr : &seed, a.checkpoint, a.precision});
  }
  py::object trace_obj = trace ? py::cast(std::move(trace)) : py::none();
  return py::make_tuple(y, h_n, c_n, trace_obj);
}

template <typename T>
py::tuple backward(const py::sequence& weights, const Trace<T>& trace, const py::handle& dy, const py::handle& dh_n,
                   const py::handle& dc_n) {
  const Config& c = trace.config;
  std::vector<py::object> keep;
  const auto cells = cell_weights<T>(c, weights, keep);
  const Index N = trace.schedule.rows(), B = trace.schedule.batch, LD = c.num_cells();
  const Index R = c.output_size(), H = c.hidden_size;
  lstm_fast::BackwardInputs<T> inputs;
  inputs.dy = array_data<T>(dy, {N, c.directions() * R}, "dy");
  inputs.dh_n = array_data<T>(dh_n, {LD, B, R}, "dh_n", true);
  inputs.dc_n = array_data<T>(dc_n, {LD, B, H}, "dc_n", true);
  auto dx = empty<T>({N, c.input_size});
  auto dh0 = empty<T>({LD, B, R});
  auto dc0 = empty<T>({LD, B, H});
  py::list grads_out;
  std::vector<CellGrads<T>> grads(static_cast<size_t>(LD));
  for (Index cell = 0; cell < LD; ++cell) {
    PyCellWeights g;  // a fresh array for each kind the config has, None for the others
    const auto fields = core_fields(grads[cell]);
    for (int k = 0; k < kKinds; ++k) {
      const auto shape = kind_shape(c, cell, k);
      if (!shape) continue;
      auto a = empty<T>(*shape);
      *fields[k] = a.mutable_data();
      g.*kCellKinds[k].field = std::move(a);
    }
    grads_out.append(py::cast(std::move(g)));
  }
  {
    py::gil_scoped_release release;
    lstm_fast::backward<T>(cells, trace, inputs,
                           {dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), std::move(grads)});
  }
  return py::make_tuple(dx, dh0, dc0, grads_out);
}

// _core.CellWeights(**arrays): keywords of kCellKinds' names only, the others None.
void bind_cell_weights(py::module_& m) {
  py::class_<PyCellWeights> cls(m, "CellWeights",
                                "The arrays of one cell, by name (CELL_KINDS of _config.py), each an array or None.");
  cls.def(py::init([](const py::kwargs& arrays) {
            PyCellWeights w;
            for (const auto& [key, value] : arrays) {
              const std::string name = py::str(key);
              const Kind* kind = nullptr;
              for (const Kind& k : kCellKinds)
                if (name == k.name) kind = &k;
              if (!kind) throw py::type_error("CellWeights has no array '" + name + "'");
              w.*kind->field = py::reinterpret_borrow<py::object>(value);
            }
            return w;
          }),
          "CellWeights(weight_ih=..., weight_hh=..., ...): the arrays not given are None.");
  for (const Kind& k : kCellKinds) cls.def_readwrite(k.name, k.field);
  cls.def("__repr__", [](const PyCellWeights& w) {
    std::string s = "CellWeights(";
    for (const Kind& k : kCellKinds) {
      const py::object& a = w.*k.field;
      if (a.is_none()) continue;
      const py::object shape = py::hasattr(a, "shape") ? py::object(a.attr("shape")) : py::object(py::type::of(a));
      s += (s.back() == '(' ? "" : ", ") + std::string(k.name) + "=" + py::str(shape).cast<std::string>();
    }
    return s + ")";
  });
}

}  // namespace

void bind_stack(py::module_& m) {
  bind_cell_weights(m);
  py::class_<Trace<float>>(m, "Trace32", "What a float32 training forward keeps for backward (opaque).");
  py::class_<Trace<double>>(m, "Trace64", "What a float64 training forward keeps for backward (opaque).");
  m.def(
      "forward",
      [](const Config& config, const py::sequence& weights, const py::array& x, std::vector<Index> batch_sizes,
         Index batch, const py::handle& h0, const py::handle& c0, const py::sequence& dropout_masks, bool train,
         const py::handle& recurrent_masks, const py::handle& zoneout_seed, Index checkpoint,
         const std::string& precision) -> py::tuple {
        ForwardArgs a{std::move(batch_sizes),
                      batch,
                      h0,
                      c0,
                      dropout_masks,
                      train,
                      recurrent_masks,
                      zoneout_seed,
                      checkpoint,
                      training_precision(precision)};
        if (x.dtype().is(py::dtype::of<float>())) return forward<float>(config, weights, x, std::move(a));
        if (x.dtype().is(py::dtype::of<double>())) return forward<double>(config, weights, x, std::move(a));
        throw py::type_error("x must be float32 or float64, got " + py::str(x.dtype()).cast<std::string>());
      },
      py::arg("config"), py::arg("weights"), py::arg("x"), py::kw_only(), py::arg("batch_sizes"), py::arg("batch"),
      py::arg("h0") = py::none(), py::arg("c0") = py::none(), py::arg("dropout_masks") = py::tuple(),
      py::arg("train") = false, py::arg("recurrent_masks") = py::none(), py::arg("zoneout_seed") = py::none(),
      py::arg("checkpoint") = 0, py::arg("precision") = "fp32",
      "Runs the stack (weights: one CellWeights per cell) over packed x [N, I] (recurrent_masks: None or "
      "[L*D, B, R]; zoneout_seed: None or the seed of zoneout's masks, training only; checkpoint: training "
      "only, 0 the whole trace, k > 0 segments of k steps, -1 about sqrt(T); precision: \"fp32\", or "
      "\"bf16\" in training, the products' operands in bfloat16); returns (y [N, D*R], h_n, c_n, trace or None).");
  m.def("backward", &backward<float>, py::arg("weights"), py::arg("trace"), py::arg("dy"), py::kw_only(),
        py::arg("dh_n") = py::none(), py::arg("dc_n") = py::none());
  m.def("backward", &backward<double>, py::arg("weights"), py::arg("trace"), py::arg("dy"), py::kw_only(),
        py::arg("dh_n") = py::none(), py::arg("dc_n") = py::none(),
        "Backpropagation through time; returns (dx [N, I], dh0, dc0, grads: one CellWeights per cell).");
}

}  // namespace lstm_fast::bindings
