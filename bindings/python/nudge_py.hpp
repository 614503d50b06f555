// bindings/python/nudge_py.hpp: the declarations the files of nudge._core share. Private to the
// module, never installed.
//
// The module is cut by concept: convert.cpp (Python values <-> nudge types), actions.cpp
// (DueAction), contacts.cpp (Contact, ContactState, profile fields), errors.cpp (the exception
// classes), callbacks.cpp (the Python store and sink), program.cpp (Program, Diagnostic),
// engine.cpp (Engine), replay.cpp (Engine.replay, ReplayResult), stats.cpp (statistics),
// frames.cpp (actions -> pandas DataFrame), frame_events.cpp (DataFrame -> events) and
// module.cpp (the module itself, registering each part in order). Conversions happen with the
// GIL held; the evaluation of a batch runs with the GIL released, and the Python callbacks
// re-acquire it.
#pragma once

#include <pybind11/pybind11.h>
// In every file of the module: pybind11's casters must be the same in each translation unit,
// and the STL ones are needed by signatures and casts in several of them.
#include <pybind11/stl.h>

// After pybind11, which includes Python.h first as CPython requires.
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <nudge/io/replay.hpp>
#include <nudge/nudge.hpp>

namespace py = pybind11;

namespace nudge_py {

// ---- Conversions (convert.cpp) ---------------------------------------------------------------
// <datetime.h> gives each translation unit its own PyDateTimeAPI pointer, so every use of the
// datetime C API stays in convert.cpp, and import_datetime() fills that file's pointer.

/// Imports the datetime C API for the conversions; called once, when the module is imported.
void import_datetime();

/// The name of `o`'s type, for error messages.
std::string type_name(py::handle o);

// Names the value being converted, for error messages: either text, "events[i].field" or, for
// a DataFrame, "events row i, column \"name\"", formatted only when an error is raised (the hot
// path converts millions of fields).
class where {
 public:
  where(std::string_view text) : text_(text) {}    // NOLINT: implicit by design
  where(const std::string& text) : text_(text) {}  // NOLINT
  where(const char* text) : text_(text) {}         // NOLINT
  where(std::size_t index, const char* field) : index_(index), field_(field) {}
  /// A cell of a DataFrame of events: row `index` (its position), column `column`.
  static where cell(std::size_t index, const char* column) {
    where w{index, column};
    w.frame_ = true;
    return w;
  }
  std::string str() const {
    if (field_ == nullptr) {
      return std::string{text_};
    }
    return frame_ ? fmt::format("events row {}, column \"{}\"", index_, field_)
                  : fmt::format("events[{}].{}", index_, field_);
  }

 private:
  std::string_view text_;
  std::size_t index_ = 0;
  const char* field_ = nullptr;
  bool frame_ = false;
};

}  // namespace nudge_py

template <>
struct fmt::formatter<nudge_py::where> : fmt::formatter<std::string_view> {
  auto format(const nudge_py::where& w, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(w.str(), ctx);
  }
};

