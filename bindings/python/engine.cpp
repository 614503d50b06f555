// Engine: a program run over batches of events with the host's clock, store and sink. Each
// call converts its arguments with the GIL held, then runs the engine with the GIL released
// (py_engine::run). Engine.replay is in replay.cpp, the statistics in stats.cpp.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

using namespace pybind11::literals;

namespace nudge_py {

py_engine::py_engine(std::shared_ptr<const nudge::program> program, const py::object& store,
                     const py::object& sink, bool create_unknown_contacts,
                     std::size_t max_events_per_contact)
    : program_(std::move(program)) {
  if (!program_) {
    throw py::type_error("Engine: program is None");
  }
  if (!store.is_none()) {
    store_ = std::make_unique<py_store>(store);
  }
  if (!sink.is_none()) {
    sink_ = std::make_unique<py_sink>(sink, program_);
  }
  engine_ = std::make_unique<nudge::engine>(
      program_, store_.get(), sink_.get(),
      nudge::engine_options{.create_unknown_contacts = create_unknown_contacts,
                            .max_events_per_contact = max_events_per_contact});
}

py::list py_engine::process(py::handle events, py::handle now) {
  const auto t = to_time(now, "now");
  auto batch = read_events(events);
  auto actions = run([&](nudge::engine& e) { return e.process(batch, t); });
  {
    // Free the batch's strings outside the GIL-held conversion below.
    py::gil_scoped_release release;
    std::vector<nudge::event>{}.swap(batch);
  }
  return to_list(std::move(actions), program_);
}

py::list py_engine::advance(py::handle now) {
  const auto t = to_time(now, "now");
  auto actions = run([&](nudge::engine& e) { return e.advance(t); });
  return to_list(std::move(actions), program_);
}

void py_engine::change_program(std::shared_ptr<const nudge::program> next, py::handle at) {
  if (!next) {
    throw py::type_error("change_program: program is None");
  }
  const auto t = to_time(at, "at");
  run([&](nudge::engine& e) { e.change_program(next, t); });
  program_ = next;
  if (sink_) {
    sink_->set_program(std::move(next));
  }
}

py::object py_engine::contact(const std::string& id) {
  auto c = run([&](nudge::engine& e) { return e.find_contact(id); });
  if (!c) {
    return py::none();
  }
  return py::cast(std::move(*c));
}

py::object py_engine::upsert_contact(const std::string& id, const py::object& fields,
                                     const py::kwargs& kw) {
  if (id.empty()) {
    throw py::value_error("upsert_contact: the contact id is empty");
  }
  std::optional<nudge::time_point> at;
  if (kw.contains("at") && !kw["at"].is_none()) {
    at = to_time(kw["at"], "at");
  }
  py::dict all;
  if (!fields.is_none()) {
    if (!PyDict_Check(fields.ptr())) {
      throw py::type_error(
          fmt::format("upsert_contact: fields must be a dict, got {}", type_name(fields)));
    }
    all = py::reinterpret_borrow<py::dict>(fields);
    all = all.attr("copy")();
  }
  for (auto [k, v] : kw) {
    if (PyUnicode_Check(k.ptr()) && k.cast<std::string_view>() == "at") {
      continue;
    }
    all[k] = v;
  }
  auto existing = run([&](nudge::engine& e) { return e.find_contact(id); });
  nudge::contact c = existing ? std::move(*existing) : nudge::contact{.id = id};
  apply_fields(c, all);
  if (!at) {
    run([&](nudge::engine& e) { e.upsert_contact(std::move(c)); });
    return py::none();
  }
  auto actions = run([&](nudge::engine& e) { return e.upsert_contact(std::move(c), *at); });
  return to_list(std::move(actions), program_);
}

py::object py_engine::upsert_contacts(const py::iterable& items, const py::object& at_arg) {
  std::optional<nudge::time_point> at;
  if (!at_arg.is_none()) {
    at = to_time(at_arg, "at");
  }
  std::vector<nudge::contact> contacts;
  std::unordered_map<std::string, std::size_t> position;
  std::size_t index = 0;
  for (auto item : items) {
    if (!PyDict_Check(item.ptr())) {
      throw py::type_error(
          fmt::format("upsert_contacts: item {} must be a dict with an \"id\", got {}", index,
                      type_name(item)));
    }
    py::dict fields = py::reinterpret_borrow<py::dict>(item).attr("copy")();
    if (!fields.contains("id")) {
      throw py::value_error(fmt::format("upsert_contacts: item {} has no \"id\"", index));
    }
    const std::string id = to_text(fields["id"], "contact field id");
    if (id.empty()) {
      throw py::value_error(fmt::format("upsert_contacts: item {} has an empty id", index));
    }
    PyDict_DelItemString(fields.ptr(), "id");
    auto [it, fresh] = position.emplace(id, contacts.size());
    if (fresh) {
      auto existing = run([&](nudge::engine& e) { return e.find_contact(id); });
      contacts.push_back(existing ? std::move(*existing) : nudge::contact{.id = id});
    }
    apply_fields(contacts[it->second], fields);
    ++index;
  }
  if (!at) {
    run([&](nudge::engine& e) { e.upsert_contacts(contacts); });
    return py::none();
  }
  auto actions = run([&](nudge::engine& e) { return e.upsert_contacts(contacts, *at); });
  return to_list(std::move(actions), program_);
}

py::object py_engine::explain(const std::string& id, bool as_json) {
  auto state = run([&](nudge::engine& e) { return e.store().load(id); });
  if (!state) {
    return py::none();
  }
  if (as_json) {
    return py::str(nudge::format_explanation_json(*program_, *state));
  }
  py::list out;
  const auto& tl = state->timeline;
  for (std::size_t i = 0; i < tl.size(); ++i) {
    const auto x = nudge::explain_entry(*program_, tl[i]);
    out.append(py::dict(
        "ts"_a = to_datetime(x.ts), "source"_a = x.source, "what"_a = x.what,
        "reason"_a = x.reason.empty() ? py::object(py::none()) : py::object(py::str(x.reason)),
        "until"_a = tl[i].until == tl[i].ts ? py::object(py::none()) : to_datetime(tl[i].until),
        "text"_a = x.text));
  }
  // A list with to_frame() and a notebook rendering that names the contact.
  return py::module_::import("nudge._display").attr("Timeline")(out, "contact"_a = id);
}

void register_engine(py::module_& m) {
  py::class_<py_engine>(m, "Engine",
                        "Runs a program over batches of events with your clock, store and sink.")
      .def(py::init<std::shared_ptr<nudge::program>, const py::object&, const py::object&, bool,
                    std::size_t>(),
           "program"_a, "store"_a = py::none(), "sink"_a = py::none(), py::kw_only(),
           "create_unknown_contacts"_a = true,
           "max_events_per_contact"_a = nudge::engine_options{}.max_events_per_contact,
           "Engine(program, store=None, sink=None, *, create_unknown_contacts=True, "
           "max_events_per_contact=100000). `store`: an object with load(id), save(states), "
           "due(now); default: in memory. `sink`: a callable taking each batch's list of "
           "DueAction. A batch with more events for one contact than max_events_per_contact "
           "(0: no limit) raises InputError and changes nothing.")
      .def("process", &py_engine::process, "events"_a, "now"_a,
           "Applies `events` (dicts, tuples or a pandas DataFrame with an event file's columns; "
           "each contact's in time order), then fires every "
           "timer due at or before `now`; returns the batch's DueActions sorted by (ts, "
           "contact). Atomic: on any error nothing changes. An 'identify' event for a visitor id "
           "whose key is a known contact's id merges the visitor into that contact "
           "(docs/rules.md, \"Identity\").")
      .def("advance", &py_engine::advance, "now"_a,
           "Fires every timer due at or before `now`; returns the DueActions.")
      .def("change_program", &py_engine::change_program, "program"_a, "at"_a,
           "Takes a changed rule program at instant `at` (docs/rules.md, 'Lifecycle and "
           "versions'): archived workflows end their runs, paused ones hold them, reactivated "
           "ones resume held waits at `at`, new versions move runs by step id. Raises RuleError "
           "if the change is refused (nothing changes). A Python store needs contacts().")
      .def("contact", &py_engine::contact, "id"_a,
           "The contact's profile as a Contact snapshot, or None.")
      .def("upsert_contact", &py_engine::upsert_contact, "id"_a, "fields"_a = py::none(),
           "Creates the contact or updates the profile fields given (as a dict and/or keyword "
           "arguments); fields not given keep their values. Without `at` (keyword) the profile "
           "is only stored and evaluated at the contact's next event; with at=TIME the contact "
           "is evaluated there as one atomic batch (timers due before it, then segments, score "
           "thresholds, yearly entries such as birthdays on the new profile, then timers due at "
           "it) and the DueActions are returned. `at` before the contact's clock raises "
           "InputError and changes nothing.")
      .def("replay", &py_engine::replay, "events"_a, "contacts"_a = py::none(),
           "until"_a = py::none(), py::kw_only(), "on_error"_a = "stop", "rejects"_a = py::none(),
           "batch_events"_a = nudge::replay_options::default_batch_events,
           "Replays an event file (CSV or JSON Lines) through this engine entirely in C++, "
           "with the GIL released: contacts from `contacts` (a file) are upserted at the first "
           "event's time (an error if before a contact's clock), then the events are applied (an "
           "event for a contact in neither creates it: an anonymous visitor) and timers fire up "
           "to `until` (default: the last event's time plus the program's longest delay, then "
           "on to the latest pending timer until none is left, as `nudge replay`; see "
           "ReplayResult.pending). on_error='skip' refuses bad lines (written "
           "to `rejects` if given) instead of raising ReadError. Returns a ReplayResult.")
      .def("upsert_contacts", &py_engine::upsert_contacts, "contacts"_a, "at"_a = py::none(),
           "Creates or updates many contacts in one store call (all or none): an iterable of "
           "dicts, each with \"id\" and the fields to set, as in upsert_contact. With `at`, "
           "evaluates them there in one atomic batch, as upsert_contact(..., at=...), and "
           "returns the DueActions.")
      .def(
          "segment_members",
          [](py_engine& e, const std::string& name) {
            return e.run([&](nudge::engine& eng) { return eng.segment_members(name); });
          },
          "name"_a,
          "Ids of the contacts in segment `name`, sorted, as of each contact's last evaluation. "
          "Asks the store: the in-memory one keeps an index; a Python store answers with its "
          "segment_members(name) method (without one this raises CallbackError). Raises "
          "ValueError for a name the program does not define.")
      .def(
          "segment_size",
          [](py_engine& e, const std::string& name) {
            return e.run([&](nudge::engine& eng) { return eng.segment_size(name); });
          },
          "name"_a,
          "Number of contacts in segment `name` (a Python store is asked for its "
          "segment_members(name)); raises as segment_members.")
      .def("workflow_stats", &py_engine::workflow_stats,
           "Per-workflow statistics: {workflow_id: {'workflow', 'entered', 'completed', "
           "'exited', 'ended', 'sent', 'opened', 'clicked', 'active', 'first', 'last', 'steps': "
           "{step_id: {'step', 'reached', 'sent', 'opened', 'clicked', 'waiting', 'ended', "
           "'first', 'last', 'delivery'}}}} in program order, 'delivery' (of the workflow and of "
           "each step) being the delivery policy's {'no_consent', 'capped', 'off_hours', "
           "'deferred_cap', 'deferred_hours'} as in stats(); 'active' and "
           "'waiting' count runs inside now (waiting includes runs held at a send step while "
           "its message is deferred); 'ended' counts runs a program change ended.")
      .def("stats", &py_engine::stats,
           "Per-rule statistics: {rule_id: {'rule', 'triggered', 'passed', 'failed', "
           "'suppressed', 'emitted', 'delivery', 'first', 'last'}} in program order; 'delivery' "
           "is the delivery policy's {'no_consent', 'capped', 'off_hours', 'deferred_cap', "
           "'deferred_hours'} (C++ rule_stats::delivery).")
      .def("explain", &py_engine::explain, "id"_a, py::kw_only(), "json"_a = false,
           "Why did the contact get a message, or not? Its timeline (kept when the program's "
           "timeline size, \"timeline\": {\"size\": N} in the rule file, is above 0), oldest "
           "first: a list of dicts {'ts', 'source', 'what', 'reason', 'until', 'text'}, or with "
           "json=True the JSON text `nudge explain --json` prints. None for an unknown contact.")
      .def_property_readonly(
          "program",
          [](const py_engine& e) { return std::const_pointer_cast<nudge::program>(e.program()); },
          "The engine's Program.")
      .def_property_readonly("store", &py_engine::store, "The Python store, or None.")
      .def_property_readonly("sink", &py_engine::sink, "The sink, or None.")
      .def("__repr__", [](const py_engine& e) {
        return fmt::format("Engine(program=<{} rules>, store={}, sink={})",
                           e.program()->rule_count(), e.store().is_none() ? "memory" : "python",
                           e.sink().is_none() ? "None" : "python");
      });
}

}  // namespace nudge_py
