// The walker's segments and areas.
#include "walker.hpp"

namespace nudge::json_rules {

// The members of a circle: "lat", "lon" (when `p` is given) and "km", each a required number.
// Ranges are program::compile's to check (located the same way). False on a problem.
bool walker::circle_at(const json::object& o, const path& at, geo_point* p, double& km) {
  bool ok = true;
  auto read = [&](std::string_view key, double& into) {
    const auto* v = o.if_contains(key);
    if (v == nullptr) {
      fail(at, "missing_field", fmt::format("missing required field {}", quoted(key)));
      ok = false;
    } else if (auto d = number(*v, child(at, key))) {
      into = *d;
    } else {
      ok = false;
    }
  };
  if (p != nullptr) {
    read("lat", p->lat);
    read("lon", p->lon);
  }
  read("km", km);
  return ok;
}

// "areas": [{"name", "lat", "lon", "km", "description"}]
void walker::areas_at(const json::value& v, rule_set& out) {
  const path aat = child(root_at, "areas");
  const json::array* a = array_at(v, aat);
  if (a == nullptr) {
    return;
  }
  for (std::size_t i = 0; i < a->size(); ++i) {
    const path at = child(aat, i);
    const json::object* o = object_at((*a)[i], at);
    if (o == nullptr) {
      continue;
    }
    check_fields(*o, at, {"name", "description", "lat", "lon", "km"});
    area ar;
    if (const auto* n = o->if_contains("name")) {
      if (auto nm = name(*n, child(at, "name"), "an area name")) {
        ar.name = std::move(*nm);
      }
    } else {
      fail(at, "missing_field", "missing required field \"name\"");
    }
    if (const auto* d = o->if_contains("description")) {
      string(*d, child(at, "description"));
    }
    circle_at(*o, at, &ar.center, ar.radius_km);
    out.areas.push_back(std::move(ar));
  }
}

void walker::segments(const json::value& v, rule_set& out) {
  const path sat = child(root_at, "segments");
  const json::array* a = array_at(v, sat);
  if (a == nullptr) {
    return;
  }
  std::unordered_map<std::string_view, std::size_t> first_with_name;
  // Names first: a segment may refer to an earlier one, rules to any.
  for (const auto& item : *a) {
    const json::value* n = item.is_object() ? item.get_object().if_contains("name") : nullptr;
    segment_names_.push_back(n != nullptr && n->is_string() ? std::string{n->get_string()}
                                                            : std::string{});
  }
  for (std::size_t i = 0; i < a->size(); ++i) {
    const path at = child(sat, i);
    const json::object* o = object_at((*a)[i], at);
    current_segment_ = i;
    if (o == nullptr) {
      continue;
    }
    check_fields(*o, at, {"name", "description", "if"});
    segment sg;
    if (const auto* n = o->if_contains("name")) {
      if (auto nm = name(*n, child(at, "name"), "a segment name")) {
        sg.name = std::move(*nm);
        if (auto [it, fresh] = first_with_name.emplace(std::string_view{n->get_string()}, i);
            !fresh) {
          fail(child(at, "name"), "duplicate_name",
               fmt::format("duplicate segment name {} (first used by /segments/{})",
                           quoted(sg.name), it->second));
        }
      }
    } else {
      fail(at, "missing_field", "missing required field \"name\"");
    }
    if (const auto* d = o->if_contains("description")) {
      string(*d, child(at, "description"));
    }
    if (const auto* c = o->if_contains("if")) {
      if (auto cc = condition_at(*c, child(at, "if"), 1)) {
        sg.condition = std::move(*cc);
      }
    } else {
      fail(at, "missing_field", "missing required field \"if\"");
    }
    out.segments.push_back(std::move(sg));
  }
  current_segment_ = npos;
}

}  // namespace nudge::json_rules
