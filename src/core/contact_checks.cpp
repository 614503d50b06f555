#include "contact_checks.hpp"

#include <fmt/format.h>

#include <nudge/delivery.hpp>

namespace nudge::detail {

bool known_channel(std::string_view channel, std::string& reason) {
  if (channel_from_name(channel)) {
    return true;
  }
  // A consent that names no channel would drop every message of the contact (no consent),
  // silently: "email,sms" (the wrong separator) is the usual cause.
  reason = fmt::format(
      "consent: unknown channel \"{}\" (known: email, sms, web_push, popup, chat; in CSV several "
      "are separated by ';', as in \"email;sms\")",
      channel);
  return false;
}

std::string unknown_zone(const contact& c) {
  return fmt::format(
      "unknown time zone \"{}\" for contact \"{}\" (neither in the rule file's \"time_zones\" "
      "nor in the system's zoneinfo)",
      c.time_zone, c.id);
}

}  // namespace nudge::detail
