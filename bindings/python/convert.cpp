// Conversions between Python objects and nudge's types: times, values, text and batches of
// events. The only file that uses the datetime C API (see nudge_py.hpp).
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <variant>

#include <datetime.h>

namespace nudge_py {

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

nudge::time_point checked(std::int64_t seconds, const where& what) {
  const auto t = nudge::from_epoch(seconds);
  if (!nudge::in_input_range(t)) {
    throw py::value_error(fmt::format("{}: {} is outside the supported range ({})", what, seconds,
                                      nudge::input_range_text));
  }
  return t;
}

}  // namespace

nudge::time_point epoch_time(std::int64_t seconds, const where& what) {
  return checked(seconds, what);
}

void import_datetime() {
  PyDateTime_IMPORT;
  if (PyDateTimeAPI == nullptr) {
    throw py::error_already_set();
  }
}

std::string type_name(py::handle o) {
  return py::str(py::type::handle_of(o).attr("__name__"));
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

bool is_missing(py::handle obj) {
  PyObject* o = obj.ptr();
  if (o == Py_None) {
    return true;
  }
  if (PyFloat_Check(o)) {
    return std::isnan(PyFloat_AS_DOUBLE(o));
  }
  // pandas.NA and pandas.NaT, by type name: pandas need not be imported to ask.
  const std::string_view type = Py_TYPE(o)->tp_name;
  return type.ends_with("NAType") || type.ends_with("NaTType");
}

std::string to_id(py::handle obj, const where& what) {
  PyObject* o = obj.ptr();
  if (PyLong_Check(o) && !PyBool_Check(o)) {
    return py::str(obj).cast<std::string>();
  }
  if (!PyUnicode_Check(o)) {
    throw py::type_error(fmt::format("{}: expected str or int, got {}", what, type_name(obj)));
  }
  return to_text(obj, what);
}

nudge::value to_column_prop(std::string_view name, py::handle obj, const where& what) {
  PyObject* o = obj.ptr();
  if ((name == "value" || name == "lat" || name == "lon") &&
      ((PyLong_Check(o) && !PyBool_Check(o)) || PyFloat_Check(o))) {
    const double d = PyFloat_AsDouble(o);
    if (d == -1.0 && PyErr_Occurred()) {
      throw py::error_already_set();
    }
    return d;
  }
  return to_value(obj, what);
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

namespace {

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

// A dict {"contact", "type", "ts", "key", "props"} or a tuple (contact, type, ts[, key[, props]]).
void read_event(py::handle item, std::size_t index, nudge::event& e) {
  PyObject* o = item.ptr();
  if (PyTuple_Check(o) || PyList_Check(o)) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
    PyObject** f = PySequence_Fast_ITEMS(o);
    if (n < 3 || n > 5) {
      throw py::value_error(fmt::format(
          "events[{}]: a tuple event is (contact, type, ts[, key[, props]]), got {} items", index,
          n));
    }
    e.contact = to_id(f[0], where{index, "contact"});
    e.type = to_text(f[1], where{index, "type"});
    e.ts = to_time(f[2], where{index, "ts"});
    if (n >= 4 && f[3] != Py_None) {
      e.key = to_id(f[3], where{index, "key"});
    }
    if (n == 5) {
      read_props(f[4], e, fmt::format("events[{}]", index));
    }
    return;
  }
  if (PyDict_Check(o)) {
    bool has_contact = false, has_type = false, has_ts = false;
    for (auto [k, v] : py::reinterpret_borrow<py::dict>(item)) {
      const auto name = to_text(k, where{index, "(field name)"});
      if (name == "contact") {
        e.contact = to_id(v, where{index, "contact"});
        has_contact = true;
      } else if (name == "type") {
        e.type = to_text(v, where{index, "type"});
        has_type = true;
      } else if (name == "ts") {
        e.ts = to_time(v, where{index, "ts"});
        has_ts = true;
      } else if (name == "key") {
        if (!is_missing(v)) {
          e.key = to_id(v, where{index, "key"});
        }
      } else if (name == "props") {
        if (!is_missing(v)) {
          read_props(v, e, fmt::format("events[{}]", index));
        }
      } else if (name == "at") {
        // The old name of the time: refused rather than read, so no event has two spellings.
        throw py::value_error(fmt::format(
            "events[{}]: unknown field \"at\" (the event's time is \"ts\", as in event files)",
            index));
      } else if (!is_missing(v) &&
                 !(PyUnicode_Check(v.ptr()) && PyUnicode_GET_LENGTH(v.ptr()) == 0)) {
        // Any other field is a prop, as an extra column of an event file is: a row of
        // DataFrame.to_dict("records") is an event. A missing value or "" is no prop, as an
        // empty cell.
        auto val = to_column_prop(name, v, where{index, name.c_str()});
        e.props.insert_or_assign(name, std::move(val));
      }
    }
    if (!has_contact || !has_type || !has_ts) {
      throw py::value_error(
          fmt::format("events[{}]: missing \"{}\" (an event needs contact, type "
                      "and ts)",
                      index, !has_contact ? "contact" : (!has_type ? "type" : "ts")));
    }
    return;
  }
  throw py::type_error(fmt::format(
      "events[{}]: expected a dict or a tuple (contact, type, ts[, key[, props]]), got {}", index,
      type_name(item)));
}

}  // namespace

std::vector<nudge::event> read_events(py::handle events) {
  if (is_data_frame(events)) {
    return read_frame_events(events);
  }
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

std::string fspath(const py::handle& path) {
  return py::module_::import("os").attr("fspath")(path).cast<std::string>();
}

}  // namespace nudge_py
