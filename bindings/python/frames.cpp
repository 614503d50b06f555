// Due actions as a pandas DataFrame (ReplayResult.to_frame, nudge.actions_frame): one pass over
// the actions fills one array per column, then a single pd.DataFrame call. No per-row dict or
// DueAction object is made: the column arrays hold plain values, and the strings that repeat
// (rule, action, step, arg, params) are made once and shared.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>

#include <pybind11/numpy.h>

using namespace pybind11::literals;

namespace nudge_py {

namespace {

// pandas' datetime64[ns] holds 1677-09-21 .. 2262-04-11; nudge's input range is wider.
constexpr std::int64_t max_ns_seconds = std::numeric_limits<std::int64_t>::max() / 1'000'000'000;

py::module_ import_pandas(const char* who) {
  try {
    return py::module_::import("pandas");
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_ImportError)) {
      throw;
    }
    throw py::import_error(
        fmt::format("{} needs pandas (Debian: apt-get install python3-pandas)", who));
  }
}

// A numpy object array of n entries whose items are set (references stolen) one by one.
class object_column {
 public:
  object_column(const py::module_& np, std::size_t n)
      : array_(np.attr("empty")(n, "dtype"_a = "object")) {
    data_ = static_cast<PyObject**>(py::array(array_).mutable_data());
  }
  void set(std::size_t i, py::object value) {
    PyObject* old = data_[i];
    data_[i] = value.release().ptr();
    Py_XDECREF(old);
  }
  const py::object& array() const noexcept { return array_; }

 private:
  py::object array_;
  PyObject** data_ = nullptr;
};

py::str text(std::string_view s) {
  return py::str(s.data(), s.size());
}

// The CSV's rule column ("workflow/step" for a step's action) as categorical codes, with every
// rule and workflow step of the program as a category in program order: a rule that never fired
// still shows (with 0) in a groupby or value_counts. Steps of a workflow's previous versions
// (runs still walking them) are added as they come.
class rule_codes {
 public:
  explicit rule_codes(const nudge::program& p) {
    const auto& rs = p.rules();
    for (const auto& r : rs.rules) {
      categories_.push_back(r.id);
    }
    steps_.resize(rs.workflows.size());
    for (std::size_t w = 0; w < rs.workflows.size(); ++w) {
      for (const auto& s : rs.workflows[w].steps) {
        steps_[w].emplace(std::string_view{s.id}, static_cast<std::int32_t>(categories_.size()));
        categories_.push_back(fmt::format("{}/{}", rs.workflows[w].id, s.id));
      }
    }
  }
  std::int32_t code(const nudge::due_action& a) {
    if (!a.from_workflow()) {
      return static_cast<std::int32_t>(a.rule_index);
    }
    if (a.rule_index < steps_.size()) {
      if (auto it = steps_[a.rule_index].find(a.step); it != steps_[a.rule_index].end()) {
        return it->second;
      }
    }
    auto name = fmt::format("{}/{}", a.rule, a.step);
    auto [it, fresh] = extra_.emplace(name, static_cast<std::int32_t>(categories_.size()));
    if (fresh) {
      categories_.push_back(std::move(name));
    }
    return it->second;
  }
  const std::vector<std::string>& categories() const noexcept { return categories_; }

 private:
  std::vector<std::string> categories_;
  std::vector<std::unordered_map<std::string_view, std::int32_t>> steps_;
  std::unordered_map<std::string, std::int32_t> extra_;
};

// One shared Python object per distinct string view (they point into the program, which
// outlives this call), so a column of 100,000 template names holds a handful of str objects.
class text_cache {
 public:
  py::object get(std::string_view s) {
    const auto key = std::pair{s.data(), s.size()};
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      it = cache_.emplace(key, text(s)).first;
    }
    return it->second;
  }

 private:
  struct hash {
    std::size_t operator()(const std::pair<const char*, std::size_t>& k) const noexcept {
      return std::hash<const void*>{}(k.first) ^ (k.second * 0x9e3779b97f4a7c15ULL);
    }
  };
  std::unordered_map<std::pair<const char*, std::size_t>, py::object, hash> cache_;
};

}  // namespace

