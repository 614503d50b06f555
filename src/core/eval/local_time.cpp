// The contact's local time: its zone, a policy's allowed hours, the next allowed instant.

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::zone() const -> const zone_rules* {
  const auto& d = c_.delivery;
  const std::string& name = s_.contact.time_zone;
  if (!name.empty()) {
    if (auto it = d.zones.find(name); it != d.zones.end()) {
      return &it->second;
    }
    if (d.host_zones != nullptr) {
      if (const zone_rules* z = d.host_zones->find(name)) {
        return z;
      }
    }
  }
  return d.default_zone ? &*d.default_zone : nullptr;
}

// Why local wall time `local` (seconds since 1970-01-01T00:00 local) is refused, or none.
auto evaluator::refusal_at(const delivery_policy& p, std::int64_t local) -> timeline_reason {
  const std::int64_t day = floor_div(local, 86'400);
  const std::int64_t second = local - day * 86'400;
  const std::int64_t weekday = (day % 7 + 7 + 3) % 7;  // 1970-01-01 was a Thursday; Monday 0
  if (((p.weekdays >> weekday) & 1U) == 0 || (p.send_hours && !within(*p.send_hours, second))) {
    return timeline_reason::send_window;
  }
  if (p.quiet_hours && within(*p.quiet_hours, second)) {
    return timeline_reason::quiet_hours;
  }
  return timeline_reason::none;
}

auto evaluator::hours_refusal(const delivery_policy& p, time_point now) const -> timeline_reason {
  if (!p.quiet_hours && !p.send_hours && p.weekdays == all_weekdays) {
    return timeline_reason::none;
  }
  const std::int64_t t = to_epoch(now);
  return refusal_at(p, t + offset_at(zone(), t));
}

// The first instant at or after `from` whose local wall time the policy allows (see
// delivery.hpp for what that means on daylight-saving days); nullopt if none within ~10 days.
auto evaluator::next_allowed(const delivery_policy& p, time_point from) const
    -> std::optional<time_point> {
  if (!p.quiet_hours && !p.send_hours && p.weekdays == all_weekdays) {
    return from;
  }
  const zone_rules* z = zone();
  std::int64_t t = to_epoch(from);
  for (int guard = 0; guard < 64; ++guard) {
    const std::int64_t off = offset_at(z, t);
    const std::int64_t local = t + off;
    if (refusal_at(p, local) == timeline_reason::none) {
      return from_epoch(t);
    }
    // The next local wall time > local at which the answer may change.
    const std::int64_t day = floor_div(local, 86'400) * 86'400;
    std::int64_t boundary = day + 86'400;
    for (const auto& h : {p.send_hours, p.quiet_hours}) {
      if (!h) {
        continue;
      }
      for (std::int64_t edge : {std::int64_t{h->from_seconds}, std::int64_t{h->to_seconds}}) {
        if (day + edge > local) {
          boundary = std::min(boundary, day + edge);
        }
      }
    }
    // The first instant after t whose wall time reaches the boundary: t + (boundary - local)
    // unless the offset changes on the way (a transition between t and there).
    std::int64_t u = boundary - off;
    if (offset_at(z, u) != off) {
      std::int64_t lo = t, hi = u;  // offset(lo) == off, offset(hi) != off
      while (hi - lo > 1) {
        const std::int64_t mid = lo + (hi - lo) / 2;
        (offset_at(z, mid) == off ? lo : hi) = mid;
      }
      const std::int64_t after = offset_at(z, hi);
      // Spring forward past the boundary: the first instant after the gap. Fall back: the
      // boundary is reached again in the new offset.
      u = hi + after >= boundary ? hi : boundary - after;
    }
    t = u;
  }
  return std::nullopt;
}

}  // namespace nudge::eval
