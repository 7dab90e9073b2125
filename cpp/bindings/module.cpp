// lstm_fast._core: the only place where Python and C++ meet. Thin on purpose: the Python package
// validates user input and gives the friendly errors; this file only checks that every array has
// exactly the dtype, contiguity and shape the raw-pointer core will read (so a bug upstream raises
// instead of reading out of bounds), converts, and releases the GIL around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "arrays.hpp"
#include "lstm_fast/config.hpp"
#include "lstm_fast/lstm_fast.hpp"
#include "cell/cell.hpp"       // internal: the dot instructions, for tests
#include "runtime/caches.hpp"  // internal: the cache sizes the plan reads, for tests
#include "stack/network.hpp"   // internal: the raw-array stack, fma_peak_gflops

namespace py = pybind11;
using lstm_fast::Config;
using lstm_fast::Index;

namespace {

using lstm_fast::bindings::empty;

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
  m.def(
      "_plan",
      [](const Config& config, Index layer, Index steps, Index batch, bool training, const std::string& precision,
         bool float64) {
        if (layer < 0 || layer >= config.num_layers)
          throw lstm_fast::Error("layer must be in [0, " + std::to_string(config.num_layers) + "), got " +
                                 std::to_string(layer));
        if (steps < 1 || batch < 1) throw lstm_fast::Error("steps and batch must be at least 1");
        const lstm_fast::Precision p = lstm_fast::parse_precision(precision);
        const lstm_fast::detail::LayerPlan plan =
            float64 ? lstm_fast::layer_plan<double>(config, layer, steps, batch, training, p)
                    : lstm_fast::layer_plan<float>(config, layer, steps, batch, training, p);
        const lstm_fast::detail::CellPlan& cell = plan.cell;
        return py::dict(py::arg("team") = cell.team,
                        py::arg("split") = cell.split == lstm_fast::detail::Split::kRows ? "rows" : "units",
                        py::arg("packing") = cell.packing, py::arg("chunk") = cell.chunk,
                        py::arg("segment") = cell.segment, py::arg("gradient_block") = cell.gradient_block,
                        py::arg("directions_parallel") = plan.directions_parallel);
      },
      py::arg("config"), py::arg("layer"), py::arg("steps"), py::arg("batch"), py::arg("training") = false,
      py::arg("precision") = "fp32", py::arg("float64") = false,
      "For tests and tools: the plan a dense call of `steps` x `batch` rows takes for one layer of the stack "
      "(a cell's team, its split, packing, chunk, segment and weight-gradient block), on this machine, ISA and "
      "thread count.");
  m.def(
      "_cache_sizes",
      [] {
        const lstm_fast::detail::CacheSizes sizes = lstm_fast::detail::cache_sizes();
        return py::dict(py::arg("l1d") = sizes.l1d, py::arg("l2") = sizes.l2);
      },
      "The data caches a core the plan reads (bytes): this machine's, or those _set_cache_sizes gave.");
  m.def(
      "_set_cache_sizes",
      [](std::size_t l1d, std::size_t l2) {
        lstm_fast::detail::set_cache_sizes_for_test({l1d, l2});
      },
      py::arg("l1d"), py::arg("l2"),
      "For tests, process-wide: plan as if each core had these caches (bytes); 0, 0 gives back the machine's.");
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

  lstm_fast::bindings::bind_stack(m);
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
