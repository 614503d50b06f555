// Validating a rule_set: every problem reported at once, each with its JSON pointer (rules,
// conditions, scoring, delivery policies, actions; workflows are in validate_workflows.cpp).
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

// A length in calendar months (0: none): positive, and at most the delay limit counting each
// month as 31 days; never together with a fixed length.
void validator::check_months(std::int32_t n, duration fixed, const std::string& at,
                             const char* code) {
  if (n == 0) {
    return;
  }
  if (fixed != duration{0}) {
    fail(at, code, "a length is either fixed or in calendar months, not both");
  } else if (n < 0 || longest(months{n}) > limits.max_delay) {
    fail(at, code,
         fmt::format("calendar months must be 1 to {} (a month counts as 31 days against the "
                     "limit of {})",
                     limits.max_delay / days(31), format_duration(limits.max_delay)));
  }
}

void validator::check_point(geo_point p, const std::string& at) {
  if (auto why = geo_problem(p.lat, p.lon)) {
    fail(at + (why->starts_with("latitude") ? "/lat" : "/lon"), "bad_location", *why);
  }
}

void validator::check_areas(const rule_set& rs) {
  std::map<std::string_view, std::size_t> first;
  for (std::size_t i = 0; i < rs.areas.size(); ++i) {
    const area& a = rs.areas[i];
    const std::string at = fmt::format("/areas/{}", i);
    if (a.name.empty()) {
      fail(at + "/name", "missing_name", "an area needs a name");
    } else if (auto [it, fresh] = first.emplace(a.name, i); !fresh) {
      fail(at + "/name", "duplicate_name",
           fmt::format("duplicate area name \"{}\" (first used by /areas/{})", a.name, it->second));
    }
    check_point(a.center, at);
    if (!(a.radius_km > 0) || !std::isfinite(a.radius_km)) {
      fail(at + "/km", "bad_distance", "a distance must be a finite number above 0");
    }
  }
}

// in_workflow / completed_workflow / exited_workflow: the workflow and step must exist.
void validator::check_workflow_condition(const condition& c, const std::string& at) {
  const std::string form =
      at + (c.node == condition::kind::in_workflow          ? "/in_workflow"
            : c.node == condition::kind::completed_workflow ? "/completed_workflow"
                                                            : "/exited_workflow");
  const auto& ws = set->workflows;
  const auto w =
      std::find_if(ws.begin(), ws.end(), [&](const workflow& x) { return x.id == c.name; });
  if (c.name.empty()) {
    fail(form, "missing_name", "a workflow id is required");
  } else if (w == ws.end()) {
    fail(form, "unknown_workflow", fmt::format("no workflow \"{}\" is defined", c.name));
  } else if (!c.step.empty() &&
             std::none_of(w->steps.begin(), w->steps.end(),
                          [&](const workflow_step& st) { return st.id == c.step; })) {
    fail(at + "/step", "unknown_step",
         fmt::format("workflow \"{}\" has no step \"{}\"", c.name, c.step));
  }
  if (c.node != condition::kind::in_workflow && !c.step.empty()) {
    fail(at + "/step", "bad_step", "only in_workflow takes a step");
  }
}

void validator::check_window(const condition& c, const std::string& at) {
  if (c.window_months != 0) {
    check_months(c.window_months, c.window_length, at, "bad_window");
    return;
  }
  check_window(c.window_length, at);
}

void validator::check_window(duration length, const std::string& at) {
  if (length <= duration{0} || length > limits.max_delay) {
    fail(at, "bad_window",
         fmt::format("a window must be longer than 0s and at most {}",
                     format_duration(limits.max_delay)));
  }
}

void validator::fail(std::string pointer, std::string code, std::string message) {
  diagnostic d;
  d.json_pointer = std::move(pointer);
  d.code = std::move(code);
  d.message = std::move(message);
  problems.push_back(std::move(d));
}

void validator::check_match(const event_match& m, const std::string& at) {
  if (m.type.empty()) {
    fail(at + "/event", "missing_event", "an event type is required");
  }
}

