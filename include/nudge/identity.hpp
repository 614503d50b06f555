// nudge/identity.hpp: merging an anonymous visitor into a known contact.
//
// A host sends events for an anonymous visitor id ("anon-7f3a") until the visitor signs in,
// then an `identify` event for the anonymous id whose key is the known contact's id. The engine
// (engine.hpp) merges the anonymous contact's state into the known one at that second, leaves
// an alias record under the anonymous id (contact_state::merged_into) and sends later events
// for the anonymous id to the known contact. merge_states is the pure part of that.
#pragma once

#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/evaluate.hpp>
#include <nudge/program.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// The state of the known contact after absorbing the anonymous contact's state at `at`.
/// Both states must belong to `program` and have been evaluated up to `at` (the engine runs
/// both to just before the identify event first). Deterministic; the precedence:
///
/// - profile: the known contact's id, status, and every detail, consent, owner, stage and time
///   zone it has; the anonymous contact's fill only what the known one lacks (an empty owner,
///   stage or time zone, a missing detail or consent). Tags and groups: the union (a tag both
///   have keeps the earlier time). Score: the sum.
/// - history: per aggregate, counts add up, first = the earlier, last = the later; the recent
///   event times and property values are merged in time order and cut to what the program
///   keeps (the newest).
/// - rule memory: per rule, runs add up and the latest run times of both are kept (as many as
///   the rule's policy needs), so a "once" rule that ran for either has run for the merged one.
/// - timers: every pending rule timer and workflow wait of both, in (due time, known first,
///   sequence) order, renumbered. The anonymous contact's trigger ordinals are shifted past the
///   known contact's event count and its workflow run ids past the known contact's, so
///   idempotency keys of the merged contact stay unique. The engine's own timers (segment flip,
///   score decay) and yearly date timers: one per kind (per workflow for dates), the known
///   contact's, else the anonymous contact's.
/// - workflow runs: both contacts' runs in entry order (known first at the same second); where
///   that makes more runs of one workflow than its max_active_runs, the later-entered runs are
///   ended as exits at `at` (their waits cancelled, a workflow_exited timeline entry and, when
///   `dropped` is given, wait_ended + exited outcomes appended to it): a contact is never in
///   one journey twice because it had two ids. Workflow memories: entries add up, the later
///   entry and yearly date are kept.
/// - segment memberships and reached score thresholds: the union (the earlier entry time). The
///   engine then applies the identify event to the merged contact, which re-evaluates them and
///   raises segment_entered / segment_exited / score_crossed for what the merge changed.
/// - capped score awards: per score rule, in the same period the points add up (at most the
///   cap), else the later period wins.
/// - timeline: both contacts' entries in time order (known first at the same second), the
///   newest kept; recorded counts add up.
/// - clock: the later; events applied, runs started, timers scheduled: the sums.
///
/// @throws std::invalid_argument if a state is an alias record, both states are the same id,
///   or a state does not match the program; nothing is merged then.
/// Thread-safety: pure; no shared state.
contact_state merge_states(const program& program, contact_state known, contact_state anonymous,
                           time_point at, std::vector<workflow_outcome>* dropped = nullptr);

}  // namespace nudge
