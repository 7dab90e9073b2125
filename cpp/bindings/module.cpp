// lstm_fast._core: the only place where Python and C++ meet. Thin on purpose: the Python package
// validates user input and gives the friendly errors; this file only checks that every array has
// exactly the dtype, contiguity and shape the raw-pointer core will read (so a bug upstream raises
// instead of reading out of bounds), converts, and releases the GIL around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "lstm_fast/config.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "cell/cell.hpp"      // internal: the dot instructions, for tests
#include "stack/network.hpp"  // internal: the raw-array stack, fma_peak_gflops

namespace py = pybind11;
using lstm_fast::CellGrads;
using lstm_fast::CellWeights;
using lstm_fast::Config;
using lstm_fast::Index;
using lstm_fast::Precision;
using lstm_fast::Schedule;
using lstm_fast::Trace;

namespace {

using lstm_fast::bindings::array_data;
using lstm_fast::bindings::empty;

// weights: one tuple per cell (layer k, direction d at k*D + d):
//   (weight_ih, weight_hh, bias_ih | None, bias_hh | None, weight_hr | None, weight_peep | None), then, as
//   a 12-tuple, layer norm's (ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias, ln_cell_weight,
//   ln_cell_bias), each None without layer_norm.
template <typename T>
std::vector<CellWeights<T>> cell_weights(const Config& c, const py::sequence& weights) {
  if (static_cast<Index>(py::len(weights)) != c.num_cells())
    throw py::value_error("weights must hold " + std::to_string(c.num_cells()) + " cells, got " +
                          std::to_string(py::len(weights)));
  const Index H = c.hidden_size, R = c.output_size();
  std::vector<CellWeights<T>> out(static_cast<size_t>(c.num_cells()));
  for (Index cell = 0; cell < c.num_cells(); ++cell) {
    const auto w = weights[cell].cast<py::tuple>();
    if (py::len(w) != 6 && py::len(w) != 12) throw py::value_error("each cell's weights must be a 6- or 12-tuple");
    if (c.layer_norm && py::len(w) != 12) throw py::value_error("layer_norm needs 12-tuples of cell weights");
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
    if (c.layer_norm) {
      const T** ln[] = {&out[cell].ln_ih_weight, &out[cell].ln_ih_bias,     &out[cell].ln_hh_weight,
                        &out[cell].ln_hh_bias,   &out[cell].ln_cell_weight, &out[cell].ln_cell_bias};
      for (int k = 0; k < 6; ++k)
        *ln[k] = array_data<T>(w[6 + k], {k < 4 ? 4 * H : H}, n + "ln parameter " + std::to_string(k));
    }
  }
  return out;
}

template <typename T>
py::tuple forward(const Config& config, const py::sequence& weights, std::vector<Index> batch_sizes, Index batch,
                  const py::handle& x, const py::handle& h0, const py::handle& c0, const py::sequence& dropout_masks,
                  bool train, const py::handle& recurrent_masks, const py::handle& zoneout_seed, Index checkpoint,
                  bool bf16) {
  config.validate();
  const Schedule schedule = Schedule::packed(std::move(batch_sizes), batch);
  const auto cells = cell_weights<T>(config, weights);
  const Index N = schedule.rows(), B = batch, LD = config.num_cells();
  const Index R = config.output_size(), H = config.hidden_size, DR = config.directions() * R;
  lstm_fast::ForwardInputs<T> inputs;
  inputs.x = array_data<T>(x, {N, config.input_size}, "x");
  inputs.h0 = array_data<T>(h0, {LD, B, R}, "h0", true);
  inputs.c0 = array_data<T>(c0, {LD, B, H}, "c0", true);
  const T* recurrent = array_data<T>(recurrent_masks, {LD, B, R}, "recurrent_masks", true);
  const std::uint64_t seed = zoneout_seed.is_none() ? 0 : zoneout_seed.cast<std::uint64_t>();
  std::vector<const T*> masks;
  if (py::len(dropout_masks) > 0) {
    if (static_cast<Index>(py::len(dropout_masks)) != config.num_layers - 1)
      throw py::value_error("dropout_masks must hold num_layers - 1 arrays");
    for (size_t k = 0; k < py::len(dropout_masks); ++k)
      masks.push_back(array_data<T>(dropout_masks[k], {N, DR}, "dropout_masks[" + std::to_string(k) + "]", true));
  }
  inputs.dropout_masks = masks.empty() ? nullptr : masks.data();
  auto y = empty<T>({N, DR});
  auto h_n = empty<T>({LD, B, R});
  auto c_n = empty<T>({LD, B, H});
  std::unique_ptr<Trace<T>> trace = train ? std::make_unique<Trace<T>>() : nullptr;
  {
    py::gil_scoped_release release;
    lstm_fast::forward<T>(
        config, cells, schedule, inputs, {y.mutable_data(), h_n.mutable_data(), c_n.mutable_data(), trace.get()},
        {recurrent, zoneout_seed.is_none() ? nullptr : &seed, checkpoint, bf16 ? Precision::bf16 : Precision::fp32});
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
    py::list ln;  // layer norm's six, or None
    T** ln_grads[] = {&grads[cell].ln_ih_weight, &grads[cell].ln_ih_bias,     &grads[cell].ln_hh_weight,
                      &grads[cell].ln_hh_bias,   &grads[cell].ln_cell_weight, &grads[cell].ln_cell_bias};
    for (int k = 0; k < 6; ++k) {
      if (!c.layer_norm) {
        ln.append(py::none());
        continue;
      }
      auto a = empty<T>({k < 4 ? 4 * H : H});
      *ln_grads[k] = a.mutable_data();
      ln.append(a);
    }
    grads_out.append(py::make_tuple(w_ih, w_hh, b_ih, b_hh, w_hr, w_peep, ln[0], ln[1], ln[2], ln[3], ln[4], ln[5]));
  }
  {
    py::gil_scoped_release release;
    lstm_fast::backward<T>(cells, trace, inputs,
                           {dx.mutable_data(), dh0.mutable_data(), dc0.mutable_data(), std::move(grads)});
  }
  return py::make_tuple(dx, dh0, dc0, grads_out);
}

// lstm_fast::Config as _core.Config, built from keywords and checked.
void bind_config(py::module_& m) {
  py::class_<Config>(m, "Config", "The shape of an LSTM stack (torch.nn.LSTM's arguments, peephole, variants).")
      .def(py::init([](Index input_size, Index hidden_size, Index num_layers, Index proj_size, bool bias,
                       bool bidirectional, bool peephole, double cell_clip, bool coupled_gates, double zoneout_h,
                       double zoneout_c, bool layer_norm) {
             const Config c{input_size, hidden_size,   num_layers, proj_size, bias,      bidirectional, peephole,
                            cell_clip,  coupled_gates, zoneout_h,  zoneout_c, layer_norm};  // the fields' order
             c.validate();
             return c;
           }),
           py::kw_only(), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"), py::arg("proj_size"),
           py::arg("bias"), py::arg("bidirectional"), py::arg("peephole"), py::arg("cell_clip") = 0.0,
           py::arg("coupled_gates") = false, py::arg("zoneout_h") = 0.0, py::arg("zoneout_c") = 0.0,
           py::arg("layer_norm") = false)
      .def_readonly("input_size", &Config::input_size)
      .def_readonly("hidden_size", &Config::hidden_size)
      .def_readonly("num_layers", &Config::num_layers)
      .def_readonly("proj_size", &Config::proj_size)
      .def_readonly("bias", &Config::bias)
      .def_readonly("bidirectional", &Config::bidirectional)
      .def_readonly("peephole", &Config::peephole)
      .def_readonly("cell_clip", &Config::cell_clip)
      .def_readonly("coupled_gates", &Config::coupled_gates)
      .def_readonly("zoneout_h", &Config::zoneout_h)
      .def_readonly("zoneout_c", &Config::zoneout_c)
      .def_readonly("layer_norm", &Config::layer_norm);
}

// The switches tests flip in-process: the dot instructions and the tile unit the plan hands the products.
void bind_test_switches(py::module_& m) {
  m.def(
      "_dot_instructions",
      [] {
        const lstm_fast::detail::DotInstructions dot = lstm_fast::detail::dot_instructions();
        const char* tiles[] = {"none", "amx", "emulated"};
        return py::dict(py::arg("bf16") = dot.bf16, py::arg("int8") = dot.int8,
                        py::arg("tiles") = tiles[static_cast<int>(dot.tiles)]);
      },
      "For tests: the dot-product instructions calls are planned on now (vdpbf16ps: bf16, vpdpbusd: int8; "
      "the tile unit of the frozen bf16 and int8 products: none, amx or emulated).");
  m.def("_emulate_tiles", &lstm_fast::detail::emulate_tiles, py::arg("emulated"),
        "For tests, process-wide: True plans the frozen products that would run on the AMX tiles on their "
        "emulation (on any CPU), False gives back the CPU's tile unit, if any.");
  m.def("_allow_dot_instructions", &lstm_fast::detail::allow_dot_instructions, py::arg("allowed"),
        "For tests, process-wide: False plans the products without the dot-product instructions, True gives "
        "back what the CPU and ISA have.");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "lstm_fast's compiled core (private: use the lstm_fast package).";

  py::register_exception<lstm_fast::Error>(m, "CoreError", PyExc_ValueError);
  lstm_fast::isa();  // a bad LSTM_FAST_ISA fails the import, with a message naming it

  bind_config(m);

  m.def("set_num_threads", &lstm_fast::set_num_threads, py::arg("num_threads"));
  m.def("isa", &lstm_fast::isa);
  m.def("supported_isas", &lstm_fast::supported_isas);
  m.def("set_isa", &lstm_fast::set_isa, py::arg("name"));
  bind_test_switches(m);
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
         const py::handle& recurrent_masks, const py::handle& zoneout_seed, Index checkpoint, bool bf16) -> py::tuple {
        if (x.dtype().is(py::dtype::of<float>()))
          return forward<float>(config, weights, std::move(batch_sizes), batch, x, h0, c0, dropout_masks, train,
                                recurrent_masks, zoneout_seed, checkpoint, bf16);
        if (x.dtype().is(py::dtype::of<double>()))
          return forward<double>(config, weights, std::move(batch_sizes), batch, x, h0, c0, dropout_masks, train,
                                 recurrent_masks, zoneout_seed, checkpoint, bf16);
        throw py::type_error("x must be float32 or float64, got " + py::str(x.dtype()).cast<std::string>());
      },
      py::arg("config"), py::arg("weights"), py::arg("batch_sizes"), py::arg("batch"), py::arg("x"), py::arg("h0"),
      py::arg("c0"), py::arg("dropout_masks"), py::arg("train"), py::arg("recurrent_masks") = py::none(),
      py::arg("zoneout_seed") = py::none(), py::arg("checkpoint") = 0, py::arg("bf16") = false,
      "Runs the stack over packed x [N, I] (recurrent_masks: None or [L*D, B, R]; zoneout_seed: None or the "
      "seed of zoneout's masks, training only; checkpoint: training only, 0 the whole trace, k > 0 segments of "
      "k steps, -1 about sqrt(T); bf16: training only, the products' operands in bfloat16); returns "
      "(y [N, D*R], h_n, c_n, trace or None).");
  m.def("backward", &backward<float>, py::arg("weights"), py::arg("trace"), py::arg("dy"), py::arg("dh_n"),
        py::arg("dc_n"));
  m.def("backward", &backward<double>, py::arg("weights"), py::arg("trace"), py::arg("dy"), py::arg("dh_n"),
        py::arg("dc_n"), "Backpropagation through time; returns (dx [N, I], dh0, dc0, grads: one 12-tuple per cell).");

  lstm_fast::bindings::bind_models(m);
  m.def(
      "zoneout_masks",
      [](std::uint64_t seed, Index cells, Index rows, Index R, Index H, double z_h, double z_c) {
        auto d_h = empty<double>({cells, rows, R}), d_c = empty<double>({cells, rows, H});
        for (Index cell = 0; cell < cells; ++cell)
          lstm_fast::zoneout_masks<double>(seed, cell, 0, rows, R, H, z_h, z_c, d_h.mutable_data() + cell * rows * R,
                                           d_c.mutable_data() + cell * rows * H);
        return py::make_tuple(d_h, d_c);
      },
      py::arg("seed"), py::arg("cells"), py::arg("rows"), py::arg("R"), py::arg("H"), py::arg("z_h"), py::arg("z_c"),
      "The training masks a zoneout_seed draws: (d_h [cells, rows, R], d_c [cells, rows, H]), 0 or 1.");

  m.attr("MAX_THREADS") = lstm_fast::kMaxThreads;
}