void validator::check_condition(const condition& c, const std::string& at, std::size_t depth) {
  if (depth > limits.max_condition_depth) {
    fail(at, "too_deep",
         fmt::format("condition nested deeper than {} levels", limits.max_condition_depth));
    return;
  }
  using k = condition::kind;
  if (c.window_months != 0 && !(c.node == k::aggregate || c.node == k::occurred ||
                                (c.node == k::happened && c.window == window_kind::within))) {
    fail(at, "bad_window", "only a \"within\" or \"older_than\" window takes calendar months");
  }
  switch (c.node) {
    case k::always:
      break;
    case k::all:
    case k::any: {
      const char* name = c.node == k::all ? "all" : "any";
      for (std::size_t i = 0; i < c.children.size(); ++i) {
        check_condition(c.children[i], fmt::format("{}/{}/{}", at, name, i), depth + 1);
      }
      break;
    }
    case k::negate:
      if (c.children.size() != 1) {
        fail(at + "/not", "bad_not", "\"not\" takes exactly one condition");
      } else {
        check_condition(c.children[0], at + "/not", depth + 1);
      }
      break;
    case k::compare: {
      const std::size_t n = c.operands.size();
      if (c.target == field::detail && c.name.empty()) {
        fail(at + "/detail", "missing_name", "a detail name is required");
      }
      if (c.op == compare_op::exists && n != 0) {
        fail(at, "bad_operands", "\"exists\" takes no operand");
      } else if (c.op == compare_op::in && n == 0) {
        fail(at, "bad_operands", "\"in\" needs at least one candidate");
      } else if (c.op != compare_op::exists && c.op != compare_op::in && n != 1) {
        fail(at, "bad_operands", "the comparison takes exactly one operand");
      }
      if ((c.op == compare_op::contains || c.op == compare_op::prefix) && n == 1 &&
          !std::holds_alternative<std::string>(c.operands[0])) {
        fail(at, "bad_operands", "\"contains\" and \"prefix\" compare text");
      }
      if (c.target == field::score && n >= 1) {
        for (const auto& v : c.operands) {
          if (!std::holds_alternative<std::int64_t>(v) && !std::holds_alternative<double>(v)) {
            fail(at, "bad_operands", "a score compares with a number");
            break;
          }
        }
      }
      break;
    }
    case k::has_tag:
    case k::in_group:
      if (c.name.empty()) {
        fail(at, "missing_name",
             c.node == k::has_tag ? "a tag is required" : "a group is required");
      }
      break;
    case k::happened:
      check_match(c.events, at + "/happened");
      if (c.count_bound < 0) {
        fail(at + "/happened", "bad_count", "a count bound cannot be negative");
      } else if (c.window != window_kind::lifetime && c.count_bound > limits.max_kept_count) {
        fail(at + "/happened", "bad_count",
             fmt::format("a windowed count bound can be at most {}", limits.max_kept_count));
      }
      if (c.window == window_kind::within) {
        check_window(c, at + "/happened/within");
      }
      if (c.window == window_kind::since_trigger && in_segment_definition()) {
        fail(at + "/happened/since_trigger", "bad_window",
             "a segment has no trigger: use \"within\" or the lifetime");
      }
      break;
    case k::in_workflow:
    case k::completed_workflow:
    case k::exited_workflow:
      check_workflow_condition(c, at);
      break;
    case k::near:
      check_point(c.point, at + "/near");
      if (!(c.radius_km > 0) || !std::isfinite(c.radius_km)) {
        fail(at + "/near/km", "bad_distance", "a distance must be a finite number above 0");
      }
      break;
    case k::moved:
      if (!(c.radius_km >= 0) || !std::isfinite(c.radius_km)) {
        fail(at + "/moved/km", "bad_distance", "a distance must be a finite number, 0 or more");
      }
      break;
    case k::in_segment: {
      if (c.name.empty()) {
        fail(at + "/in_segment", "missing_name", "a segment name is required");
        break;
      }
      std::size_t found = static_cast<std::size_t>(-1);
      for (std::size_t i = 0; i < set->segments.size(); ++i) {
        if (set->segments[i].name == c.name) {
          found = i;
          break;
        }
      }
      if (found == static_cast<std::size_t>(-1)) {
        fail(at + "/in_segment", "unknown_segment",
             fmt::format("no segment \"{}\" is defined", c.name));
      } else if (in_segment_definition() && found >= current_segment) {
        fail(at + "/in_segment", "segment_order",
             found == current_segment
                 ? fmt::format("segment \"{}\" cannot refer to itself", c.name)
                 : fmt::format("segment \"{}\" is defined after this one (/segments/{}); a "
                               "segment may only name segments defined before it",
                               c.name, found));
      }
      break;
    }
    case k::aggregate: {
      const std::string form = at + (c.aggregate == aggregate_fn::sum ? "/sum" : "/average");
      check_match(c.events, form);
      if (c.property.empty()) {
        fail(form + "/property", "missing_name", "a property name is required");
      }
      check_window(c, form + "/within");
      const bool ordered = c.op == compare_op::eq || c.op == compare_op::ne ||
                           c.op == compare_op::lt || c.op == compare_op::le ||
                           c.op == compare_op::gt || c.op == compare_op::ge;
      if (!ordered || c.operands.size() != 1 ||
          (!std::holds_alternative<std::int64_t>(c.operands[0]) &&
           !std::holds_alternative<double>(c.operands[0]))) {
        fail(form, "bad_operands",
             "an aggregate compares with one number (eq, ne, lt, le, gt or ge)");
      }
      break;
    }
    case k::occurred: {
      const std::string form = at + (c.which == occurrence::first ? "/first_seen" : "/last_seen");
      check_match(c.events, form);
      check_window(c, form + (c.is_older ? "/older_than" : "/within"));
      break;
    }
  }
}

