// Engine.replay (an event file through this engine, entirely in C++) and its ReplayResult.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <fstream>
#include <optional>
#include <span>
#include <utility>

using namespace pybind11::literals;

namespace nudge_py {

py_replay_result py_engine::replay(const py::object& events_path, const py::object& contacts_path,
                                   const py::object& until, const std::string& on_error,
                                   const py::object& rejects_path, std::size_t batch_events) {
  if (on_error != "stop" && on_error != "skip") {
    throw py::value_error(
        fmt::format("replay: on_error must be \"stop\" or \"skip\", got \"{}\"", on_error));
  }
  const std::string events = fspath(events_path);
  const std::string contacts = contacts_path.is_none() ? std::string{} : fspath(contacts_path);
  const std::string rejects = rejects_path.is_none() ? std::string{} : fspath(rejects_path);
  if (!rejects.empty() && on_error != "skip") {
    throw py::value_error("replay: rejects needs on_error=\"skip\"");
  }
  std::optional<nudge::time_point> end;
  if (!until.is_none()) {
    end = to_time(until, "until");
  }
  nudge::replay_options options;
  options.contacts_path = contacts;
  options.until = end;
  options.on_error = on_error == "skip" ? nudge::error_policy::skip : nudge::error_policy::stop;
  options.rejects_path = rejects;
  options.batch_events = batch_events;
  return run([&](nudge::engine& eng) {
    // nudge::replay's loop on this engine: unknown contacts are created (anonymous visitors)
    // and the default end covers every pending timer, as in the CLI.
    auto r = nudge::replay(eng, events, options);
    py_replay_result result;
    result.program = program_;
    result.actions = std::move(r.actions);
    result.contacts_read = r.contacts_read;
    result.events_read = r.events_read;
    result.rejected = r.rejected;
    result.until = r.until;
    result.pending = r.pending;
    result.stats = std::move(r.stats);
    result.workflow_stats = std::move(r.workflow_stats);
    return result;
  });
}

void register_replay_result(py::module_& m) {
  py::class_<py_replay_result>(m, "ReplayResult",
                               "The outcome of Engine.replay; the actions stay in C++ until read.")
      .def_property_readonly(
          "actions",
          [](const py_replay_result& r) { return to_list(std::span{r.actions}, r.program); },
          "The due actions (a new list of DueAction), sorted by (ts, contact).")
      .def(
          "to_frame", [](const py_replay_result& r) { return actions_frame(r.actions, r.program); },
          "The actions as a pandas DataFrame, built in C++ column by column: ts "
          "(datetime64[ns, UTC]), contact, rule (categorical; 'workflow/step' for a step's "
          "action, as in the CSV), action (categorical), arg, step (None for a rule's action), "
          "params (dict; one shared object per action definition), idempotency_key (uint64).")
      .def_property_readonly(
          "stats", [](const py_replay_result& r) { return stats_dict(r.stats); },
          "The engine's per-rule statistics after the replay (as Engine.stats()).")
      .def_property_readonly(
          "workflow_stats",
          [](const py_replay_result& r) { return workflow_stats_dict(r.workflow_stats); },
          "The engine's per-workflow statistics after the replay (as Engine.workflow_stats()).")
      .def_readonly("contacts_read", &py_replay_result::contacts_read, "Contacts read.")
      .def_readonly("events_read", &py_replay_result::events_read, "Events accepted.")
      .def_readonly("rejected", &py_replay_result::rejected,
                    "Lines refused (with on_error='skip').")
      .def_property_readonly(
          "until", [](const py_replay_result& r) { return to_datetime(r.until); },
          "The instant timers ran to (aware UTC datetime).")
      .def_property_readonly(
          "pending", [](const py_replay_result& r) { return r.pending.timers; },
          "Timers still pending after `until` that run out by themselves (delayed checks and "
          "actions, deferred messages, workflow waits, segment window edges); 0 after the "
          "default end unless its extensions ran out.")
      .def_property_readonly(
          "last_pending",
          [](const py_replay_result& r) -> py::object {
            return r.pending.timers == 0 ? py::object(py::none()) : to_datetime(r.pending.last);
          },
          "When the latest pending timer is due (aware UTC datetime), or None.")
      .def_property_readonly(
          "recurring_pending", [](const py_replay_result& r) { return r.pending.recurring; },
          "Recurring timers left (yearly date entries, score decay): never run out, not counted "
          "in `pending`.")
      .def(
          "write_csv",
          [](const py_replay_result& r, const py::object& path, const std::string& format) {
            if (format != "iso" && format != "epoch") {
              throw py::value_error(fmt::format(
                  "write_csv: time_format must be \"iso\" or \"epoch\", got \"{}\"", format));
            }
            const std::string file = fspath(path);
            py::gil_scoped_release release;
            std::ofstream out;
            out.exceptions(std::ios::failbit | std::ios::badbit);
            out.open(file, std::ios::binary | std::ios::trunc);
            nudge::write_actions_csv(
                out, r.actions,
                format == "iso" ? nudge::time_format::iso : nudge::time_format::epoch);
          },
          "path"_a, "time_format"_a = "iso",
          "Writes the actions as CSV (ts,contact,rule,action,arg), as `nudge replay` does (RFC "
          "4180: a field with a comma, quote or line break is quoted); time_format 'iso' or "
          "'epoch'.")
      .def(
          "__len__", [](const py_replay_result& r) { return r.actions.size(); },
          "The number of actions.")
      .def("__repr__", [](const py_replay_result& r) {
        return fmt::format(
            "ReplayResult(actions={}, events_read={}, contacts_read={}, "
            "rejected={}, until={})",
            r.actions.size(), r.events_read, r.contacts_read, r.rejected,
            nudge::format_time(r.until));
      });
}

}  // namespace nudge_py
