// Segment membership, evaluated again only when something it reads changed.

#include "evaluator.hpp"

namespace nudge::eval {

// Brings every segment up to date at `at` in definition order, raises an event per membership
// change, and keeps the flip timer at the next instant a windowed leaf changes its value (the
// earliest over all segments, evaluated now or not). Evaluates a segment again only when
// something it reads was touched or one of its windows lost an event since it was last
// evaluated (see seg_stable_until_); a membership change touches the segments naming it, which
// come later in definition order and so are brought up to date in the same pass.
auto evaluator::refresh_segments(time_point at, std::size_t depth,
                                 const std::vector<std::uint32_t>* chain) -> void {
  const auto& defs = p_.rules().segments;
  // Windows only move forward; an instant before the last refresh (not expected: timers and
  // raised events are never due before the clock) evaluates everything, as before.
  const bool everything = at < seg_refreshed_at_;
  seg_refreshed_at_ = at;
  if (!everything && !seg_touched_ && at < seg_stable_min_) {
    // Every segment would keep its membership and its flip instant. The flip timer is the one
    // the last refresh set: it has not fired, since it is due at some segment's flip instant,
    // which is no earlier than that segment's stable-until instant.
    return;
  }
  time_point next = max_time;
  for (std::size_t i = 0; i < defs.size(); ++i) {
    if (!everything && at < seg_stable_until_[i]) {
      next = std::min(next, seg_edge_[i]);
      continue;
    }
    const detail::segment_def& d = c_.segments[i];
    const bool is_member = d.root == none || eval(d.root, at, at);
    const bool was_member = members_[i] != 0;
    if (is_member && !was_member) {
      s_.segments.emplace(defs[i].name, at);
      members_[i] = 1;
      touch_segments(c_.segment_reads.by_segment[i]);
      raise(event_types::segment_entered, defs[i].name, at, depth, chain, none);
    } else if (!is_member && was_member) {
      s_.segments.erase(defs[i].name);
      members_[i] = 0;
      touch_segments(c_.segment_reads.by_segment[i]);
      raise(event_types::segment_exited, defs[i].name, at, depth, chain, none);
    }
    time_point edge_at = max_time;
    time_point stable = d.every_event ? at : max_time;
    for (std::uint32_t n = d.first; n < d.last; ++n) {
      edge_at = std::min(edge_at, edge(c_.nodes[n], at));
      stable = std::min(stable, stable_until(c_.nodes[n], at));
    }
    seg_edge_[i] = edge_at;
    seg_stable_until_[i] = stable;
    next = std::min(next, edge_at);
  }
  seg_touched_ = false;
  seg_stable_min_ = *std::min_element(seg_stable_until_.begin(), seg_stable_until_.end());
  set_own_timer(timer::segment_flip, next);
}

// The first instant after `t` at which the events inside the leaf's window change with no new
// event (its oldest one leaves), or max_time if never; `t` for a leaf whose value this cannot
// bound (re-evaluate it at every refresh). Until then the leaf's value and edge() are those
// computed at `t`: both depend only on the events inside the window and what the leaf reads.
// Mirrors eval()'s windows (an aggregate or occurred leaf reads its window_length whatever
// its window kind).
auto evaluator::stable_until(const detail::node& nd, time_point t) const -> time_point {
  using k = condition::kind;
  const condition& leaf = *nd.source;
  switch (nd.kind) {
    case k::always:
    case k::all:
    case k::any:
    case k::negate:
    case k::compare:
    case k::has_tag:
    case k::in_group:
    case k::in_segment:
    case k::in_workflow:
    case k::completed_workflow:
    case k::exited_workflow:
    case k::near:
    case k::moved:
      return max_time;  // no window; their inputs are touched when they change
    case k::happened: {
      if (leaf.window == window_kind::lifetime) {
        return max_time;
      }
      if (leaf.window != window_kind::within) {
        return t;  // since_trigger: rejected in segments
      }
      const auto& recent = s_.history[nd.slot].recent;
      auto first = std::partition_point(recent.begin(), recent.end(),
                                        [&](time_point e) { return expiry(leaf, e) <= t; });
      return first == recent.end() ? max_time : expiry(leaf, *first);
    }
    case k::aggregate: {
      const auto& recent = s_.measures[nd.slot].recent;
      auto first = std::partition_point(recent.begin(), recent.end(), [&](const timed_value& v) {
        return expiry(leaf, v.at) <= t;
      });
      return first == recent.end() ? max_time : expiry(leaf, first->at);
    }
    case k::occurred: {
      const history_slot& h = s_.history[nd.slot];
      if (h.count == 0) {
        return max_time;
      }
      const time_point o = expiry(leaf, leaf.which == occurrence::first ? h.first : h.last);
      return o > t ? o : max_time;
    }
  }
  return t;
}

// The first instant after `t` at which the leaf's value changes with no new event: when the
// oldest events still inside its window leave it. max_time if never.
auto evaluator::edge(const detail::node& nd, time_point t) const -> time_point {
  const condition& leaf = *nd.source;
  if (leaf.window != window_kind::within) {
    return max_time;
  }
  switch (nd.kind) {
    case condition::kind::happened: {
      const auto& recent = s_.history[nd.slot].recent;
      auto first = std::partition_point(recent.begin(), recent.end(),
                                        [&](time_point e) { return expiry(leaf, e) <= t; });
      const auto n = static_cast<std::int64_t>(recent.end() - first);
      const bool now_value = check_count(n, leaf.count, leaf.count_bound);
      for (auto it = first; it != recent.end(); ++it) {
        // Events of one instant leave the window together (and, for calendar months, events
        // whose day the end of a shorter month clamps to the same one).
        if (it + 1 != recent.end() && expiry(leaf, *(it + 1)) == expiry(leaf, *it)) {
          continue;
        }
        const auto left = static_cast<std::int64_t>(recent.end() - (it + 1));
        if (check_count(left, leaf.count, leaf.count_bound) != now_value) {
          return expiry(leaf, *it);
        }
      }
      return max_time;
    }
    case condition::kind::aggregate: {
      const auto& recent = s_.measures[nd.slot].recent;
      auto first = std::partition_point(recent.begin(), recent.end(), [&](const timed_value& v) {
        return expiry(leaf, v.at) <= t;
      });
      double sum = 0;
      std::int64_t n = 0;
      for (auto it = first; it != recent.end(); ++it) {
        sum += it->amount;
        ++n;
      }
      const bool now_value = aggregate_holds(leaf, sum, n);
      for (auto it = first; it != recent.end(); ++it) {
        sum -= it->amount;
        --n;
        if (it + 1 != recent.end() && expiry(leaf, (it + 1)->at) == expiry(leaf, it->at)) {
          continue;
        }
        if (aggregate_holds(leaf, n == 0 ? 0.0 : sum, n) != now_value) {
          return expiry(leaf, it->at);
        }
      }
      return max_time;
    }
    case condition::kind::occurred: {
      const history_slot& h = s_.history[nd.slot];
      if (h.count == 0) {
        return max_time;
      }
      const time_point o = expiry(leaf, leaf.which == occurrence::first ? h.first : h.last);
      return o > t ? o : max_time;
    }
    default:
      return max_time;
  }
}

}  // namespace nudge::eval