py::object actions_frame(std::span<const nudge::due_action> actions,
                         const std::shared_ptr<const nudge::program>& program) {
  const py::module_ pd = import_pandas("to_frame");
  const py::module_ np = py::module_::import("numpy");
  const std::size_t n = actions.size();

  py::array_t<std::int64_t> ts(static_cast<py::ssize_t>(n));
  py::array_t<std::uint64_t> keys(static_cast<py::ssize_t>(n));
  py::array_t<std::int32_t> rule_code(static_cast<py::ssize_t>(n));
  py::array_t<std::int8_t> action_code(static_cast<py::ssize_t>(n));
  object_column contact(np, n), arg(np, n), step(np, n), params(np, n);
  auto* ts_out = ts.mutable_data();
  auto* key_out = keys.mutable_data();
  auto* rule_out = rule_code.mutable_data();
  auto* action_out = action_code.mutable_data();

  rule_codes rules{*program};
  // Action categories: the kinds that occur, in nudge's order (action_kind).
  constexpr std::size_t kinds = static_cast<std::size_t>(nudge::action_kind::remove_from_group) + 1;
  bool seen[kinds] = {};
  text_cache strings;
  std::unordered_map<const nudge::action*, py::object> params_of_definition;

  const std::string* previous_contact = nullptr;
  py::object previous_contact_str;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& a = actions[i];
    const std::int64_t s = nudge::to_epoch(a.ts);
    if (s > max_ns_seconds || s < -max_ns_seconds) {
      throw py::value_error(
          fmt::format("to_frame: action {} is due at {}, outside what pandas' datetime64[ns] holds "
                      "(1677-09-22 to 2262-04-11)",
                      i, nudge::format_time(a.ts)));
    }
    ts_out[i] = s * 1'000'000'000;
    key_out[i] = a.idempotency_key;
    rule_out[i] = rules.code(a);
    const auto k = static_cast<std::size_t>(a.kind);
    seen[k] = true;
    action_out[i] = static_cast<std::int8_t>(k);  // remapped to the seen kinds below
    // Actions come sorted by (ts, contact): one contact's actions often follow each other.
    if (previous_contact == nullptr || *previous_contact != a.contact) {
      previous_contact_str = text(a.contact);
      previous_contact = &a.contact;
    }
    contact.set(i, previous_contact_str);
    arg.set(i, strings.get(a.arg));
    step.set(i, a.from_workflow() ? strings.get(a.step) : py::none());
    auto [it, fresh] = params_of_definition.try_emplace(a.definition);
    if (fresh) {
      py::dict d;
      if (a.definition != nullptr) {
        for (const auto& [name, value] : a.definition->params) {
          d[py::str(name)] = py::str(value);
        }
      }
      it->second = std::move(d);
    }
    params.set(i, it->second);
  }

  std::int8_t remap[kinds] = {};
  py::list action_categories;
  for (std::size_t k = 0; k < kinds; ++k) {
    if (seen[k]) {
      remap[k] = static_cast<std::int8_t>(py::len(action_categories));
      action_categories.append(text(nudge::action_name(static_cast<nudge::action_kind>(k))));
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    action_out[i] = remap[static_cast<std::size_t>(action_out[i])];
  }

  const py::object categorical = pd.attr("Categorical").attr("from_codes");
  const py::object series = pd.attr("Series");
  py::dict columns;
  columns["ts"] = pd.attr("to_datetime")(ts.attr("view")("datetime64[ns]"), "utc"_a = true);
  columns["contact"] = series(contact.array(), "dtype"_a = "object", "copy"_a = false);
  columns["rule"] = categorical(rule_code, "categories"_a = py::cast(rules.categories()));
  columns["action"] = categorical(action_code, "categories"_a = action_categories);
  columns["arg"] = series(arg.array(), "dtype"_a = "object", "copy"_a = false);
  columns["step"] = series(step.array(), "dtype"_a = "object", "copy"_a = false);
  columns["params"] = series(params.array(), "dtype"_a = "object", "copy"_a = false);
  columns["idempotency_key"] = keys;
  return pd.attr("DataFrame")(columns, "copy"_a = false);
}

}  // namespace nudge_py
