// Validating workflows: references, steps, reachability and cycles of the step graph.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include <fmt/format.h>

#include <nudge/evaluate.hpp>
#include <nudge/event.hpp>
#include <nudge/program.hpp>

#include "compile.hpp"

namespace nudge::detail {

void validator::check_workflows(const rule_set& rs,
                                const std::map<std::string_view, std::size_t>& rules) {
  std::map<std::string_view, std::size_t> first_with_id;
  for (std::size_t i = 0; i < rs.workflows.size(); ++i) {
    const workflow& w = rs.workflows[i];
    const std::string at = fmt::format("/workflows/{}", i);
    if (w.id.empty()) {
      fail(at + "/id", "missing_id", "a workflow needs an id");
    } else if (auto [it, fresh] = first_with_id.emplace(w.id, i); !fresh) {
      fail(at + "/id", "duplicate_id",
           fmt::format("duplicate workflow id \"{}\" (first used by /workflows/{})", w.id,
                       it->second));
    } else if (auto r = rules.find(w.id); r != rules.end()) {
      fail(at + "/id", "duplicate_id",
           fmt::format("workflow id \"{}\" is also the id of /rules/{} (actions and statistics "
                       "would be ambiguous)",
                       w.id, r->second));
    }
    check_workflow(rs, w, at);
  }
}

void validator::check_workflow(const rule_set& rs, const workflow& w, const std::string& at) {
  if (w.version < 1) {
    fail(at + "/version", "bad_version", "a workflow version starts at 1");
  }
  if (w.entry.kind == entry_kind::event) {
    check_match(w.entry.on, at + "/entry/on");
  } else {
    if (w.entry.detail.empty()) {
      fail(at + "/entry/yearly/detail", "missing_name", "a date entry needs a detail name");
    }
    if (w.entry.time_of_day < 0 || w.entry.time_of_day >= 86'400) {
      fail(at + "/entry/yearly/at", "bad_time", "a time of day must be 00:00:00 to 23:59:59");
    }
    if (w.entry.offset_days < -366 || w.entry.offset_days > 366) {
      fail(at + "/entry/yearly/offset_days", "bad_offset",
           "a date offset must be -366 to 366 days");
    }
  }
  check_condition(w.entry.condition, at + "/entry/if", 1);
  if (w.delivery) {
    check_policy(*w.delivery, at + "/delivery");
  }
  for (std::size_t j = 0; j < w.exit_on.size(); ++j) {
    check_match(w.exit_on[j], fmt::format("{}/exit_on/{}", at, j));
  }
  check_condition(w.exit_when, at + "/exit_if", 1);
  if (w.reentry == workflow_reentry::cool_down) {
    check_length(w.cool_down, at + "/reentry/cool_down", false, false);
  }
  if (w.max_active_runs < 1 || w.max_active_runs > limits.max_kept_count) {
    fail(at + "/max_active_runs", "bad_count",
         fmt::format("max_active_runs must be 1 to {}", limits.max_kept_count));
  }
  if (!w.complete_from_group.empty() && w.complete_to_group.empty()) {
    fail(at + "/on_complete", "missing_name", "a move needs the group to move to");
  }
  check_steps(rs, w, at);
  // Kept older versions (runs finishing on them): each a valid step graph of its own.
  std::set<std::uint32_t> versions{w.version};
  for (std::size_t k = 0; k < w.previous_versions.size(); ++k) {
    const auto& pv = w.previous_versions[k];
    const std::string vat = fmt::format("{}/previous_versions/{}", at, k);
    if (pv.version >= w.version) {
      fail(vat + "/version", "bad_version",
           fmt::format("a kept version must be older than the current version {}", w.version));
    } else if (!versions.insert(pv.version).second) {
      fail(vat + "/version", "bad_version", fmt::format("version {} is kept twice", pv.version));
    }
    workflow old;
    old.id = w.id;
    old.steps = pv.steps;
    check_steps(rs, old, vat);
  }
}

// The step graph of `w` (its `steps`; pointers under `at`/steps).
void validator::check_steps(const rule_set& rs, const workflow& w, const std::string& at) {
  if (w.steps.empty()) {
    fail(at + "/steps", "missing_steps", "a workflow needs at least one step");
    return;
  }
  if (w.steps.size() > limits.max_workflow_steps) {
    fail(
        at + "/steps", "too_many_steps",
        fmt::format("{} steps; at most {} are allowed", w.steps.size(), limits.max_workflow_steps));
    return;
  }
  std::map<std::string_view, std::size_t> ids;
  for (std::size_t j = 0; j < w.steps.size(); ++j) {
    const auto& st = w.steps[j];
    const std::string sat = fmt::format("{}/steps/{}", at, j);
    if (st.id.empty()) {
      fail(sat + "/id", "missing_id", "a step needs an id");
    } else if (auto [it, fresh] = ids.emplace(st.id, j); !fresh) {
      fail(sat + "/id", "duplicate_id",
           fmt::format("duplicate step id \"{}\" (first used by {}/steps/{})", st.id, at,
                       it->second));
    }
  }
  // Successor indices per step (none: completes), for the reference, reachability and cycle
  // checks; a reference to an unknown id is reported and treated as completion.
  std::vector<std::vector<std::uint32_t>> next(w.steps.size());
  auto ref = [&](std::size_t j, const std::string& id, const std::string& where, bool listed) {
    if (id.empty()) {
      if (listed && j + 1 < w.steps.size()) {
        next[j].push_back(static_cast<std::uint32_t>(j + 1));
      }
      return;
    }
    auto it = ids.find(id);
    if (it == ids.end()) {
      fail(where, "unknown_step", fmt::format("no step \"{}\" in workflow \"{}\"", id, w.id));
      return;
    }
    next[j].push_back(static_cast<std::uint32_t>(it->second));
  };
  for (std::size_t j = 0; j < w.steps.size(); ++j) {
    const auto& st = w.steps[j];
    const std::string sat = fmt::format("{}/steps/{}", at, j);
    if (st.length_months != 0 && st.kind != step_kind::wait) {
      fail(sat, "bad_delay", "only a fixed wait takes calendar months");
    }
    switch (st.kind) {
      case step_kind::send:
      case step_kind::act: {
        const std::string aat = sat + (st.kind == step_kind::send ? "/send" : "/act");
        if (st.kind == step_kind::send && !is_external(st.act.kind)) {
          fail(aat + "/do", "bad_action",
               fmt::format("a send step takes a message or other external action, not {} (use "
                           "an \"act\" step)",
                           action_name(st.act.kind)));
        } else if (st.kind == step_kind::act && is_external(st.act.kind)) {
          fail(aat + "/do", "bad_action",
               fmt::format("an \"act\" step takes an internal action, not {} (use a \"send\" "
                           "step)",
                           action_name(st.act.kind)));
        }
        check_action(rs, st.act, aat);
        if (st.act.delay != duration{0}) {
          fail(aat + "/delay", "bad_delay", "a step's action has no delay (use a wait step)");
        }
        ref(j, st.next, sat + "/next", true);
        break;
      }
      case step_kind::wait:
        if (st.length_months != 0 && st.wait != wait_kind::fixed) {
          fail(sat + "/wait", "bad_delay", "only a fixed wait takes calendar months");
        }
        switch (st.wait) {
          case wait_kind::fixed:
            if (st.length_months != 0) {
              check_months(st.length_months, st.length, sat + "/wait", "bad_delay");
            } else {
              check_length(st.length, sat + "/wait", false, false);
            }
            break;
          case wait_kind::after_message:
            check_length(st.length, sat + "/wait/plus", true, false);
            check_length(st.timeout, sat + "/wait/timeout", true, false);
            if (st.moment == message_moment::delivered && st.timeout != duration{0}) {
              fail(sat + "/wait/timeout", "bad_timeout",
                   "a wait after delivery has no timeout (delivery is when the step sent)");
            }
            ref(j, st.no, sat + "/wait/no", false);
            break;
          case wait_kind::time_of_day:
            if (st.time_of_day < 0 || st.time_of_day >= 86'400) {
              fail(sat + "/wait/until_time", "bad_time",
                   "a time of day must be 00:00:00 to 23:59:59");
            }
            if (st.weekdays == 0 || st.weekdays > 0x7f) {
              fail(sat + "/wait/weekdays", "bad_weekdays", "allow at least one weekday");
            }
            break;
          case wait_kind::date:
            if (st.detail.empty()) {
              fail(sat + "/wait/until_date", "missing_name", "a date wait needs a detail name");
            }
            check_length(st.length, sat + "/wait/offset", true, true);
            break;
        }
        ref(j, st.next, sat + "/next", true);
        break;
      case step_kind::branch:
        check_condition(st.condition, sat + "/if", 1);
        ref(j, st.yes, sat + "/yes", true);
        ref(j, st.no, sat + "/no", false);
        break;
      case step_kind::wait_for:
        check_match(st.event, sat + "/wait_for");
        check_length(st.timeout, sat + "/within", true, false);
        ref(j, st.yes, sat + "/yes", true);
        ref(j, st.no, sat + "/no", false);
        break;
      case step_kind::split: {
        std::uint32_t total = 0;
        for (std::size_t k = 0; k < st.paths.size(); ++k) {
          const std::string pat = fmt::format("{}/split/{}", sat, k);
          total += std::min<std::uint32_t>(st.paths[k].percent, 101);
          if (st.paths[k].next.empty()) {
            fail(pat + "/next", "missing_step", "a split arm needs the step it leads to");
          } else {
            ref(j, st.paths[k].next, pat + "/next", false);
          }
        }
        if (st.paths.empty() || total != 100) {
          fail(sat + "/split", "bad_split",
               fmt::format("split percentages must add up to 100 (they add up to {})", total));
        }
        break;
      }
      case step_kind::end:
        break;
    }
  }
  // Unreachable steps: never run, most likely a typo in a reference.
  std::vector<bool> seen(w.steps.size(), false);
  std::vector<std::uint32_t> todo{0};
  seen[0] = true;
  while (!todo.empty()) {
    const auto j = todo.back();
    todo.pop_back();
    for (auto k : next[j]) {
      if (!seen[k]) {
        seen[k] = true;
        todo.push_back(k);
      }
    }
  }
  for (std::size_t j = 0; j < w.steps.size(); ++j) {
    if (!seen[j]) {
      fail(fmt::format("{}/steps/{}", at, j), "unreachable_step",
           fmt::format("step \"{}\" cannot be reached from the first step", w.steps[j].id));
    }
  }
  // A cycle must pass a step that takes time for sure, or a run would loop within one instant.
  auto holds = [&](const workflow_step& st) {
    if (st.kind == step_kind::wait_for) {
      return true;
    }
    if (st.kind != step_kind::wait) {
      return false;
    }
    return (st.wait == wait_kind::fixed && (st.length > duration{0} || st.length_months > 0)) ||
           (st.wait == wait_kind::after_message && st.moment != message_moment::delivered &&
            st.length > duration{0});
  };
  std::vector<std::uint8_t> color(w.steps.size(), 0);  // 0 new, 1 on the path, 2 done
  std::vector<std::uint32_t> path;
  bool reported = false;
  auto visit = [&](auto&& self, std::uint32_t j) -> void {
    color[j] = 1;
    path.push_back(j);
    for (auto k : next[j]) {
      if (reported || holds(w.steps[k])) {
        continue;
      }
      if (color[k] == 1) {
        std::string names;
        auto from = std::find(path.begin(), path.end(), k);
        for (auto p = from; p != path.end(); ++p) {
          names += w.steps[*p].id + " -> ";
        }
        names += w.steps[k].id;
        fail(fmt::format("{}/steps/{}", at, k), "cycle_without_wait",
             fmt::format("steps {} form a cycle without a wait of fixed length or a wait for an "
                         "event",
                         names));
        reported = true;
      } else if (color[k] == 0) {
        self(self, k);
      }
    }
    path.pop_back();
    color[j] = 2;
  };
  for (std::uint32_t j = 0; j < w.steps.size() && !reported; ++j) {
    if (color[j] == 0 && !holds(w.steps[j])) {
      visit(visit, j);
    }
  }
}
}  // namespace nudge::detail
