// bindings/python/module.cpp: nudge._core, the engine for Python.
//
// Programs from JSON, engines with Python stores and sinks, due actions, contacts and
// statistics. Conversions between Python objects and nudge's types happen here, with the GIL
// held; the evaluation of a batch runs with the GIL released, and Python callbacks re-acquire it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

// After pybind11, which includes Python.h first as CPython requires.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <datetime.h>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/nudge.hpp>
#include <nudge/read_events.hpp>
#include <nudge/replay.hpp>

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

// ---- Time ------------------------------------------------------------------------------------

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
constexpr std::int64_t days_from_civil(std::int64_t y, std::int64_t m, std::int64_t d) noexcept {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const std::int64_t yoe = y - era * 400;
  const std::int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct civil {
  int year, month, day;
};
constexpr civil civil_from_days(std::int64_t z) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<int>(yoe + era * 400 + (m <= 2 ? 1 : 0)), static_cast<int>(m),
          static_cast<int>(d)};
}

// CPython's datetime accessors are macros with C-style casts.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
std::int64_t delta_seconds(PyObject* delta) noexcept {
  return std::int64_t{PyDateTime_DELTA_GET_DAYS(delta)} * 86400 +
         PyDateTime_DELTA_GET_SECONDS(delta);
}
// The datetime's wall-clock fields as seconds since 1970-01-01 (ignoring its zone).
std::int64_t local_seconds(PyObject* o) noexcept {
  return days_from_civil(PyDateTime_GET_YEAR(o), PyDateTime_GET_MONTH(o), PyDateTime_GET_DAY(o)) *
             86400 +
         std::int64_t{PyDateTime_DATE_GET_HOUR(o)} * 3600 + PyDateTime_DATE_GET_MINUTE(o) * 60 +
         PyDateTime_DATE_GET_SECOND(o);
}
#pragma GCC diagnostic pop

std::string type_name(py::handle o) {
  return py::str(py::type::handle_of(o).attr("__name__"));
}

// Names the value being converted, for error messages: either text, or "events[i].field",
// formatted only when an error is raised (the hot path converts millions of fields).
class where {
 public:
  where(std::string_view text) : text_(text) {}    // NOLINT: implicit by design
  where(const std::string& text) : text_(text) {}  // NOLINT
  where(const char* text) : text_(text) {}         // NOLINT
  where(std::size_t index, const char* field) : index_(index), field_(field) {}
  std::string str() const {
    return field_ == nullptr ? std::string{text_} : fmt::format("events[{}].{}", index_, field_);
  }

 private:
  std::string_view text_;
  std::size_t index_ = 0;
  const char* field_ = nullptr;
};

}  // namespace

template <>
struct fmt::formatter<where> : fmt::formatter<std::string_view> {
  auto format(const where& w, fmt::format_context& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format(w.str(), ctx);
  }
};

namespace {

nudge::time_point checked(std::int64_t seconds, const where& what) {
  const auto t = nudge::from_epoch(seconds);
  if (!nudge::in_input_range(t)) {
    throw py::value_error(fmt::format("{}: {} is outside the supported range ({})", what, seconds,
                                      nudge::input_range_text));
  }
  return t;
}

// A timezone-aware datetime (its microseconds dropped), epoch seconds (int or float, floored to
// the second), or a string nudge::parse_time reads (a fraction dropped): towards the earlier
// second in every form, as the C++ readers do. A naive datetime is refused: nudge never guesses
// a zone. The result lies in the input range (nudge/time.hpp).
nudge::time_point to_time(py::handle obj, const where& what) {
  PyObject* o = obj.ptr();
  if (PyLong_Check(o) && !PyBool_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) {
      throw py::value_error(fmt::format("{}: {} is outside the supported range ({})", what,
                                        py::str(obj).cast<std::string>(), nudge::input_range_text));
    }
    return checked(v, what);
  }
  if (PyDateTime_Check(o)) {
    PyObject* tz = PyDateTime_DATE_GET_TZINFO(o);
    std::int64_t offset = 0;
    if (tz != PyDateTime_TimeZone_UTC) {
      py::object delta = tz == Py_None ? py::none() : obj.attr("utcoffset")();
      if (delta.is_none()) {
        throw py::value_error(fmt::format(
            "{}: naive datetime {} has no time zone; nudge never guesses one: pass an aware "
            "datetime (e.g. tzinfo=datetime.timezone.utc) or epoch seconds",
            what, py::str(obj).cast<std::string>()));
      }
      offset = delta_seconds(delta.ptr());
    }
    const std::int64_t local = local_seconds(o);
    return checked(local - offset, what);
  }
  if (PyFloat_Check(o)) {
    const double d = PyFloat_AS_DOUBLE(o);
    if (!std::isfinite(d) || d < -1e13 || d > 1e13) {
      throw py::value_error(fmt::format("{}: {} is not a usable epoch time", what, d));
    }
    return checked(static_cast<std::int64_t>(std::floor(d)), what);
  }
  if (PyUnicode_Check(o)) {
    const auto text = obj.cast<std::string_view>();
    nudge::time_error why = nudge::time_error::none;
    if (auto t = nudge::parse_time(text, &why)) {
      return *t;
    }
    if (why == nudge::time_error::out_of_range) {
      throw py::value_error(fmt::format("{}: \"{}\" is outside the supported range ({})", what,
                                        text, nudge::input_range_text));
    }
    throw py::value_error(fmt::format(
        "{}: \"{}\" is not an ISO-8601 time with an offset (e.g. 2024-01-01T10:00:00Z) nor "
        "epoch seconds",
        what, text));
  }
  throw py::type_error(
      fmt::format("{}: expected a timezone-aware datetime or epoch seconds (int or float), got {}",
                  what, type_name(obj)));
}

