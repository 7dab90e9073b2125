// lstm_fast._core: the only place where Python and C++ meet. Thin on purpose: the Python package
// validates user input and gives the friendly errors; this file only checks that every array has
// exactly the dtype, contiguity and shape the raw-pointer core will read (so a bug upstream raises
// instead of reading out of bounds), converts, and releases the GIL around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "lstm_fast/config.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "model_access.hpp"  // internal: Model's packed-sequence forward on NumPy's arrays
#include "network.hpp"       // internal: the raw-array stack, the allocator, fma_peak_gflops
#include "safetensors.hpp"   // internal: the model file reader

namespace py = pybind11;
using lstm_fast::CellGrads;
using lstm_fast::CellWeights;
using lstm_fast::Config;
using lstm_fast::Index;
using lstm_fast::Schedule;
using lstm_fast::Trace;

namespace {

std::string shape_str(const std::vector<Index>& shape) {
  std::string s = "(";
  for (size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// The data of `obj` if it is a C-contiguous array of T with exactly `shape`; null for None when
// `optional`. Anything else raises.
template <typename T>
T* array_data(const py::handle& obj, const std::vector<Index>& shape, const std::string& name, bool optional = false) {
  if (obj.is_none()) {
    if (optional) return nullptr;
    throw py::value_error(name + " is required, got None");
  }
  if (!py::isinstance<py::array_t<T, py::array::c_style>>(obj))
    throw py::type_error(name + " must be a C-contiguous " + py::str(py::dtype::of<T>()).cast<std::string>() +
                         " array, got " + py::str(py::type::of(obj)).cast<std::string>());
  auto a = py::reinterpret_borrow<py::array>(obj);
  // Contiguous is not enough: a view at an odd byte offset is unaligned, and reading a double there
  // is undefined behaviour (the Python layer copies such arrays; this catches a bug upstream).
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::type_error(name + " must be aligned to its dtype (an unaligned view was passed)");
  std::vector<Index> got(a.shape(), a.shape() + a.ndim());
  if (got != shape) throw py::value_error(name + " must have shape " + shape_str(shape) + ", got " + shape_str(got));
  return static_cast<T*>(a.mutable_data());
}

// A new output array. From 64 KiB on, its memory is one of the library's recycled blocks
// (workspace.cpp), handed back when NumPy frees the array: a fresh output from the system
// page-faulted on every call (the 6.5 MB y of a medium inference: 1,600 faults, about a millisecond).
template <typename T>
py::array_t<T> empty(const std::vector<Index>& shape) {
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  std::size_t bytes = sizeof(T);
  for (Index d : shape) {
    if (d < 0 || (d > 0 && bytes > std::size_t(-1) / static_cast<std::size_t>(d))) throw std::bad_alloc();
    bytes *= static_cast<std::size_t>(d);
  }
  if (bytes < lstm_fast::detail::kRecycledMinBytes) return py::array_t<T>(dims);
  void* block = lstm_fast::detail::workspace_allocate(bytes);
  py::capsule owner;
  try {
    owner = py::capsule(block, [](void* p) { lstm_fast::detail::workspace_free(p, 0); });
  } catch (...) {
    lstm_fast::detail::workspace_free(block, 0);
    throw;
  }
  return py::array_t<T>(dims, static_cast<T*>(block), owner);
}

// weights: one tuple per cell (layer k, direction d at k*D + d):
//   (weight_ih, weight_hh, bias_ih | None, bias_hh | None, weight_hr | None, weight_peep | None).
template <typename T>
std::vector<CellWeights<T>> cell_weights(const Config& c, const py::sequence& weights) {
  if (static_cast<Index>(py::len(weights)) != c.num_cells())
    throw py::value_error("weights must hold " + std::to_string(c.num_cells()) + " cells, got " +
                          std::to_string(py::len(weights)));
  const Index H = c.hidden_size, R = c.output_size();
  std::vector<CellWeights<T>> out(static_cast<size_t>(c.num_cells()));
  for (Index cell = 0; cell < c.num_cells(); ++cell) {
    const auto w = weights[cell].cast<py::tuple>();
    if (py::len(w) != 6) throw py::value_error("each cell's weights must be a 6-tuple");
    const std::string n = "cell " + std::to_string(cell) + " ";
    const Index I = c.layer_input_size(cell / c.directions());
    out[cell].weight_ih = array_data<T>(w[0], {4 * H, I}, n + "weight_ih");
    out[cell].weight_hh = array_data<T>(w[1], {4 * H, R}, n + "weight_hh");
    if (c.bias) {
      out[cell].bias_ih = array_data<T>(w[2], {4 * H}, n + "bias_ih");
      out[cell].bias_hh = array_data<T>(w[3], {4 * H}, n + "bias_hh");
    }
    if (c.proj_size > 0) out[cell].weight_hr = array_data<T>(w[4], {R, H}, n + "weight_hr");
    if (c.peephole) out[cell].weight_peep = array_data<T>(w[5], {3, H}, n + "weight_peep");
  }
  return out;
}

template <typename T>
py::tuple forward(const Config& config, const py::sequence& weights, std::vector<Index> batch_sizes, Index batch,
                  const py::handle& x, const py::handle& h0, const py::handle& c0, const py::sequence& dropout_masks,
                  bool train, const py::handle& recurrent_masks) {
  config.validate();
  const Schedule schedule = Schedule::packed(std::move(batch_sizes), batch);
  const auto cells = cell_weights<T>(config, weights);
  const Index N = schedule.rows(), B = batch, LD = config.num_cells();
  const Index R = config.output_size(), H = config.hidden_size, DR = config.directions() * R;
  const T* x_data = array_data<T>(x, {N, config.input_size}, "x");
  const T* h0_data = array_data<T>(h0, {LD, B, R}, "h0", true);
  const T* c0_data = array_data<T>(c0, {LD, B, H}, "c0", true);
  const T* recurrent = array_data<T>(recurrent_masks, {LD, B, R}, "recurrent_masks", true);
  std::vector<const T*> masks;
  if (py::len(dropout_masks) > 0) {
    if (static_cast<Index>(py::len(dropout_masks)) != config.num_layers - 1)
      throw py::value_error("dropout_masks must hold num_layers - 1 arrays");
    for (size_t k = 0; k < py::len(dropout_masks); ++k)
      masks.push_back(array_data<T>(dropout_masks[k], {N, DR}, "dropout_masks[" + std::to_string(k) + "]", true));
  }
  auto y = empty<T>({N, DR});
  auto h_n = empty<T>({LD, B, R});
  auto c_n = empty<T>({LD, B, H});
  std::unique_ptr<Trace<T>> trace = train ? std::make_unique<Trace<T>>() : nullptr;
  {
    py::gil_scoped_release release;
    lstm_fast::forward<T>(config, cells, schedule, x_data, h0_data, c0_data, masks.empty() ? nullptr : masks.data(),
                          y.mutable_data(), h_n.mutable_data(), c_n.mutable_data(), trace.get(), recurrent);
  }
  py::object trace_obj = trace ? py::cast(std::move(trace)) : py::none();
  return py::make_tuple(y, h_n, c_n, trace_obj);
}

template <typename T>
py::tuple backward(const py::sequence& weights, const Trace<T>& trace, const py::handle& dy, const py::handle& dh_n,
                   const py::handle& dc_n) {
  const Config& c = trace.config;
  const auto cells = cell_weights<T>(c, weights);
  const Index N = trace.schedule.rows(), B = trace.schedule.batch, LD = c.num_cells();
  const Index R = c.output_size(), H = c.hidden_size;
  const T* dy_data = array_data<T>(dy, {N, c.directions() * R}, "dy");
  const T* dh_n_data = array_data<T>(dh_n, {LD, B, R}, "dh_n", true);
  const T* dc_n_data = array_data<T>(dc_n, {LD, B, H}, "dc_n", true);
  auto dx = empty<T>({N, c.input_size});
  auto dh0 = empty<T>({LD, B, R});
  auto dc0 = empty<T>({LD, B, H});
  py::list grads_out;
  std::vector<CellGrads<T>> grads(static_cast<size_t>(LD));
  for (Index cell = 0; cell < LD; ++cell) {
    const Index I = c.layer_input_size(cell / c.directions());
    auto w_ih = empty<T>({4 * H, I}), w_hh = empty<T>({4 * H, R});
    grads[cell].weight_ih = w_ih.mutable_data();
    grads[cell].weight_hh = w_hh.mutable_data();
    py::object b_ih = py::none(), b_hh = py::none(), w_hr = py::none(), w_peep = py::none();
    if (c.bias) {
      auto a = empty<T>({4 * H}), b = empty<T>({4 * H});
      grads[cell].bias_ih = a.mutable_data();
      grads[cell].bias_hh = b.mutable_data();
      b_ih = a;
      b_hh = b;
    }
    if (c.proj_size > 0) {
      auto a = empty<T>({R, H});
      grads[cell].weight_hr = a.mutable_data();
      w_hr = a;
    }
    if (c.peephole) {
      auto a = empty<T>({3, H});
      grads[cell].weight_peep = a.mutable_data();
      w_peep = a;
    }
    grads_out.append(py::make_tuple(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep));
  }
  {
    py::gil_scoped_release release;
    lstm_fast::backward<T>(cells, trace, dy_data, dh_n_data, dc_n_data, dx.mutable_data(), dh0.mutable_data(),
                           dc0.mutable_data(), grads);
  }
  return py::make_tuple(dx, dh0, dc0, grads_out);
}

// read_model_file(path) -> (config_json, {name: array} or None, precision): the checks of
// Model::load, but each tensor in its file dtype (float32 or float64, not converted), so that lf.load
// keeps float64 models exact. A bf16 or int8 file gives None for the tensors (lf.load refuses it).
// A file that cannot be opened raises the OSError Python's open() would (FileNotFoundError, ...).
py::tuple read_model_file(const std::string& path) {
  if (!std::ifstream(path, std::ios::binary)) {
    PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
    throw py::error_already_set();
  }
  const std::string what = "path '" + path + "'";
  std::string bytes;
  lstm_fast::detail::ModelFile file;
  {
    py::gil_scoped_release release;  // reading and checking a large file need no Python
    bytes = lstm_fast::detail::read_file(path, what);
    file = lstm_fast::detail::read_model_file(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), what);
  }
  const std::string precision = lstm_fast::precision_name(file.precision);
  if (file.precision != lstm_fast::Precision::fp32) return py::make_tuple(file.config_json, py::none(), precision);
  py::dict tensors;
  for (const auto& t : file.tensors) {
    const auto& info = file.info(t);
    // Little-endian as the format says; copied, since the file's offsets promise no alignment.
    py::array array(py::dtype(info.dtype == "F32" ? "<f4" : "<f8"),
                    std::vector<py::ssize_t>(info.shape.begin(), info.shape.end()));
    std::memcpy(array.mutable_data(), file.data + info.begin, static_cast<std::size_t>(info.end - info.begin));
    tensors[py::str(t.name)] = array;
  }
  return py::make_tuple(file.config_json, tensors, precision);
}

lstm_fast::Precision precision_arg(const py::object& precision, lstm_fast::Precision fallback) {
  return precision.is_none() ? fallback : lstm_fast::parse_precision(precision.cast<std::string>());
}

// Model.forward(x [N, I], batch_sizes, batch, h0, c0) -> (y [N, D*R], h_n, c_n).
py::tuple model_forward(const lstm_fast::Model& m, const py::handle& x, std::vector<Index> batch_sizes, Index batch,
                        const py::handle& h0, const py::handle& c0) {
  const Config& c = m.config();
  const Schedule schedule = Schedule::packed(batch_sizes, batch);  // checks them
  const Index N = schedule.rows(), LD = c.num_cells(), R = c.output_size(), H = c.hidden_size;
  const float* x_data = array_data<float>(x, {N, c.input_size}, "x");
  const float* h0_data = array_data<float>(h0, {LD, batch, R}, "h0", true);
  const float* c0_data = array_data<float>(c0, {LD, batch, H}, "c0", true);
  auto y = empty<float>({N, c.directions() * R});
  auto h_n = empty<float>({LD, batch, R});
  auto c_n = empty<float>({LD, batch, H});
  {
    py::gil_scoped_release release;
    lstm_fast::detail::ModelAccess::run(m, x_data, batch_sizes.data(), schedule.steps(), batch, y.mutable_data(),
                                        h0_data, c0_data, h_n.mutable_data(), c_n.mutable_data());
  }
  return py::make_tuple(y, h_n, c_n);
}

// Model.step(x [B, I], h, c) -> (y [B, R], h, c): h and c (None: zeros) copied into the new state,
// which the step then updates in place.
py::tuple model_step(const lstm_fast::Model& model, const py::handle& x, const py::handle& h, const py::handle& c) {
  const Config& cf = model.config();
  const Index L = cf.num_layers, R = cf.output_size(), H = cf.hidden_size;
  const auto x_array = py::reinterpret_borrow<py::array>(x);
  const Index B = x_array.ndim() == 2 ? x_array.shape(0) : 0;
  const float* x_data = array_data<float>(x, {B, cf.input_size}, "x");
  const float* h_data = array_data<float>(h, {L, B, R}, "h", true);
  const float* c_data = array_data<float>(c, {L, B, H}, "c", true);
  auto y = empty<float>({B, R});
  auto h_n = empty<float>({L, B, R});
  auto c_n = empty<float>({L, B, H});
  float* h_out = h_n.mutable_data();
  float* c_out = c_n.mutable_data();
  {
    py::gil_scoped_release release;
    if (h_data)
      std::copy_n(h_data, L * B * R, h_out);
    else
      std::fill_n(h_out, L * B * R, 0.0f);
    if (c_data)
      std::copy_n(c_data, L * B * H, c_out);
    else
      std::fill_n(c_out, L * B * H, 0.0f);
    lstm_fast::detail::ModelAccess::step(model, x_data, y.mutable_data(), h_out, c_out, B);
  }
  return py::make_tuple(y, h_n, c_n);
}

// lstm_fast::Model as _core.Model (lstm_fast._model wraps it).
void bind_model(py::module_& m) {
  py::class_<lstm_fast::Model>(m, "Model", "lstm_fast::Model: a frozen inference model (use lstm_fast.Model).")
      .def_static(
          "load",
          [](const std::string& path, const py::object& precision) {
            const bool given = !precision.is_none();
            const lstm_fast::Precision p = precision_arg(precision, lstm_fast::Precision::fp32);
            py::gil_scoped_release release;  // reading, converting and packing need no Python
            return given ? lstm_fast::Model::load(path, p) : lstm_fast::Model::load(path);
          },
          py::arg("path"), py::arg("precision") = py::none())
      .def_static(
          "from_bytes",
          [](const py::bytes& data, const std::string& name, const py::object& precision) {
            const std::string_view bytes = data;
            const bool given = !precision.is_none();
            const lstm_fast::Precision p = precision_arg(precision, lstm_fast::Precision::fp32);
            py::gil_scoped_release release;
            return given ? lstm_fast::Model::load_from_bytes(bytes.data(), bytes.size(), name, p)
                         : lstm_fast::Model::load_from_bytes(bytes.data(), bytes.size(), name);
          },
          py::arg("data"), py::arg("name"), py::arg("precision") = py::none())
      .def_property_readonly("precision",
                             [](const lstm_fast::Model& m) { return lstm_fast::precision_name(m.precision()); })
      .def_property_readonly("config", &lstm_fast::Model::config)
      .def_property_readonly("config_json", &lstm_fast::Model::config_json)
      .def("forward", &model_forward, py::arg("x"), py::arg("batch_sizes"), py::arg("batch"), py::arg("h0"),
           py::arg("c0"), "The stack over packed x [N, I] from (h0, c0) (None: zeros); returns (y, h_n, c_n).")
      .def("step", &model_step, py::arg("x"), py::arg("h"), py::arg("c"),
           "One step (unidirectional): x [B, I]; returns (y [B, R], h, c).")
      .def(
          "save", [](const lstm_fast::Model& m, const std::string& path) { m.save(path); }, py::arg("path"),
          py::call_guard<py::gil_scoped_release>());
}

// lstm_fast::Streams as _core.Streams (lstm_fast._streams wraps it); keeps its Model alive.
void bind_streams(py::module_& m) {
  using lstm_fast::Streams;
  // (h [L, R], c [L, H]) as new arrays that fill(h, c) writes: a stream's state or final state.
  auto state_arrays = [](const Streams& s, const auto& fill) {
    const lstm_fast::Model& model = s.model();
    auto h = empty<float>({model.num_layers(), model.config().output_size()});
    auto c = empty<float>({model.num_layers(), model.hidden_size()});
    fill(h.mutable_data(), c.mutable_data());
    return py::make_tuple(h, c);
  };
  py::class_<Streams>(m, "Streams", "lstm_fast::Streams: many streams over one model (use lstm_fast.Streams).")
      .def(py::init<const lstm_fast::Model&>(), py::arg("model"), py::keep_alive<1, 2>())
      .def(
          "open",
          [](Streams& s, const py::handle& h, const py::handle& c) {
            const lstm_fast::Model& model = s.model();
            const Index L = model.num_layers(), R = model.config().output_size(), H = model.hidden_size();
            const float* h_data = array_data<float>(h, {L, R}, "h", true);
            const float* c_data = array_data<float>(c, {L, H}, "c", true);
            if (!h_data != !c_data) throw py::value_error("h and c are given together or not at all");
            return s.open(h_data, c_data);
          },
          py::arg("h"), py::arg("c"))
      .def(
          "close",
          [state_arrays](Streams& s, Index id) {
            return state_arrays(s, [&](float* h, float* c) { s.close(id, h, c); });
          },
          py::arg("id"))
      .def(
          "state",
          [state_arrays](const Streams& s, Index id) {
            return state_arrays(s, [&](float* h, float* c) { s.state(id, h, c); });
          },
          py::arg("id"))
      .def(
          "step",
          [](Streams& s, const py::handle& ids, const py::handle& x) {
            const auto ids_array = py::reinterpret_borrow<py::array>(ids);
            const Index n = ids_array.ndim() == 1 ? ids_array.shape(0) : -1;
            const Index* id_data = array_data<Index>(ids, {n}, "ids");
            const float* x_data = array_data<float>(x, {n, s.model().input_size()}, "x");
            auto y = empty<float>({n, s.model().config().output_size()});
            {
              py::gil_scoped_release release;
              s.step(id_data, n, x_data, y.mutable_data());
            }
            return y;
          },
          py::arg("ids"), py::arg("x"), "One step of the streams ids [n] (int64): x [n, I] -> y [n, R].")
      .def("__len__", &Streams::size)
      .def("ids", &Streams::ids);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "lstm_fast's compiled core (private: use the lstm_fast package).";

  py::register_exception<lstm_fast::Error>(m, "CoreError", PyExc_ValueError);
  lstm_fast::isa();  // a bad LSTM_FAST_ISA fails the import, with a message naming it

  py::class_<Config>(m, "Config", "The shape of an LSTM stack (torch.nn.LSTM's arguments, peephole, variants).")
      .def(py::init([](Index input_size, Index hidden_size, Index num_layers, Index proj_size, bool bias,
                       bool bidirectional, bool peephole, double cell_clip, bool coupled_gates) {
             const Config c{input_size,    hidden_size, num_layers, proj_size,    bias,
                            bidirectional, peephole,    cell_clip,  coupled_gates};  // the fields' order
             c.validate();
             return c;
           }),
           py::kw_only(), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"), py::arg("proj_size"),
           py::arg("bias"), py::arg("bidirectional"), py::arg("peephole"), py::arg("cell_clip") = 0.0,
           py::arg("coupled_gates") = false)
      .def_readonly("input_size", &Config::input_size)
      .def_readonly("hidden_size", &Config::hidden_size)
      .def_readonly("num_layers", &Config::num_layers)
      .def_readonly("proj_size", &Config::proj_size)
      .def_readonly("bias", &Config::bias)
      .def_readonly("bidirectional", &Config::bidirectional)
      .def_readonly("peephole", &Config::peephole)
      .def_readonly("cell_clip", &Config::cell_clip)
      .def_readonly("coupled_gates", &Config::coupled_gates);

  m.def("set_num_threads", &lstm_fast::set_num_threads, py::arg("num_threads"));
  m.def("isa", &lstm_fast::isa);
  m.def("supported_isas", &lstm_fast::supported_isas);
  m.def("set_isa", &lstm_fast::set_isa, py::arg("name"));
  m.def("fma_peak_gflops", &lstm_fast::fma_peak_gflops, py::arg("seconds"), py::arg("threads"),
        py::call_guard<py::gil_scoped_release>(),
        "The float32 peak (GFLOP/s) `threads` threads sustain for `seconds` with the active ISA's FMA.");
  m.def("get_num_threads", &lstm_fast::get_num_threads);
  m.def(
      "dot_peak_gops",
      [](const std::string& precision, double seconds, int threads) {
        const lstm_fast::Precision p = lstm_fast::parse_precision(precision);
        py::gil_scoped_release release;
        return lstm_fast::dot_peak_gops(p, seconds, threads);
      },
      py::arg("precision"), py::arg("seconds"), py::arg("threads"),
      "GOP/s of the multiply-add instruction the frozen products of `precision` run on (fp32: the FMA peak).");

  py::class_<Trace<float>>(m, "Trace32", "What a float32 training forward keeps for backward (opaque).");
  py::class_<Trace<double>>(m, "Trace64", "What a float64 training forward keeps for backward (opaque).");

  m.def(
      "forward",
      [](const Config& config, const py::sequence& weights, std::vector<Index> batch_sizes, Index batch,
         const py::array& x, const py::handle& h0, const py::handle& c0, const py::sequence& dropout_masks, bool train,
         const py::handle& recurrent_masks) -> py::tuple {
        if (x.dtype().is(py::dtype::of<float>()))
          return forward<float>(config, weights, std::move(batch_sizes), batch, x, h0, c0, dropout_masks, train,
                                recurrent_masks);
        if (x.dtype().is(py::dtype::of<double>()))
          return forward<double>(config, weights, std::move(batch_sizes), batch, x, h0, c0, dropout_masks, train,
                                 recurrent_masks);
        throw py::type_error("x must be float32 or float64, got " + py::str(x.dtype()).cast<std::string>());
      },
      py::arg("config"), py::arg("weights"), py::arg("batch_sizes"), py::arg("batch"), py::arg("x"), py::arg("h0"),
      py::arg("c0"), py::arg("dropout_masks"), py::arg("train"), py::arg("recurrent_masks") = py::none(),
      "Runs the stack over packed x [N, I] (recurrent_masks: None or [L*D, B, R]); returns "
      "(y [N, D*R], h_n, c_n, trace or None).");
  m.def("backward", &backward<float>, py::arg("weights"), py::arg("trace"), py::arg("dy"), py::arg("dh_n"),
        py::arg("dc_n"));
  m.def("backward", &backward<double>, py::arg("weights"), py::arg("trace"), py::arg("dy"), py::arg("dh_n"),
        py::arg("dc_n"), "Backpropagation through time; returns (dx [N, I], dh0, dc0, grads: one 6-tuple per cell).");

  bind_model(m);
  bind_streams(m);

  m.attr("MAX_THREADS") = lstm_fast::kMaxThreads;
  m.def("read_model_file", &read_model_file, py::arg("path"),
        "Reads and checks a model file as Model::load does; returns (config_json, {name: array}), each "
        "array in the file's dtype (float32 or float64).");
}
