// A pandas DataFrame of events, read column by column: the columns of an event file (ts,
// contact, type, key; every other column a prop, as in a CSV file; a "props" column of dicts
// too). Numeric and datetime columns are read from their numpy arrays without a Python object
// per cell; text and object columns cell by cell. Errors name the row (its position) and the
// column.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>

#include <pybind11/numpy.h>

using namespace pybind11::literals;

namespace nudge_py {

namespace {

constexpr std::int64_t nat = std::numeric_limits<std::int64_t>::min();

// A column's values as a C-contiguous array: the loops below read the raw buffer, and a column
// of a sliced or reversed frame is a strided view (pybind11 copies it then).
template <class T>
using column_array = py::array_t<T, py::array::c_style | py::array::forcecast>;

// floor(ns / 1e9): towards the earlier second, as every other reader of times.
std::int64_t floor_seconds(std::int64_t ns) {
  std::int64_t s = ns / 1'000'000'000;
  if (ns % 1'000'000'000 < 0) {
    --s;
  }
  return s;
}

char kind_of(const py::object& column) {
  return py::str(column.attr("dtype").attr("kind")).cast<std::string>().at(0);
}

// A datetime64 column (aware: converted to UTC; naive: read as UTC, which is what
// pd.to_datetime(epoch, unit="s") makes) as nanoseconds since the epoch; NaT is `nat`.
column_array<std::int64_t> nanoseconds(const py::object& column) {
  py::object values = column.attr("to_numpy")("dtype"_a = "datetime64[ns]");
  auto a = column_array<std::int64_t>::ensure(values.attr("view")("int64"));
  if (!a) {
    throw py::type_error("events: a datetime column cannot be read as nanoseconds");
  }
  return a;
}

template <class T>
column_array<T> numbers(const py::object& column, const char* dtype) {
  auto a = column_array<T>::ensure(column.attr("to_numpy")("dtype"_a = dtype));
  if (!a) {
    throw py::type_error(fmt::format("events: a column cannot be read as {}", dtype));
  }
  return a;
}

// The column as a contiguous numpy object array (text, categorical, mixed): one Python object
// per cell.
py::array objects(const py::object& column) {
  return py::module_::import("numpy").attr("ascontiguousarray")(
      column.attr("to_numpy")("dtype"_a = "object"));
}

void read_ts(const py::object& column, const char* name, std::vector<nudge::event>& out) {
  char kind = kind_of(column);
  if (kind == 'i' && column.attr("hasnans").cast<bool>()) {
    kind = 'O';  // a nullable Int64 column with pandas.NA: the missing cell is named below
  }
  const std::size_t n = out.size();
  auto missing = [&](std::size_t i) {
    return py::value_error(fmt::format("{}: the time is missing", where::cell(i, name)));
  };
  if (kind == 'M') {
    const auto ns = nanoseconds(column);
    const auto* v = ns.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (v[i] == nat) {
        throw missing(i);
      }
      out[i].ts = epoch_time(floor_seconds(v[i]), where::cell(i, name));
    }
  } else if (kind == 'i') {
    const auto a = numbers<std::int64_t>(column, "int64");
    const auto* v = a.data();
    for (std::size_t i = 0; i < n; ++i) {
      out[i].ts = epoch_time(v[i], where::cell(i, name));
    }
  } else if (kind == 'f') {
    const auto a = numbers<double>(column, "float64");
    const auto* v = a.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(v[i])) {
        throw missing(i);
      }
      out[i].ts = to_time(py::float_(v[i]), where::cell(i, name));
    }
  } else {
    // Objects: aware datetimes / Timestamps, ISO-8601 strings, epoch seconds (a naive datetime
    // object is refused, as everywhere in the Python API).
    const auto a = objects(column);
    auto* const* v = static_cast<PyObject* const*>(a.data());
    for (std::size_t i = 0; i < n; ++i) {
      const py::handle cell{v[i]};
      if (is_missing(cell)) {
        throw missing(i);
      }
      out[i].ts = to_time(cell, where::cell(i, name));
    }
  }
}

// contact, type or key: str cells (or ints, which pd.read_csv makes of numeric ids).
void read_text(const py::object& column, const std::string& name, std::vector<nudge::event>& out) {
  const auto a = objects(column);
  auto* const* v = static_cast<PyObject* const*>(a.data());
  const bool optional = name == "key";
  for (std::size_t i = 0; i < out.size(); ++i) {
    const py::handle cell{v[i]};
    const auto w = where::cell(i, name.c_str());
    if (is_missing(cell)) {
      if (optional) {
        continue;
      }
      throw py::value_error(fmt::format("{}: the {} is missing", w, name));
    }
    auto& e = out[i];
    if (name == "contact") {
      e.contact = to_id(cell, w);
    } else if (name == "type") {
      e.type = to_text(cell, w);
    } else {
      e.key = to_id(cell, w);
    }
  }
}

