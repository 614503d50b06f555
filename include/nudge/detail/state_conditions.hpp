// nudge/detail/state_conditions.hpp: condition leaves that read the contact's workflow state.
// Not part of the API.
#pragma once

#include <nudge/contact_state.hpp>
#include <nudge/detail/compiled.hpp>

namespace nudge::detail {

/// in_workflow / completed_workflow / exited_workflow leaf `nd` on state `s`.
bool workflow_state_holds(const node& nd, const contact_state& s, const compiled_program& c);

}  // namespace nudge::detail