// An aware UTC datetime.
py::object to_datetime(nudge::time_point t) {
  const std::int64_t s = nudge::to_epoch(t);
  std::int64_t days = s / 86400;
  std::int64_t rest = s % 86400;
  if (rest < 0) {
    rest += 86400;
    --days;
  }
  const civil c = civil_from_days(days);
  PyObject* dt = PyDateTimeAPI->DateTime_FromDateAndTime(
      c.year, c.month, c.day, static_cast<int>(rest / 3600), static_cast<int>(rest / 60 % 60),
      static_cast<int>(rest % 60), 0, PyDateTime_TimeZone_UTC, PyDateTimeAPI->DateTimeType);
  if (dt == nullptr) {
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(dt);
}

py::object to_datetime(const std::optional<nudge::time_point>& t) {
  return t ? to_datetime(*t) : py::none();
}

// ---- Values ----------------------------------------------------------------------------------

nudge::value to_value(py::handle obj, const where& what) {
  PyObject* o = obj.ptr();
  if (PyBool_Check(o)) {
    return o == Py_True;
  }
  if (PyLong_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow != 0) {
      throw py::value_error(fmt::format("{}: integer does not fit in 64 bits", what));
    }
    return std::int64_t{v};
  }
  if (PyFloat_Check(o)) {
    return PyFloat_AS_DOUBLE(o);
  }
  if (PyUnicode_Check(o)) {
    return obj.cast<std::string>();
  }
  if (PyDateTime_Check(o)) {
    return to_time(obj, what);
  }
  throw py::type_error(fmt::format(
      "{}: expected str, int, float, bool or an aware datetime, got {}", what, type_name(obj)));
}

py::object from_value(const nudge::value& v) {
  return std::visit(
      [](const auto& x) -> py::object {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, nudge::time_point>) {
          return to_datetime(x);
        } else {
          return py::cast(x);
        }
      },
      v);
}

std::string to_text(py::handle obj, const where& what) {
  if (!PyUnicode_Check(obj.ptr())) {
    throw py::type_error(fmt::format("{}: expected str, got {}", what, type_name(obj)));
  }
  Py_ssize_t size = 0;
  const char* data = PyUnicode_AsUTF8AndSize(obj.ptr(), &size);
  if (data == nullptr) {
    throw py::error_already_set();
  }
  return std::string(data, static_cast<std::size_t>(size));
}

// ---- Events ----------------------------------------------------------------------------------

void read_props(py::handle props, nudge::event& e, const std::string& what) {
  if (props.is_none()) {
    return;
  }
  if (!PyDict_Check(props.ptr())) {
    throw py::type_error(fmt::format("{}.props: expected a dict, got {}", what, type_name(props)));
  }
  for (auto [k, v] : py::reinterpret_borrow<py::dict>(props)) {
    auto name = to_text(k, what + ".props key");
    auto val = to_value(v, fmt::format("{}.props[{}]", what, name));
    e.props.insert_or_assign(std::move(name), std::move(val));
  }
}