namespace nudge_py {

/// A timezone-aware datetime, epoch seconds (int or float) or an ISO-8601 string, as a time in
/// the input range; a naive datetime is refused (convert.cpp says how each form is read).
nudge::time_point to_time(py::handle obj, const where& what);
/// Epoch seconds as a time, checked to lie in the input range.
nudge::time_point epoch_time(std::int64_t seconds, const where& what);
/// True for the missing-value markers a DataFrame cell may hold: None, NaN, pandas.NA, NaT.
bool is_missing(py::handle obj);
/// A contact id or event key: a str, or an int (its decimal text, as a CSV cell would read).
std::string to_id(py::handle obj, const where& what);
/// Reads a prop named `name` from a CSV column, a DataFrame column or a dict field outside
/// "props": "value", "lat" and "lon" are numbers (a float, as the file readers make them).
nudge::value to_column_prop(std::string_view name, py::handle obj, const where& what);
/// An aware UTC datetime.
py::object to_datetime(nudge::time_point t);
/// An aware UTC datetime, or None.
py::object to_datetime(const std::optional<nudge::time_point>& t);
/// A detail or property value: str, int, float, bool or an aware datetime.
nudge::value to_value(py::handle obj, const where& what);
py::object from_value(const nudge::value& v);
/// A str, as UTF-8; anything else raises TypeError.
std::string to_text(py::handle obj, const where& what);
/// A batch of events: an iterable of dicts or tuples (contact, type, at[, key[, props]]).
std::vector<nudge::event> read_events(py::handle events);
/// os.fspath(path).
std::string fspath(const py::handle& path);

// ---- Due actions (actions.cpp) ---------------------------------------------------------------

/// A due action as Python sees it. The string views in `action` point into `program`, which
/// this object keeps alive.
struct py_due_action {
  nudge::due_action action;
  std::shared_ptr<const nudge::program> program;
};

/// The action's params as a new dict of str -> str.
py::dict params_of(const py_due_action& a);
/// The actions as a new list of DueAction, each keeping `program` alive.
py::list to_list(std::vector<nudge::due_action>&& actions,
                 const std::shared_ptr<const nudge::program>& program);
py::list to_list(std::span<const nudge::due_action> actions,
                 const std::shared_ptr<const nudge::program>& program);

// ---- Contacts (contacts.cpp) -----------------------------------------------------------------

/// Applies the given profile fields to `c`; fields not given keep their values.
void apply_fields(nudge::contact& c, const py::dict& fields);

// ---- Exceptions (errors.cpp) -----------------------------------------------------------------

/// If a host callback failed with a Python exception, rethrows that exception itself (the same
/// object); otherwise returns so the caller rethrows the callback_error.
void rethrow_python_cause(const nudge::callback_error& e);

// ---- Host callbacks (callbacks.cpp) ----------------------------------------------------------
// Called by the engine with the GIL released: each method re-acquires it.

/// A store whose load/save/due are methods of a Python object.
class py_store final : public nudge::store {
 public:
  explicit py_store(py::object obj);
  ~py_store() override;
  py_store(const py_store&) = delete;
  py_store& operator=(const py_store&) = delete;

  std::optional<nudge::contact_state> load(std::string_view contact) override;
  void save(std::span<nudge::contact_state> states) override;
  std::vector<std::string> due(nudge::time_point t) override;
  // Optional on the Python side: without a segment_members(name) method the store cannot
  // answer, and the engine's query raises as it does for any such store.
  std::vector<std::string> segment_members(std::string_view segment) override;
  // Optional: only Engine.change_program asks for it.
  std::vector<std::string> contacts() override;
  const py::object& object() const noexcept { return obj_; }

 private:
  py::object obj_;
};

/// A sink that calls a Python callable with the batch's list of DueAction.
class py_sink final : public nudge::sink {
 public:
  py_sink(py::object f, std::shared_ptr<const nudge::program> program);
  ~py_sink() override;
  py_sink(const py_sink&) = delete;
  py_sink& operator=(const py_sink&) = delete;

  void deliver(std::span<const nudge::due_action> actions) override;
  const py::object& object() const noexcept { return f_; }
  void set_program(std::shared_ptr<const nudge::program> p) { program_ = std::move(p); }

 private:
  py::object f_;
  std::shared_ptr<const nudge::program> program_;
};

// ---- Engine (engine.cpp; replay in replay.cpp, statistics in stats.cpp) ----------------------

/// What engine.replay returns: the actions stay in C++ until asked for.
struct py_replay_result {
  std::vector<nudge::due_action> actions;
  std::shared_ptr<const nudge::program> program;
  std::size_t contacts_read = 0;
  std::size_t events_read = 0;
  std::size_t rejected = 0;
  nudge::time_point until{};
  nudge::pending_work pending;
  std::vector<nudge::rule_stats> stats;
  std::vector<nudge::workflow_stats> workflow_stats;
};

class py_engine {
 public:
  py_engine(std::shared_ptr<const nudge::program> program, const py::object& store,
            const py::object& sink, bool create_unknown_contacts,
            std::size_t max_events_per_contact);