// A trigger on a segment or threshold event must name one that exists: a typo would
// otherwise never fire.
void validator::check_engine_key(const event_match& m, const std::string& at) {
  if (m.match != key_match::exact) {
    return;
  }
  if (m.type == event_types::segment_entered || m.type == event_types::segment_exited) {
    const bool known = std::any_of(set->segments.begin(), set->segments.end(),
                                   [&](const segment& s) { return s.name == m.key; });
    if (!known) {
      fail(at + "/" + m.type, "unknown_segment",
           fmt::format("no segment \"{}\" is defined", m.key));
    }
  } else if (m.type == event_types::area_entered || m.type == event_types::area_exited) {
    const bool known = std::any_of(set->areas.begin(), set->areas.end(),
                                   [&](const area& a) { return a.name == m.key; });
    if (!known) {
      fail(at + "/" + m.type, "unknown_area", fmt::format("no area \"{}\" is defined", m.key));
    }
  } else if (m.type == event_types::score_crossed) {
    const auto& ts = set->scoring.thresholds;
    const bool known = std::any_of(ts.begin(), ts.end(),
                                   [&](const score_threshold& t) { return t.name == m.key; });
    if (!known) {
      fail(at + "/" + m.type, "unknown_threshold",
           fmt::format("no score threshold \"{}\" is defined", m.key));
    }
  }
}

