#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <nudge/error.hpp>
#include <nudge/lifecycle.hpp>
#include <nudge/workflow.hpp>

namespace nudge {
namespace {

bool ends_runs(workflow_status s) {
  return s == workflow_status::archived || s == workflow_status::draft;
}

// The step of `to` with the id of `from_step` that a run can stand on in the same way: same
// kind, and for waits the same kind of wait (a run waiting on a timer must find a timer-driven
// step). none: the run cannot move there.
std::uint32_t matching_step(const workflow& to, const workflow_step& from_step) {
  for (std::uint32_t j = 0; j < to.steps.size(); ++j) {
    const workflow_step& st = to.steps[j];
    if (st.id == from_step.id) {
      const bool same = st.kind == from_step.kind &&
                        (st.kind != step_kind::wait ||
                         (st.wait == from_step.wait && st.moment == from_step.moment));
      return same ? j : detail::none;
    }
  }
  return detail::none;
}

const detail::compiled_workflow::version_range* version_of(const detail::compiled_workflow& cw,
                                                           std::uint32_t version) {
  for (const auto& v : cw.versions) {
    if (v.version == version) {
      return &v;
    }
  }
  return nullptr;
}

std::uint32_t step_by_id(const workflow& w, const std::string& id) {
  for (std::uint32_t j = 0; j < w.steps.size(); ++j) {
    if (w.steps[j].id == id) {
      return j;
    }
  }
  return detail::none;
}

}  // namespace

bool rule_changed(const rule& from, const rule& to) {
  return from.delay != to.delay || from.delay_months != to.delay_months ||
         !(from.condition == to.condition) || from.actions != to.actions;
}

namespace {

// A rule's pending timers under its new definition (on_change, docs/live.md): dropped, or
// re-timed (a check counted again from its trigger, a delayed action from its check) and
// clamped to `at` (a timer whose new time is past fires at the change instant). A delayed action
// the new definition no longer has at that position is dropped, as is a deferred message whose
// action changed its verb. Returns true if any timer changed.
bool migrate_rule_timers(const program& from, const program& to, contact_state& s, time_point at) {
  const auto& old_rules = from.rules().rules;
  const auto& new_rules = to.rules().rules;
  bool changed = false;
  std::vector<timer> kept;
  kept.reserve(s.timers.size());
  for (const timer& t : s.timers) {
    if (t.kind != timer_kind::rule || t.action < timer::check || t.rule >= old_rules.size() ||
        !rule_changed(old_rules[t.rule], new_rules[t.rule])) {
      kept.push_back(t);
      continue;
    }
    const rule& o = old_rules[t.rule];
    const rule& n = new_rules[t.rule];
    changed = true;
    if (n.on_change != rule_change::reevaluate) {
      continue;  // drop
    }
    timer moved = t;
    if (t.action == timer::check) {
      if (o.delay != n.delay) {  // months never change here (check_program_change)
        moved.due_at = t.triggered_at + n.delay;
      }
    } else {
      const auto k = static_cast<std::size_t>(t.action);
      if (k >= n.actions.size()) {
        continue;
      }
      if (t.deferred) {
        if (k >= o.actions.size() || o.actions[k].kind != n.actions[k].kind) {
          continue;
        }
      } else if (k < o.actions.size()) {
        moved.due_at = t.due_at - o.actions[k].delay + n.actions[k].delay;
      }
    }
    moved.due_at = std::max(moved.due_at, at);
    kept.push_back(moved);
  }
  if (changed) {
    std::stable_sort(kept.begin(), kept.end(), [](const timer& a, const timer& b) {
      return a.due_at < b.due_at || (a.due_at == b.due_at && a.sequence < b.sequence);
    });
    s.timers = std::move(kept);
  }
  return changed;
}

}  // namespace

void check_program_change(const program& from, const program& to) {
  std::vector<diagnostic> problems;
  auto fail = [&](std::string pointer, std::string code, std::string message) {
    diagnostic d;
    d.json_pointer = std::move(pointer);
    d.code = std::move(code);
    d.message = std::move(message);
    problems.push_back(std::move(d));
  };
  {
    // Everything but the workflows and the rules' delays, conditions and actions (and the
    // timeline size, which changes no action) must be equal: history slots, rule memories,
    // statistics and timers refer to rules by position.
    rule_set a = from.rules(), b = to.rules();
    a.workflows.clear();
    b.workflows.clear();
    a.timeline_size = b.timeline_size = 0;
    if (a.rules.size() == b.rules.size()) {
      for (std::size_t i = 0; i < a.rules.size(); ++i) {
        const rule& o = a.rules[i];
        const rule& n = b.rules[i];
        if (o.id != n.id) {
          continue;  // reported below, as before: rules keep their ids and positions
        }
        const std::string at = fmt::format("/rules/{}", i);
        rule same_parts = n;  // n with what may change taken from o
        same_parts.delay = o.delay;
        same_parts.delay_months = o.delay_months;
        same_parts.condition = o.condition;
        same_parts.actions = o.actions;
        same_parts.on_change = o.on_change;
        if (!(same_parts == o)) {
          fail(at, "rule_changed",
               fmt::format("rule \"{}\" changed more than its delay, condition (\"if\") and "
                           "actions (\"then\"); its trigger, re-entry, cap and delivery are "
                           "kept in the contacts' state and cannot change in a running engine "
                           "(replay the event log through changed rules instead)",
                           n.id));
        } else if (rule_changed(o, n)) {
          if (n.on_change == rule_change::refuse) {
            fail(at + "/on_change", "on_change_missing",
                 fmt::format("rule \"{}\" changed in a running engine: say what happens to the "
                             "timers it has pending with \"on_change\": \"reevaluate\" (they "
                             "fire under the new definition, the delay counted again from their "
                             "trigger) or \"drop\" (they are dropped at the change)",
                             n.id));
          } else if (n.on_change == rule_change::reevaluate &&
                     (o.delay != n.delay || o.delay_months != n.delay_months) &&
                     (o.delay_months != 0 || n.delay_months != 0)) {
            fail(at + "/delay", "month_delay_changed",
                 fmt::format("rule \"{}\": a delay in months is counted on each contact's "
                             "calendar, from which pending timers cannot be re-timed; use "
                             "\"on_change\": \"drop\" to change it",
                             n.id));
          }
        }
        a.rules[i] = n;  // compared above
      }
    }
    if (!(a == b)) {
      fail("", "rules_changed",
           "the rules, segments, scoring, owner groups or event types differ from the running "
           "program's; a running engine only takes changed workflows and a rule's changed "
           "delay, condition or actions (rules keep their ids and positions; replay the event "
           "log through changed rules instead)");
    } else if (from.compiled().round_robin_index != to.compiled().round_robin_index) {
      fail("", "counters_changed",
           "the changed rules add or remove round-robin assign_owner actions, whose counters "
           "are kept by position (replay the event log through changed rules instead)");
    }
  }
  const auto& fc = from.compiled();
  const auto& tc = to.compiled();
  bool same_slots = fc.slots.size() == tc.slots.size() && fc.measures.size() == tc.measures.size();
  for (std::size_t i = 0; same_slots && i < fc.slots.size(); ++i) {
    same_slots = fc.slots[i].events == tc.slots[i].events &&
                 fc.slots[i].recent_needed == tc.slots[i].recent_needed;
  }
  for (std::size_t i = 0; same_slots && i < fc.measures.size(); ++i) {
    same_slots = fc.measures[i].events == tc.measures[i].events &&
                 fc.measures[i].property == tc.measures[i].property &&
                 fc.measures[i].keep == tc.measures[i].keep;
  }
  if (!same_slots && problems.empty()) {
    fail("", "history_changed",
         "the changed rules' or workflows' conditions read event history (happened, count, sum, "
         "average windows) that the running program does not keep; contacts have no such "
         "history to read (replay the event log through the new rules instead)");
  }
  const auto& old_wfs = from.rules().workflows;
  const auto& new_wfs = to.rules().workflows;
  for (std::size_t i = 0; i < old_wfs.size(); ++i) {
    const workflow& o = old_wfs[i];
    if (i >= new_wfs.size()) {
      fail("/workflows", "workflow_removed",
           fmt::format("workflow \"{}\" (/workflows/{}) is missing; a workflow is never removed "
                       "from a running program: set its status to \"archived\" (states, "
                       "statistics and the outbox name workflows by position)",
                       o.id, i));
      continue;
    }
    const workflow& n = new_wfs[i];
    const std::string at = fmt::format("/workflows/{}", i);
    if (n.id != o.id) {
      fail(at + "/id", "workflow_moved",
           fmt::format("workflow \"{}\" stands where the running program has \"{}\"; workflows "
                       "keep their positions (append new ones, archive old ones)",
                       n.id, o.id));
      continue;
    }
    if (n.steps != o.steps && n.version <= o.version) {
      fail(at + "/version", "version_not_raised",
           fmt::format("the steps of workflow \"{}\" changed but its version is still {} (the "
                       "running one is {}); a changed workflow needs a higher version",
                       n.id, n.version, o.version));
    }
    if (n.version < o.version) {
      if (n.steps == o.steps) {
        fail(at + "/version", "version_lowered",
             fmt::format("workflow \"{}\" has version {}, lower than the running version {}", n.id,
                         n.version, o.version));
      }
    }
    auto running_steps = [&](std::uint32_t version) -> const std::vector<workflow_step>* {
      if (version == o.version) {
        return &o.steps;
      }
      for (const auto& pv : o.previous_versions) {
        if (pv.version == version) {
          return &pv.steps;
        }
      }
      return nullptr;
    };
    bool keeps_running = false;
    for (std::size_t k = 0; k < n.previous_versions.size(); ++k) {
      const auto& pv = n.previous_versions[k];
      keeps_running = keeps_running || pv.version == o.version;
      if (const auto* steps = running_steps(pv.version); steps != nullptr && *steps != pv.steps) {
        fail(fmt::format("{}/previous_versions/{}/steps", at, k), "version_changed",
             fmt::format("version {} of workflow \"{}\" differs from the running version {}; "
                         "a kept version must keep its steps as they ran",
                         pv.version, n.id, pv.version));
      }
    }
    if (n.steps != o.steps && n.on_new_version == version_policy::finish_on_old &&
        !ends_runs(n.status) && !keeps_running) {
      fail(at + "/previous_versions", "old_version_missing",
           fmt::format("workflow \"{}\" lets runs finish on version {}, but the new rules do not "
                       "keep that version's steps (add them under previous_versions)",
                       n.id, o.version));
    }
  }
  if (!problems.empty()) {
    throw rule_error(std::move(problems));
  }
}

bool migrate_state(const program& from, const program& to, contact_state& state, time_point at,
                   std::vector<workflow_outcome>* outcomes) {
  const auto& old_wfs = from.rules().workflows;
  const auto& new_wfs = to.rules().workflows;
  contact_state s = state;
  std::vector<workflow_outcome> notes;
  auto record = [&](std::uint32_t w, std::uint32_t step, timeline_what what,
                    timeline_reason reason) {
    if (to.timeline_size() == 0) {
      return;
    }
    timeline_entry e;
    e.ts = e.until = at;
    e.source = w;
    e.step = step;
    e.source_kind = timeline_source::workflow;
    e.what = what;
    e.reason = reason;
    s.timeline.record(e, to.timeline_size());
  };
  auto cancel_timers = [&](std::uint64_t run_id) {
    std::erase_if(s.timers, [&](const timer& t) {
      return t.kind == timer_kind::workflow_step && t.trigger_ordinal == run_id;
    });
  };
  // Old step index -> new step index for workflows whose steps changed (timeline entries).
  std::vector<std::vector<std::uint32_t>> step_map(old_wfs.size());
  for (std::size_t w = 0; w < old_wfs.size(); ++w) {
    if (old_wfs[w].steps != new_wfs[w].steps) {
      for (const auto& st : old_wfs[w].steps) {
        step_map[w].push_back(step_by_id(new_wfs[w], st.id));
      }
    }
  }
  // Timeline entries name steps by index: point them at the same ids in the new versions.
  if (std::any_of(step_map.begin(), step_map.end(), [](const auto& m) { return !m.empty(); }) &&
      !s.timeline.empty()) {
    auto entries = s.timeline.entries();
    for (auto& e : entries) {
      if (e.source_kind == timeline_source::workflow && e.source < step_map.size() &&
          !step_map[e.source].empty() && e.step != timeline_none) {
        e.step = e.step < step_map[e.source].size() ? step_map[e.source][e.step] : timeline_none;
      }
    }
    s.timeline.assign(std::move(entries), s.timeline.recorded());
  }
  for (std::size_t i = 0; i < s.runs.size();) {
    workflow_run& r = s.runs[i];
    const workflow& n = new_wfs[r.workflow];
    const auto& ocw = from.compiled().workflows[r.workflow];
    const auto& ncw = to.compiled().workflows[r.workflow];
    const detail::compiled_step& ocs = ocw.steps[r.step];
    const auto* old_range = version_of(ocw, ocs.version);
    const auto* kept = version_of(ncw, ocs.version);  // same steps (check_program_change)
    const std::uint32_t position = r.step - old_range->first;
    std::uint32_t target = detail::none;
    timeline_reason reason = timeline_reason::none;
    if (ends_runs(n.status)) {
      reason = timeline_reason::workflow_archived;
    } else if (kept != nullptr &&
               (ocs.version == n.version || n.on_new_version == version_policy::finish_on_old)) {
      target = kept->first + position;  // finishes on its version
    } else {
      target = matching_step(n, *ocs.def);  // moves to the new version by step id
      if (target == detail::none && kept != nullptr) {
        target = kept->first + position;  // its step is gone from the new version: finishes
      }
      if (target == detail::none) {
        reason = timeline_reason::step_removed;
      }
    }
    if (reason != timeline_reason::none) {
      const bool waiting = std::any_of(s.timers.begin(), s.timers.end(), [&](const timer& t) {
        return t.kind == timer_kind::workflow_step && t.trigger_ordinal == r.id;
      });
      const auto kind = ocs.def->kind;
      if (waiting || r.held || kind == step_kind::wait || kind == step_kind::wait_for) {
        notes.push_back({r.workflow, ocs.stat, workflow_outcome_kind::wait_ended, at});
      }
      notes.push_back({r.workflow, ocs.stat, workflow_outcome_kind::ended, at});
      const auto step = step_map[r.workflow].empty() ? ocs.stat : timeline_none;
      record(r.workflow, step, timeline_what::workflow_exited, reason);
      cancel_timers(r.id);
      s.runs.erase(s.runs.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    for (auto& t : s.timers) {
      if (t.kind == timer_kind::workflow_step && t.trigger_ordinal == r.id) {
        t.action = static_cast<std::int32_t>(target);
      }
    }
    r.step = target;
    r.version = ncw.steps[target].version;
    if (r.last_send >= 0) {
      // The message step with the same id in the version the run is on now; one that version
      // lacks is forgotten: no open can be attributed to it, and a wait after the previous
      // message counts from the run's arrival at the wait.
      const auto& sent = *ocw.steps[static_cast<std::size_t>(r.last_send)].def;
      const auto* range = version_of(ncw, r.version);
      std::int32_t moved = -1;
      for (std::uint32_t j = range->first; j < range->first + range->count; ++j) {
        if (ncw.steps[j].def->id == sent.id) {
          moved = static_cast<std::int32_t>(j);
        }
      }
      r.last_send = moved;
    }
    if (r.held && n.status == workflow_status::active) {
      // The wait ended during the pause: it ends now, at the reactivation instant, in run order.
      r.held = false;
      timer t;
      t.kind = timer_kind::workflow_step;
      t.due_at = at;
      t.rule = r.workflow;
      t.action = static_cast<std::int32_t>(r.step);
      t.triggered_at = r.entered_at;
      t.trigger_ordinal = r.id;
      t.sequence = s.timers_scheduled++;
      auto pos =
          std::upper_bound(s.timers.begin(), s.timers.end(), t, [](const timer& a, const timer& b) {
            return a.due_at < b.due_at || (a.due_at == b.due_at && a.sequence < b.sequence);
          });
      s.timers.insert(pos, t);
    }
    ++i;
  }
  migrate_rule_timers(from, to, s, at);
  // Yearly date entries of archived or draft workflows are dropped (paused ones keep theirs:
  // the date passes without an entry, and the next one is scheduled).
  std::erase_if(s.timers, [&](const timer& t) {
    return t.kind == timer_kind::workflow_date && ends_runs(new_wfs[t.rule].status);
  });
  if (s == state) {
    return false;
  }
  if (state.clock > at) {
    throw std::invalid_argument(fmt::format(
        "nudge::migrate_state: contact \"{}\" was last evaluated at {}, after the program "
        "change at {}",
        state.contact.id, format_time(state.clock), format_time(at)));
  }
  state = std::move(s);
  if (outcomes != nullptr) {
    outcomes->insert(outcomes->end(), notes.begin(), notes.end());
  }
  return true;
}

}  // namespace nudge
