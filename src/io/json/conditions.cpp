// The walker's conditions: every condition form, aggregates, occurrences, "happened" and the
// detail and field comparisons.
#include "walker.hpp"

namespace nudge::json_rules {

std::optional<condition> walker::condition_at(const json::value& v, const path& at,
                                              std::size_t depth) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  if (depth > limits_.max_condition_depth) {
    fail(at, "too_deep",
         fmt::format("condition nested deeper than {} levels", limits_.max_condition_depth));
    return std::nullopt;
  }
  if (o->contains("detail") || o->contains("field")) {
    return comparison(*o, at);
  }
  if (o->contains("in_workflow")) {
    // {"in_workflow": ID} or {"in_workflow": ID, "step": STEP}: a form with two keys, like a
    // comparison. Whether they exist is checked by program::compile (located there too).
    if (!check_fields(*o, at, {"in_workflow", "step"})) {
      return std::nullopt;
    }
    auto w = name(o->at("in_workflow"), child(at, "in_workflow"), "a workflow id");
    std::optional<std::string> step{std::string{}};
    if (const auto* st = o->if_contains("step")) {
      step = name(*st, child(at, "step"), "a step id");
    }
    if (!w || !step) {
      return std::nullopt;
    }
    return in_workflow(std::move(*w), std::move(*step));
  }
  if (o->empty()) {
    fail(at, "missing_field",
         fmt::format("empty condition (expected one of {})", list_words(condition_forms)));
    return std::nullopt;
  }
  // Exactly one form: report unknown keys, then more than one known form.
  std::string_view form;
  bool ok = true;
  for (const auto& m : *o) {
    const std::string_view k{m.key()};
    if (std::find(condition_forms.begin(), condition_forms.end(), k) == condition_forms.end()) {
      if (auto s = closest(k, condition_forms)) {
        fail(child(at, k), "unknown_condition",
             fmt::format("unknown condition {} (did you mean {}?)", quoted(k), quoted(*s)), true);
      } else {
        fail(child(at, k), "unknown_condition",
             fmt::format("unknown condition {} (expected one of {})", quoted(k),
                         list_words(condition_forms)),
             true);
      }
      ok = false;
    } else if (form.empty()) {
      form = k;
    } else {
      fail(child(at, k), "ambiguous_form",
           fmt::format("a condition has exactly one form; found {} and {} (combine them with "
                       "\"all\" or \"any\")",
                       quoted(form), quoted(k)),
           true);
      ok = false;
    }
  }
  if (!ok || form.empty()) {
    return std::nullopt;
  }
  const json::value& arg = o->at(form);
  const path aat = child(at, form);
  if (form == "all" || form == "any") {
    const json::array* list = array_at(arg, aat);
    if (list == nullptr) {
      return std::nullopt;
    }
    if (list->empty()) {
      fail(aat, "empty_list", fmt::format("{} needs at least one condition", quoted(form)));
      return std::nullopt;
    }
    std::vector<condition> kids;
    for (std::size_t i = 0; i < list->size(); ++i) {
      if (auto c = condition_at((*list)[i], child(aat, i), depth + 1)) {
        kids.push_back(std::move(*c));
      } else {
        ok = false;
      }
    }
    if (!ok) {
      return std::nullopt;
    }
    return form == "all" ? all(std::move(kids)) : any(std::move(kids));
  }
  if (form == "not") {
    auto c = condition_at(arg, aat, depth + 1);
    if (!c) {
      return c;
    }
    return negate(std::move(*c));
  }
  if (form == "status" || form == "stage") {
    auto s = string(arg, aat);
    if (!s) {
      return std::nullopt;
    }
    return form == "status" ? nudge::status().eq(std::move(*s)) : nudge::stage().eq(std::move(*s));
  }
  if (form == "has_tag" || form == "in_group") {
    auto s = name(arg, aat, form == "has_tag" ? "a tag" : "a group");
    if (!s) {
      return std::nullopt;
    }
    return form == "has_tag" ? has_tag(std::move(*s)) : in_group(std::move(*s));
  }
  if (form == "near" || form == "moved") {
    const json::object* c = object_at(arg, aat);
    if (c == nullptr) {
      return std::nullopt;
    }
    const bool is_near = form == "near";
    if (!check_fields(*c, aat,
                      is_near ? std::initializer_list<std::string_view>{"lat", "lon", "km"}
                              : std::initializer_list<std::string_view>{"km"})) {
      return std::nullopt;
    }
    geo_point p;
    double km = 0;
    if (!circle_at(*c, aat, is_near ? &p : nullptr, km)) {
      return std::nullopt;
    }
    return is_near ? near(p, km) : moved_more_than(km);
  }
  if (form == "completed_workflow" || form == "exited_workflow") {
    auto s = name(arg, aat, "a workflow id");
    if (!s) {
      return std::nullopt;
    }
    return form == "completed_workflow" ? completed_workflow(std::move(*s))
                                        : exited_workflow(std::move(*s));
  }
  if (form == "in_segment") {
    auto s = name(arg, aat, "a segment");
    if (!s) {
      return std::nullopt;
    }
    // The same checks as program::compile, here so that they come in the same pass as the
    // rest: a segment sees only the segments before it, a rule sees them all.
    const auto visible = segment_names_.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                      current_segment_, segment_names_.size()));
    const auto found = std::find(segment_names_.begin(), segment_names_.end(), *s);
    if (found == segment_names_.end()) {
      fail(aat, "unknown_segment", fmt::format("no segment {} is defined", quoted(*s)));
      return std::nullopt;
    }
    if (found >= visible) {
      const auto index = static_cast<std::size_t>(found - segment_names_.begin());
      fail(aat, "segment_order",
           index == current_segment_
               ? fmt::format("segment {} cannot refer to itself", quoted(*s))
               : fmt::format("segment {} is defined after this one (/segments/{}); a segment "
                             "may only name segments defined before it",
                             quoted(*s), index));
      return std::nullopt;
    }
    return in_segment(std::move(*s));
  }
  if (form == "sum" || form == "average") {
    return aggregate_at(arg, aat, form == "sum" ? aggregate_fn::sum : aggregate_fn::average);
  }
  if (form == "first_seen" || form == "last_seen") {
    return occurred_at(arg, aat, form == "first_seen" ? occurrence::first : occurrence::last);
  }
  return happened_at(arg, aat, form == "not_happened");
}

