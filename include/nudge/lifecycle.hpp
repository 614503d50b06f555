// nudge/lifecycle.hpp: a running engine taking a changed rule program (workflow lifecycle and
// versions).
//
// Workflows change while contacts are inside them: a marketer pauses one, archives it, fixes a
// step. The rule file stays the single source of truth, so a change is "load the new rule file
// into the running engine at instant `at`" (engine::change_program). What may change, and what
// happens to the contacts inside, is decided here, deterministically, and documented in
// docs/rules.md ("Lifecycle and versions"):
//
// - Workflows may change, and a rule's delay, condition and actions when the rule says what
//   happens to its pending timers (rule::on_change: reevaluate re-times them and runs the new
//   definition when due; drop drops them). Everything else about rules, and segments, scoring,
//   owner groups and event types, must be equal (their state is positional: replay the event
//   log through new rules instead); rules keep their ids and positions.
// - Workflows keep their positions: a workflow is never removed or reordered (archive it), new
//   ones are appended. States, statistics and the SQLite outbox name workflows by position.
// - Changed steps need a higher `version`. Runs inside move to the new version by step id
//   (version_policy::move_by_step_id) or finish on the version they entered
//   (version_policy::finish_on_old, which needs that version's steps in the new program's
//   `previous_versions`).
// - A run whose step id the new version lacks (or has as another kind of step) finishes on its
//   version if `previous_versions` keeps it, else ends at `at`, counted in
//   workflow_stats::ended.
// - Status archived or draft ends every run inside at `at` (counted as `ended`); paused holds
//   them; active again resumes runs whose wait ended during the pause at `at` exactly.
#pragma once

#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/evaluate.hpp>
#include <nudge/program.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// Checks that a state of `from` can move to `to` (see the header comment). Cheap: compares the
/// rule sets, not the states.
/// @throws nudge::rule_error listing every problem, each with the JSON pointer into the new rule
///   set (e.g. "/workflows/0/version: the steps of workflow \"welcome\" changed but its version
///   is still 1; a changed workflow needs a higher version"). Nothing is changed.
void check_program_change(const program& from, const program& to);

/// True if `to` changes `from`'s delay, condition or actions (what rule::on_change governs).
bool rule_changed(const rule& from, const rule& to);

/// Moves one contact's state from `from` to `to` at instant `at`: ends runs of archived or draft
/// workflows and runs whose step is gone, moves runs to the new version by step id, keeps runs
/// finishing on their version, schedules held runs of reactivated workflows at `at`, and
/// re-times or drops the pending timers of changed rules (rule::on_change; a re-timed timer
/// whose new time is before `at` is due at `at`).
/// Appends what happened (ended runs, with `from`'s step indices) to `outcomes` if given.
/// Returns true if the state changed. Pure: no clock, no I/O.
/// Precondition: check_program_change(from, to) passed.
/// @throws std::invalid_argument if the state would change but its clock is after `at` (the
///   change would rewrite a past the contact already lived); `state` is then untouched.
bool migrate_state(const program& from, const program& to, contact_state& state, time_point at,
                   std::vector<workflow_outcome>* outcomes = nullptr);

}  // namespace nudge
