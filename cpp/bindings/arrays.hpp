// The bindings' checks of NumPy arrays and their output arrays (module.cpp, models.cpp, stack.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include "lstm_fast/config.hpp"
#include "runtime/workspace.hpp"  // internal: the library's recycled blocks

namespace lstm_fast::bindings {

namespace py = pybind11;
using lstm_fast::Index;

inline std::string shape_str(const std::vector<Index>& shape) {
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

// Binds the raw-array stack's training calls: _core.CellWeights, forward, backward and the traces
// (stack.cpp).
void bind_stack(py::module_& m);

// Binds lstm_fast::Model as _core.Model, lstm_fast::Streams as _core.Streams and read_model_file
// (models.cpp).
void bind_models(py::module_& m);

}  // namespace lstm_fast::bindings
