// Rule cycles compilation can see (issue 14): rules whose internal actions trigger each other for
// ever at one instant. The run-time limit (program_limits::max_cascade_depth) still stops every
// other cascade; docs/rules.md ("Cascades and cycles") says which cycles are refused here.
#include "cycle_check.hpp"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include <nudge/event.hpp>

namespace nudge::detail {
namespace {

// What a rule's action does to the contact each time it runs, when that is certain.
struct link {
  std::size_t to = 0;          // the rule its raised event triggers
  std::size_t action = 0;      // the action's index in the rule
  action_kind kind{};          // add_score, set_stage, set_status or set_detail
  std::string field;           // "stage", "status", "score" or "detail <name>"
  const value* set = nullptr;  // set_detail's value
};

// A rule that runs every time its trigger comes, at that instant, with nothing to stop it.
bool unconditional(const rule& r) {
  return r.delay == duration{0} && r.condition.node == condition::kind::always &&
         r.reentry_policy == reentry::always && !r.cap;
}

bool matches(const event_match& m, std::string_view type, std::string_view key) {
  if (m.type != type) {
    return false;
  }
  switch (m.match) {
    case key_match::any:
      return true;
    case key_match::exact:
      return m.key == key;
    case key_match::prefix:
      return key.starts_with(m.key);
  }
  return false;
}

// The event an action raises every time it changes the contact, for the actions whose repeats
// a cycle can decide: add_score always changes (non-zero points); set_* change when the value
// differs from the current one. Tags and groups are not here: adding a tag the contact has
// raises nothing, so a cycle of adds ends after one round.
std::optional<std::pair<std::string_view, std::string>> raised(const action& a) {
  switch (a.kind) {
    case action_kind::add_score: {
      double points = 0;
      if (const auto* i = std::get_if<std::int64_t>(&a.val)) {
        points = static_cast<double>(*i);
      } else if (const auto* d = std::get_if<double>(&a.val)) {
        points = *d;
      }
      if (points == 0) {
        return std::nullopt;
      }
      return std::pair{event_types::score_changed, std::string{}};
    }
    case action_kind::set_stage:
      return std::pair{event_types::stage_entered, a.arg};
    case action_kind::set_status:
      return std::pair{event_types::status_changed, a.arg};
    case action_kind::set_detail:
      return std::pair{event_types::detail_set, a.arg};
    default:
      return std::nullopt;
  }
}

std::string field_of(const action& a) {
  switch (a.kind) {
    case action_kind::set_stage:
      return "stage";
    case action_kind::set_status:
      return "status";
    case action_kind::set_detail:
      return "detail " + a.arg;
    default:
      return "score";
  }
}

bool same_value(const link& x, const link& y, const std::vector<rule>& rules, std::size_t x_rule,
                std::size_t y_rule) {
  const action& a = rules[x_rule].actions[x.action];
  const action& b = rules[y_rule].actions[y.action];
  return a.kind == action_kind::set_detail ? a.val == b.val : a.arg == b.arg;
}

// Whether going round `cycle` (rules, each linked to the next by `links`) raises every event
// again: a score link always does; a set_* link does when the previous link setting the same
// field (going round) set another value.
bool repeats(const std::vector<std::size_t>& cycle, const std::vector<const link*>& links,
             const std::vector<rule>& rules) {
  const std::size_t n = links.size();
  for (std::size_t i = 0; i < n; ++i) {
    const link& l = *links[i];
    if (l.kind == action_kind::add_score) {
      continue;
    }
    bool changes = false;
    for (std::size_t back = 1; back <= n; ++back) {
      const std::size_t j = (i + n - back) % n;
      if (links[j]->field == l.field) {
        changes = !same_value(*links[j], l, rules, cycle[j], cycle[i]);
        break;
      }
    }
    if (!changes) {
      return false;
    }
  }
  return true;
}

}  // namespace

void find_rule_cycles(const std::vector<rule>& rules, std::vector<diagnostic>& problems) {
  // Links between unconditional rules through actions without a delay or condition of their own.
  // A rule with two actions on one field is left out: the order of their raised events decides.
  std::vector<std::vector<link>> out(rules.size());
  bool any = false;
  for (std::size_t r = 0; r < rules.size(); ++r) {
    if (!unconditional(rules[r])) {
      continue;
    }
    const auto& actions = rules[r].actions;
    for (std::size_t i = 0; i < actions.size(); ++i) {
      const action& a = actions[i];
      const auto ev = raised(a);
      if (!ev || a.delay != duration{0} || a.condition) {
        continue;
      }
      const auto same_field = std::count_if(actions.begin(), actions.end(), [&](const action& b) {
        return b.kind == a.kind && (a.kind != action_kind::set_detail || b.arg == a.arg);
      });
      if (same_field > 1) {
        continue;
      }
      for (std::size_t t = 0; t < rules.size(); ++t) {
        if (unconditional(rules[t]) && matches(rules[t].trigger, ev->first, ev->second)) {
          out[r].push_back({t, i, a.kind, field_of(a), &a.val});
          any = true;
        }
      }
    }
  }
  if (!any) {
    return;
  }
  // Simple cycles, each found once from its lowest rule index (visiting only higher ones), by a
  // depth-first search bounded in length and in total steps: a cycle it does not reach is still
  // stopped at run time.
  constexpr std::size_t max_length = 16;
  constexpr std::size_t max_steps = 200'000;
  constexpr std::size_t max_reported = 10;
  std::size_t steps = 0;
  std::vector<std::size_t> path;
  std::vector<const link*> links;
  std::vector<char> on_path(rules.size(), 0);
  std::vector<std::vector<std::size_t>> reported;
  auto report = [&](std::size_t start) {
    std::string names;
    for (std::size_t r : path) {
      names += fmt::format("\"{}\" -> ", rules[r].id);
    }
    names += fmt::format("\"{}\"", rules[start].id);
    const std::string what = path.size() == 1
                                 ? fmt::format("rule \"{}\" triggers itself", rules[start].id)
                                 : fmt::format("rules {} trigger each other", names);
    const link& first = *links.front();
    problems.push_back(
        {.file = {},
         .line = 0,
         .column = 0,
         .json_pointer = fmt::format("/rules/{}/then/{}", start, first.action),
         .code = "rule_cycle",
         .message = fmt::format(
             "{} for ever at one instant (each run changes the contact again); give {} an "
             "\"if\", a \"reentry\", a \"cap\" or a delay",
             what, path.size() == 1 ? "it" : "one of them")});
  };
  for (std::size_t start = 0; start < rules.size() && reported.size() < max_reported; ++start) {
    if (out[start].empty()) {
      continue;
    }
    bool found = false;
    // Iterative DFS: a stack of (rule, next link to try).
    std::vector<std::pair<std::size_t, std::size_t>> stack{{start, 0}};
    path.assign(1, start);
    links.clear();
    on_path[start] = 1;
    while (!stack.empty() && !found && steps < max_steps) {
      auto& [r, next] = stack.back();
      if (next == out[r].size() || path.size() > max_length) {
        on_path[r] = 0;
        stack.pop_back();
        path.pop_back();
        if (!links.empty()) {
          links.pop_back();
        }
        continue;
      }
      const link& l = out[r][next++];
      ++steps;
      if (l.to == start) {
        links.push_back(&l);
        if (repeats(path, links, rules)) {
          report(start);
          reported.push_back(path);
          found = true;
        }
        links.pop_back();
      } else if (l.to > start && on_path[l.to] == 0) {
        links.push_back(&l);
        path.push_back(l.to);
        on_path[l.to] = 1;
        stack.emplace_back(l.to, 0);
      }
    }
    for (std::size_t r : path) {
      on_path[r] = 0;
    }
  }
}

}  // namespace nudge::detail
