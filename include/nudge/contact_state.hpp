// nudge/contact_state.hpp: everything the engine keeps for one contact between batches.
//
// The profile plus the event-history aggregates the program's rules read, the memory of rule
// runs that re-entry policies and caps need, and pending timers. The state belongs to the
// program it was produced with (aggregates and timers refer to its rules by position).
#pragma once

#include <cstdint>
#include <string>
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

/// A numeric event property at one instant, for sum / average windows.
struct timed_value {
  time_point at;
  double amount = 0;
  friend bool operator==(const timed_value&, const timed_value&) = default;
};

/// The property values of one kind of event (type, key pattern and property) that a sum or
/// average leaf reads: the events of the longest window reading it, oldest first, at most
/// program_limits::max_kept_count of them (the newest are kept).
struct measure_slot {
  std::vector<timed_value> recent;
  friend bool operator==(const measure_slot&, const measure_slot&) = default;
};

/// Points one capped score rule awarded in its current period.
struct score_award {
  std::int64_t period = 0;  ///< floor(epoch seconds / cap period)
  double points = 0;        ///< awarded in that period (same sign as the rule's points)
  friend bool operator==(const score_award&, const score_award&) = default;
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

/// What a timer does when it comes due.
enum class timer_kind : std::uint8_t {
  rule,           ///< a rule's delayed check or delayed action (`rule`, `action`)
  workflow_step,  ///< a workflow run's wait ends (`rule`: workflow, `action`: step,
                  ///< `trigger_ordinal`: the run's id)
  workflow_date,  ///< a yearly date entry of workflow `rule` is due
};

/// A pending delayed check or delayed action, one of the engine's own timers, or a workflow's
/// wait.
struct timer {
  /// Values of `action` besides an action's index.
  static constexpr std::int32_t check = -1;         ///< the rule's delayed check
  static constexpr std::int32_t segment_flip = -2;  ///< re-evaluate segments (rule is 0)
  static constexpr std::int32_t score_decay = -3;   ///< apply score decay (rule is 0)

  time_point due_at;
  std::uint64_t sequence = 0;         ///< scheduling order; ties at one instant fire in this order
  std::uint32_t rule = 0;             ///< rule index in the program (workflow index for workflows)
  std::int32_t action = check;        ///< check, segment_flip, score_decay or an action's index
  time_point triggered_at;            ///< the trigger event's time ("since trigger" windows)
  std::uint64_t trigger_ordinal = 0;  ///< the trigger event's ordinal (idempotency keys)
  timer_kind kind = timer_kind::rule;
  /// A message the delivery policy deferred: when due it goes through the policy again
  /// (consent, caps, hours), not through the action's condition.
  bool deferred = false;
  friend bool operator==(const timer&, const timer&) = default;
};

/// A contact's walk through one workflow: where it is and what the steps ahead need to know.
struct workflow_run {
  std::uint32_t workflow = 0;       ///< workflow index in the program
  std::uint32_t version = 1;        ///< the definition's version the run follows
  std::uint32_t step = 0;           ///< index of the step it is at
  std::uint64_t id = 0;             ///< unique per contact (timers and idempotency keys name it)
  std::uint64_t entry_ordinal = 0;  ///< the entering event's ordinal
  std::uint64_t steps_taken = 0;    ///< steps executed so far (idempotency keys)
  time_point entered_at, step_at;   ///< when it entered; when it reached the current step
  /// An opened / clicked wait: 0 waiting for the event, 1 counting the delay after it.
  /// A send step: 2 while the delivery policy holds or defers its message (delivery.hpp).
  std::uint8_t phase = 0;
  /// The workflow was paused when this run's wait ended: it continues once it is active.
  bool held = false;
  std::int32_t last_send = -1;         ///< step index of the latest message sent; -1: none yet
  time_point last_send_at = min_time;  ///< min_time: nothing sent yet
  time_point last_opened_at = min_time, last_clicked_at = min_time;  ///< of the latest message
  friend bool operator==(const workflow_run&, const workflow_run&) = default;
};

/// What a contact keeps about one workflow between runs (re-entry, yearly dates).
struct workflow_memory {
  std::int64_t entries = 0;
  time_point last_entry{};          ///< valid when entries > 0
  time_point last_date = min_time;  ///< the latest yearly date entry fired
  /// Runs that walked to the end / that a goal ended (completed_workflow, exited_workflow).
  std::int64_t completed = 0, exited = 0;
  friend bool operator==(const workflow_memory&, const workflow_memory&) = default;
};

/// One contact's whole state.
struct contact_state {
  nudge::contact contact;
  std::vector<history_slot> history;  ///< one slot per aggregate the program derived
  boost::container::flat_map<std::uint32_t, rule_memory> rule_runs;  ///< by rule index
  std::vector<timer> timers;  ///< sorted by (due_at, sequence)
  /// Segments the contact is in -> when it entered (segment.hpp). Next to the timers: lending a
  /// state reads both, and one cache line is one miss fewer per contact and batch.
  name_map<time_point> segments;
  std::vector<workflow_run> runs;  ///< active workflow runs, in the order they entered
  boost::container::flat_map<std::uint32_t, workflow_memory> workflow_history;  ///< by workflow
  std::uint64_t runs_started = 0;
  std::vector<measure_slot> measures;  ///< one per sum / average aggregate the program derived
  /// Capped score rules' current period, by score rule index (scoring.hpp).
  boost::container::flat_map<std::uint32_t, score_award> score_awards;
  /// Score thresholds the score is at or above -> when it got there.
  name_map<time_point> thresholds_reached;
  /// Non-empty: this id was identified as that contact and merged into it; the state is only an
  /// alias record (engine.hpp), and events for this id go to that contact.
  std::string merged_into;  /// Latest instant the contact was evaluated at (last applied event or
                            /// fired timer). Events
  /// older than this are rejected: applying them would rewrite a past that timers already saw.
  time_point clock = min_time;
  std::uint64_t events_applied = 0;  ///< ordinal of the next event (external or raised)
  std::uint64_t timers_scheduled = 0;
  /// What the engine did for this contact and why, newest last; bounded by the program's
  /// timeline_size (empty when that is 0). See timeline.hpp.
  nudge::timeline timeline;
  /// Times of the latest non-transactional messages per channel (delivery.hpp's channel, as a
  /// number), oldest first, as many as the program's largest cap on that channel needs. Empty
  /// when no delivery policy has caps.
  boost::container::flat_map<std::uint8_t, std::vector<time_point>> channel_sends;
  /// The location the contact had before its location last changed to a different point
  /// (`moved` conditions, geo.hpp); none before the second known location.
  std::optional<geo_point> previous_location;

  /// Earliest pending timer, or max_time when none.
  time_point next_due() const { return timers.empty() ? max_time : timers.front().due_at; }
  friend bool operator==(const contact_state&, const contact_state&) = default;
};

}  // namespace nudge