// A prop column: a missing cell (NaN, None, NaT, pandas.NA) or "" is no prop, as an empty cell
// of a CSV file. value, lat and lon are floats, as the file readers make them.
void read_prop(const py::object& column, const std::string& name, std::vector<nudge::event>& out) {
  char kind = kind_of(column);
  if ((kind == 'i' || kind == 'b') && column.attr("hasnans").cast<bool>()) {
    kind = 'O';  // pandas' nullable Int64 / boolean with pandas.NA cells: read cell by cell
  }
  const std::size_t n = out.size();
  const bool number = name == "value" || name == "lat" || name == "lon";
  if (kind == 'f') {
    const auto a = numbers<double>(column, "float64");
    const auto* v = a.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isnan(v[i])) {
        out[i].props.insert_or_assign(name, v[i]);
      }
    }
  } else if (kind == 'i') {
    const auto a = numbers<std::int64_t>(column, "int64");
    const auto* v = a.data();
    for (std::size_t i = 0; i < n; ++i) {
      out[i].props.insert_or_assign(
          name, number ? nudge::value{static_cast<double>(v[i])} : nudge::value{v[i]});
    }
  } else if (kind == 'b') {
    const auto a = numbers<bool>(column, "bool");
    const auto* v = a.data();
    for (std::size_t i = 0; i < n; ++i) {
      out[i].props.insert_or_assign(name, v[i]);
    }
  } else if (kind == 'M') {
    const auto ns = nanoseconds(column);
    const auto* v = ns.data();
    for (std::size_t i = 0; i < n; ++i) {
      if (v[i] != nat) {
        out[i].props.insert_or_assign(
            name, epoch_time(floor_seconds(v[i]), where::cell(i, name.c_str())));
      }
    }
  } else {
    const auto a = objects(column);
    auto* const* v = static_cast<PyObject* const*>(a.data());
    for (std::size_t i = 0; i < n; ++i) {
      const py::handle cell{v[i]};
      if (is_missing(cell) ||
          (PyUnicode_Check(cell.ptr()) && PyUnicode_GET_LENGTH(cell.ptr()) == 0)) {
        continue;
      }
      out[i].props.insert_or_assign(name, to_column_prop(name, cell, where::cell(i, name.c_str())));
    }
  }
}

// A "props" column: a dict per row (or a missing value), as the "props" of an event dict.
void read_props_column(const py::object& column, std::vector<nudge::event>& out) {
  const auto a = objects(column);
  auto* const* v = static_cast<PyObject* const*>(a.data());
  for (std::size_t i = 0; i < out.size(); ++i) {
    const py::handle cell{v[i]};
    if (is_missing(cell)) {
      continue;
    }
    if (!PyDict_Check(cell.ptr())) {
      throw py::type_error(
          fmt::format("{}: expected a dict, got {}", where::cell(i, "props"), type_name(cell)));
    }
    for (auto [k, val] : py::reinterpret_borrow<py::dict>(cell)) {
      auto key = to_text(k, fmt::format("{} key", where::cell(i, "props")));
      auto x = to_value(val, fmt::format("{}[{}]", where::cell(i, "props"), key));
      out[i].props.insert_or_assign(std::move(key), std::move(x));
    }
  }
}

}  // namespace

bool is_data_frame(py::handle obj) {
  PyObject* o = obj.ptr();
  if (PyList_Check(o) || PyTuple_Check(o)) {
    return false;  // the common case, answered without a lookup
  }
  // A DataFrame exists only if pandas was imported: look it up rather than import it, so the
  // module never loads pandas for a caller that does not use it. Subclasses count.
  PyObject* pandas = PyDict_GetItemString(PyImport_GetModuleDict(), "pandas");
  if (pandas == nullptr) {
    return false;
  }
  const py::object frame = py::getattr(pandas, "DataFrame", py::none());
  if (frame.is_none()) {
    return false;
  }
  const int is = PyObject_IsInstance(o, frame.ptr());
  if (is < 0) {
    throw py::error_already_set();
  }
  return is == 1;
}

std::vector<nudge::event> read_frame_events(py::handle frame) {
  const py::object df = py::reinterpret_borrow<py::object>(frame);
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (auto c : df.attr("columns")) {
    if (!PyUnicode_Check(c.ptr())) {
      throw py::type_error(fmt::format("events: DataFrame column names must be str, got {} ({})",
                                       type_name(c), py::repr(c).cast<std::string>()));
    }
    auto name = c.cast<std::string>();
    if (!seen.insert(name).second) {
      throw py::value_error(fmt::format("events: column \"{}\" appears twice", name));
    }
    if (name == "at") {
      throw py::value_error(
          "events: unknown column \"at\" (the event's time is \"ts\", as in event files)");
    }
    names.push_back(std::move(name));
  }
  for (const char* required : {"ts", "contact", "type"}) {
    if (!seen.contains(required)) {
      throw py::value_error(fmt::format(
          "events: missing column \"{}\" (a DataFrame of events has the columns of an event "
          "file: ts, contact, type, key and props)",
          required));
    }
  }
  std::vector<nudge::event> out(py::len(df));
  const py::object iloc = df.attr("iloc");
  for (std::size_t col = 0; col < names.size(); ++col) {
    const auto& name = names[col];
    const py::object column =
        iloc[py::make_tuple(py::slice(py::none(), py::none(), py::none()), py::int_(col))];
    if (name == "ts") {
      read_ts(column, "ts", out);
    } else if (name == "contact" || name == "type" || name == "key") {
      read_text(column, name, out);
    } else if (name == "props") {
      read_props_column(column, out);
    } else {
      read_prop(column, name, out);
    }
  }
  return out;
}

}  // namespace nudge_py
