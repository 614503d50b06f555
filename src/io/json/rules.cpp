// The walker's top level: the file's sections in order, the declarations (event types,
// owner groups), the rules and their triggers.
#include "walker.hpp"

namespace nudge::json_rules {

rule_set walker::run(const json::value& root) {
  rule_set out;
  const json::object* top = object_at(root, root_at);
  if (top == nullptr) {
    return out;
  }
  // "$schema" names the JSON Schema an editor completes the file from
  // (schema/rules.schema.json); accepted and ignored, at the top level only.
  check_fields(*top, root_at,
               {"$schema", "version", "description", "event_types", "owner_groups", "rules",
                "workflows", "segments", "timeline", "scoring", "delivery", "areas"});
  if (const auto* v = top->if_contains("$schema")) {
    string(*v, child(root_at, "$schema"));
  }
  // Declarations first: rules refer to them wherever they appear in the file.
  if (const auto* v = top->if_contains("version")) {
    if (auto n = integer(*v, child(root_at, "version"))) {
      if (*n != 1) {
        fail(child(root_at, "version"), "bad_version",
             fmt::format("unsupported version {} (expected 1)", *n));
      }
    }
  }
  if (const auto* v = top->if_contains("description")) {
    string(*v, child(root_at, "description"));
  }
  if (const auto* v = top->if_contains("event_types")) {
    event_types(*v, out);
    declared_types_ = out.event_types;
  }
  if (const auto* v = top->if_contains("owner_groups")) {
    owner_groups(*v, out);
  }
  if (const auto* v = top->if_contains("timeline")) {
    timeline_at(*v, child(root_at, "timeline"), out);
  }
  if (const auto* v = top->if_contains("segments")) {
    segments(*v, out);
  }
  if (const auto* v = top->if_contains("areas")) {
    areas_at(*v, out);
  }
  if (const auto* v = top->if_contains("scoring")) {
    scoring_at(*v, out.scoring);
  }
  if (const auto* v = top->if_contains("delivery")) {
    delivery_at(*v, child(root_at, "delivery"), out);
  }
  if (const auto* v = top->if_contains("workflows")) {
    workflows_at(*v, out);
  }
  const auto* rules = top->if_contains("rules");
  if (rules == nullptr) {
    fail(root_at, "missing_field", "missing required field \"rules\"");
    return out;
  }
  const json::array* list = array_at(*rules, rules_at);
  if (list == nullptr) {
    return out;
  }
  if (list->size() > limits_.max_rules) {
    fail(rules_at, "too_many_rules",
         fmt::format("{} rules; at most {} are allowed", list->size(), limits_.max_rules));
    return out;
  }
  out.rules.reserve(list->size());
  std::unordered_map<std::string_view, std::size_t> first_with_id;
  for (std::size_t i = 0; i < list->size(); ++i) {
    out.rules.push_back(rule_at((*list)[i], child(rules_at, i), first_with_id, i));
  }
  return out;
}

// ---- declarations ----

void walker::event_types(const json::value& v, rule_set& out) {
  const json::array* a = array_at(v, types_at);
  if (a == nullptr) {
    return;
  }
  for (std::size_t i = 0; i < a->size(); ++i) {
    const path at = child(types_at, i);
    auto t = name((*a)[i], at, "an event type");
    if (!t) {
      continue;
    }
    if (std::find(out.event_types.begin(), out.event_types.end(), *t) != out.event_types.end()) {
      fail(at, "duplicate_event_type", fmt::format("event type {} is declared twice", quoted(*t)));
      continue;
    }
    out.event_types.push_back(*t);
  }
}

void walker::owner_groups(const json::value& v, rule_set& out) {
  const json::object* o = object_at(v, groups_at);
  if (o == nullptr) {
    return;
  }
  for (const auto& m : *o) {
    const path at = child(groups_at, m.key());
    if (m.key().empty()) {
      fail(at, "empty_name", "an owner group name cannot be empty", true);
      continue;
    }
    const json::array* members = array_at(m.value(), at);
    if (members == nullptr) {
      continue;
    }
    if (members->empty()) {
      fail(at, "empty_group", "an owner group needs at least one member");
      continue;
    }
    std::vector<std::string> names;
    for (std::size_t i = 0; i < members->size(); ++i) {
      if (auto s = name((*members)[i], child(at, i), "an owner")) {
        names.push_back(std::move(*s));
      }
    }
    out.owner_groups[std::string{m.key()}] = std::move(names);
  }
  groups_ = &out.owner_groups;
}

// ---- rules ----

rule walker::rule_at(const json::value& v, const path& at,
                     std::unordered_map<std::string_view, std::size_t>& first_with_id,
                     std::size_t index) {
  rule r;
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return r;
  }
  check_fields(*o, at,
               {"id", "description", "on", "delay", "if", "then", "reentry", "cap", "delivery",
                "on_change"});
  if (const auto* id = o->if_contains("id")) {
    if (auto s = name(*id, child(at, "id"), "a rule id")) {
      r.id = std::move(*s);
      const auto& key = id->get_string();
      if (auto [it, fresh] = first_with_id.emplace(std::string_view{key}, index); !fresh) {
        fail(child(at, "id"), "duplicate_id",
             fmt::format("duplicate rule id {} (first used by /rules/{})", quoted(r.id),
                         it->second));
      }
    }
  } else {
    fail(at, "missing_field", "missing required field \"id\"");
  }
  if (const auto* d = o->if_contains("description")) {
    string(*d, child(at, "description"));
  }
  if (const auto* on = o->if_contains("on")) {
    if (auto m = trigger(*on, child(at, "on"))) {
      r.trigger = std::move(*m);
    }
  } else {
    fail(at, "missing_field", "missing required field \"on\"");
  }
  if (const auto* d = o->if_contains("delay")) {
    bool ok = true;
    if (auto m = calendar(*d, child(at, "delay"), false, r.delay, ok)) {
      r.delay_months = m->count;
    }
  }
  if (const auto* c = o->if_contains("if")) {
    if (auto cc = condition_at(*c, child(at, "if"), 1)) {
      r.condition = std::move(*cc);
    }
  }
  if (const auto* t = o->if_contains("then")) {
    const path tat = child(at, "then");
    if (const json::array* list = array_at(*t, tat)) {
      if (list->empty()) {
        fail(tat, "empty_list", "a rule needs at least one action");
      }
      for (std::size_t j = 0; j < list->size(); ++j) {
        if (auto a = action_at((*list)[j], child(tat, j))) {
          r.actions.push_back(std::move(*a));
        }
      }
    }
  } else {
    fail(at, "missing_field", "missing required field \"then\"");
  }
  if (const auto* re = o->if_contains("reentry")) {
    reentry_at(*re, child(at, "reentry"), r);
  }
  if (const auto* c = o->if_contains("cap")) {
    cap_at(*c, child(at, "cap"), r);
  }
  if (const auto* d = o->if_contains("delivery")) {
    own_delivery_at(*d, child(at, "delivery"), r.delivery);
  }
  if (const auto* c = o->if_contains("on_change")) {
    // What a live database does with this rule's pending timers when it changes
    // (docs/live.md, "Changing a rule in a live database").
    const auto* s = c->if_string();
    if (s != nullptr && *s == "reevaluate") {
      r.on_change = rule_change::reevaluate;
    } else if (s != nullptr && *s == "drop") {
      r.on_change = rule_change::drop;
    } else if (s != nullptr && *s == "refuse") {
      r.on_change = rule_change::refuse;
    } else {
      fail(child(at, "on_change"), "bad_on_change",
           fmt::format("unknown on_change {} (expected \"reevaluate\", \"drop\" or \"refuse\")",
                       describe(*c)));
    }
  }
  return r;
}

