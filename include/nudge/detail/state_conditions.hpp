// nudge/detail/state_conditions.hpp: condition leaves that read the contact's workflow state.
// Not part of the API.
#pragma once

#include <optional>
#include <string>

#include <nudge/contact_state.hpp>
#include <nudge/detail/compiled.hpp>

namespace nudge::detail {

/// in_workflow / completed_workflow / exited_workflow leaf `nd` on state `s`.
bool workflow_state_holds(const node& nd, const contact_state& s, const compiled_program& c);

/// near / moved leaf `leaf` on state `s`.
bool location_holds(const condition& leaf, const contact_state& s);

/// The location an event's props set: both `lat` and `lon` as numbers; nullopt when the props
/// have neither. `problem` gets why they are unusable (one without the other, not a number, out
/// of range), "props/lat: latitude 91 is outside -90 to 90".
std::optional<geo_point> location_of(const name_map<value>& props, std::string* problem);

}  // namespace nudge::detail
