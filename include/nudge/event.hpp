// nudge/event.hpp: something that happened to a contact, as the host reports it.
#pragma once

#include <string>
#include <string_view>

#include <nudge/contact.hpp>
#include <nudge/time.hpp>
#include <nudge/value.hpp>

namespace nudge {

/// Built-in event types. Hosts may send any other name (e.g. "PURCHASE") once a program
/// declares it or a rule refers to it; see program::knows_event_type.
namespace event_types {
inline constexpr std::string_view page_view = "page_view";
inline constexpr std::string_view cart = "cart";
inline constexpr std::string_view purchase = "purchase";
inline constexpr std::string_view email_open = "email_open";
inline constexpr std::string_view email_click = "email_click";
inline constexpr std::string_view signup = "signup";
/// Raised by the engine too, when an action changes the contact (key: the tag, stage, ...).
inline constexpr std::string_view tag_added = "tag_added";
inline constexpr std::string_view tag_removed = "tag_removed";
inline constexpr std::string_view stage_entered = "stage_entered";
inline constexpr std::string_view status_changed = "status_changed";
inline constexpr std::string_view owner_assigned = "owner_assigned";
inline constexpr std::string_view group_added = "group_added";
inline constexpr std::string_view group_removed = "group_removed";
inline constexpr std::string_view detail_set = "detail_set";
inline constexpr std::string_view score_changed = "score_changed";
/// Raised when segment membership changes (key: the segment's name; segment.hpp).
inline constexpr std::string_view segment_entered = "segment_entered";
inline constexpr std::string_view segment_exited = "segment_exited";
/// Raised when the contact's location moves into / out of a named area (key: the area's name;
/// geo.hpp).
inline constexpr std::string_view area_entered = "area_entered";
inline constexpr std::string_view area_exited = "area_exited";
/// Raised when the score reaches a threshold from below (key: the threshold's name).
inline constexpr std::string_view score_crossed = "score_crossed";
/// Sent by the host: this (anonymous) contact is the known contact named by the key. The engine
/// merges the two (engine.hpp, merge_states) and later events for the anonymous id go to the
/// known contact.
inline constexpr std::string_view identify = "identify";
}  // namespace event_types

/// True for the types above.
bool is_builtin_event_type(std::string_view type) noexcept;

/// One event for one contact.
///
/// Applying an event records it in the contact's history (only the aggregates rules read) and
/// triggers matching rules. A `tag_added` / `tag_removed` event also adds / removes the tag named
/// by its key, and a `stage_entered` event sets the stage to its key, so the profile agrees with
/// what the host reported.
struct event {
  std::string contact;    ///< the contact's id
  std::string type;       ///< "page_view", "purchase", or a custom name
  time_point ts;          ///< when it happened (UTC seconds)
  std::string key;        ///< URL, product, order id, tag, campaign, ...; may be empty
  name_map<value> props;  ///< small property map, e.g. {"amount": 19.99}

  friend bool operator==(const event&, const event&) = default;
};

}  // namespace nudge