void walker::reentry_at(const json::value& v, const path& at, rule& r) {
  if (const auto* s = v.if_string()) {
    if (*s == "always") {
      r.reentry_policy = reentry::always;
    } else if (*s == "once") {
      r.reentry_policy = reentry::once;
    } else {
      fail(at, "bad_reentry",
           fmt::format("unknown re-entry policy {} (expected \"always\", \"once\" or "
                       "{{\"once_per\": DURATION}})",
                       describe(v)));
    }
    return;
  }
  if (const auto* o = v.if_object()) {
    check_fields(*o, at, {"once_per"});
    if (const auto* w = o->if_contains("once_per")) {
      if (auto d = window(*w, child(at, "once_per"))) {
        r.reentry_policy = reentry::once_per;
        r.reentry_window = *d;
      }
    } else {
      fail(at, "missing_field", "missing required field \"once_per\"");
    }
    return;
  }
  wrong_type(v, at, "\"always\", \"once\" or {\"once_per\": DURATION}");
}

void walker::cap_at(const json::value& v, const path& at, rule& r) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return;
  }
  check_fields(*o, at, {"max", "per"});
  frequency_cap c;
  bool ok = true;
  if (const auto* m = o->if_contains("max")) {
    auto n = count(*m, child(at, "max"), 1, max_kept_count);
    ok = ok && n.has_value();
    c.max_runs = n.value_or(1);
  } else {
    fail(at, "missing_field", "missing required field \"max\"");
    ok = false;
  }
  if (const auto* p = o->if_contains("per")) {
    auto d = window(*p, child(at, "per"));
    ok = ok && d.has_value();
    c.per = d.value_or(duration{0});
  } else {
    fail(at, "missing_field", "missing required field \"per\"");
    ok = false;
  }
  if (ok) {
    r.cap = c;
  }
}

