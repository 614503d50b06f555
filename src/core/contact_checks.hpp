// Internal: checks of a contacts file's values that used to fall back silently (issue 14).
#pragma once

#include <string>
#include <string_view>

#include <nudge/contact.hpp>

namespace nudge::detail {

/// Whether `channel` is a delivery channel (email, sms, web_push, popup, chat); if not, sets
/// `reason` to a message naming the known channels and the ';' separator.
bool known_channel(std::string_view channel, std::string& reason);

/// The reason a contact's time_zone is refused: it names the zone, the contact and where zones
/// come from.
std::string unknown_zone(const contact& c);

}  // namespace nudge::detail