// A dict {"contact", "type", "at", "key", "props"} or a tuple (contact, type, at[, key[, props]]).
void read_event(py::handle item, std::size_t index, nudge::event& e) {
  PyObject* o = item.ptr();
  if (PyTuple_Check(o) || PyList_Check(o)) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** f = PySequence_Fast_ITEMS(o);
    if (n < 3 || n > 5) {
      throw py::value_error(fmt::format(
          "events[{}]: a tuple event is (contact, type, at[, key[, props]]), got {} items", index,
          n));
    }
    e.contact = to_text(f[0], where{index, "contact"});
    e.type = to_text(f[1], where{index, "type"});
    e.at = to_time(f[2], where{index, "at"});
    if (n >= 4 && f[3] != Py_None) {
      e.key = to_text(f[3], where{index, "key"});
    }
    if (n == 5) {
      read_props(f[4], e, fmt::format("events[{}]", index));
    }
    return;
  }
  if (PyDict_Check(o)) {
    bool has_contact = false, has_type = false, has_at = false;
    for (auto [k, v] : py::reinterpret_borrow<py::dict>(item)) {
      const auto name = to_text(k, where{index, "(field name)"});
      if (name == "contact") {
        e.contact = to_text(v, where{index, "contact"});
        has_contact = true;
      } else if (name == "type") {
        e.type = to_text(v, where{index, "type"});
        has_type = true;
      } else if (name == "at") {
        e.at = to_time(v, where{index, "at"});
        has_at = true;
      } else if (name == "key") {
        if (!v.is_none()) {
          e.key = to_text(v, where{index, "key"});
        }
      } else if (name == "props") {
        read_props(v, e, fmt::format("events[{}]", index));
      } else {
        throw py::value_error(
            fmt::format("events[{}]: unknown field \"{}\" (expected contact, type, at, key, props)",
                        index, name));
      }
    }
    if (!has_contact || !has_type || !has_at) {
      throw py::value_error(
          fmt::format("events[{}]: missing \"{}\" (an event needs contact, type "
                      "and at)",
                      index, !has_contact ? "contact" : (!has_type ? "type" : "at")));
    }
    return;
  }
  throw py::type_error(fmt::format(
      "events[{}]: expected a dict or a tuple (contact, type, at[, key[, props]]), got {}", index,
      type_name(item)));
}

std::vector<nudge::event> read_events(py::handle events) {
  std::vector<nudge::event> out;
  if (PyList_Check(events.ptr()) || PyTuple_Check(events.ptr())) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(events.ptr());
    PyObject** items = PySequence_Fast_ITEMS(events.ptr());
    out.resize(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      read_event(items[i], static_cast<std::size_t>(i), out[static_cast<std::size_t>(i)]);
    }
    return out;
  }
  std::size_t i = 0;
  for (auto item : py::iter(events)) {
    read_event(item, i++, out.emplace_back());
  }
  return out;
}

// ---- Due actions -----------------------------------------------------------------------------

/// A due action as Python sees it. The string views in `action` point into `program`, which
/// this object keeps alive.
struct py_due_action {
  nudge::due_action action;
  std::shared_ptr<const nudge::program> program;
};

py::dict params_of(const py_due_action& a) {
  py::dict d;
  if (a.action.definition != nullptr) {
    for (const auto& [k, v] : a.action.definition->params) {
      d[py::str(k)] = py::str(v);
    }
  }
  return d;
}

std::string repr_of(const py_due_action& a) {
  const auto& d = a.action;
  return fmt::format(
      "DueAction(contact={}, rule={}{}, action={}, arg={}, due={}, params={})",
      py::repr(py::str(d.contact)).cast<std::string>(),
      py::repr(py::str(d.rule.data(), d.rule.size())).cast<std::string>(),
      d.from_workflow()
          ? ", step=" + py::repr(py::str(d.step.data(), d.step.size())).cast<std::string>()
          : std::string{},
      py::repr(py::str(std::string{d.verb()})).cast<std::string>(),
      py::repr(py::str(d.arg.data(), d.arg.size())).cast<std::string>(),
      nudge::format_time(d.due_at), py::repr(params_of(a)).cast<std::string>());
}

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

// ---- Contacts --------------------------------------------------------------------------------

py::dict details_of(const nudge::contact& c) {
  py::dict d;
  for (const auto& [k, v] : c.details) {
    d[py::str(k)] = from_value(v);
  }
  return d;
}
py::dict tags_of(const nudge::contact& c) {
  py::dict d;
  for (const auto& [k, v] : c.tags) {
    d[py::str(k)] = to_datetime(v);
  }
  return d;
}
py::dict consent_of(const nudge::contact& c) {
  py::dict d;
  for (const auto& [k, v] : c.consent) {
    d[py::str(k)] = py::bool_(v);
  }
  return d;
}
py::frozenset groups_of(const nudge::contact& c) {
  py::set s;
  for (const auto& g : c.groups) {
    s.add(py::str(g));
  }
  return py::frozenset(s);
}

py::object location_of(const nudge::contact& c) {
  return c.location ? py::object(py::make_tuple(c.location->lat, c.location->lon)) : py::none();
}

py::dict contact_dict(const nudge::contact& c) {
  return py::dict("id"_a = c.id, "details"_a = details_of(c), "tags"_a = tags_of(c),
                  "score"_a = c.score, "owner"_a = c.owner, "status"_a = c.status,
                  "stage"_a = c.stage, "groups"_a = groups_of(c), "consent"_a = consent_of(c),
                  "time_zone"_a = c.time_zone, "location"_a = location_of(c));
}