// ---- events ----

bool walker::is_known_type(std::string_view t) const {
  return is_builtin_event_type(t) ||
         std::find(declared_types_.begin(), declared_types_.end(), t) != declared_types_.end();
}

// The event part of a trigger or a happened leaf: {"event": T, "key"|"key_prefix": K} or
// the shorthands {"tag_added": TAG}, {"stage_entered": STAGE}. Other members of `o` are the
// caller's to check.
std::optional<event_match> walker::match_at(const json::object& o, const path& at) {
  const json::value* ev = o.if_contains("event");
  std::string_view shorthand;
  const json::value* short_value = nullptr;
  int forms = ev != nullptr ? 1 : 0;
  for (auto f : key_shorthands) {
    if (const json::value* v = o.if_contains(f)) {
      ++forms;
      shorthand = f;
      short_value = v;
    }
  }
  if (forms == 0) {
    fail(at, "missing_field",
         fmt::format("missing the event: \"event\", {}", quoted_words(key_shorthands)));
    return std::nullopt;
  }
  if (forms > 1) {
    fail(at, "ambiguous_form",
         fmt::format("give exactly one of \"event\", {}", quoted_words(key_shorthands)));
    return std::nullopt;
  }
  const json::value* key = o.if_contains("key");
  const json::value* prefix = o.if_contains("key_prefix");
  if (ev == nullptr) {
    for (const char* extra : {"key", "key_prefix"}) {
      if (o.if_contains(extra)) {
        fail(child(at, extra), "field_not_allowed",
             fmt::format("{} does not combine with {} (it is the key already)", quoted(extra),
                         quoted(shorthand)),
             true);
      }
    }
    const char* what = shorthand == "tag_added"        ? "a tag"
                       : shorthand == "stage_entered"  ? "a stage"
                       : shorthand == "score_crossed"  ? "a threshold"
                       : shorthand.starts_with("area") ? "an area"
                                                       : "a segment";
    auto k = name(*short_value, child(at, shorthand), what);
    if (!k) {
      return std::nullopt;
    }
    return event_match{std::string{shorthand}, key_match::exact, std::move(*k)};
  }
  auto t = name(*ev, child(at, "event"), "an event type");
  bool ok = t.has_value();
  if (t && !is_known_type(*t)) {
    std::vector<std::string> candidates(builtin_types.begin(), builtin_types.end());
    candidates.insert(candidates.end(), declared_types_.begin(), declared_types_.end());
    if (auto s = closest(*t, candidates)) {
      fail(child(at, "event"), "unknown_event_type",
           edit_distance(*t, *s, true) == 0
               ? fmt::format("unknown event type {} (did you mean {}? or declare {} in "
                             "\"event_types\")",
                             quoted(*t), quoted(*s), quoted(*t))
               : fmt::format("unknown event type {} (did you mean {}?)", quoted(*t), quoted(*s)));
    } else {
      fail(child(at, "event"), "unknown_event_type",
           fmt::format("unknown event type {} (declare custom types in \"event_types\")",
                       quoted(*t)));
    }
    ok = false;
  }
  event_match m;
  if (t) {
    m.type = std::move(*t);
  }
  if (key != nullptr && prefix != nullptr) {
    fail(child(at, "key_prefix"), "ambiguous_form", "give \"key\" or \"key_prefix\", not both",
         true);
    return std::nullopt;
  }
  if (key != nullptr) {
    auto k = string(*key, child(at, "key"));
    ok = ok && k.has_value();
    m.match = key_match::exact;
    m.key = k.value_or("");
  } else if (prefix != nullptr) {
    auto k = string(*prefix, child(at, "key_prefix"));
    if (k && k->empty()) {
      fail(child(at, "key_prefix"), "bad_value",
           "an empty prefix matches every key (leave \"key_prefix\" out)");
      ok = false;
    }
    ok = ok && k.has_value();
    m.match = key_match::prefix;
    m.key = k.value_or("");
  }
  if (!ok) {
    return std::nullopt;
  }
  return m;
}

std::optional<event_match> walker::trigger(const json::value& v, const path& at) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  check_fields(*o, at,
               {"event", "key", "key_prefix", "tag_added", "stage_entered", "segment_entered",
                "segment_exited", "score_crossed", "area_entered", "area_exited"});
  return match_at(*o, at);
}

}  // namespace nudge::json_rules
