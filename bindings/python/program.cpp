// Program (a compiled rule program, from JSON text, a dict or a file) and Diagnostic (one problem
// in a rule file).
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <string>
#include <vector>

#include <nudge/io/load_rules.hpp>

using namespace pybind11::literals;

namespace nudge_py {

namespace {

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

std::string match_text(const nudge::event_match& m) {
  switch (m.match) {
    case nudge::key_match::exact:
      return fmt::format("{} {}", m.type, m.key);
    case nudge::key_match::prefix:
      return fmt::format("{} {}*", m.type, m.key);
    case nudge::key_match::any:
      break;
  }
  return m.type;
}

std::string actions_text(const std::vector<nudge::action>& actions) {
  std::string out;
  for (const auto& a : actions) {
    out += fmt::format("{}{}{}{}", out.empty() ? "" : "; ", nudge::action_name(a.kind),
                       a.arg.empty() ? "" : " ", a.arg);
  }
  return out;
}

// One row (kind, id, on, delay, does) per rule, workflow and segment, for Program._repr_html_
// (nudge/_display.py makes the table and escapes it).
py::list outline(const nudge::program& p) {
  py::list rows;
  const auto& rs = p.rules();
  for (const auto& r : rs.rules) {
    const std::string delay = r.delay_months != 0    ? fmt::format("{}mo", r.delay_months)
                              : r.delay.count() == 0 ? std::string{}
                                                     : nudge::format_duration(r.delay);
    rows.append(
        py::make_tuple("rule", r.id, match_text(r.trigger), delay, actions_text(r.actions)));
  }
  for (const auto& w : rs.workflows) {
    const std::string on = w.entry.kind == nudge::entry_kind::event
                               ? match_text(w.entry.on)
                               : fmt::format("date {}", w.entry.detail);
    rows.append(py::make_tuple("workflow", w.id, on, "", fmt::format("{} steps", w.steps.size())));
  }
  for (const auto& sg : rs.segments) {
    rows.append(py::make_tuple("segment", sg.name, "", "", ""));
  }
  return rows;
}

}  // namespace

void register_program(py::module_& m) {
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
      .def("_outline", &outline,
           "(kind, id, on, delay, does) per rule, workflow and segment: what _repr_html_ shows.")
      .def(
          "_repr_html_",
          [](const py::object& self) {
            return py::module_::import("nudge._display").attr("program_html")(self);
          },
          "The program as an HTML table, for notebooks.")
      .def("__len__", &nudge::program::rule_count,
           "The number of rules (counts has the workflows, segments and score rules too).")
      .def_property_readonly(
          "counts",
          [](const nudge::program& p) {
            const auto& r = p.rules();
            py::dict d;
            d["rules"] = r.rules.size();
            d["workflows"] = r.workflows.size();
            d["segments"] = r.segments.size();
            d["scoring"] = r.scoring.rules.size();
            return d;
          },
          "What the program holds, as `nudge check` prints it: {\"rules\", \"workflows\", "
          "\"segments\", \"scoring\" (score rules)} to counts.")
      .def("knows_event_type", &nudge::program::knows_event_type, "type"_a,
           "True for built-in types, declared types and types any rule mentions.")
      .def("__repr__", [](const nudge::program& p) {
        std::string ids;
        for (const auto& r : p.rules().rules) {
          ids += ids.empty() ? r.id : ", " + r.id;
        }
        return fmt::format("Program({} rules: {})", p.rule_count(), ids);
      });
}

}  // namespace nudge_py
