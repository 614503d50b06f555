// The host callbacks written in Python: a store whose methods are a Python object's, and a sink
// that is a Python callable. The engine calls them with the GIL released; each re-acquires it.
#include <algorithm>
#include <stdexcept>
#include <utility>

#include "nudge_py.hpp"

namespace nudge_py {

// ---- Store -----------------------------------------------------------------------------------

py_store::py_store(py::object obj) : obj_(std::move(obj)) {
  for (const char* name : {"load", "save", "due"}) {
    if (!py::hasattr(obj_, name) || !PyCallable_Check(obj_.attr(name).ptr())) {
      throw py::type_error(
          fmt::format("store: {} has no method {}() (a store needs load, save and due)",
                      type_name(obj_), name));
    }
  }
}

py_store::~py_store() {
  py::gil_scoped_acquire gil;
  obj_ = py::object();
}

std::optional<nudge::contact_state> py_store::load(std::string_view contact) {
  py::gil_scoped_acquire gil;
  py::object r = obj_.attr("load")(py::str(contact.data(), contact.size()));
  if (r.is_none()) {
    return std::nullopt;
  }
  if (!py::isinstance<nudge::contact_state>(r)) {
    throw py::type_error(fmt::format(
        "store.load must return a ContactState (as handed to save) or None, got {}", type_name(r)));
  }
  return r.cast<const nudge::contact_state&>();
}

void py_store::save(std::span<nudge::contact_state> states) {
  py::gil_scoped_acquire gil;
  py::list l(states.size());
  for (std::size_t i = 0; i < states.size(); ++i) {
    l[i] = py::cast(std::move(states[i]));
  }
  obj_.attr("save")(l);
}

std::vector<std::string> py_store::due(nudge::time_point t) {
  py::gil_scoped_acquire gil;
  py::object r = obj_.attr("due")(to_datetime(t));
  std::vector<std::string> ids;
  for (auto id : py::iter(r)) {
    ids.push_back(to_text(id, "store.due item"));
  }
  return ids;
}

std::vector<std::string> py_store::segment_members(std::string_view segment) {
  py::gil_scoped_acquire gil;
  if (!py::hasattr(obj_, "segment_members")) {
    return nudge::store::segment_members(segment);
  }
  py::object r = obj_.attr("segment_members")(py::str(segment.data(), segment.size()));
  std::vector<std::string> ids;
  for (auto id : py::iter(r)) {
    ids.push_back(to_text(id, "store.segment_members item"));
  }
  std::sort(ids.begin(), ids.end());  // the C++ contract: sorted bytewise
  return ids;
}

std::vector<std::string> py_store::contacts() {
  py::gil_scoped_acquire gil;
  if (!py::hasattr(obj_, "contacts")) {
    throw std::logic_error(
        "store: no method contacts() (Engine.change_program visits every stored contact)");
  }
  std::vector<std::string> ids;
  for (auto id : py::iter(obj_.attr("contacts")())) {
    ids.push_back(to_text(id, "store.contacts item"));
  }
  return ids;
}

// ---- Sink ------------------------------------------------------------------------------------

py_sink::py_sink(py::object f, std::shared_ptr<const nudge::program> program)
    : f_(std::move(f)), program_(std::move(program)) {
  if (!PyCallable_Check(f_.ptr())) {
    throw py::type_error(
        fmt::format("sink: expected a callable taking a list of DueAction, got {}", type_name(f_)));
  }
}

py_sink::~py_sink() {
  py::gil_scoped_acquire gil;
  f_ = py::object();
}

void py_sink::deliver(std::span<const nudge::due_action> actions) {
  py::gil_scoped_acquire gil;
  f_(to_list(actions, program_));
}

}  // namespace nudge_py
