// Applying an event (the host's or a raised one) and draining the cascade it starts.

#include <fmt/format.h>

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::drain() -> void {
  do {
    while (raised_head_ < raised_.size()) {
      pending_event e = std::move(raised_[raised_head_++]);
      if (raised_head_ == raised_.size()) {
        raised_.clear();
        raised_head_ = 0;
      }
      auto t = c_.types.find(e.type);
      apply(t == c_.types.end() ? none : t->second, e.key, e.at, e.depth, &e.chain, nullptr);
    }
    // Segments reading workflow state see the runs as the cascade left them (a run moves
    // after the events that move it were applied, and by timers that apply no event).
    if (runs_moved_) [[unlikely]] {
      runs_moved_ = false;
      refresh_segments(runs_moved_at_, 0, nullptr);
    }
  } while (raised_head_ < raised_.size());
  cascade_raised_ = 0;  // the cascade is over: the next external event or timer starts anew
}

// Rules and slots for (type, key): the precomputed lists for a key some rule names, else the
// any-key lists merged with the prefix patterns that match.
auto evaluator::lookup(std::uint32_t type, std::string_view key, detail::match_lists& merged)
    -> const detail::match_lists* {
  if (type == none) {
    return nullptr;
  }
  const detail::type_index& ti = c_.by_type[type];
  if (!ti.exact.empty()) {
    auto k = ti.exact.find(key);
    if (k != ti.exact.end()) {
      return &k->second;
    }
  }
  if (!ti.has_prefixes()) {
    return &ti.other_keys;
  }
  auto add = [&](std::vector<std::uint32_t>& into, const std::vector<std::uint32_t>& any,
                 const std::vector<std::pair<std::string, std::uint32_t>>& prefixes) {
    into = any;
    for (const auto& [prefix, id] : prefixes) {
      if (key.starts_with(prefix)) {
        into.push_back(id);
      }
    }
    std::sort(into.begin(), into.end());
  };
  add(merged.rules, ti.other_keys.rules, ti.prefix_rules);
  add(merged.slots, ti.other_keys.slots, ti.prefix_slots);
  add(merged.measures, ti.other_keys.measures, ti.prefix_measures);
  add(merged.scores, ti.other_keys.scores, ti.prefix_scores);
  return &merged;
}

auto evaluator::apply(std::uint32_t type, std::string_view key, time_point at, std::size_t depth,
                      const std::vector<std::uint32_t>* chain, const name_map<value>* props)
    -> void {
  s_.clock = std::max(s_.clock, at);
  const std::uint64_t ordinal = s_.events_applied++;
  if (props != nullptr && !props->empty()) {
    std::string unused;  // validated before the batch (check_finite)
    if (auto here = detail::location_of(*props, &unused)) {
      move_to(here, at, depth, chain);
    }
  }
  if (type == c_.tag_added_type) {
    if (!s_.contact.has_tag(key)) {
      changing_profile();
      s_.contact.tags.emplace(std::string{key}, at);
      touch_named(c_.segment_reads.by_tag, key);
    }
  } else if (type == c_.stage_entered_type) {
    changing_profile();
    s_.contact.stage = std::string{key};
    touch_field(field::stage);
  } else if (type == c_.tag_removed_type) {
    if (auto it = s_.contact.tags.find(key); it != s_.contact.tags.end()) {
      changing_profile();
      s_.contact.tags.erase(it);
      touch_named(c_.segment_reads.by_tag, key);
    }
  }
  detail::match_lists merged;
  const detail::match_lists* lists = lookup(type, key, merged);
  if (lists == nullptr) {
    return;
  }
  for (std::uint32_t slot : lists->slots) {
    record(s_.history[slot], c_.slots[slot].recent_needed, at);
    touch_segments(c_.segment_reads.by_slot[slot]);
  }
  for (std::uint32_t m : lists->measures) {
    record_measure(m, at, props);
  }
  for (std::uint32_t r : lists->scores) {
    award(r, at, depth, chain);
  }
  if (!p_.rules().scoring.thresholds.empty()) {
    check_thresholds(at, depth, chain);
  }
  if (p_.rules().scoring.decay) {
    sync_decay_timer(at);
  }
  if (!c_.segments.empty()) {
    refresh_segments(at, depth, chain);
  }
  // Safe to iterate while rules run: raised events wait in raised_ and never re-enter here.
  for (std::uint32_t r : lists->rules) {
    trigger(r, at, ordinal, depth, chain);
  }
  if (!c_.workflows.empty()) {
    const cascade_ctx ctx{depth, chain};
    on_workflow_event(type, key, at, ordinal, ctx, props);
  }
}

