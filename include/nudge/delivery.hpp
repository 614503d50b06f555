// nudge/delivery.hpp: the delivery policy: consent, frequency caps per channel, quiet hours and
// send windows in the contact's time zone, with defer-or-skip and priority.
//
// A policy governs messages to the contact: actions on a channel (send_email -> email,
// send_sms -> sms, web_push -> web_push, show_popup -> popup, send_chat -> chat). Other
// external actions (notify_owner, generate_coupon, webhook) and internal actions never are.
//
// Decision for one message at instant t (in this order):
//   1. transactional (action::transactional): sent at once; exempt from consent, caps and hours,
//      and not counted by caps.
//   2. consent: the contact's consent[channel] must be true (a missing entry is no consent);
//      otherwise the message is suppressed (never deferred: waiting would not bring consent).
//   3. caps: each cap {channel, max, per} of the policy counts the contact's earlier non-
//      transactional messages on that channel in (t - per, t]; at `max` the message is capped:
//      on_cap = skip suppresses it, defer postpones it to the first instant every cap (and the
//      hours below) allow.
//   4. hours: quiet hours, send hours and weekdays, read on the contact's local clock; outside
//      them on_quiet_hours = skip suppresses, defer postpones to the next allowed instant.
// A deferred message is a timer; when it comes due it goes through 2 to 4 again (consent may
// have been withdrawn, another message may have taken the slot) and keeps its idempotency key.
//
// Priority: all messages of one contact due at the same instant (from any rule, new or
// deferred) are decided together after everything else at that instant ran, in descending
// priority, ties in emission order; each message sent counts against the caps of the ones after
// it. So with "2 e-mails per 24 h" and three e-mails due at once, the two of highest priority go.
//
// Local time and daylight saving: an instant is allowed when the wall-clock time the contact
// sees at that instant is allowed. A window opening at a local time that does not exist (the
// spring-forward gap) opens at the first instant after the gap (02:30 on a day when clocks jump
// from 02:00 to 03:00 -> 03:00 new time); a local time that exists twice (fall back) is reached
// first at its earlier occurrence, and wall-clock time in the repeated hour is judged again as it
// repeats (quiet hours until 02:30 end at the first 02:30, and begin again at the second 02:00).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/action.hpp>
#include <nudge/contact.hpp>
#include <nudge/time.hpp>
#include <nudge/zones.hpp>

namespace nudge {

/// Channels the contact consents to; consent keys are their names.
enum class channel : std::uint8_t { email, sms, web_push, popup, chat };
inline constexpr std::size_t channel_count = 5;

/// "email", "sms", "web_push", "popup", "chat".
std::string_view channel_name(channel c) noexcept;
std::optional<channel> channel_from_name(std::string_view name) noexcept;
/// The channel an action sends on, or nullopt for actions that are not messages to the contact.
std::optional<channel> channel_of(action_kind k) noexcept;

/// At most `max_messages` non-transactional messages on `on` in any window (t - per, t].
struct channel_cap {
  channel on = channel::email;
  std::int64_t max_messages = 1;
  duration per{0};
  friend bool operator==(const channel_cap&, const channel_cap&) = default;
};

/// Local times of day [from, to), in seconds after local midnight; from > to wraps midnight
/// (21:00 to 08:00). from == to is not allowed (validation).
struct local_hours {
  std::int32_t from_seconds = 0;
  std::int32_t to_seconds = 0;
  friend bool operator==(const local_hours&, const local_hours&) = default;
};

/// What happens to a message the policy refuses for now.
enum class on_refusal : std::uint8_t {
  defer,  ///< postpone to the next instant the policy allows
  skip,   ///< drop it (recorded in the statistics and timeline)
};

/// Weekday bits: Monday is bit 0, Sunday bit 6.
inline constexpr std::uint8_t all_weekdays = 0x7f;

/// A delivery policy: the rule set's default, or a rule's or workflow's own (rule.hpp,
/// workflow.hpp). A workflow's send step whose message is deferred holds its run at the step
/// until the message goes out or is dropped.
struct delivery_policy {
  bool require_consent = true;
  std::vector<channel_cap> caps;
  std::optional<local_hours> quiet_hours;  ///< no messages in these local hours
  std::optional<local_hours> send_hours;   ///< messages only in these local hours
  std::uint8_t weekdays = all_weekdays;    ///< messages only on these local weekdays
  on_refusal on_cap = on_refusal::defer;
  on_refusal on_quiet_hours = on_refusal::defer;  ///< quiet hours, send hours and weekdays
  std::int32_t priority = 0;  ///< higher wins a capped slot among messages due at one instant
  friend bool operator==(const delivery_policy&, const delivery_policy&) = default;
};

/// The rule set's delivery section: the default policy and the time zones.
///
/// Time zones are resolved when the program is compiled, never during evaluation: names in
/// `time_zones` take the given POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3"), which describes
/// one set of yearly rules for every year; with `use_system_zones`, the other names come from
/// the zone provider the host passes to program::compile (nudge/zones.hpp; load_rules passes
/// the system's tz database, with each zone's historical transitions, by default). Compiled
/// without a provider, only `time_zones` and "UTC" resolve. A contact whose zone is empty or
/// unknown to the program uses `default_time_zone`.
struct delivery_settings {
  delivery_policy defaults;
  std::string default_time_zone = "UTC";
  name_map<std::string> time_zones;  ///< IANA-style name -> POSIX TZ rule
  bool use_system_zones = true;      ///< resolve other names through the zone provider
  friend bool operator==(const delivery_settings&, const delivery_settings&) = default;
};

}  // namespace nudge
