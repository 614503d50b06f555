// Conditions on the contact's workflow state: "is in workflow X (at step Y)", "has completed /
// exited workflow X" (docs/rules.md, "in_workflow"); and on its location: "within R km of a
// point", "moved more than R km" (docs/rules.md, "Location").
#include <algorithm>
#include <charconv>
#include <variant>

#include <fmt/format.h>

#include <nudge/detail/state_conditions.hpp>

namespace nudge::detail {

bool workflow_state_holds(const node& nd, const contact_state& s, const compiled_program& c) {
  const std::uint32_t w = nd.slot;
  switch (nd.kind) {
    case condition::kind::in_workflow:
      // A run on a kept older version is at the step with the same id (compiled_step::stat).
      return std::any_of(s.runs.begin(), s.runs.end(), [&](const workflow_run& r) {
        return r.workflow == w && (nd.step == none || c.workflows[w].steps[r.step].stat == nd.step);
      });
    case condition::kind::completed_workflow:
    case condition::kind::exited_workflow: {
      const auto it = s.workflow_history.find(w);
      if (it == s.workflow_history.end()) {
        return false;
      }
      return (nd.kind == condition::kind::completed_workflow ? it->second.completed
                                                             : it->second.exited) > 0;
    }
    default:
      return false;
  }
}

bool location_holds(const condition& leaf, const contact_state& s) {
  const auto& here = s.contact.location;
  if (!here) {
    return false;
  }
  if (leaf.node == condition::kind::near) {
    return distance_km(*here, leaf.point) <= leaf.radius_km;
  }
  return s.previous_location && distance_km(*s.previous_location, *here) > leaf.radius_km;
}

std::optional<geo_point> location_of(const name_map<value>& props, std::string* problem) {
  const auto lat = props.find(location_props::lat);
  const auto lon = props.find(location_props::lon);
  if (lat == props.end() && lon == props.end()) {
    return std::nullopt;
  }
  if (lat == props.end() || lon == props.end()) {
    *problem = fmt::format("props/{} without props/{} (a location needs both)",
                           lat == props.end() ? "lon" : "lat", lat == props.end() ? "lat" : "lon");
    return std::nullopt;
  }
  // Numbers, or text holding a decimal number (as CSV columns give).
  auto number = [](const value& v) -> std::optional<double> {
    if (const auto* d = std::get_if<double>(&v)) {
      return *d;
    }
    if (const auto* i = std::get_if<std::int64_t>(&v)) {
      return static_cast<double>(*i);
    }
    if (const auto* s = std::get_if<std::string>(&v)) {
      double d = 0;
      const auto [end, ec] = std::from_chars(s->data(), s->data() + s->size(), d);
      if (ec == std::errc{} && end == s->data() + s->size() && !s->empty()) {
        return d;
      }
    }
    return std::nullopt;
  };
  const auto y = number(lat->second);
  const auto x = number(lon->second);
  if (!y || !x) {
    *problem = fmt::format("props/{} is not a number", !y ? "lat" : "lon");
    return std::nullopt;
  }
  if (auto why = geo_problem(*y, *x)) {
    *problem = fmt::format("props/{}: {}", why->starts_with("latitude") ? "lat" : "lon", *why);
    return std::nullopt;
  }
  return geo_point{*y, *x};
}

}  // namespace nudge::detail
