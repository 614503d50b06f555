// merge_states: the pure merge of an anonymous contact into a known one (identity.hpp).
#include <algorithm>
#include <cmath>
#include <iterator>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/identity.hpp>

namespace nudge {
namespace {

void check(const program& p, const contact_state& s, const char* which) {
  if (!s.merged_into.empty()) {
    throw std::invalid_argument(
        fmt::format("nudge::merge_states: the {} contact \"{}\" is an alias of \"{}\"", which,
                    s.contact.id, s.merged_into));
  }
  if ((!s.history.empty() && s.history.size() != p.history_slot_count()) ||
      (!s.measures.empty() && s.measures.size() != p.measure_slot_count())) {
    throw std::invalid_argument(
        fmt::format("nudge::merge_states: the {} contact \"{}\" has a state from another program",
                    which, s.contact.id));
  }
}

// Union of two time-stamped name maps; a name both have keeps the earlier time.
void union_earlier(name_map<time_point>& into, const name_map<time_point>& from) {
  for (const auto& [name, since] : from) {
    auto [it, fresh] = into.emplace(name, since);
    if (!fresh) {
      it->second = std::min(it->second, since);
    }
  }
}

void merge_profile(contact& k, const contact& a) {
  for (const auto& [name, v] : a.details) {
    k.details.emplace(name, v);  // keeps the known contact's value when both have one
  }
  for (const auto& [channel, granted] : a.consent) {
    k.consent.emplace(channel, granted);
  }
  union_earlier(k.tags, a.tags);
  for (const auto& g : a.groups) {
    k.groups.insert(g);
  }
  k.score += a.score;
  if (!k.location) {
    k.location = a.location;
  }
  for (auto [mine, theirs] : {std::pair{&k.owner, &a.owner}, std::pair{&k.stage, &a.stage},
                              std::pair{&k.time_zone, &a.time_zone}}) {
    if (mine->empty()) {
      *mine = *theirs;
    }
  }
}

void merge_history(const detail::compiled_program& c, contact_state& known,
                   const contact_state& anonymous) {
  for (std::size_t i = 0; i < known.history.size(); ++i) {
    history_slot& into = known.history[i];
    const history_slot& from = anonymous.history[i];
    if (from.count == 0) {
      continue;
    }
    if (into.count == 0) {
      into.first = from.first;
      into.last = from.last;
    } else {
      into.first = std::min(into.first, from.first);
      into.last = std::max(into.last, from.last);
    }
    into.count += from.count;
    decltype(into.recent) merged;
    std::merge(into.recent.begin(), into.recent.end(), from.recent.begin(), from.recent.end(),
               std::back_inserter(merged));
    const std::size_t keep = c.slots[i].recent_needed;
    if (merged.size() > keep) {
      merged.erase(merged.begin(), merged.end() - static_cast<std::ptrdiff_t>(keep));
    }
    into.recent = std::move(merged);
  }
  for (std::size_t i = 0; i < known.measures.size(); ++i) {
    auto& into = known.measures[i].recent;
    const auto& from = anonymous.measures[i].recent;
    std::vector<timed_value> merged;
    merged.reserve(into.size() + from.size());
    // Stable: at one second the known contact's values come first.
    std::merge(into.begin(), into.end(), from.begin(), from.end(), std::back_inserter(merged),
               [](const timed_value& x, const timed_value& y) { return x.at < y.at; });
    if (merged.size() > c.max_kept) {
      merged.erase(merged.begin(), merged.end() - static_cast<std::ptrdiff_t>(c.max_kept));
    }
    into = std::move(merged);
  }
}

void merge_rule_memory(const detail::compiled_program& c, contact_state& known,
                       const contact_state& anonymous) {
  for (const auto& [rule, from] : anonymous.rule_runs) {
    auto [it, fresh] = known.rule_runs.emplace(rule, from);
    if (fresh || from.runs == 0) {
      continue;
    }
    rule_memory& into = it->second;
    if (into.runs == 0) {
      into = from;
      continue;
    }
    std::vector<time_point> times = into.earlier;
    times.push_back(into.last);
    times.insert(times.end(), from.earlier.begin(), from.earlier.end());
    times.push_back(from.last);
    std::sort(times.begin(), times.end());
    into.runs += from.runs;
    into.last = times.back();
    times.pop_back();
    const std::size_t depth = c.rules[rule].memory_depth;
    const std::size_t keep = depth > 1 ? depth - 1 : 0;
    if (times.size() > keep) {
      times.erase(times.begin(), times.end() - static_cast<std::ptrdiff_t>(keep));
    }
    into.earlier = std::move(times);
  }
}

// Workflow runs and their waits. `a_runs` / `a_timers` hold the anonymous contact's, already
// renumbered. Returns the ids of the runs dropped (ended as exits).
void merge_runs(const program& p, contact_state& known, std::vector<workflow_run> a_runs,
                time_point at, std::vector<workflow_outcome>* dropped,
                std::vector<std::uint64_t>& dropped_ids) {
  struct entry {
    workflow_run run;
    int origin;
    std::size_t position;
  };
  std::vector<entry> all;
  for (std::size_t i = 0; i < known.runs.size(); ++i) {
    all.push_back({known.runs[i], 0, i});
  }
  for (std::size_t i = 0; i < a_runs.size(); ++i) {
    all.push_back({a_runs[i], 1, i});
  }
  std::sort(all.begin(), all.end(), [](const entry& x, const entry& y) {
    return std::tie(x.run.entered_at, x.origin, x.position) <
           std::tie(y.run.entered_at, y.origin, y.position);
  });
  const auto& workflows = p.rules().workflows;
  std::vector<std::uint32_t> inside(workflows.size(), 0);
  known.runs.clear();
  for (const auto& e : all) {
    const std::uint32_t w = e.run.workflow;
    if (++inside[w] <= workflows[w].max_active_runs) {
      known.runs.push_back(e.run);
      continue;
    }
    dropped_ids.push_back(e.run.id);
    if (dropped != nullptr) {
      dropped->push_back({w, e.run.step, workflow_outcome_kind::wait_ended, at});
      dropped->push_back({w, e.run.step, workflow_outcome_kind::exited, at});
    }
    timeline_entry t;
    t.ts = t.until = at;
    t.source = w;
    t.step = e.run.step;
    t.source_kind = timeline_source::workflow;
    t.what = timeline_what::workflow_exited;
    known.timeline.record(t, p.timeline_size());
  }
}

void merge_timers(contact_state& known, const contact_state& anonymous, std::uint64_t ordinal_shift,
                  std::uint64_t run_shift, const std::vector<std::uint64_t>& dropped_runs) {
  struct entry {
    timer t;
    int origin;
  };
  std::vector<entry> all;
  auto is_own = [](const timer& t) {
    return t.kind == timer_kind::workflow_date ||
           (t.kind == timer_kind::rule &&
            (t.action == timer::segment_flip || t.action == timer::score_decay));
  };
  auto same_own = [](const timer& x, const timer& y) {
    return x.kind == y.kind && x.action == y.action &&
           (x.kind != timer_kind::workflow_date || x.rule == y.rule);
  };
  for (const auto& t : known.timers) {
    all.push_back({t, 0});
  }
  for (timer t : anonymous.timers) {
    if (is_own(t)) {
      const bool known_has = std::any_of(known.timers.begin(), known.timers.end(),
                                         [&](const timer& k) { return same_own(k, t); });
      if (known_has) {
        continue;
      }
    } else if (t.kind == timer_kind::workflow_step) {
      t.trigger_ordinal += run_shift;
    } else {
      t.trigger_ordinal += ordinal_shift;
    }
    all.push_back({t, 1});
  }
  std::erase_if(all, [&](const entry& e) {
    return e.t.kind == timer_kind::workflow_step &&
           std::find(dropped_runs.begin(), dropped_runs.end(), e.t.trigger_ordinal) !=
               dropped_runs.end();
  });
  std::sort(all.begin(), all.end(), [](const entry& x, const entry& y) {
    return std::tie(x.t.due_at, x.origin, x.t.sequence) <
           std::tie(y.t.due_at, y.origin, y.t.sequence);
  });
  known.timers.clear();
  for (std::size_t i = 0; i < all.size(); ++i) {
    all[i].t.sequence = i;
    known.timers.push_back(all[i].t);
  }
  known.timers_scheduled =
      std::max<std::uint64_t>(all.size(), known.timers_scheduled + anonymous.timers_scheduled);
}

void merge_timeline(const program& p, timeline& into, const timeline& from) {
  const std::size_t capacity = p.timeline_size();
  if (capacity == 0 || from.recorded() == 0) {
    return;
  }
  auto mine = into.entries();
  auto theirs = from.entries();
  std::vector<timeline_entry> merged;
  merged.reserve(mine.size() + theirs.size());
  std::merge(mine.begin(), mine.end(), theirs.begin(), theirs.end(), std::back_inserter(merged),
             [](const timeline_entry& x, const timeline_entry& y) { return x.ts < y.ts; });
  if (merged.size() > capacity) {
    merged.erase(merged.begin(), merged.end() - static_cast<std::ptrdiff_t>(capacity));
  }
  into.assign(std::move(merged), into.recorded() + from.recorded());
}

}  // namespace

contact_state merge_states(const program& p, contact_state known, contact_state anonymous,
                           time_point at, std::vector<workflow_outcome>* dropped) {
  check(p, known, "known");
  check(p, anonymous, "anonymous");
  if (known.contact.id == anonymous.contact.id) {
    throw std::invalid_argument(
        fmt::format("nudge::merge_states: both states are contact \"{}\"", known.contact.id));
  }
  known.history.resize(p.history_slot_count());
  known.measures.resize(p.measure_slot_count());
  anonymous.history.resize(p.history_slot_count());
  anonymous.measures.resize(p.measure_slot_count());
  const auto& c = p.compiled();

  merge_profile(known.contact, anonymous.contact);
  merge_history(c, known, anonymous);
  merge_rule_memory(c, known, anonymous);
  // The timeline first: entries for runs the merge ends come after both histories.
  merge_timeline(p, known.timeline, anonymous.timeline);

  const std::uint64_t ordinal_shift = known.events_applied;
  const std::uint64_t run_shift = known.runs_started;
  std::vector<workflow_run> a_runs = anonymous.runs;
  for (auto& r : a_runs) {
    r.id += run_shift;
    r.entry_ordinal += ordinal_shift;
  }
  std::vector<std::uint64_t> dropped_ids;
  merge_runs(p, known, std::move(a_runs), at, dropped, dropped_ids);
  merge_timers(known, anonymous, ordinal_shift, run_shift, dropped_ids);
  for (const auto& [w, from] : anonymous.workflow_history) {
    auto [it, fresh] = known.workflow_history.emplace(w, from);
    if (fresh) {
      continue;
    }
    workflow_memory& into = it->second;
    if (from.entries > 0) {
      into.last_entry =
          into.entries > 0 ? std::max(into.last_entry, from.last_entry) : from.last_entry;
      into.entries += from.entries;
    }
    into.last_date = std::max(into.last_date, from.last_date);
    into.completed += from.completed;
    into.exited += from.exited;
  }

  // Both ids' recent messages count against the merged contact's caps: a visitor e-mailed
  // twice today stays capped after being identified.
  for (const auto& [ch, from] : anonymous.channel_sends) {
    auto& into = known.channel_sends[ch];
    std::vector<time_point> merged;
    merged.reserve(into.size() + from.size());
    std::merge(into.begin(), into.end(), from.begin(), from.end(), std::back_inserter(merged));
    const std::size_t keep = ch < c.delivery.keep.size() ? c.delivery.keep[ch] : 0;
    if (merged.size() > keep) {
      merged.erase(merged.begin(), merged.end() - static_cast<std::ptrdiff_t>(keep));
    }
    if (merged.empty()) {
      known.channel_sends.erase(ch);
    } else {
      into = std::move(merged);
    }
  }
  union_earlier(known.segments, anonymous.segments);
  union_earlier(known.thresholds_reached, anonymous.thresholds_reached);
  const auto& score_rules = p.rules().scoring.rules;
  for (const auto& [rule, from] : anonymous.score_awards) {
    auto [it, fresh] = known.score_awards.emplace(rule, from);
    if (fresh) {
      continue;
    }
    score_award& into = it->second;
    if (into.period == from.period) {
      into.points += from.points;
      if (rule < score_rules.size() && score_rules[rule].cap) {
        const double cap = score_rules[rule].cap->max_points;
        into.points = std::clamp(into.points, -cap, cap);
      }
    } else if (into.period < from.period) {
      into = from;
    }
  }

  known.clock = std::max(known.clock, anonymous.clock);
  known.events_applied += anonymous.events_applied;
  known.runs_started += anonymous.runs_started;
  return known;
}

}  // namespace nudge
