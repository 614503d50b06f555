// The walker's delivery policy: quiet hours, refusals, weekdays, caps, the "delivery" section,
// a rule's or workflow's own delivery, and the timeline.
#include "walker.hpp"

namespace nudge::json_rules {

std::optional<local_hours> walker::hours_at(const json::value& v, const path& at) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  check_fields(*o, at, {"from", "to"});
  local_hours h;
  bool ok = true;
  for (auto [field, target] : {std::pair{"from", &h.from_seconds}, {"to", &h.to_seconds}}) {
    if (const auto* x = o->if_contains(field)) {
      auto t = clock_time(*x, child(at, field));
      ok = ok && t.has_value();
      *target = t.value_or(0);
    } else {
      fail(at, "missing_field", fmt::format("missing required field \"{}\"", field));
      ok = false;
    }
  }
  if (ok && h.from_seconds == h.to_seconds) {
    fail(at, "bad_hours", "\"from\" and \"to\" must differ");
    ok = false;
  }
  return ok ? std::optional{h} : std::nullopt;
}

std::optional<on_refusal> walker::refusal_at(const json::value& v, const path& at) {
  if (const auto* s = v.if_string()) {
    if (*s == "defer") {
      return on_refusal::defer;
    }
    if (*s == "skip") {
      return on_refusal::skip;
    }
  }
  fail(at, "bad_refusal", fmt::format("{} is not \"defer\" or \"skip\"", describe(v)));
  return std::nullopt;
}

// The policy fields present in `o`, over `p`.
// ["mon", ..., "sun"] (send windows, time-of-day waits) -> bit 0 Monday ... bit 6 Sunday;
// nullopt when nothing valid was named (each problem is reported).
std::optional<std::uint8_t> walker::weekdays_at(const json::value& v, const path& at) {
  static constexpr std::array<std::string_view, 7> names{"mon", "tue", "wed", "thu",
                                                         "fri", "sat", "sun"};
  const json::array* a = array_at(v, at);
  if (a == nullptr) {
    return std::nullopt;
  }
  if (a->empty()) {
    fail(at, "bad_weekdays", "at least one weekday must be allowed");
  }
  std::uint8_t mask = 0;
  for (std::size_t k = 0; k < a->size(); ++k) {
    auto s = string((*a)[k], child(at, k));
    if (!s) {
      continue;
    }
    auto it = std::find(names.begin(), names.end(), *s);
    if (it == names.end()) {
      fail(child(at, k), "bad_weekday",
           fmt::format("unknown weekday {} (expected {})", quoted(*s), list_words(names)));
      continue;
    }
    mask = static_cast<std::uint8_t>(mask | (1U << (it - names.begin())));
  }
  return mask == 0 ? std::nullopt : std::optional{mask};
}