// {"event": ..., "property": P, "within": W, "ge": N} (one of eq, ne, lt, le, gt, ge)
std::optional<condition> walker::aggregate_at(const json::value& v, const path& at,
                                              aggregate_fn fn) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  static constexpr std::array<std::string_view, 6> ops{"eq", "ne", "lt", "le", "gt", "ge"};
  bool ok = check_fields(*o, at,
                         {"event", "key", "key_prefix", "tag_added", "stage_entered",
                          "segment_entered", "segment_exited", "score_crossed", "area_entered",
                          "area_exited", "property", "within", "eq", "ne", "lt", "le", "gt", "ge"});
  auto m = match_at(*o, at);
  ok = ok && m.has_value();
  aggregate_builder b = aggregate_of(fn, m.value_or(event_match{}), {});
  if (const auto* p = o->if_contains("property")) {
    auto n = name(*p, child(at, "property"), "a property name");
    ok = ok && n.has_value();
    b.node.property = n.value_or("");
  } else {
    fail(at, "missing_field", "missing required field \"property\"");
    ok = false;
  }
  if (const auto* w = o->if_contains("within")) {
    duration d{0};
    bool fine = true;
    if (auto cm = calendar(*w, child(at, "within"), true, d, fine)) {
      b.within(*cm);
    } else {
      b.within(d);
    }
    ok = ok && fine;
  } else {
    fail(at, "missing_field", "missing required field \"within\"");
    ok = false;
  }
  std::optional<condition> out;
  const char* found = nullptr;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const json::value* n = o->if_contains(ops[i]);
    if (n == nullptr) {
      continue;
    }
    const path nat = child(at, ops[i]);
    if (found != nullptr) {
      fail(nat, "ambiguous_form",
           fmt::format("give one comparison; found {} and {}", quoted(found), quoted(ops[i])),
           true);
      ok = false;
      continue;
    }
    found = ops[i].data();
    auto x = number(*n, nat);
    ok = ok && x.has_value();
    condition c = b.node;
    c.op = static_cast<compare_op>(i);  // eq..ge lead compare_op in this order
    c.operands = {value{x.value_or(0)}};
    out = std::move(c);
  }
  if (found == nullptr) {
    fail(at, "missing_field", fmt::format("missing the comparison (one of {})", list_words(ops)));
    ok = false;
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

// {"event": ..., "within": W} or {"event": ..., "older_than": W}
std::optional<condition> walker::occurred_at(const json::value& v, const path& at,
                                             occurrence which) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  bool ok = check_fields(
      *o, at,
      {"event", "key", "key_prefix", "tag_added", "stage_entered", "segment_entered",
       "segment_exited", "score_crossed", "area_entered", "area_exited", "within", "older_than"});
  auto m = match_at(*o, at);
  ok = ok && m.has_value();
  occurred_builder b = which == occurrence::first ? first_seen(m.value_or(event_match{}))
                                                  : last_seen(m.value_or(event_match{}));
  const json::value* within = o->if_contains("within");
  const json::value* older = o->if_contains("older_than");
  condition c;
  if (within != nullptr && older != nullptr) {
    fail(child(at, "older_than"), "ambiguous_form", "give \"within\" or \"older_than\", not both",
         true);
    return std::nullopt;
  }
  if (within == nullptr && older == nullptr) {
    fail(at, "missing_field", "missing the window: \"within\" or \"older_than\"");
    return std::nullopt;
  }
  const bool is_older = older != nullptr;
  duration d{0};
  bool fine = true;
  auto cm = calendar(is_older ? *older : *within, child(at, is_older ? "older_than" : "within"),
                     true, d, fine);
  if (!ok || !fine) {
    return std::nullopt;
  }
  if (cm) {
    return is_older ? b.older_than(*cm) : b.within(*cm);
  }
  return is_older ? b.older_than(d) : b.within(d);
}