  // Runs `f` with the GIL released and the engine locked; a Python exception raised in a
  // callback comes out as itself.
  template <class F>
  auto run(F&& f) {
    try {
      py::gil_scoped_release release;
      std::lock_guard lock(mutex_);
      return f(*engine_);
    } catch (const nudge::callback_error& e) {
      rethrow_python_cause(e);
      throw;
    }
  }

  py::list process(py::handle events, py::handle now);
  py::list advance(py::handle now);
  void change_program(std::shared_ptr<const nudge::program> next, py::handle at);
  py::object contact(const std::string& id);
  // `at` (a keyword argument, not a profile field): the instant the profile changes at, which
  // evaluates the contact there (engine::upsert_contact(c, at)); the actions are returned.
  py::object upsert_contact(const std::string& id, const py::object& fields, const py::kwargs& kw);
  // nudge::replay on this engine (its store, sink and statistics) instead of a fresh one.
  py_replay_result replay(const py::object& events_path, const py::object& contacts_path,
                          const py::object& until, const std::string& on_error,
                          const py::object& rejects_path, std::size_t batch_events);
  py::object upsert_contacts(const py::iterable& items, const py::object& at_arg);
  // {workflow_id: {..., "steps": {step_id: {...}}}}, in program order (a nudge.WorkflowStats).
  py::object workflow_stats() const;
  // {rule_id: {...}}, in program order (a nudge.Stats).
  py::object stats() const;
  // The contact's timeline, explained; None for an unknown contact.
  py::object explain(const std::string& id, bool as_json);

  const std::shared_ptr<const nudge::program>& program() const noexcept { return program_; }
  py::object store() const { return store_ ? store_->object() : py::none(); }
  py::object sink() const { return sink_ ? sink_->object() : py::none(); }

 private:
  std::shared_ptr<const nudge::program> program_;
  std::unique_ptr<py_store> store_;
  std::unique_ptr<py_sink> sink_;
  std::unique_ptr<nudge::engine> engine_;
  std::mutex mutex_;
};

// ---- Statistics (stats.cpp) and DataFrames (frames.cpp, frame_events.cpp) --------------------

/// {rule_id: {...}} as a nudge.Stats (a dict with to_frame() and _repr_html_).
py::object stats_dict(std::span<const nudge::rule_stats> stats);
/// {workflow_id: {..., "steps": {...}}} as a nudge.WorkflowStats.
py::object workflow_stats_dict(std::span<const nudge::workflow_stats> stats);
/// The actions as a pandas DataFrame: ts (datetime64[ns, UTC]), contact, rule (categorical, as
/// the CSV's rule column), action (categorical), arg, step, params, idempotency_key (uint64).
py::object actions_frame(std::span<const nudge::due_action> actions,
                         const std::shared_ptr<const nudge::program>& program);
/// True for a pandas DataFrame (or a subclass); never imports pandas.
bool is_data_frame(py::handle obj);
/// The rows of a DataFrame of events (columns ts, contact, type[, key][, props], other columns
/// props, as in event files).
std::vector<nudge::event> read_frame_events(py::handle frame);

// ---- Registration of each part, in module.cpp's order ----------------------------------------

void register_exceptions(py::module_& m);     // errors.cpp
void register_program(py::module_& m);        // program.cpp: Diagnostic, Program
void register_due_action(py::module_& m);     // actions.cpp
void register_contacts(py::module_& m);       // contacts.cpp: Contact, ContactState
void register_read_error(py::module_& m);     // errors.cpp
void register_replay_result(py::module_& m);  // replay.cpp
void register_engine(py::module_& m);         // engine.cpp
void register_distributed(py::module_& m);    // distributed.cpp: nudge.distributed's helpers

}  // namespace nudge_py
