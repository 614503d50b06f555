// The exception classes nudge raises in Python, and the translation of nudge's C++ errors into
// them.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <exception>

#include <nudge/io/read_events.hpp>

using namespace pybind11::literals;

namespace nudge_py {

namespace {

// Exception classes created at import; deliberately leaked (they live as long as the module).
PyObject* rule_error_type = nullptr;
PyObject* input_error_type = nullptr;
PyObject* rule_cycle_error_type = nullptr;
PyObject* callback_error_type = nullptr;
PyObject* read_error_type = nullptr;

void raise(PyObject* type, const char* message, const py::dict& attributes) {
  py::object instance = py::reinterpret_borrow<py::object>(type)(py::str(message));
  for (auto [k, v] : attributes) {
    py::setattr(instance, k, v);
  }
  PyErr_SetObject(type, instance.ptr());
}

}  // namespace

// If a host callback failed with a Python exception, rethrows that exception itself (the same
// object); otherwise returns so the caller rethrows the callback_error.
void rethrow_python_cause(const nudge::callback_error& e) {
  try {
    std::rethrow_if_nested(e);
  } catch (py::error_already_set&) {
    throw;
  } catch (...) {
  }
}

void register_exceptions(py::module_& m) {
  rule_error_type = PyErr_NewExceptionWithDoc(
      "nudge.RuleError",
      "A rule file or rule set that cannot be compiled (a ValueError). str(e) lists every "
      "problem, one per line; e.diagnostics holds them as Diagnostic objects; e.file, e.line, "
      "e.column, e.json_pointer and e.code describe the first.",
      PyExc_ValueError, nullptr);
  input_error_type = PyErr_NewExceptionWithDoc(
      "nudge.InputError",
      "An event the engine refuses (out of order, after `now`, unknown type or contact); the "
      "batch changed nothing. Attributes: contact, event_index, reason.",
      PyExc_ValueError, nullptr);
  rule_cycle_error_type = PyErr_NewExceptionWithDoc(
      "nudge.RuleCycleError",
      "Internal actions kept triggering rules past the depth limit; the batch changed "
      "nothing. Attributes: contact, chain (the rule ids).",
      PyExc_RuntimeError, nullptr);
  callback_error_type = PyErr_NewExceptionWithDoc(
      "nudge.CallbackError",
      "A store or sink failed with a C++ error (Python exceptions raised in callbacks "
      "propagate as themselves). Attributes: callback, contact.",
      PyExc_RuntimeError, nullptr);
  m.add_object("RuleError", py::handle(rule_error_type));
  m.add_object("InputError", py::handle(input_error_type));
  m.add_object("RuleCycleError", py::handle(rule_cycle_error_type));
  m.add_object("CallbackError", py::handle(callback_error_type));

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) {
        std::rethrow_exception(p);
      }
    } catch (const nudge::rule_error& e) {
      py::list diagnostics;
      for (const auto& d : e.diagnostics()) {
        diagnostics.append(py::cast(d));
      }
      const auto& first = e.diagnostics().front();
      raise(rule_error_type, e.what(),
            py::dict("diagnostics"_a = diagnostics, "file"_a = first.file, "line"_a = first.line,
                     "column"_a = first.column, "json_pointer"_a = first.json_pointer,
                     "code"_a = first.code));
    } catch (const nudge::input_error& e) {
      raise(input_error_type, e.what(),
            py::dict("contact"_a = e.contact(), "event_index"_a = e.event_index(),
                     "reason"_a = e.reason()));
    } catch (const nudge::rule_cycle_error& e) {
      raise(rule_cycle_error_type, e.what(),
            py::dict("contact"_a = e.contact(), "chain"_a = e.chain()));
    } catch (const nudge::callback_error& e) {
      raise(callback_error_type, e.what(),
            py::dict("callback"_a = e.callback(), "contact"_a = e.contact()));
    }
  });
}

void register_read_error(py::module_& m) {
  read_error_type = PyErr_NewExceptionWithDoc(
      "nudge.ReadError",
      "An event or contact file that cannot be read, or a bad line (with on_error='stop'). "
      "Attributes: file, line (0 for the whole file), reason.",
      PyExc_ValueError, nullptr);
  m.add_object("ReadError", py::handle(read_error_type));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) {
        std::rethrow_exception(p);
      }
    } catch (const nudge::read_error& e) {
      raise(read_error_type, e.what(),
            py::dict("file"_a = e.file(), "line"_a = e.line(), "reason"_a = e.reason()));
    }
  });
}

}  // namespace nudge_py