// Applies the given profile fields to `c`; fields not given keep their values.
void apply_fields(nudge::contact& c, const py::dict& fields) {
  for (auto [k, v] : fields) {
    const auto name = to_text(k, "contact field name");
    const std::string what = "contact field " + name;
    if (name == "details") {
      c.details.clear();
      for (auto [dk, dv] : py::cast<py::dict>(v)) {
        auto key = to_text(dk, what + " key");
        auto val = to_value(dv, fmt::format("details[{}]", key));
        c.details.insert_or_assign(std::move(key), std::move(val));
      }
    } else if (name == "tags") {
      c.tags.clear();
      if (PyDict_Check(v.ptr())) {
        for (auto [tk, tv] : py::reinterpret_borrow<py::dict>(v)) {
          auto tag = to_text(tk, what + " key");
          auto at = to_time(tv, fmt::format("tags[{}]", tag));
          c.tags.insert_or_assign(std::move(tag), at);
        }
      } else {
        if (PyUnicode_Check(v.ptr())) {
          throw py::type_error(
              "contact field tags: expected a dict {tag: time} or an iterable "
              "of tags, got a str");
        }
        for (auto t : py::iter(v)) {
          c.tags.insert_or_assign(to_text(t, "tag"), nudge::from_epoch(0));
        }
      }
    } else if (name == "score") {
      if (PyBool_Check(v.ptr()) || !(PyLong_Check(v.ptr()) || PyFloat_Check(v.ptr()))) {
        throw py::type_error(
            fmt::format("contact field score: expected a number, got {}", type_name(v)));
      }
      c.score = v.cast<double>();
    } else if (name == "owner") {
      c.owner = to_text(v, what);
    } else if (name == "status") {
      c.status = to_text(v, what);
    } else if (name == "stage") {
      c.stage = to_text(v, what);
    } else if (name == "time_zone") {
      c.time_zone = to_text(v, what);
    } else if (name == "location") {
      // (lat, lon) in degrees, or None to clear it (docs/rules.md, "Location").
      if (v.is_none()) {
        c.location.reset();
      } else {
        const auto pair = py::cast<py::sequence>(v);
        auto number = [&](py::handle x) {
          if (PyBool_Check(x.ptr()) || !(PyLong_Check(x.ptr()) || PyFloat_Check(x.ptr()))) {
            throw py::type_error(fmt::format(
                "contact field location: expected (lat, lon) numbers, got {}", type_name(x)));
          }
          return x.cast<double>();
        };
        if (PyUnicode_Check(v.ptr()) || pair.size() != 2) {
          throw py::type_error("contact field location: expected (lat, lon) or None");
        }
        const double lat = number(pair[0]), lon = number(pair[1]);
        if (auto why = nudge::geo_problem(lat, lon)) {
          throw py::value_error("contact field location: " + *why);
        }
        c.location = nudge::geo_point{lat, lon};
      }
    } else if (name == "consent") {
      c.consent.clear();
      for (auto [ck, cv] : py::cast<py::dict>(v)) {
        if (!PyBool_Check(cv.ptr())) {
          throw py::type_error(
              fmt::format("contact field consent: expected bool values, got {}", type_name(cv)));
        }
        c.consent.insert_or_assign(to_text(ck, what + " key"), cv.ptr() == Py_True);
      }
    } else if (name == "groups") {
      if (PyUnicode_Check(v.ptr())) {
        throw py::type_error(
            "contact field groups: expected an iterable of group names, got a "
            "str");
      }
      c.groups.clear();
      for (auto g : py::iter(v)) {
        c.groups.insert(to_text(g, "group"));
      }
    } else if (name == "id") {
      if (to_text(v, what) != c.id) {
        throw py::value_error(
            fmt::format("contact field id: \"{}\" differs from the contact's id \"{}\"",
                        to_text(v, what), c.id));
      }
    } else {
      throw py::value_error(fmt::format(
          "unknown contact field \"{}\" (expected details, tags, score, owner, status, stage, "
          "groups, consent, time_zone, location)",
          name));
    }
  }
}

// ---- Exceptions ------------------------------------------------------------------------------

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

// ---- Host callbacks --------------------------------------------------------------------------

/// A store whose load/save/due are methods of a Python object.
class py_store final : public nudge::store {
 public:
  explicit py_store(py::object obj) : obj_(std::move(obj)) {
    for (const char* name : {"load", "save", "due"}) {
      if (!py::hasattr(obj_, name) || !PyCallable_Check(obj_.attr(name).ptr())) {
        throw py::type_error(
            fmt::format("store: {} has no method {}() (a store needs load, save and due)",
                        type_name(obj_), name));
      }
    }
  }
  ~py_store() override {
    py::gil_scoped_acquire gil;
    obj_ = py::object();
  }
  py_store(const py_store&) = delete;
  py_store& operator=(const py_store&) = delete;

