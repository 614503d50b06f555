// nudge/contact_state.hpp: everything the engine keeps for one contact between batches.
//
// The profile plus the event-history aggregates the program's rules read, the memory of rule
// runs that re-entry policies and caps need, and pending timers. The state belongs to the
// program it was produced with (aggregates and timers refer to its rules by position).
#pragma once

#include <cstdint>
#include <vector>

#include <boost/container/flat_map.hpp>
#include <boost/container/small_vector.hpp>

#include <nudge/contact.hpp>
#include <nudge/time.hpp>
#include <nudge/timeline.hpp>

namespace nudge {

/// Aggregates of one kind of event (a type and key pattern that some condition reads).
struct history_slot {
  std::int64_t count = 0;      ///< lifetime count
  time_point first{}, last{};  ///< valid when count > 0
  /// The most recent event times, oldest first, as many as the program's windows need.
  boost::container::small_vector<time_point, 2> recent;
  friend bool operator==(const history_slot&, const history_slot&) = default;
};

/// Past passing runs of one rule, for re-entry policies and frequency caps.
struct rule_memory {
  std::int64_t runs = 0;
  time_point last{};  ///< the latest run (valid when runs > 0)
  /// Earlier run times, oldest first, kept only for caps of more than one run per window
  /// (empty, and free to move, for once / once_per / a cap of 1: the common case).
  std::vector<time_point> earlier;
  friend bool operator==(const rule_memory&, const rule_memory&) = default;
};

/// A pending delayed check or delayed action.
struct timer {
  time_point due_at;
  std::uint64_t sequence = 0;         ///< scheduling order; ties at one instant fire in this order
  std::uint32_t rule = 0;             ///< rule index in the program
  std::int32_t action = -1;           ///< -1: the rule's delayed check; else the action's index
  time_point triggered_at;            ///< the trigger event's time ("since trigger" windows)
  std::uint64_t trigger_ordinal = 0;  ///< the trigger event's ordinal (idempotency keys)
  friend bool operator==(const timer&, const timer&) = default;
};

/// One contact's whole state.
struct contact_state {
  nudge::contact contact;
  std::vector<history_slot> history;  ///< one slot per aggregate the program derived
  boost::container::flat_map<std::uint32_t, rule_memory> rule_runs;  ///< by rule index
  std::vector<timer> timers;  ///< sorted by (due_at, sequence)
  /// Latest instant the contact was evaluated at (last applied event or fired timer). Events
  /// older than this are rejected: applying them would rewrite a past that timers already saw.
  time_point clock = min_time;
  std::uint64_t events_applied = 0;  ///< ordinal of the next event (external or raised)
  std::uint64_t timers_scheduled = 0;
  /// What the engine did for this contact and why, newest last; bounded by the program's
  /// timeline_size (empty when that is 0). See timeline.hpp.
  nudge::timeline timeline;

  /// Earliest pending timer, or max_time when none.
  time_point next_due() const { return timers.empty() ? max_time : timers.front().due_at; }
  friend bool operator==(const contact_state&, const contact_state&) = default;
};

}  // namespace nudge
