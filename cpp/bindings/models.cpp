// The frozen inference models' bindings: _core.Model, _core.Streams and read_model_file (module.cpp's
// rules: thin, arrays checked for exactly what the core reads, the GIL released around the work).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "arrays.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "api/model_access.hpp"  // internal: Model's packed-sequence forward on NumPy's arrays
#include "stack/network.hpp"     // internal: Schedule
#include "io/safetensors.hpp"    // internal: the model file reader

namespace lstm_fast::bindings {
namespace {

using lstm_fast::Config;
using lstm_fast::Schedule;

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

// lstm_fast::Streams as _core.Streams (lstm_fast._streams wraps it); it holds its own copy of the Model.
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
      .def(py::init<const lstm_fast::Model&>(), py::arg("model"))
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

void bind_models(py::module_& m) {
  bind_model(m);
  bind_streams(m);
  m.def("read_model_file", &read_model_file, py::arg("path"),
        "Reads and checks a model file as Model::load does; returns (config_json, {name: array}), each "
        "array in the file's dtype (float32 or float64).");
}

}  // namespace lstm_fast::bindings
