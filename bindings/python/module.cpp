// bindings/python/module.cpp: nudge._core, the engine for Python.
//
// Programs from JSON, engines with Python stores and sinks, due actions, contacts and
// statistics. Each part is registered by the file that holds its idea (nudge_py.hpp lists
// them), in an order where every class a signature names is registered before it.
#include <nudge/version.hpp>

#include "nudge_py.hpp"

PYBIND11_MODULE(_core, m) {
  nudge_py::import_datetime();
  m.doc() = "nudge._core: the compiled part of the nudge package (import nudge instead).";
  // The library's version (nudge/version.hpp, from CMake's project version).
  m.attr("__version__") = NUDGE_VERSION_STRING;

  nudge_py::register_exceptions(m);
  nudge_py::register_program(m);
  nudge_py::register_due_action(m);
  nudge_py::register_contacts(m);
  nudge_py::register_read_error(m);
  nudge_py::register_replay_result(m);
  nudge_py::register_engine(m);
  nudge_py::register_distributed(m);
}