// The contact's location changes to `to`: remember where it was (moved), have the segments
// reading it re-evaluated, and raise area_entered / area_exited for the areas it crossed into
// or out of (after the event moving it, like segment events).
auto evaluator::move_to(std::optional<geo_point> to, time_point at, std::size_t depth,
                        const std::vector<std::uint32_t>* chain) -> void {
  const auto from = s_.contact.location;
  if (from == to) {
    return;
  }
  if (from) {
    s_.previous_location = from;
  }
  s_.contact.location = to;
  touch_segments(c_.segment_reads.by_location);
  for (const area& a : p_.rules().areas) {
    const bool was = from && distance_km(*from, a.center) <= a.radius_km;
    const bool is = to && distance_km(*to, a.center) <= a.radius_km;
    if (is != was) {
      raise(is ? event_types::area_entered : event_types::area_exited, a.name, at, depth, chain,
            none);
    }
  }
}

auto evaluator::record(history_slot& h, std::uint32_t keep, time_point at) -> void {
  if (h.count == 0) {
    h.first = at;
  }
  ++h.count;
  h.last = at;
  if (keep > 0) {
    if (h.recent.size() == keep) {
      h.recent.erase(h.recent.begin());
    }
    h.recent.push_back(at);
  }
}

auto evaluator::record_measure(std::uint32_t m, time_point at, const name_map<value>* props)
    -> void {
  if (props == nullptr) {
    return;  // raised events carry no properties
  }
  const detail::measure_def& def = c_.measures[m];
  auto it = props->find(def.property);
  double amount = 0;
  if (it == props->end() || !as_number(it->second, amount)) {
    return;  // counts as 0 in a sum and is left out of an average: the same as not kept
  }
  auto& recent = s_.measures[m].recent;
  // Values at or before at - keep can never be inside a window again (time only moves on).
  const time_point expired = at - def.keep;
  std::size_t drop = 0;
  while (drop < recent.size() && recent[drop].at <= expired) {
    ++drop;
  }
  if (drop == 0 && recent.size() >= c_.max_kept) {
    drop = recent.size() - c_.max_kept + 1;
  }
  recent.erase(recent.begin(), recent.begin() + static_cast<std::ptrdiff_t>(drop));
  recent.push_back({at, amount});
  touch_segments(c_.segment_reads.by_measure[m]);
}

// Queues an event an action (rule `r`) or the engine itself (r == none) raised.
auto evaluator::raise(std::string_view type, std::string key, time_point at, std::size_t depth,
                      const std::vector<std::uint32_t>* chain, std::uint32_t r) -> void {
  pending_event e;
  e.type = std::string{type};
  e.key = std::move(key);
  e.at = at;
  e.depth = depth + 1;
  if (chain != nullptr) {
    e.chain = *chain;
  }
  if (r != none) {
    e.chain.push_back(r);
  }
  if (e.depth > p_.limits().max_cascade_depth) {
    std::vector<std::string> names;
    for (auto id : e.chain) {
      names.push_back(id < p_.rule_count()
                          ? p_.rules().rules[id].id
                          : "workflow " + p_.rules().workflows[id - p_.rule_count()].id);
    }
    if (r == none) {
      names.push_back(fmt::format("{} \"{}\"", e.type, e.key));
    }
    throw rule_cycle_error(s_.contact.id, std::move(names));
  }
  raised_.push_back(std::move(e));
  if (++cascade_raised_ > p_.limits().max_cascade_events) {
    throw_too_many_raised();
  }
}

// Names the rules (or workflows) that raised the queued events, most first (ties by order).
auto evaluator::throw_too_many_raised() const -> void {
  const std::size_t sources = p_.rule_count() + p_.rules().workflows.size();
  std::vector<std::size_t> per_source(sources, 0);
  for (std::size_t i = raised_head_; i < raised_.size(); ++i) {
    if (!raised_[i].chain.empty() && raised_[i].chain.back() < sources) {
      ++per_source[raised_[i].chain.back()];
    }
  }
  std::vector<std::uint32_t> order;
  for (std::uint32_t r = 0; r < sources; ++r) {
    if (per_source[r] > 0) {
      order.push_back(r);
    }
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return per_source[a] > per_source[b]; });
  std::vector<std::string> names;
  std::vector<std::size_t> counts;
  for (std::uint32_t id : order) {
    names.push_back(id < p_.rule_count()
                        ? p_.rules().rules[id].id
                        : "workflow " + p_.rules().workflows[id - p_.rule_count()].id);
    counts.push_back(per_source[id]);
  }
  throw rule_cycle_error::cascade_events(s_.contact.id, std::move(names), counts,
                                         p_.limits().max_cascade_events);
}

}  // namespace nudge::eval
