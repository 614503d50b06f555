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
        if (c.window == window_kind::within &&
            (c.window_length <= duration{0} || c.window_length > limits.max_delay)) {
          fail(at + "/happened/within", "bad_window",
               fmt::format("a window must be longer than 0s and at most {}",
                           format_duration(limits.max_delay)));
        }
        break;
    }
  }

  void check(const rule_set& rs) {
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
  if (c.window == window_kind::lifetime) {
    return 0;
  }
  const auto bound = static_cast<std::uint32_t>(c.count_bound);
  return c.count == count_op::at_least ? bound : bound + 1;
}

struct compiler {
  const rule_set& rs;
  detail::compiled_program& out;
  std::map<std::tuple<std::string, key_match, std::string>, std::uint32_t> slot_ids;

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
    if (c.node == condition::kind::happened) {
      out.nodes[id].slot = slot_for(c);
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

  void index(const event_match& m, std::uint32_t id, bool is_rule) {
    auto& t = type(m.type);
    switch (m.match) {
      case key_match::any:
        (is_rule ? t.other_keys.rules : t.other_keys.slots).push_back(id);
        break;
      case key_match::exact:
        (is_rule ? t.exact[m.key].rules : t.exact[m.key].slots).push_back(id);
        break;
      case key_match::prefix:
        (is_rule ? t.prefix_rules : t.prefix_slots).emplace_back(m.key, id);
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
          et::group_added, et::group_removed, et::detail_set, et::score_changed}) {
      type(std::string{t});
    }
    out.tag_added_type = out.types.find(et::tag_added)->second;
    out.tag_removed_type = out.types.find(et::tag_removed)->second;
    out.stage_entered_type = out.types.find(et::stage_entered)->second;
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
      index(r.trigger, i, true);
    }
    for (std::uint32_t s = 0; s < out.slots.size(); ++s) {
      index(out.slots[s].events, s, false);
    }
    finish_index();
  }
};

}  // namespace

std::shared_ptr<const program> program::compile(rule_set rules, program_limits limits) {
  validator v{limits, {}};
  v.check(rules);
  if (!v.problems.empty()) {
    throw rule_error(std::move(v.problems));
  }
  std::shared_ptr<program> p{new program()};
  p->rules_ = std::move(rules);
  p->limits_ = limits;
  compiler{p->rules_, p->compiled_, {}}.run();
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

bool program::knows_event_type(std::string_view type) const noexcept {
  return compiled_.types.find(type) != compiled_.types.end();  // built-ins are registered too
}

contact_state program::new_state(contact c) const {
  contact_state s;
  s.contact = std::move(c);
  s.history.resize(compiled_.slots.size());
  return s;
}

}  // namespace nudge