  std::optional<nudge::contact_state> load(std::string_view contact) override {
    py::gil_scoped_acquire gil;
    py::object r = obj_.attr("load")(py::str(contact.data(), contact.size()));
    if (r.is_none()) {
      return std::nullopt;
    }
    if (!py::isinstance<nudge::contact_state>(r)) {
      throw py::type_error(
          fmt::format("store.load must return a ContactState (as handed to save) or None, got {}",
                      type_name(r)));
    }
    return r.cast<const nudge::contact_state&>();
  }
  void save(std::span<nudge::contact_state> states) override {
    py::gil_scoped_acquire gil;
    py::list l(states.size());
    for (std::size_t i = 0; i < states.size(); ++i) {
      l[i] = py::cast(std::move(states[i]));
    }
    obj_.attr("save")(l);
  }
  std::vector<std::string> due(nudge::time_point t) override {
    py::gil_scoped_acquire gil;
    py::object r = obj_.attr("due")(to_datetime(t));
    std::vector<std::string> ids;
    for (auto id : py::iter(r)) {
      ids.push_back(to_text(id, "store.due item"));
    }
    return ids;
  }
  // Optional on the Python side: without a segment_members(name) method the store cannot
  // answer, and the engine's query raises as it does for any such store.
  std::vector<std::string> segment_members(std::string_view segment) override {
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
  // Optional: only Engine.change_program asks for it.
  std::vector<std::string> contacts() override {
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
  const py::object& object() const noexcept { return obj_; }

 private:
  py::object obj_;
};

/// A sink that calls a Python callable with the batch's list of DueAction.
class py_sink final : public nudge::sink {
 public:
  py_sink(py::object f, std::shared_ptr<const nudge::program> program)
      : f_(std::move(f)), program_(std::move(program)) {
    if (!PyCallable_Check(f_.ptr())) {
      throw py::type_error(fmt::format(
          "sink: expected a callable taking a list of DueAction, got {}", type_name(f_)));
    }
  }
  ~py_sink() override {
    py::gil_scoped_acquire gil;
    f_ = py::object();
  }
  py_sink(const py_sink&) = delete;
  py_sink& operator=(const py_sink&) = delete;

  void deliver(std::span<const nudge::due_action> actions) override {
    py::gil_scoped_acquire gil;
    f_(to_list(actions, program_));
  }
  const py::object& object() const noexcept { return f_; }
  void set_program(std::shared_ptr<const nudge::program> p) { program_ = std::move(p); }

 private:
  py::object f_;
  std::shared_ptr<const nudge::program> program_;
};

/// What engine.replay returns: the actions stay in C++ until asked for.
struct py_replay_result {
  std::vector<nudge::due_action> actions;
  std::shared_ptr<const nudge::program> program;
  std::size_t contacts_read = 0;
  std::size_t events_read = 0;
  std::size_t rejected = 0;
  nudge::time_point until{};
  nudge::pending_work pending;
};

std::string fspath(const py::handle& path) {
  return py::module_::import("os").attr("fspath")(path).cast<std::string>();
}

// ---- Engine ----------------------------------------------------------------------------------

class py_engine {
 public:
  py_engine(std::shared_ptr<const nudge::program> program, const py::object& store,
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

  py::list process(py::handle events, py::handle now) {
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

  py::list advance(py::handle now) {
    const auto t = to_time(now, "now");
    auto actions = run([&](nudge::engine& e) { return e.advance(t); });
    return to_list(std::move(actions), program_);
  }

  void change_program(std::shared_ptr<const nudge::program> next, py::handle at) {
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

  py::object contact(const std::string& id) {
    auto c = run([&](nudge::engine& e) { return e.find_contact(id); });
    if (!c) {
      return py::none();
    }
    return py::cast(std::move(*c));
  }

  // `at` (a keyword argument, not a profile field): the instant the profile changes at, which
  // evaluates the contact there (engine::upsert_contact(c, at)); the actions are returned.
  py::object upsert_contact(const std::string& id, const py::object& fields, const py::kwargs& kw) {
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

  // nudge::replay on this engine (its store, sink and statistics) instead of a fresh one.
  py_replay_result replay(const py::object& events_path, const py::object& contacts_path,
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
    options.until = end;
    options.on_error = on_error == "skip" ? nudge::error_policy::skip : nudge::error_policy::stop;
    options.rejects_path = rejects;
    options.batch_events = batch_events;
    return run([&](nudge::engine& eng) {
      // nudge::replay's loop on this engine: unknown contacts are created (anonymous visitors)
      // and the default end covers every pending timer, as in the CLI.
      auto r = nudge::replay(eng, contacts, events, options);
      py_replay_result result;
      result.program = program_;
      result.actions = std::move(r.actions);
      result.contacts_read = r.contacts_read;
      result.events_read = r.events_read;
      result.rejected = r.rejected;
      result.until = r.until;
      result.pending = r.pending;
      return result;
    });
  }

  py::object upsert_contacts(const py::iterable& items, const py::object& at_arg) {
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

  // The delivery policy's counts, under the same keys as a rule's statistics.
  static void add_delivery(py::dict& d, const nudge::delivery_counts& c) {
    d["no_consent"] = c.no_consent;
    d["capped"] = c.capped;
    d["off_hours"] = c.off_hours;
    d["deferred_cap"] = c.deferred_cap;
    d["deferred_hours"] = c.deferred_hours;
  }

  // {workflow_id: {..., "steps": {step_id: {...}}}}, in program order.
  py::dict workflow_stats() const {
    py::dict out;
    for (const auto& w : engine_->workflow_stats()) {
      py::dict steps;
      for (const auto& st : w.steps) {
        py::dict d("step"_a = st.step, "reached"_a = st.reached, "sent"_a = st.sent,
                   "opened"_a = st.opened, "clicked"_a = st.clicked, "waiting"_a = st.waiting,
                   "ended"_a = st.ended, "first"_a = to_datetime(st.first),
                   "last"_a = to_datetime(st.last));
        add_delivery(d, st.delivery);
        steps[py::str(st.step)] = d;
      }
      py::dict d("workflow"_a = w.workflow, "entered"_a = w.entered, "completed"_a = w.completed,
                 "exited"_a = w.exited, "ended"_a = w.ended, "sent"_a = w.sent,
                 "opened"_a = w.opened, "clicked"_a = w.clicked, "active"_a = w.active,
                 "first"_a = to_datetime(w.first), "last"_a = to_datetime(w.last),
                 "steps"_a = steps);
      add_delivery(d, w.delivery);
      out[py::str(w.workflow)] = d;
    }
    return out;
  }

  py::dict stats() const {
    py::dict out;
    for (const auto& s : engine_->stats()) {
      py::dict d("rule"_a = s.rule, "triggered"_a = s.triggered, "passed"_a = s.passed,
                 "failed"_a = s.failed, "suppressed"_a = s.suppressed, "emitted"_a = s.emitted,
                 "first"_a = to_datetime(s.first), "last"_a = to_datetime(s.last));
      d["no_consent"] = s.no_consent;
      d["capped"] = s.capped;
      d["off_hours"] = s.off_hours;
      d["deferred_cap"] = s.deferred_cap;
      d["deferred_hours"] = s.deferred_hours;
      out[py::str(s.rule)] = d;
    }
    return out;
  }

  // The contact's timeline, explained; None for an unknown contact.
  py::object explain(const std::string& id, bool as_json) {
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
          "at"_a = to_datetime(x.at), "source"_a = x.source, "what"_a = x.what,
          "reason"_a = x.reason.empty() ? py::object(py::none()) : py::object(py::str(x.reason)),
          "until"_a = tl[i].until == tl[i].at ? py::object(py::none()) : to_datetime(tl[i].until),
          "text"_a = x.text));
    }
    return out;
  }

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

std::shared_ptr<const nudge::program> program_from_json(const py::object& source,
                                                        const std::string& file_name) {
  std::string text;
  if (PyUnicode_Check(source.ptr())) {
    text = source.cast<std::string>();
  } else if (PyBytes_Check(source.ptr())) {
    text = source.cast<std::string>();
  } else if (PyDict_Check(source.ptr())) {
    text = py::module_::import("json").attr("dumps")(source).cast<std::string>();
  } else {
    throw py::type_error(fmt::format(
        "Program.from_json: expected a JSON str, bytes or a dict, got {}", type_name(source)));
  }
  py::gil_scoped_release release;
  return nudge::load_rules(text, nudge::load_options{.file_name = file_name});
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  PyDateTime_IMPORT;
  if (PyDateTimeAPI == nullptr) {
    throw py::error_already_set();
  }
  m.doc() = "nudge._core: the compiled part of the nudge package (import nudge instead).";

  // Exceptions ---------------------------------------------------------------------------------
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

  // Diagnostic --------------------------------------------------------------------------------
  py::class_<nudge::diagnostic>(m, "Diagnostic",
                                "One problem in a rule file: where it is and what is wrong.")
      .def_readonly("file", &nudge::diagnostic::file, "The file name given, or ''.")
      .def_readonly("line", &nudge::diagnostic::line, "1-based line; 0 when unknown.")
      .def_readonly("column", &nudge::diagnostic::column, "1-based column; 0 when unknown.")
      .def_readonly("json_pointer", &nudge::diagnostic::json_pointer,
                    "RFC 6901 path to the offending value, e.g. '/rules/2/delay'.")
      .def_readonly("code", &nudge::diagnostic::code,
                    "Stable machine-readable code, e.g. 'unknown_field'.")
      .def_readonly("message", &nudge::diagnostic::message, "What is wrong, in words.")
      .def(
          "to_dict",
          [](const nudge::diagnostic& d) {
            return py::dict("file"_a = d.file, "line"_a = d.line, "column"_a = d.column,
                            "json_pointer"_a = d.json_pointer, "code"_a = d.code,
                            "message"_a = d.message);
          },
          "The diagnostic as a plain dict.")
      .def("__str__", &nudge::diagnostic::to_string)
      .def("__repr__",
           [](const nudge::diagnostic& d) {
             return fmt::format("Diagnostic({})",
                                py::repr(py::str(d.to_string())).cast<std::string>());
           })
      .def("__eq__", [](const nudge::diagnostic& a, const nudge::diagnostic& b) { return a == b; });

  // Program -----------------------------------------------------------------------------------
  py::class_<nudge::program, std::shared_ptr<nudge::program>>(
      m, "Program", "A compiled, validated, immutable rule program; share it between engines.")
      .def_static(
          "from_json",
          [](const py::object& source, const std::string& file_name) {
            return std::const_pointer_cast<nudge::program>(program_from_json(source, file_name));
          },
          "source"_a, "file_name"_a = "",
          "Compiles a rule file given as JSON text (str or bytes) or as a dict. Raises "
          "RuleError listing every problem. `file_name` appears in messages.")
      .def_static(
          "load",
          [](const py::object& path) {
            auto p = py::module_::import("os").attr("fspath")(path).cast<std::string>();
            py::gil_scoped_release release;
            return std::const_pointer_cast<nudge::program>(nudge::load_rules_file(p));
          },
          "path"_a,
          "Reads and compiles the rule file at `path` (str or os.PathLike). Raises RuleError, "
          "also for a file that cannot be read.")
      .def_property_readonly(
          "rule_ids",
          [](const nudge::program& p) {
            std::vector<std::string> ids;
            for (const auto& r : p.rules().rules) {
              ids.push_back(r.id);
            }
            return ids;
          },
          "The rules' ids, in program order.")
      .def_property_readonly(
          "longest_delay",
          [](const nudge::program& p) {
            return py::module_::import("datetime")
                .attr("timedelta")("seconds"_a = p.longest_delay().count());
          },
          "The longest a rule keeps a timer pending (a datetime.timedelta).")
      .def_property_readonly(
          "segments",
          [](const nudge::program& p) {
            std::vector<std::string> names;
            for (const auto& sg : p.rules().segments) {
              names.push_back(sg.name);
            }
            return names;
          },
          "The segment names, in evaluation order.")
      .def("__len__", &nudge::program::rule_count, "The number of rules.")
      .def("knows_event_type", &nudge::program::knows_event_type, "type"_a,
           "True for built-in types, declared types and types any rule mentions.")
      .def("__repr__", [](const nudge::program& p) {
        std::string ids;
        for (const auto& r : p.rules().rules) {
          ids += ids.empty() ? r.id : ", " + r.id;
        }
        return fmt::format("Program({} rules: {})", p.rule_count(), ids);
      });

  // DueAction ---------------------------------------------------------------------------------
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
          "action", [](const py_due_action& a) { return std::string{a.action.verb()}; },
          "The verb: 'send_email', 'generate_coupon', 'assign_owner', ...")
      .def_property_readonly(
          "arg", [](const py_due_action& a) { return std::string{a.action.arg}; },
          "The main parameter as delivered: template, tag, ..., or the owner picked.")
      .def_property_readonly("params", &params_of,
                             "Further parameters from the rule (a new dict of str -> str).")
      .def_property_readonly(
          "due", [](const py_due_action& a) { return to_datetime(a.action.due_at); },
          "When it is due: an aware UTC datetime.")
      .def_property_readonly(
          "due_epoch", [](const py_due_action& a) { return nudge::to_epoch(a.action.due_at); },
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
                                "action"_a = std::string{d.verb()}, "arg"_a = std::string{d.arg},
                                "params"_a = params_of(a), "due"_a = to_datetime(d.due_at),
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

  // Contact -----------------------------------------------------------------------------------
  py::class_<nudge::contact>(m, "Contact", "A snapshot of a contact's profile (read-only).")
      .def_readonly("id", &nudge::contact::id, "The host's key.")
      .def_property_readonly("details", &details_of, "Typed details: a new dict name -> value.")
      .def_property_readonly("tags", &tags_of, "Tags: a new dict tag -> when it was added.")
      .def_readonly("score", &nudge::contact::score, "The lead score.")
      .def_readonly("owner", &nudge::contact::owner, "The owning sales rep, or ''.")
      .def_readonly("status", &nudge::contact::status, "'lead', 'customer' or a custom status.")
      .def_readonly("stage", &nudge::contact::stage, "Lifecycle or campaign stage, or ''.")
      .def_property_readonly("groups", &groups_of, "Group memberships (a frozenset).")
      .def_property_readonly("consent", &consent_of, "Consent per channel: dict channel -> bool.")
      .def_readonly("time_zone", &nudge::contact::time_zone, "IANA zone name, or ''.")
      .def_property_readonly("location", &location_of,
                             "(lat, lon) in WGS84 degrees, or None when unknown.")
      .def("to_dict", &contact_dict, "The profile as a plain dict.")
      .def("__eq__", [](const nudge::contact& a, const nudge::contact& b) { return a == b; })
      .def("__repr__", [](const nudge::contact& c) {
        return fmt::format(
            "Contact(id={}, status={}, stage={}, owner={}, score={}, tags={}, "
            "groups={}, details={})",
            py::repr(py::str(c.id)).cast<std::string>(),
            py::repr(py::str(c.status)).cast<std::string>(),
            py::repr(py::str(c.stage)).cast<std::string>(),
            py::repr(py::str(c.owner)).cast<std::string>(), c.score,
            py::repr(py::list(tags_of(c))).cast<std::string>(),
            py::repr(py::cast(std::vector<std::string>(c.groups.begin(), c.groups.end())))
                .cast<std::string>(),
            py::repr(details_of(c)).cast<std::string>());
      });

  // ContactState ------------------------------------------------------------------------------
  py::class_<nudge::contact_state>(
      m, "ContactState",
      "Everything the engine keeps for one contact, opaque to Python: a store keeps these "
      "objects and hands them back unchanged. Copyable (copy.copy / copy.deepcopy), not "
      "picklable. A state belongs to the program that produced it.")
      .def_property_readonly(
          "contact", [](const nudge::contact_state& s) { return s.contact; },
          "The contact's profile (a Contact snapshot).")
      .def_property_readonly(
          "id", [](const nudge::contact_state& s) { return s.contact.id; }, "The contact's id.")
      .def_property_readonly(
          "next_due",
          [](const nudge::contact_state& s) -> py::object {
            return s.timers.empty() ? py::none() : to_datetime(s.next_due());
          },
          "When the earliest pending timer is due (aware UTC datetime), or None: a store's "
          "due(now) returns the ids whose next_due <= now.")
      .def_property_readonly(
          "segments",
          [](const nudge::contact_state& s) {
            py::dict d;
            for (const auto& [name, since] : s.segments) {
              d[py::str(name)] = to_datetime(since);
            }
            return d;
          },
          "Segments the contact is in: a new dict name -> when it entered (aware UTC datetime).")
      .def_property_readonly(
          "merged_into",
          [](const nudge::contact_state& s) -> py::object {
            return s.merged_into.empty() ? py::none() : py::object(py::str(s.merged_into));
          },
          "The contact this id was identified as and merged into (the state is then only an "
          "alias record), or None.")
      .def_property_readonly(
          "pending_timers", [](const nudge::contact_state& s) { return s.timers.size(); },
          "Number of pending delayed checks and delayed actions.")
      .def(
          "copy", [](const nudge::contact_state& s) { return s; }, "An independent copy.")
      .def("__copy__", [](const nudge::contact_state& s) { return s; })
      .def(
          "__deepcopy__", [](const nudge::contact_state& s, py::handle) { return s; }, "memo"_a)
      .def("__eq__",
           [](const nudge::contact_state& a, const nudge::contact_state& b) { return a == b; })
      .def("__repr__", [](const nudge::contact_state& s) {
        return fmt::format("ContactState(id={}, pending_timers={})",
                           py::repr(py::str(s.contact.id)).cast<std::string>(), s.timers.size());
      });

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

  py::class_<py_replay_result>(m, "ReplayResult",
                               "The outcome of Engine.replay; the actions stay in C++ until read.")
      .def_property_readonly(
          "actions",
          [](const py_replay_result& r) { return to_list(std::span{r.actions}, r.program); },
          "The due actions (a new list of DueAction), sorted by (due, contact).")
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

  // Engine ------------------------------------------------------------------------------------
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
           "Applies `events` (dicts or tuples, each contact's in time order), then fires every "
           "timer due at or before `now`; returns the batch's DueActions sorted by (due, "
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
      .def("replay", &py_engine::replay, "events_path"_a, "contacts"_a = py::none(),
           "until"_a = py::none(), py::kw_only(), "on_error"_a = "stop", "rejects"_a = py::none(),
           "batch_events"_a = 0,
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
           "'first', 'last'}}}} in program order, each with the delivery policy's 'no_consent', "
           "'capped', 'off_hours', 'deferred_cap', 'deferred_hours' too; 'active' and "
           "'waiting' count runs inside now (waiting includes runs held at a send step while "
           "its message is deferred); 'ended' counts runs a program change ended.")
      .def("stats", &py_engine::stats,
           "Per-rule statistics: {rule_id: {'rule', 'triggered', 'passed', 'failed', "
           "'suppressed', 'emitted', 'first', 'last', 'no_consent', 'capped', 'off_hours', "
           "'deferred_cap', 'deferred_hours'}} in program order.")
      .def("explain", &py_engine::explain, "id"_a, py::kw_only(), "json"_a = false,
           "Why did the contact get a message, or not? Its timeline (kept when the program's "
           "timeline size, \"timeline\": {\"size\": N} in the rule file, is above 0), oldest "
           "first: a list of dicts {'at', 'source', 'what', 'reason', 'until', 'text'}, or with "
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
