// Contact and ContactState, and the profile fields Engine.upsert_contact(s) applies.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <utility>
#include <vector>

using namespace pybind11::literals;

namespace nudge_py {

namespace {

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

}  // namespace

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

void register_contacts(py::module_& m) {
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
}

}  // namespace nudge_py