std::optional<double> walker::number(const json::value& v, const path& at) {
  if (!v.is_number()) {
    wrong_type(v, at, "a number");
    return std::nullopt;
  }
  const double d = v.to_number<double>();
  if (!std::isfinite(d)) {
    fail(at, "bad_value", "the number is out of range for a decimal");
    return std::nullopt;
  }
  return d;
}

std::optional<condition> walker::happened_at(const json::value& v, const path& at, bool is_not) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  bool ok = true;
  if (is_not) {
    ok = check_fields(*o, at,
                      {"event", "key", "key_prefix", "tag_added", "stage_entered",
                       "segment_entered", "segment_exited", "score_crossed", "area_entered",
                       "area_exited", "within", "since_trigger"});
  } else {
    ok = check_fields(*o, at,
                      {"event", "key", "key_prefix", "tag_added", "stage_entered",
                       "segment_entered", "segment_exited", "score_crossed", "area_entered",
                       "area_exited", "within", "since_trigger", "at_least", "at_most", "exactly"});
  }
  auto m = match_at(*o, at);
  ok = ok && m.has_value();
  condition c = happened(m.value_or(event_match{}));
  const json::value* within = o->if_contains("within");
  const json::value* since = o->if_contains("since_trigger");
  if (within != nullptr && since != nullptr) {
    fail(child(at, "since_trigger"), "ambiguous_form",
         "give \"within\" or \"since_trigger\", not both", true);
    ok = false;
  } else if (within != nullptr) {
    bool fine = true;
    if (auto cm = calendar(*within, child(at, "within"), true, c.window_length, fine)) {
      c.window_months = cm->count;
    }
    ok = ok && fine;
    c.window = window_kind::within;
  } else if (since != nullptr) {
    auto b = boolean(*since, child(at, "since_trigger"));
    if (b && !*b) {
      fail(child(at, "since_trigger"), "bad_value",
           "\"since_trigger\" can only be true (leave it out to count over the lifetime)");
      b.reset();
    }
    ok = ok && b.has_value();
    c.window = window_kind::since_trigger;
  }
  const bool windowed = c.window != window_kind::lifetime;
  if (is_not) {
    c.count = count_op::at_most;
    c.count_bound = 0;
  } else {
    const char* found = nullptr;
    for (auto [key, op] :
         {std::pair{"at_least", count_op::at_least}, std::pair{"at_most", count_op::at_most},
          std::pair{"exactly", count_op::exactly}}) {
      const json::value* n = o->if_contains(key);
      if (n == nullptr) {
        continue;
      }
      if (found != nullptr) {
        fail(child(at, key), "ambiguous_form",
             fmt::format("give one count bound; found {} and {}", quoted(found), quoted(key)),
             true);
        ok = false;
        continue;
      }
      found = key;
      auto b = count(*n, child(at, key), 0,
                     windowed ? max_kept_count : std::numeric_limits<std::int64_t>::max());
      ok = ok && b.has_value();
      c.count = op;
      c.count_bound = b.value_or(0);
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  return c;
}

std::optional<condition> walker::comparison(const json::object& o, const path& at) {
  const json::value* d = o.if_contains("detail");
  const json::value* f = o.if_contains("field");
  bool ok = true;
  if (d != nullptr && f != nullptr) {
    fail(child(at, "field"), "ambiguous_form", "give \"detail\" or \"field\", not both", true);
    return std::nullopt;
  }
  field target = field::detail;
  std::string detail_name;
  if (d != nullptr) {
    auto n = name(*d, child(at, "detail"), "a detail name");
    ok = n.has_value();
    detail_name = n.value_or("");
  } else {
    static constexpr std::array<std::pair<std::string_view, field>, 5> fields{
        {{"status", field::status},
         {"stage", field::stage},
         {"owner", field::owner},
         {"score", field::score},
         {"time_zone", field::time_zone}}};
    const path fat = child(at, "field");
    if (auto s = string(*f, fat)) {
      auto it =
          std::find_if(fields.begin(), fields.end(), [&](const auto& p) { return p.first == *s; });
      if (it != fields.end()) {
        target = it->second;
      } else {
        std::array<std::string_view, 5> names{};
        std::transform(fields.begin(), fields.end(), names.begin(),
                       [](const auto& p) { return p.first; });
        auto hint = closest(*s, names);
        fail(fat, "unknown_field_name",
             hint ? fmt::format("unknown profile field {} (did you mean {}?)", describe(*f),
                                quoted(*hint))
                  : fmt::format("unknown profile field {} (expected {}; use \"detail\" for "
                                "contact details)",
                                describe(*f), list_words(names)));
        ok = false;
      }
    } else {
      ok = false;
    }
  }
  // The operator: exactly one of the operator keys; anything else is unknown.
  std::string_view op_name;
  for (const auto& m : o) {
    const std::string_view k{m.key()};
    if (k == "detail" || k == "field") {
      continue;
    }
    if (std::find(operators.begin(), operators.end(), k) == operators.end()) {
      auto hint = closest(k, operators);
      fail(child(at, k), "unknown_operator",
           hint
               ? fmt::format("unknown operator {} (did you mean {}?)", quoted(k), quoted(*hint))
               : fmt::format("unknown operator {} (expected {})", quoted(k), list_words(operators)),
           true);
      ok = false;
    } else if (op_name.empty()) {
      op_name = k;
    } else {
      fail(child(at, k), "ambiguous_form",
           fmt::format("give one operator per comparison; found {} and {} (combine "
                       "comparisons with \"all\")",
                       quoted(op_name), quoted(k)),
           true);
      ok = false;
    }
  }
  if (op_name.empty()) {
    if (ok) {
      fail(at, "missing_field",
           fmt::format("missing the operator (one of {})", list_words(operators)));
    }
    return std::nullopt;
  }
  const auto op = static_cast<compare_op>(std::find(operators.begin(), operators.end(), op_name) -
                                          operators.begin());
  const json::value& arg = o.at(op_name);
  const path oat = child(at, op_name);
  const bool is_text = target != field::detail && target != field::score;
  // Checks one operand against what the field holds.
  auto operand = [&](const json::value& v, const path& vat) -> std::optional<value> {
    auto x = val(v, vat);
    if (!x) {
      return x;
    }
    if (is_text && !std::holds_alternative<std::string>(*x)) {
      fail(vat, "bad_value",
           fmt::format("{} holds text; {} is not a string", field_label(target), describe(v)));
      return std::nullopt;
    }
    if (target == field::score && !std::holds_alternative<std::int64_t>(*x) &&
        !std::holds_alternative<double>(*x)) {
      fail(vat, "bad_value", fmt::format("score is a number; {} is not", describe(v)));
      return std::nullopt;
    }
    return x;
  };
  std::vector<value> operands;
  bool negated = false;
  switch (op) {
    case compare_op::exists: {
      auto b = boolean(arg, oat);
      ok = ok && b.has_value();
      negated = b.has_value() && !*b;
      break;
    }
    case compare_op::in: {
      const json::array* list = array_at(arg, oat);
      if (list == nullptr) {
        return std::nullopt;
      }
      if (list->empty()) {
        fail(oat, "empty_list", "\"in\" needs at least one candidate");
        return std::nullopt;
      }
      for (std::size_t i = 0; i < list->size(); ++i) {
        auto x = operand((*list)[i], child(oat, i));
        ok = ok && x.has_value();
        if (x) {
          operands.push_back(std::move(*x));
        }
      }
      break;
    }
    case compare_op::contains:
    case compare_op::prefix: {
      if (target == field::score) {
        fail(oat, "bad_value", fmt::format("{} compares text; score is a number", quoted(op_name)));
        return std::nullopt;
      }
      auto s = string(arg, oat);
      ok = ok && s.has_value();
      if (s) {
        operands.emplace_back(std::move(*s));
      }
      break;
    }
    default: {
      auto x = operand(arg, oat);
      ok = ok && x.has_value();
      if (x) {
        operands.push_back(std::move(*x));
      }
      break;
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  condition c = compare(target, std::move(detail_name), op, std::move(operands));
  return negated ? negate(std::move(c)) : c;
}

const char* walker::field_label(field f) {
  switch (f) {
    case field::status:
      return "status";
    case field::stage:
      return "stage";
    case field::owner:
      return "owner";
    case field::time_zone:
      return "time_zone";
    case field::score:
      return "score";
    case field::detail:
      break;
  }
  return "detail";
}

}  // namespace nudge::json_rules
