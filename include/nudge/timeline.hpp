// nudge/timeline.hpp: a contact's bounded record of what the engine did and why.
//
// Every contact state carries a timeline: the last N things the engine did for the contact
// (a rule triggered, its condition passed or failed and on which top-level condition, an action
// was emitted, a message was suppressed or deferred by the delivery policy and why, a segment
// was entered, a workflow step ran, ...). N is the program's `timeline_size`
// (rule_set::timeline_size); 0 turns recording off and costs nothing but a branch. When the
// timeline is full the oldest entry is dropped.
//
// Entries are small fixed-size records that name rules, actions, workflows, steps and segments
// by their index in the program that produced the state (a state belongs to its program, see
// contact_state.hpp); `nudge::explain` (explain.hpp) turns them into text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <nudge/time.hpp>

namespace nudge {

/// What produced a timeline entry; `timeline_entry::source` is its index in the program.
enum class timeline_source : std::uint8_t {
  rule,      ///< a rule (index into the rule set)
  workflow,  ///< a workflow (index into the program's workflows)
  segment,   ///< a dynamic segment (index into the program's segments)
};

/// What happened.
enum class timeline_what : std::uint8_t {
  triggered,           ///< an event matched the rule's trigger; `until`: when the check runs
  condition_passed,    ///< the check's condition held and the run was allowed
  condition_failed,    ///< the condition did not hold; `detail`: the failing top-level condition
  refused,             ///< the condition held but the rule's own re-entry policy or cap refused
  action_emitted,      ///< an external action (or internal with notify) was handed to the host
  action_applied,      ///< an internal action changed the contact (tag, stage, score, ...)
  action_skipped,      ///< the action's own condition (`when`) did not hold when it came due
  action_suppressed,   ///< the delivery policy dropped the message; `reason` says why
  action_deferred,     ///< the delivery policy postponed the message to `until`; `reason` why
  segment_entered,     ///< the contact entered the segment
  segment_exited,      ///< the contact left the segment
  workflow_entered,    ///< the contact entered the workflow
  workflow_step,       ///< a workflow step ran (`step`: its index)
  workflow_exited,     ///< the contact left the workflow (goal, exit condition)
  workflow_completed,  ///< the contact reached the workflow's end
  /// An identify event merged two ids at `at` (engine.hpp): recorded on the merged contact and
  /// on the alias record left under the other id (contact_state::merged_into names the contact
  /// it went to). `source` is timeline_none: no rule, workflow or segment did it.
  merged
};

/// Why something was refused, suppressed or deferred.
enum class timeline_reason : std::uint8_t {
  none,
  reentry_once,       ///< the rule runs once per contact and already ran
  reentry_window,     ///< the rule ran within its re-entry window
  rule_cap,           ///< the rule's own frequency cap (rule::cap) was reached
  no_consent,         ///< the contact has not consented to the channel
  channel_cap,        ///< a channel frequency cap was reached; `detail`: the cap's index
  quiet_hours,        ///< the contact's local time is in quiet hours
  send_window,        ///< the contact's local time is outside the allowed hours or weekdays
  unknown_zone,       ///< the contact's time zone is not known to the program (default used)
  workflow_archived,  ///< the workflow was archived (or set back to draft): its runs ended
  step_removed,       ///< a new version of the workflow has no step with the run's step id
};

inline constexpr std::uint32_t timeline_none = 0xffffffffU;

/// One record. 32 bytes, no heap: recording is a copy into a ring.
struct timeline_entry {
  time_point ts;             ///< when it happened (the contact's evaluation time)
  time_point until;          ///< triggered: check time; deferred: the new due time; else `ts`
  std::uint32_t source = 0;  ///< index of the rule / workflow / segment
  std::uint32_t step = timeline_none;    ///< action index (rules) or step index (workflows)
  std::uint32_t detail = timeline_none;  ///< failing top-level condition, cap index, ...
  timeline_source source_kind = timeline_source::rule;
  timeline_what what = timeline_what::triggered;
  timeline_reason reason = timeline_reason::none;
  friend bool operator==(const timeline_entry&, const timeline_entry&) = default;
};

/// A bounded ring of entries, oldest first. Two timelines are equal when they hold the same
/// entries in the same order (wherever the ring happens to start) and recorded as many in all.
class timeline {
 public:
  /// Appends `e`, dropping the oldest entries beyond `capacity`. capacity 0 records nothing.
  void record(const timeline_entry& e, std::size_t capacity) {
    if (capacity == 0) {
      return;
    }
    ++recorded_;
    if (ring_.size() < capacity && head_ == 0) {
      ring_.push_back(e);
      return;
    }
    if (ring_.size() != capacity) {
      resize(capacity);
      if (ring_.size() < capacity) {
        ring_.push_back(e);
        return;
      }
    }
    ring_[head_] = e;
    head_ = (head_ + 1) % static_cast<std::uint32_t>(ring_.size());
  }

  std::size_t size() const noexcept { return ring_.size(); }
  bool empty() const noexcept { return ring_.empty(); }
  /// Entries ever recorded (kept or dropped); size() of them are kept.
  std::uint64_t recorded() const noexcept { return recorded_; }
  /// The i-th kept entry, oldest first.
  const timeline_entry& operator[](std::size_t i) const noexcept {
    return ring_[(head_ + i) % ring_.size()];
  }
  /// The kept entries, oldest first.
  std::vector<timeline_entry> entries() const {
    std::vector<timeline_entry> out;
    out.reserve(ring_.size());
    for (std::size_t i = 0; i < ring_.size(); ++i) {
      out.push_back((*this)[i]);
    }
    return out;
  }
  /// Replaces the content (oldest first), as a snapshot reader does.
  void assign(std::vector<timeline_entry> entries, std::uint64_t recorded) {
    ring_ = std::move(entries);
    head_ = 0;
    recorded_ = recorded;
  }
  void clear() noexcept {
    ring_.clear();
    head_ = 0;
    recorded_ = 0;
  }

  friend bool operator==(const timeline& a, const timeline& b) noexcept {
    if (a.recorded_ != b.recorded_ || a.ring_.size() != b.ring_.size()) {
      return false;
    }
    for (std::size_t i = 0; i < a.ring_.size(); ++i) {
      if (!(a[i] == b[i])) {
        return false;
      }
    }
    return true;
  }

 private:
  // Keeps the newest `capacity` entries in logical order (after a program change of size).
  void resize(std::size_t capacity) {
    std::vector<timeline_entry> kept = entries();
    if (kept.size() > capacity) {
      kept.erase(kept.begin(), kept.end() - static_cast<std::ptrdiff_t>(capacity));
    }
    ring_ = std::move(kept);
    head_ = 0;
  }

  std::vector<timeline_entry> ring_;
  std::uint32_t head_ = 0;  ///< index of the oldest entry once the ring is full
  std::uint64_t recorded_ = 0;
};

}  // namespace nudge
