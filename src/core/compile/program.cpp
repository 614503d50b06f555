// Compiling a rule_set: validation with JSON-pointer diagnostics, then indexing rules by
// (event type, key) and deriving the history aggregates that conditions read.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include <nudge/evaluate.hpp>
#include <nudge/event.hpp>
#include <nudge/program.hpp>

#include "cycle_check.hpp"

namespace nudge {
namespace {

using detail::none;

// Timeline entries are 32 bytes: 100,000 per contact is already 3.2 MB.
constexpr std::uint32_t max_timeline_size = 100'000;

struct validator {
  const program_limits& limits;
  std::vector<diagnostic> problems;
  const rule_set* set = nullptr;
  // While checking segment `current_segment`'s condition: only earlier segments are visible and
  // there is no trigger. npos while checking rules.
  std::size_t current_segment = static_cast<std::size_t>(-1);

  bool in_segment_definition() const { return current_segment != static_cast<std::size_t>(-1); }

  // A length in calendar months (0: none): positive, and at most the delay limit counting each
  // month as 31 days; never together with a fixed length.
  void check_months(std::int32_t n, duration fixed, const std::string& at, const char* code) {
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

  void check_point(geo_point p, const std::string& at) {
    if (auto why = geo_problem(p.lat, p.lon)) {
      fail(at + (why->starts_with("latitude") ? "/lat" : "/lon"), "bad_location", *why);
    }
  }

  void check_areas(const rule_set& rs) {
    std::map<std::string_view, std::size_t> first;
    for (std::size_t i = 0; i < rs.areas.size(); ++i) {
      const area& a = rs.areas[i];
      const std::string at = fmt::format("/areas/{}", i);
      if (a.name.empty()) {
        fail(at + "/name", "missing_name", "an area needs a name");
      } else if (auto [it, fresh] = first.emplace(a.name, i); !fresh) {
        fail(at + "/name", "duplicate_name",
             fmt::format("duplicate area name \"{}\" (first used by /areas/{})", a.name,
                         it->second));
      }
      check_point(a.center, at);
      if (!(a.radius_km > 0) || !std::isfinite(a.radius_km)) {
        fail(at + "/km", "bad_distance", "a distance must be a finite number above 0");
      }
    }
  }

  // in_workflow / completed_workflow / exited_workflow: the workflow and step must exist.
  void check_workflow_condition(const condition& c, const std::string& at) {
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

  void check_window(const condition& c, const std::string& at) {
    if (c.window_months != 0) {
      check_months(c.window_months, c.window_length, at, "bad_window");
      return;
    }
    check_window(c.window_length, at);
  }

  void check_window(duration length, const std::string& at) {
    if (length <= duration{0} || length > limits.max_delay) {
      fail(at, "bad_window",
           fmt::format("a window must be longer than 0s and at most {}",
                       format_duration(limits.max_delay)));
    }
  }

  void fail(std::string pointer, std::string code, std::string message) {
    diagnostic d;
    d.json_pointer = std::move(pointer);
    d.code = std::move(code);
    d.message = std::move(message);
    problems.push_back(std::move(d));
  }

  void check_match(const event_match& m, const std::string& at) {
    if (m.type.empty()) {
      fail(at + "/event", "missing_event", "an event type is required");
    }
  }

  void check_condition(const condition& c, const std::string& at, std::size_t depth) {
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
  void check_engine_key(const event_match& m, const std::string& at) {
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

  void check_scoring(const scoring& sc) {
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
             fmt::format("duplicate threshold \"{}\" (first used by /scoring/thresholds/{})",
                         t.name, it->second));
      }
      if (!finite(t.at)) {
        fail(at + "/at", "bad_value", "a threshold must be a finite number");
      }
    }
  }

  void check_hours(const local_hours& h, const std::string& at) {
    constexpr std::int32_t day = 86'400;
    if (h.from_seconds < 0 || h.from_seconds >= day || h.to_seconds < 0 || h.to_seconds >= day) {
      fail(at, "bad_hours", "local hours must be between 00:00:00 and 23:59:59");
    } else if (h.from_seconds == h.to_seconds) {
      fail(at, "bad_hours", "\"from\" and \"to\" must differ");
    }
  }

  void check_policy(const delivery_policy& p, const std::string& at) {
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

  void check(const rule_set& rs) {
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
      check_condition(sg.when, at + "/if", 1);
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
      check_condition(r.when, at + "/if", 1);
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

  void check_action(const rule_set& rs, const action& a, const std::string& aat) {
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
    if (a.when) {
      check_condition(*a.when, aat + "/if", 1);
    }
  }

  void check_length(duration d, const std::string& at, bool may_be_zero, bool may_be_negative) {
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

  void check_workflows(const rule_set& rs, const std::map<std::string_view, std::size_t>& rules) {
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

  void check_workflow(const rule_set& rs, const workflow& w, const std::string& at) {
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
    check_condition(w.entry.when, at + "/entry/if", 1);
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
  void check_steps(const rule_set& rs, const workflow& w, const std::string& at) {
    if (w.steps.empty()) {
      fail(at + "/steps", "missing_steps", "a workflow needs at least one step");
      return;
    }
    if (w.steps.size() > limits.max_workflow_steps) {
      fail(at + "/steps", "too_many_steps",
           fmt::format("{} steps; at most {} are allowed", w.steps.size(),
                       limits.max_workflow_steps));
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
          check_condition(st.when, sat + "/if", 1);
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
};

// Window leaves need the latest N event times to count exactly up to the bound.
std::uint32_t recent_needed(const condition& c) {
  if (c.node != condition::kind::happened || c.window == window_kind::lifetime) {
    return 0;
  }
  const auto bound = static_cast<std::uint32_t>(c.count_bound);
  return c.count == count_op::at_least ? bound : bound + 1;
}

struct compiler {
  const rule_set& rs;
  detail::compiled_program& out;
  std::map<std::tuple<std::string, key_match, std::string>, std::uint32_t> slot_ids;
  std::map<std::tuple<std::string, key_match, std::string, std::string>, std::uint32_t> measure_ids;

  std::uint32_t measure_for(const condition& leaf) {
    auto key = std::tuple{leaf.events.type, leaf.events.match,
                          leaf.events.match == key_match::any ? std::string{} : leaf.events.key,
                          leaf.property};
    auto [it, fresh] = measure_ids.emplace(key, static_cast<std::uint32_t>(out.measures.size()));
    if (fresh) {
      out.measures.push_back({leaf.events, leaf.property, duration{0}});
    }
    auto& m = out.measures[it->second];
    // A month window keeps what its longest possible length (31 days a month) could hold.
    m.keep = std::max(m.keep, leaf.window_length + longest(months{leaf.window_months}));
    return it->second;
  }

  std::uint32_t segment_index(const std::string& name) const {
    for (std::uint32_t i = 0; i < rs.segments.size(); ++i) {
      if (rs.segments[i].name == name) {
        return i;
      }
    }
    return none;  // unreachable: validated
  }

  std::uint32_t slot_for(const condition& leaf) {
    auto key = std::tuple{leaf.events.type, leaf.events.match,
                          leaf.events.match == key_match::any ? std::string{} : leaf.events.key};
    auto [it, fresh] = slot_ids.emplace(key, static_cast<std::uint32_t>(out.slots.size()));
    if (fresh) {
      out.slots.push_back({leaf.events, 0});
    }
    auto& slot = out.slots[it->second];
    slot.recent_needed = std::max(slot.recent_needed, recent_needed(leaf));
    return it->second;
  }

  // Flattens a tree; returns its root, or none for "always" (the common no-condition case).
  std::uint32_t flatten(const condition& c) {
    if (c.node == condition::kind::always) {
      return none;
    }
    const auto id = static_cast<std::uint32_t>(out.nodes.size());
    out.nodes.push_back({c.node, 0, 0, &c, none, none});
    if (c.node == condition::kind::happened || c.node == condition::kind::occurred) {
      out.nodes[id].slot = slot_for(c);
    } else if (c.node == condition::kind::aggregate) {
      out.nodes[id].slot = measure_for(c);
    } else if (c.node == condition::kind::in_segment) {
      out.nodes[id].slot = segment_index(c.name);
    } else if (c.node == condition::kind::in_workflow ||
               c.node == condition::kind::completed_workflow ||
               c.node == condition::kind::exited_workflow) {
      for (std::uint32_t w = 0; w < rs.workflows.size(); ++w) {
        if (rs.workflows[w].id != c.name) {
          continue;
        }
        out.nodes[id].slot = w;
        const auto& steps = rs.workflows[w].steps;
        for (std::uint32_t j = 0; j < steps.size() && !c.step.empty(); ++j) {
          if (steps[j].id == c.step) {
            out.nodes[id].step = j;
          }
        }
      }
    }
    if (!c.children.empty()) {
      std::vector<std::uint32_t> kids;
      for (const auto& child : c.children) {
        auto k = flatten(child);
        if (k == none) {  // "always" inside a tree: keep it as a real node
          k = static_cast<std::uint32_t>(out.nodes.size());
          out.nodes.push_back({condition::kind::always, 0, 0, &child, none, none});
        }
        kids.push_back(k);
      }
      out.nodes[id].first = static_cast<std::uint32_t>(out.children.size());
      out.nodes[id].count = static_cast<std::uint32_t>(kids.size());
      out.children.insert(out.children.end(), kids.begin(), kids.end());
    }
    return id;
  }

  detail::type_index& type(const std::string& name) {
    auto [it, fresh] = out.types.emplace(name, static_cast<std::uint32_t>(out.by_type.size()));
    if (fresh) {
      out.by_type.emplace_back();
    }
    return out.by_type[it->second];
  }

  enum class list_kind { rules, slots, measures, scores };
  static std::vector<std::uint32_t>& list(detail::match_lists& l, list_kind k) {
    switch (k) {
      case list_kind::rules:
        return l.rules;
      case list_kind::slots:
        return l.slots;
      case list_kind::measures:
        return l.measures;
      case list_kind::scores:
        break;
    }
    return l.scores;
  }
  static std::vector<std::pair<std::string, std::uint32_t>>& prefixes(detail::type_index& t,
                                                                      list_kind k) {
    switch (k) {
      case list_kind::rules:
        return t.prefix_rules;
      case list_kind::slots:
        return t.prefix_slots;
      case list_kind::measures:
        return t.prefix_measures;
      case list_kind::scores:
        break;
    }
    return t.prefix_scores;
  }

  void index(const event_match& m, std::uint32_t id, list_kind k) {
    auto& t = type(m.type);
    switch (m.match) {
      case key_match::any:
        list(t.other_keys, k).push_back(id);
        break;
      case key_match::exact:
        list(t.exact[m.key], k).push_back(id);
        break;
      case key_match::prefix:
        prefixes(t, k).emplace_back(m.key, id);
        break;
    }
  }

  // Each exact key's lists absorb the any-key and matching prefix entries, sorted, so the hot
  // path for a known key is one lookup.
  void finish_index() {
    for (auto& t : out.by_type) {
      for (auto& [key, lists] : t.exact) {
        auto absorb = [&, &key = key](std::vector<std::uint32_t>& into,
                                      const std::vector<std::uint32_t>& any, const auto& prefixes) {
          into.insert(into.end(), any.begin(), any.end());
          for (const auto& [prefix, id] : prefixes) {
            if (std::string_view{key}.starts_with(prefix)) {
              into.push_back(id);
            }
          }
          std::sort(into.begin(), into.end());
          into.erase(std::unique(into.begin(), into.end()), into.end());
        };
        absorb(lists.rules, t.other_keys.rules, t.prefix_rules);
        absorb(lists.slots, t.other_keys.slots, t.prefix_slots);
        absorb(lists.measures, t.other_keys.measures, t.prefix_measures);
        absorb(lists.scores, t.other_keys.scores, t.prefix_scores);
      }
    }
  }

  void run() {
    for (const auto& [name, members] : rs.owner_groups) {
      (void)name;
      out.owner_groups.push_back(members);
    }
    for (const auto& t : rs.event_types) {
      type(t);
    }
    namespace et = event_types;
    for (auto t : {et::page_view,      et::cart,           et::purchase,       et::email_open,
                   et::email_click,    et::signup,         et::tag_added,      et::tag_removed,
                   et::stage_entered,  et::status_changed, et::owner_assigned, et::group_added,
                   et::group_removed,  et::detail_set,     et::score_changed,  et::segment_entered,
                   et::segment_exited, et::score_crossed,  et::identify,       et::area_entered,
                   et::area_exited}) {
      type(std::string{t});
    }
    out.tag_added_type = out.types.find(et::tag_added)->second;
    out.tag_removed_type = out.types.find(et::tag_removed)->second;
    out.stage_entered_type = out.types.find(et::stage_entered)->second;
    out.identify_type = out.types.find(et::identify)->second;
    for (const auto& sg : rs.segments) {
      detail::segment_def d;
      d.first = static_cast<std::uint32_t>(out.nodes.size());
      d.root = flatten(sg.when);
      d.last = static_cast<std::uint32_t>(out.nodes.size());
      out.segments.push_back(d);
    }
    out.round_robin_index.resize(rs.rules.size());
    for (std::uint32_t i = 0; i < rs.rules.size(); ++i) {
      const rule& r = rs.rules[i];
      detail::compiled_rule cr;
      cr.condition = flatten(r.when);
      for (const auto& a : r.actions) {
        cr.action_conditions.push_back(a.when ? flatten(*a.when) : none);
        std::uint32_t group = none;
        std::uint32_t counter = none;
        if (a.kind == action_kind::assign_owner) {
          group = static_cast<std::uint32_t>(rs.owner_groups.find(a.arg) - rs.owner_groups.begin());
          if (a.pick == owner_pick::round_robin) {
            counter = out.round_robin_counters++;
          }
        }
        cr.owner_groups.push_back(group);
        out.round_robin_index[i].push_back(counter);
      }
      std::uint32_t depth = 0;
      if (r.reentry_policy != reentry::always) {
        depth = 1;
      }
      if (r.cap) {
        depth = std::max(depth, static_cast<std::uint32_t>(r.cap->max_runs));
      }
      cr.memory_depth = depth;
      out.rules.push_back(std::move(cr));
      out.rule_id_hashes.push_back(fnv1a64(r.id));
      index(r.trigger, i, list_kind::rules);
    }
    compile_workflows();
    for (std::uint32_t s = 0; s < out.slots.size(); ++s) {
      index(out.slots[s].events, s, list_kind::slots);
    }
    for (std::uint32_t m = 0; m < out.measures.size(); ++m) {
      index(out.measures[m].events, m, list_kind::measures);
    }
    for (std::uint32_t r = 0; r < rs.scoring.rules.size(); ++r) {
      index(rs.scoring.rules[r].on, r, list_kind::scores);
    }
    finish_index();
    index_segment_reads();
  }

  // What each segment reads, so that the evaluator re-evaluates a segment only when one of its
  // inputs changed (see detail::segment_inputs). Walks each segment's node range: every node of
  // its tree, leaves included, lies there. A leaf kind not handled here marks its segment
  // every_event: an unknown input must not be mistaken for none.
  void index_segment_reads() {
    auto& in = out.segment_reads;
    in.by_slot.assign(out.slots.size(), {});
    in.by_measure.assign(out.measures.size(), {});
    in.by_segment.assign(out.segments.size(), {});
    in.by_workflow.assign(rs.workflows.size(), {});
    auto add = [](std::vector<std::uint32_t>& list, std::uint32_t s) {
      if (list.empty() || list.back() != s) {  // segments are walked in ascending order
        list.push_back(s);
      }
    };
    using k = condition::kind;
    for (std::uint32_t s = 0; s < out.segments.size(); ++s) {
      detail::segment_def& d = out.segments[s];
      for (std::uint32_t n = d.first; n < d.last; ++n) {
        const detail::node& nd = out.nodes[n];
        switch (nd.kind) {
          case k::always:
          case k::all:
          case k::any:
          case k::negate:
            break;
          case k::happened:
          case k::occurred:
            add(in.by_slot[nd.slot], s);
            break;
          case k::aggregate:
            add(in.by_measure[nd.slot], s);
            break;
          case k::in_segment:
            if (nd.slot < in.by_segment.size()) {
              add(in.by_segment[nd.slot], s);
            } else {
              d.every_event = true;  // unreachable: validated
            }
            break;
          case k::has_tag:
            add(in.by_tag[nd.source->name], s);
            break;
          case k::near:
          case k::moved:
            add(in.by_location, s);
            break;
          case k::in_workflow:
          case k::completed_workflow:
          case k::exited_workflow:
            if (nd.slot < in.by_workflow.size()) {
              add(in.by_workflow[nd.slot], s);
            } else {
              d.every_event = true;  // unreachable: validated
            }
            break;
          case k::in_group:
            add(in.by_group[nd.source->name], s);
            break;
          case k::compare:
            if (nd.source->target == field::detail) {
              add(in.by_detail[nd.source->name], s);
            } else {
              add(in.by_field[static_cast<std::size_t>(nd.source->target)], s);
            }
            break;
          default:
            d.every_event = true;
            break;
        }
      }
    }
  }

  std::uint32_t type_id(const std::string& name) {
    type(name);
    return out.types.find(name)->second;
  }

  void compile_workflows() {
    out.detail_set_type = type_id(std::string{event_types::detail_set});
    out.email_open_type = type_id(std::string{event_types::email_open});
    out.email_click_type = type_id(std::string{event_types::email_click});
    for (std::uint32_t i = 0; i < rs.workflows.size(); ++i) {
      const workflow& w = rs.workflows[i];
      detail::compiled_workflow cw;
      cw.runs = w.status == workflow_status::active;
      cw.id_hash = fnv1a64(w.id);
      cw.entry_condition = flatten(w.entry.when);
      cw.exit_condition = flatten(w.exit_when);
      if (w.entry.kind == entry_kind::event) {
        cw.entry_type = type_id(w.entry.on.type);
      }
      for (const auto& m : w.exit_on) {
        cw.exits.emplace_back(type_id(m.type), &m);
      }
      // The step table: the current version's steps, then each kept older version's, each
      // version's successors resolved within it (runs, timers and the outbox name table indices).
      auto add_version = [&](std::uint32_t version, const std::vector<workflow_step>& steps) {
        const auto first = static_cast<std::uint32_t>(cw.steps.size());
        const auto count = static_cast<std::uint32_t>(steps.size());
        cw.versions.push_back({version, first, count});
        auto index_of = [&](const std::string& id, std::uint32_t listed) -> std::uint32_t {
          if (id.empty()) {
            return listed;
          }
          for (std::uint32_t k = 0; k < count; ++k) {
            if (steps[k].id == id) {
              return first + k;
            }
          }
          return none;  // rejected by validation
        };
        for (std::uint32_t j = 0; j < count; ++j) {
          const workflow_step& st = steps[j];
          const std::uint32_t following = j + 1 < count ? first + j + 1 : none;
          detail::compiled_step cs;
          cs.def = &st;
          cs.version = version;
          cs.stat = none;
          for (std::uint32_t k = 0; k < w.steps.size(); ++k) {
            if (w.steps[k].id == st.id) {
              cs.stat = k;  // statistics merge versions by step id
            }
          }
          cs.next = st.kind == step_kind::end ? none : index_of(st.next, following);
          cs.yes = index_of(st.yes, following);
          cs.no = index_of(st.no, none);
          if (st.kind == step_kind::branch) {
            cs.condition = flatten(st.when);
          }
          if (st.kind == step_kind::wait_for) {
            cs.event_type = type_id(st.event.type);
          } else if (st.kind == step_kind::wait && st.wait == wait_kind::after_message) {
            cs.event_type =
                st.moment == message_moment::clicked ? out.email_click_type : out.email_open_type;
          }
          std::uint32_t bound = 0;
          for (const auto& path : st.paths) {
            bound += path.percent;
            cs.paths.emplace_back(bound, index_of(path.next, none));
          }
          if (st.kind == step_kind::send || st.kind == step_kind::act) {
            cs.action_condition = st.act.when ? flatten(*st.act.when) : none;
            if (st.act.kind == action_kind::assign_owner) {
              cs.owner_group = static_cast<std::uint32_t>(rs.owner_groups.find(st.act.arg) -
                                                          rs.owner_groups.begin());
              if (st.act.pick == owner_pick::round_robin) {
                cs.round_robin = out.round_robin_counters++;
              }
            }
          }
          cw.steps.push_back(std::move(cs));
        }
      };
      add_version(w.version, w.steps);
      for (const auto& pv : w.previous_versions) {
        add_version(pv.version, pv.steps);
      }
      // Paused yearly workflows keep their date timers: the dates pass without entries while
      // paused, and the next one is already scheduled when the workflow is active again.
      if ((cw.runs || w.status == workflow_status::paused) && w.entry.kind == entry_kind::date) {
        out.date_workflows.push_back(i);
      }
      out.workflows.push_back(std::move(cw));
    }
    out.workflow_entries.resize(out.by_type.size());
    for (std::uint32_t i = 0; i < rs.workflows.size(); ++i) {
      const auto& cw = out.workflows[i];
      if (cw.runs && cw.entry_type != none) {
        out.workflow_entries[cw.entry_type].push_back(i);
      }
    }
  }
};

bool reads_local_time(const delivery_policy& p) {
  return p.quiet_hours || p.send_hours || p.weekdays != all_weekdays;
}

// Yearly date entries, time-of-day waits and date waits are read on the contact's local clock.
bool reads_local_time(const workflow& w) {
  auto local = [](const std::vector<workflow_step>& steps) {
    return std::any_of(steps.begin(), steps.end(), [](const workflow_step& st) {
      return st.kind == step_kind::wait &&
             (st.wait == wait_kind::time_of_day || st.wait == wait_kind::date);
    });
  };
  return w.entry.kind == entry_kind::date || local(w.steps) ||
         std::any_of(w.previous_versions.begin(), w.previous_versions.end(),
                     [&](const workflow_version& v) { return local(v.steps); });
}

bool reads_months(const condition& c) {
  return c.window_months != 0 || std::any_of(c.children.begin(), c.children.end(),
                                             [](const condition& x) { return reads_months(x); });
}

// Calendar months are counted on the contact's local calendar.
bool reads_months(const rule_set& rs) {
  auto steps = [](const std::vector<workflow_step>& v) {
    return std::any_of(v.begin(), v.end(), [](const workflow_step& st) {
      return st.length_months != 0 || reads_months(st.when) ||
             (st.act.when && reads_months(*st.act.when));
    });
  };
  return std::any_of(rs.rules.begin(), rs.rules.end(),
                     [](const rule& r) {
                       return r.delay_months != 0 || reads_months(r.when) ||
                              std::any_of(r.actions.begin(), r.actions.end(), [](const action& a) {
                                return a.when && reads_months(*a.when);
                              });
                     }) ||
         std::any_of(rs.segments.begin(), rs.segments.end(),
                     [](const segment& g) { return reads_months(g.when); }) ||
         std::any_of(rs.workflows.begin(), rs.workflows.end(), [&](const workflow& w) {
           return reads_months(w.entry.when) || reads_months(w.exit_when) || steps(w.steps) ||
                  std::any_of(w.previous_versions.begin(), w.previous_versions.end(),
                              [&](const workflow_version& v) { return steps(v.steps); });
         });
}

// Every zone of a system database: name -> rule, read once per directory per process (the
// database does not change under a running program; compiling many programs reads it once).
std::shared_ptr<const detail::zone_map> system_zones(const std::string& dir) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const detail::zone_map>> cache;
  const std::lock_guard lock{mutex};
  if (auto it = cache.find(dir); it != cache.end()) {
    return it->second;
  }
  auto zones = std::make_shared<detail::zone_map>();
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::recursive_directory_iterator it{dir, fs::directory_options::skip_permission_denied, ec};
  for (; !ec && it != fs::recursive_directory_iterator{}; it.increment(ec)) {
    const auto name = it->path().lexically_relative(dir).generic_string();
    // posix/ and right/ are copies (right/ with leap seconds, which nudge's UTC has none of).
    if (it->is_directory() && (name == "posix" || name == "right")) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) {
      continue;
    }
    if (auto rule = read_system_zone_rule(name, dir)) {
      if (auto z = zone_rules::parse(*rule)) {
        zones->emplace(name, std::move(*z));
      }
    }
  }
  cache.emplace(dir, zones);
  return zones;
}

// Resolves the zones the policies need; problems are reported like validation's.
void resolve_delivery(const rule_set& rs, detail::compiled_delivery& d,
                      std::vector<diagnostic>& problems) {
  auto fail = [&](std::string pointer, std::string message) {
    diagnostic x;
    x.json_pointer = std::move(pointer);
    x.code = "bad_time_zone";
    x.message = std::move(message);
    problems.push_back(std::move(x));
  };
  const delivery_policy* defaults = rs.delivery ? &rs.delivery->defaults : nullptr;
  bool local_time = false;
  d.rule_policy.resize(rs.rules.size(), nullptr);
  auto note_policy = [&](const delivery_policy& p) {
    local_time = local_time || reads_local_time(p);
    for (const auto& c : p.caps) {
      auto& keep = d.keep[static_cast<std::size_t>(c.on)];
      keep = std::max(keep, static_cast<std::uint32_t>(c.max_messages));
    }
  };
  if (defaults != nullptr) {
    note_policy(*defaults);
  }
  for (std::size_t i = 0; i < rs.rules.size(); ++i) {
    const rule& r = rs.rules[i];
    d.rule_policy[i] = r.delivery ? &*r.delivery : defaults;
    if (r.delivery) {
      note_policy(*r.delivery);
    }
  }
  d.workflow_policy.resize(rs.workflows.size(), nullptr);
  for (std::size_t i = 0; i < rs.workflows.size(); ++i) {
    const workflow& w = rs.workflows[i];
    d.workflow_policy[i] = w.delivery ? &*w.delivery : defaults;
    if (w.delivery) {
      note_policy(*w.delivery);
    }
    local_time = local_time || reads_local_time(w);
  }
  local_time = local_time || reads_months(rs);
  if (!local_time) {
    return;
  }
  const delivery_settings settings = rs.delivery.value_or(delivery_settings{});
  for (const auto& [name, posix] : settings.time_zones) {
    if (auto z = zone_rules::parse(posix)) {
      d.zones.emplace(name, std::move(*z));
    } else {
      fail("/delivery/time_zones/" + name,
           fmt::format("\"{}\" is not a POSIX TZ rule (e.g. \"CET-1CEST,M3.5.0,M10.5.0/3\")",
                       posix));
    }
  }
  if (settings.use_system_zones) {
    d.system_zones = system_zones(settings.zoneinfo_dir);
  }
  const std::string& name = settings.default_time_zone;
  if (auto it = d.zones.find(name); it != d.zones.end()) {
    d.default_zone = it->second;
  } else if (d.system_zones != nullptr && d.system_zones->find(name) != d.system_zones->end()) {
    d.default_zone = d.system_zones->find(name)->second;
  } else if (name == "UTC") {
    d.default_zone = zone_rules::parse("UTC0");
  } else {
    fail("/delivery/default_time_zone",
         fmt::format("unknown time zone \"{}\" (not in \"time_zones\"{})", name,
                     settings.use_system_zones ? fmt::format(" nor under {}", settings.zoneinfo_dir)
                                               : std::string{}));
  }
}

}  // namespace

std::shared_ptr<const program> program::compile(rule_set rules, program_limits limits) {
  validator v{limits, {}, nullptr, static_cast<std::size_t>(-1)};
  v.check(rules);
  detail::find_rule_cycles(rules.rules, v.problems);
  if (!v.problems.empty()) {
    throw rule_error(std::move(v.problems));
  }
  std::shared_ptr<program> p{new program()};
  p->rules_ = std::move(rules);
  p->limits_ = limits;
  p->compiled_.max_kept = static_cast<std::uint32_t>(limits.max_kept_count);
  compiler{p->rules_, p->compiled_, {}, {}}.run();
  {
    std::vector<diagnostic> problems;
    resolve_delivery(p->rules_, p->compiled_.delivery, problems);
    if (!problems.empty()) {
      throw rule_error(std::move(problems));
    }
  }
  // A calendar month counts as 31 days here: the default end must reach every check.
  for (const auto& r : p->rules_.rules) {
    duration longest_action{0};
    for (const auto& a : r.actions) {
      longest_action = std::max(longest_action, a.delay);
    }
    p->longest_delay_ =
        std::max(p->longest_delay_, r.delay + longest(months{r.delay_months}) + longest_action);
  }
  for (const auto& w : p->rules_.workflows) {
    duration walk{0};
    for (const auto& st : w.steps) {
      if (st.kind == step_kind::wait || st.kind == step_kind::wait_for) {
        walk += std::max(st.length, duration{0}) + longest(months{st.length_months}) + st.timeout +
                (st.wait == wait_kind::time_of_day ? days(7) : duration{0});
      }
    }
    p->longest_delay_ = std::max(p->longest_delay_, std::min(walk, limits.max_delay));
  }
  return p;
}

std::optional<std::size_t> program::find_workflow(std::string_view id) const noexcept {
  for (std::size_t i = 0; i < rules_.workflows.size(); ++i) {
    if (rules_.workflows[i].id == id) {
      return i;
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> program::find_rule(std::string_view id) const noexcept {
  for (std::size_t i = 0; i < rules_.rules.size(); ++i) {
    if (rules_.rules[i].id == id) {
      return i;
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> program::find_segment(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < rules_.segments.size(); ++i) {
    if (rules_.segments[i].name == name) {
      return i;
    }
  }
  return std::nullopt;
}

bool program::knows_event_type(std::string_view type) const noexcept {
  return compiled_.types.find(type) != compiled_.types.end();  // built-ins are registered too
}

contact_state program::new_state(contact c) const {
  contact_state s;
  s.contact = std::move(c);
  s.history.resize(compiled_.slots.size());
  s.measures.resize(compiled_.measures.size());
  return s;
}

}  // namespace nudge