void walker::policy_fields_at(const json::object& o, const path& at, delivery_policy& p) {
  if (const auto* v = o.if_contains("consent")) {
    p.require_consent = boolean(*v, child(at, "consent")).value_or(p.require_consent);
  }
  if (const auto* v = o.if_contains("caps")) {
    const path cat = child(at, "caps");
    if (const json::array* a = array_at(*v, cat)) {
      p.caps.clear();
      for (std::size_t k = 0; k < a->size(); ++k) {
        const path kat = child(cat, k);
        const json::object* c = object_at((*a)[k], kat);
        if (c == nullptr) {
          continue;
        }
        check_fields(*c, kat, {"channel", "max", "per"});
        channel_cap cap;
        bool ok = true;
        if (const auto* ch = c->if_contains("channel")) {
          auto name = string(*ch, child(kat, "channel"));
          auto parsed = name ? channel_from_name(*name) : std::nullopt;
          if (name && !parsed) {
            fail(child(kat, "channel"), "unknown_channel",
                 fmt::format("unknown channel {} (expected email, sms, web_push, popup or chat)",
                             quoted(*name)));
          }
          ok = ok && parsed.has_value();
          cap.on = parsed.value_or(channel::email);
        } else {
          fail(kat, "missing_field", "missing required field \"channel\"");
          ok = false;
        }
        if (const auto* m = c->if_contains("max")) {
          auto n = count(*m, child(kat, "max"), 1, max_kept_count);
          ok = ok && n.has_value();
          cap.max_messages = n.value_or(1);
        } else {
          fail(kat, "missing_field", "missing required field \"max\"");
          ok = false;
        }
        if (const auto* w = c->if_contains("per")) {
          auto d = window(*w, child(kat, "per"));
          ok = ok && d.has_value();
          cap.per = d.value_or(duration{0});
        } else {
          fail(kat, "missing_field", "missing required field \"per\"");
          ok = false;
        }
        if (ok) {
          p.caps.push_back(cap);
        }
      }
    }
  }
  if (const auto* v = o.if_contains("quiet_hours")) {
    p.quiet_hours = hours_at(*v, child(at, "quiet_hours"));
  }
  if (const auto* v = o.if_contains("send_hours")) {
    p.send_hours = hours_at(*v, child(at, "send_hours"));
  }
  if (const auto* v = o.if_contains("weekdays")) {
    p.weekdays = weekdays_at(*v, child(at, "weekdays")).value_or(p.weekdays);
  }
  if (const auto* v = o.if_contains("on_cap")) {
    p.on_cap = refusal_at(*v, child(at, "on_cap")).value_or(p.on_cap);
  }
  if (const auto* v = o.if_contains("on_quiet_hours")) {
    p.on_quiet_hours = refusal_at(*v, child(at, "on_quiet_hours")).value_or(p.on_quiet_hours);
  }
  if (const auto* v = o.if_contains("priority")) {
    auto n = count(*v, child(at, "priority"), -1'000'000, 1'000'000);
    p.priority = static_cast<std::int32_t>(n.value_or(p.priority));
  }
}

void walker::delivery_at(const json::value& v, const path& at, rule_set& out) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return;
  }
  check_fields(
      *o, at,
      {"consent", "caps", "quiet_hours", "send_hours", "weekdays", "on_cap", "on_quiet_hours",
       "priority", "default_time_zone", "time_zones", "use_system_zones"});
  delivery_settings d;
  policy_fields_at(*o, at, d.defaults);
  if (const auto* x = o->if_contains("default_time_zone")) {
    d.default_time_zone =
        name(*x, child(at, "default_time_zone"), "a time zone name").value_or(d.default_time_zone);
  }
  if (const auto* x = o->if_contains("time_zones")) {
    const path zat = child(at, "time_zones");
    if (const json::object* z = object_at(*x, zat)) {
      for (const auto& m : *z) {
        if (auto rule = string(m.value(), child(zat, m.key()))) {
          d.time_zones.insert_or_assign(std::string{m.key()}, std::move(*rule));
        }
      }
    }
  }
  if (const auto* x = o->if_contains("use_system_zones")) {
    d.use_system_zones = boolean(*x, child(at, "use_system_zones")).value_or(d.use_system_zones);
  }
  out.delivery = std::move(d);
  delivery_defaults_ = &*out.delivery;
}

// A rule's or workflow's "delivery": the file's defaults with these fields replaced.
void walker::own_delivery_at(const json::value& v, const path& at,
                             std::optional<delivery_policy>& out) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return;
  }
  check_fields(*o, at,
               {"consent", "caps", "quiet_hours", "send_hours", "weekdays", "on_cap",
                "on_quiet_hours", "priority"});
  delivery_policy p =
      delivery_defaults_ != nullptr ? delivery_defaults_->defaults : delivery_policy{};
  policy_fields_at(*o, at, p);
  out = std::move(p);
}

// {"size": N}: entries kept per contact timeline (0: none).
void walker::timeline_at(const json::value& v, const path& at, rule_set& out) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return;
  }
  check_fields(*o, at, {"size"});
  if (const auto* n = o->if_contains("size")) {
    if (auto size = count(*n, child(at, "size"), 0, max_timeline_size)) {
      out.timeline_size = static_cast<std::uint32_t>(*size);
    }
  } else {
    fail(at, "missing_field", "missing required field \"size\"");
  }
}

}  // namespace nudge::json_rules
