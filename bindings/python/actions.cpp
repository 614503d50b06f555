// DueAction: a due action as Python sees it, and the lists of them the engine returns.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <utility>

using namespace pybind11::literals;

namespace nudge_py {

py::dict params_of(const py_due_action& a) {
  py::dict d;
  if (a.action.definition != nullptr) {
    for (const auto& [k, v] : a.action.definition->params) {
      d[py::str(k)] = py::str(v);
    }
  }
  return d;
}

namespace {

std::string repr_of(const py_due_action& a) {
  const auto& d = a.action;
  return fmt::format(
      "DueAction(contact={}, rule={}{}, action={}, arg={}, ts={}, params={})",
      py::repr(py::str(d.contact)).cast<std::string>(),
      py::repr(py::str(d.rule.data(), d.rule.size())).cast<std::string>(),
      d.from_workflow()
          ? ", step=" + py::repr(py::str(d.step.data(), d.step.size())).cast<std::string>()
          : std::string{},
      py::repr(py::str(std::string{d.action()})).cast<std::string>(),
      py::repr(py::str(d.arg.data(), d.arg.size())).cast<std::string>(), nudge::format_time(d.ts),
      py::repr(params_of(a)).cast<std::string>());
}

}  // namespace

py::list to_list(std::vector<nudge::due_action>&& actions,
                 const std::shared_ptr<const nudge::program>& program) {
  py::list out(actions.size());
  for (std::size_t i = 0; i < actions.size(); ++i) {
    out[i] = py::cast(py_due_action{std::move(actions[i]), program});
  }
  return out;
}

py::list to_list(std::span<const nudge::due_action> actions,
                 const std::shared_ptr<const nudge::program>& program) {
  py::list out(actions.size());
  for (std::size_t i = 0; i < actions.size(); ++i) {
    out[i] = py::cast(py_due_action{actions[i], program});
  }
  return out;
}

void register_due_action(py::module_& m) {
  py::class_<py_due_action>(m, "DueAction",
                            "An action that has come due for a contact: deliver it (external) "
                            "or take note of it (internal with notify).")
      .def_property_readonly(
          "contact", [](const py_due_action& a) { return a.action.contact; }, "The contact's id.")
      .def_property_readonly(
          "rule", [](const py_due_action& a) { return std::string{a.action.rule}; },
          "Id of the rule that produced it (of the workflow, for a workflow step's action).")
      .def_property_readonly(
          "step",
          [](const py_due_action& a) -> py::object {
            if (!a.action.from_workflow()) {
              return py::none();
            }
            return py::str(a.action.step.data(), a.action.step.size());
          },
          "Id of the workflow step that produced it, or None for a rule's action.")
      .def_property_readonly(
          "action", [](const py_due_action& a) { return std::string{a.action.action()}; },
          "What it does (CSV column action): 'send_email', 'generate_coupon', 'assign_owner', ...")
      .def_property_readonly(
          "arg", [](const py_due_action& a) { return std::string{a.action.arg}; },
          "The main parameter as delivered: template, tag, ..., or the owner picked.")
      .def_property_readonly("params", &params_of,
                             "Further parameters from the rule (a new dict of str -> str).")
      .def_property_readonly(
          "ts", [](const py_due_action& a) { return to_datetime(a.action.ts); },
          "When it is due (CSV column ts): an aware UTC datetime.")
      .def_property_readonly(
          "ts_epoch", [](const py_due_action& a) { return nudge::to_epoch(a.action.ts); },
          "When it is due, in epoch seconds.")
      .def_property_readonly(
          "idempotency_key", [](const py_due_action& a) { return a.action.idempotency_key; },
          "Same for the same input replayed, different for every action: drop duplicates by it.")
      .def_property_readonly(
          "is_external", [](const py_due_action& a) { return nudge::is_external(a.action.kind); },
          "True for actions the host delivers (send_email, ...); False for internal ones "
          "reported with notify.")
      .def(
          "to_dict",
          [](const py_due_action& a) {
            const auto& d = a.action;
            auto out = py::dict("contact"_a = d.contact, "rule"_a = std::string{d.rule},
                                "action"_a = std::string{d.action()}, "arg"_a = std::string{d.arg},
                                "params"_a = params_of(a), "ts"_a = to_datetime(d.ts),
                                "idempotency_key"_a = d.idempotency_key);
            if (d.from_workflow()) {
              out["step"] = std::string{d.step};
            }
            return out;
          },
          "The action as a plain dict (with \"step\" for a workflow step's action).")
      .def("__repr__", &repr_of)
      .def("__eq__",
           [](const py_due_action& a, const py_due_action& b) { return a.action == b.action; })
      .def("__hash__", [](const py_due_action& a) {
        return static_cast<Py_hash_t>(a.action.idempotency_key >> 1);
      });
}

}  // namespace nudge_py
