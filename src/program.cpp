// Compiling a rule_set: validation with JSON-pointer diagnostics, then indexing rules by
// (event type, key) and deriving the history aggregates that conditions read.
#include <algorithm>
#include <map>
#include <tuple>

#include <fmt/format.h>

#include <nudge/evaluate.hpp>
#include <nudge/event.hpp>
#include <nudge/program.hpp>

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
          check_window(c.window_length, at + "/happened/within");
        }
        if (c.window == window_kind::since_trigger && in_segment_definition()) {
          fail(at + "/happened/since_trigger", "bad_window",
               "a segment has no trigger: use \"within\" or the lifetime");
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
        check_window(c.window_length, form + "/within");
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
        check_window(c.window_length, form + (c.is_older ? "/older_than" : "/within"));
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
    check_scoring(rs.scoring);
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
        const action& a = r.actions[j];
        const std::string aat = fmt::format("{}/then/{}", at, j);
        const bool needs_arg = a.kind != action_kind::add_score;
        if (needs_arg && a.arg.empty()) {
          fail(aat + "/arg", "missing_arg",
               fmt::format("{} needs an argument", action_name(a.kind)));
        }
        if (a.kind == action_kind::assign_owner && !a.arg.empty() &&
            rs.owner_groups.find(a.arg) == rs.owner_groups.end()) {
          fail(aat + "/arg", "unknown_group",
               fmt::format("no owner group \"{}\" is defined", a.arg));
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
    m.keep = std::max(m.keep, leaf.window_length);
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
    out.nodes.push_back({c.node, 0, 0, &c, none});
    if (c.node == condition::kind::happened || c.node == condition::kind::occurred) {
      out.nodes[id].slot = slot_for(c);
    } else if (c.node == condition::kind::aggregate) {
      out.nodes[id].slot = measure_for(c);
    } else if (c.node == condition::kind::in_segment) {
      out.nodes[id].slot = segment_index(c.name);
    }
    if (!c.children.empty()) {
      std::vector<std::uint32_t> kids;
      for (const auto& child : c.children) {
        auto k = flatten(child);
        if (k == none) {  // "always" inside a tree: keep it as a real node
          k = static_cast<std::uint32_t>(out.nodes.size());
          out.nodes.push_back({condition::kind::always, 0, 0, &child, none});
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
    for (auto t :
         {et::page_view, et::cart, et::purchase, et::email_open, et::email_click, et::signup,
          et::tag_added, et::tag_removed, et::stage_entered, et::status_changed, et::owner_assigned,
          et::group_added, et::group_removed, et::detail_set, et::score_changed,
          et::segment_entered, et::segment_exited, et::score_crossed, et::identify}) {
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
  }
};

}  // namespace

std::shared_ptr<const program> program::compile(rule_set rules, program_limits limits) {
  validator v{limits, {}, nullptr, static_cast<std::size_t>(-1)};
  v.check(rules);
  if (!v.problems.empty()) {
    throw rule_error(std::move(v.problems));
  }
  std::shared_ptr<program> p{new program()};
  p->rules_ = std::move(rules);
  p->limits_ = limits;
  p->compiled_.max_kept = static_cast<std::uint32_t>(limits.max_kept_count);
  compiler{p->rules_, p->compiled_, {}, {}}.run();
  for (const auto& r : p->rules_.rules) {
    duration longest_action{0};
    for (const auto& a : r.actions) {
      longest_action = std::max(longest_action, a.delay);
    }
    p->longest_delay_ = std::max(p->longest_delay_, r.delay + longest_action);
  }
  return p;
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
