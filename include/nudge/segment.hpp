// nudge/segment.hpp: dynamic segments: named conditions whose membership the engine keeps current.
//
// A segment is a condition in the rule language (condition.hpp) with a name. After every event
// it applies (the host's or one an action raised) and whenever a window edge passes, the engine
// re-evaluates every segment of the contact; a change of membership raises a `segment_entered`
// or `segment_exited` event (key: the segment's name) that rules can trigger on, and the
// `in_segment("name")` leaf reads the membership. Membership changes exactly at the second a
// window boundary passes: the engine keeps one timer per contact at the next instant a windowed
// leaf of some segment changes its value, not a periodic recompute. See docs/rules.md,
// "Segments", for the exact ordering.
#pragma once

#include <string>
#include <utility>

#include <nudge/condition.hpp>

namespace nudge {

/// A named condition over the contact's profile and behaviour.
///
/// Example: "at least 3 visits in the last 7 days"
///
///     nudge::segment active{"active",
///                           nudge::happened(nudge::on("page_view")).within(nudge::days(7))
///                               .at_least(3)};
///
/// Restrictions (checked by program::compile): the name is unique and not empty; the condition
/// has no `since_trigger` windows (a segment has no trigger); `in_segment` names only segments
/// defined earlier in the list, so membership is evaluated in one pass in list order.
struct segment {
  std::string name;
  nudge::condition condition = always();  ///< JSON "if"

  friend bool operator==(const segment&, const segment&) = default;
};

/// Event types the engine raises when membership changes; the key is the segment's name.
/// (Also in nudge::event_types.)
inline event_match on_segment_entered(std::string name) {
  return on("segment_entered", std::move(name));
}
inline event_match on_segment_exited(std::string name) {
  return on("segment_exited", std::move(name));
}

}  // namespace nudge