void validator::check_scoring(const scoring& sc) {
  std::map<std::string_view, std::size_t> first_with_id;
  auto finite = [](double d) { return d == d && d - d == 0; };
  for (std::size_t i = 0; i < sc.rules.size(); ++i) {
    const score_rule& r = sc.rules[i];
    const std::string at = fmt::format("/scoring/rules/{}", i);
    if (r.id.empty()) {
      fail(at + "/id", "missing_id", "a score rule needs an id");
    } else if (auto [it, fresh] = first_with_id.emplace(r.id, i); !fresh) {
      fail(at + "/id", "duplicate_id",
           fmt::format("duplicate score rule id \"{}\" (first used by /scoring/rules/{})", r.id,
                       it->second));
    }
    check_match(r.on, at + "/on");
    if (!finite(r.points)) {
      fail(at + "/points", "bad_value", "points must be a finite number");
    }
    if (r.cap && (!finite(r.cap->max_points) || r.cap->max_points <= 0 ||
                  r.cap->per <= duration{0} || r.cap->per > limits.max_delay)) {
      fail(at + "/cap", "bad_cap",
           fmt::format("a score cap needs max > 0 and a period longer than 0s and at most {}",
                       format_duration(limits.max_delay)));
    }
  }
  if (sc.decay) {
    const score_decay& d = *sc.decay;
    if (d.every <= duration{0} || d.every > limits.max_delay) {
      fail("/scoring/decay/every", "bad_window",
           fmt::format("a decay period must be longer than 0s and at most {}",
                       format_duration(limits.max_delay)));
    }
    if (!finite(d.factor) || d.factor < 0 || d.factor > 1) {
      fail("/scoring/decay/factor", "bad_value", "a decay factor must be between 0 and 1");
    }
    if (!finite(d.subtract) || d.subtract < 0) {
      fail("/scoring/decay/subtract", "bad_value", "decay subtracts a number of 0 or more");
    }
  }
  std::map<std::string_view, std::size_t> first_with_name;
  for (std::size_t i = 0; i < sc.thresholds.size(); ++i) {
    const score_threshold& t = sc.thresholds[i];
    const std::string at = fmt::format("/scoring/thresholds/{}", i);
    if (t.name.empty()) {
      fail(at + "/name", "missing_name", "a threshold needs a name");
    } else if (auto [it, fresh] = first_with_name.emplace(t.name, i); !fresh) {
      fail(at + "/name", "duplicate_name",
           fmt::format("duplicate threshold \"{}\" (first used by /scoring/thresholds/{})", t.name,
                       it->second));
    }
    if (!finite(t.at)) {
      fail(at + "/at", "bad_value", "a threshold must be a finite number");
    }
  }
}

void validator::check_hours(const local_hours& h, const std::string& at) {
  constexpr std::int32_t day = 86'400;
  if (h.from_seconds < 0 || h.from_seconds >= day || h.to_seconds < 0 || h.to_seconds >= day) {
    fail(at, "bad_hours", "local hours must be between 00:00:00 and 23:59:59");
  } else if (h.from_seconds == h.to_seconds) {
    fail(at, "bad_hours", "\"from\" and \"to\" must differ");
  }
}

void validator::check_policy(const delivery_policy& p, const std::string& at) {
  for (std::size_t k = 0; k < p.caps.size(); ++k) {
    const channel_cap& c = p.caps[k];
    const std::string cat = fmt::format("{}/caps/{}", at, k);
    if (c.max_messages < 1 || c.max_messages > limits.max_kept_count) {
      fail(cat + "/max", "bad_cap",
           fmt::format("a channel cap allows 1 to {} messages", limits.max_kept_count));
    }
    if (c.per <= duration{0} || c.per > limits.max_delay) {
      fail(cat + "/per", "bad_window",
           fmt::format("a window must be longer than 0s and at most {}",
                       format_duration(limits.max_delay)));
    }
  }
  if (p.quiet_hours) {
    check_hours(*p.quiet_hours, at + "/quiet_hours");
  }
  if (p.send_hours) {
    check_hours(*p.send_hours, at + "/send_hours");
  }
  if (p.weekdays == 0 || p.weekdays > all_weekdays) {
    fail(at + "/weekdays", "bad_weekdays", "at least one weekday must be allowed");
  }
}

