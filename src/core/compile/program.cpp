// Compiling a rule_set: validation with JSON-pointer diagnostics, then indexing rules by
// (event type, key) and deriving the history aggregates that conditions read.
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
#include "cycle_check.hpp"

namespace nudge {
namespace {

using detail::none;

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
      d.root = flatten(sg.condition);
      d.last = static_cast<std::uint32_t>(out.nodes.size());
      out.segments.push_back(d);
    }
    out.round_robin_index.resize(rs.rules.size());
    for (std::uint32_t i = 0; i < rs.rules.size(); ++i) {
      const rule& r = rs.rules[i];
      detail::compiled_rule cr;
      cr.condition = flatten(r.condition);
      for (const auto& a : r.actions) {
        cr.action_conditions.push_back(a.condition ? flatten(*a.condition) : none);
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
      cw.entry_condition = flatten(w.entry.condition);
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
            cs.condition = flatten(st.condition);
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
            cs.action_condition = st.act.condition ? flatten(*st.act.condition) : none;
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

}  // namespace

std::shared_ptr<const program> program::compile(rule_set rules, program_limits limits,
                                                std::shared_ptr<const zone_provider> zones) {
  detail::validator v{limits, {}, nullptr, static_cast<std::size_t>(-1)};
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
    detail::resolve_delivery(p->rules_, zones.get(), p->compiled_.delivery, problems);
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