void validator::check(const rule_set& rs) {
  set = &rs;
  std::map<std::string_view, std::size_t> first_with_name;
  for (std::size_t i = 0; i < rs.segments.size(); ++i) {
    const segment& sg = rs.segments[i];
    const std::string at = fmt::format("/segments/{}", i);
    if (sg.name.empty()) {
      fail(at + "/name", "missing_name", "a segment needs a name");
    } else if (auto [it, fresh] = first_with_name.emplace(sg.name, i); !fresh) {
      fail(at + "/name", "duplicate_name",
           fmt::format("duplicate segment name \"{}\" (first used by /segments/{})", sg.name,
                       it->second));
    }
    current_segment = i;
    check_condition(sg.condition, at + "/if", 1);
  }
  current_segment = static_cast<std::size_t>(-1);
  check_areas(rs);
  check_scoring(rs.scoring);
  if (rs.delivery) {
    check_policy(rs.delivery->defaults, "/delivery");
  }
  if (rs.rules.size() > limits.max_rules) {
    fail("/rules", "too_many_rules",
         fmt::format("{} rules; at most {} are allowed", rs.rules.size(), limits.max_rules));
  }
  for (const auto& [name, members] : rs.owner_groups) {
    if (members.empty()) {
      fail("/owner_groups/" + name, "empty_group", "an owner group needs at least one member");
    }
  }
  if (rs.timeline_size > max_timeline_size) {
    fail("/timeline/size", "bad_timeline",
         fmt::format("a timeline keeps at most {} entries per contact", max_timeline_size));
  }
  std::map<std::string_view, std::size_t> first_with_id;
  for (std::size_t i = 0; i < rs.rules.size(); ++i) {
    const rule& r = rs.rules[i];
    const std::string at = fmt::format("/rules/{}", i);
    if (r.id.empty()) {
      fail(at + "/id", "missing_id", "a rule needs an id");
    } else if (auto [it, fresh] = first_with_id.emplace(r.id, i); !fresh) {
      fail(at + "/id", "duplicate_id",
           fmt::format("duplicate rule id \"{}\" (first used by /rules/{})", r.id, it->second));
    }
    check_match(r.trigger, at + "/on");
    check_engine_key(r.trigger, at + "/on");
    if (r.delay < duration{0} || r.delay > limits.max_delay) {
      fail(at + "/delay", "bad_delay",
           fmt::format("a delay must be between 0s and {}", format_duration(limits.max_delay)));
    }
    check_months(r.delay_months, r.delay, at + "/delay", "bad_delay");
    check_condition(r.condition, at + "/if", 1);
    if (r.reentry_policy == reentry::once_per && r.reentry_window <= duration{0}) {
      fail(at + "/reentry", "bad_window", "once_per needs a window longer than 0s");
    }
    if (r.cap && (r.cap->max_runs < 1 || r.cap->per <= duration{0})) {
      fail(at + "/cap", "bad_cap", "a cap needs max >= 1 and a window longer than 0s");
    } else if (r.cap && r.cap->max_runs > limits.max_kept_count) {
      fail(at + "/cap", "bad_cap",
           fmt::format("a cap can allow at most {} runs per window", limits.max_kept_count));
    }
    for (std::size_t j = 0; j < r.actions.size(); ++j) {
      check_action(rs, r.actions[j], fmt::format("{}/then/{}", at, j));
    }
    if (r.delivery) {
      check_policy(*r.delivery, at + "/delivery");
    }
  }
  check_workflows(rs, first_with_id);
}

void validator::check_action(const rule_set& rs, const action& a, const std::string& aat) {
  const bool needs_arg = a.kind != action_kind::add_score;
  if (needs_arg && a.arg.empty()) {
    fail(aat + "/arg", "missing_arg", fmt::format("{} needs an argument", action_name(a.kind)));
  }
  if (a.kind == action_kind::assign_owner && !a.arg.empty() &&
      rs.owner_groups.find(a.arg) == rs.owner_groups.end()) {
    fail(aat + "/arg", "unknown_group", fmt::format("no owner group \"{}\" is defined", a.arg));
  }
  if (a.kind == action_kind::add_score && !std::holds_alternative<std::int64_t>(a.val) &&
      !std::holds_alternative<double>(a.val)) {
    fail(aat + "/value", "bad_value", "add_score takes a number of points");
  }
  if (a.delay < duration{0} || a.delay > limits.max_delay) {
    fail(aat + "/delay", "bad_delay",
         fmt::format("a delay must be between 0s and {}", format_duration(limits.max_delay)));
  }
  if (a.condition) {
    check_condition(*a.condition, aat + "/if", 1);
  }
}

void validator::check_length(duration d, const std::string& at, bool may_be_zero,
                             bool may_be_negative) {
  const bool ok = (may_be_negative ? d >= -limits.max_delay : d >= duration{0}) &&
                  d <= limits.max_delay && (may_be_zero || d != duration{0});
  if (!ok) {
    fail(at, "bad_delay",
         fmt::format("a {} must be {} and at most {}", may_be_negative ? "offset" : "wait",
                     may_be_negative ? "at least -" + format_duration(limits.max_delay)
                     : may_be_zero   ? "0s or more"
                                     : "longer than 0s",
                     format_duration(limits.max_delay)));
  }
}
}  // namespace nudge::detail
