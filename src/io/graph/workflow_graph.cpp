// Workflows as Mermaid or DOT diagrams (nudge/io/workflow_graph.hpp): a model of nodes and edges
// built once from the workflow, then written in either language.
#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <nudge/action.hpp>
#include <nudge/condition.hpp>
#include <nudge/io/workflow_graph.hpp>
#include <nudge/value.hpp>

namespace nudge {
namespace {

constexpr std::size_t max_condition_text = 60;

// ---- Text of the parts of a workflow -----------------------------------------------------------

std::string event_text(const event_match& m) {
  switch (m.match) {
    case key_match::exact:
      return fmt::format("{} {}", m.type, m.key);
    case key_match::prefix:
      return fmt::format("{} {}*", m.type, m.key);
    case key_match::any:
      break;
  }
  return m.type;
}

std::string_view op_text(compare_op op) {
  static constexpr std::string_view names[] = {"=",  "!=", "<",        "<=",     ">",
                                               ">=", "in", "contains", "prefix", "exists"};
  return names[static_cast<std::size_t>(op)];
}

std::string field_text(field f, const std::string& detail) {
  switch (f) {
    case field::status:
      return "status";
    case field::stage:
      return "stage";
    case field::owner:
      return "owner";
    case field::score:
      return "score";
    case field::time_zone:
      return "time_zone";
    case field::detail:
      break;
  }
  return detail;
}

std::string window_text(const condition& c) {
  if (c.window_months != 0) {
    return fmt::format("{}mo", c.window_months);
  }
  return format_duration(c.window_length);
}

std::string condition_text(const condition& c) {
  using k = condition::kind;
  switch (c.node) {
    case k::always:
      return "always";
    case k::all:
    case k::any: {
      std::string out;
      for (const auto& child : c.children) {
        if (!out.empty()) {
          out += c.node == k::all ? " and " : " or ";
        }
        const bool group = child.node == k::all || child.node == k::any;
        out += group ? "(" + condition_text(child) + ")" : condition_text(child);
      }
      return out;
    }
    case k::negate:
      return "not " + condition_text(c.children.at(0));
    case k::compare: {
      const std::string target = field_text(c.target, c.name);
      if (c.op == compare_op::exists) {
        return target + " exists";
      }
      std::string operands;
      for (const auto& v : c.operands) {
        operands += operands.empty() ? to_string(v) : ", " + to_string(v);
      }
      return fmt::format("{} {} {}", target, op_text(c.op), operands);
    }
    case k::has_tag:
      return "has tag " + c.name;
    case k::in_group:
      return "in group " + c.name;
    case k::happened: {
      std::string out = (c.count == count_op::at_most && c.count_bound == 0)
                            ? "no " + event_text(c.events)
                            : event_text(c.events);
      if (!(c.count == count_op::at_least && c.count_bound == 1) && c.count_bound != 0) {
        out += fmt::format(" count {} {}",
                           c.count == count_op::at_least  ? ">="
                           : c.count == count_op::at_most ? "<="
                                                          : "=",
                           c.count_bound);
      }
      if (c.window == window_kind::within) {
        out += " within " + window_text(c);
      } else if (c.window == window_kind::since_trigger) {
        out += " since trigger";
      }
      return out;
    }
    case k::in_segment:
      return "in segment " + c.name;
    case k::aggregate:
      return fmt::format("{}({} of {} within {}) {} {}",
                         c.aggregate == aggregate_fn::sum ? "sum" : "average", c.property,
                         event_text(c.events), window_text(c), op_text(c.op),
                         c.operands.empty() ? std::string{} : to_string(c.operands[0]));
    case k::occurred:
      return fmt::format("{} {} {} {}", c.which == occurrence::first ? "first" : "last",
                         event_text(c.events), c.is_older ? "older than" : "within",
                         window_text(c));
    case k::in_workflow:
      return c.step.empty() ? "in workflow " + c.name
                            : fmt::format("in workflow {} at {}", c.name, c.step);
    case k::completed_workflow:
      return "completed workflow " + c.name;
    case k::exited_workflow:
      return "exited workflow " + c.name;
    case k::near:
      return fmt::format("within {} km of {}, {}", c.radius_km, c.point.lat, c.point.lon);
    case k::moved:
      return fmt::format("moved more than {} km", c.radius_km);
  }
  return "?";
}

// A condition short enough for a box: cut at max_condition_text characters (on a UTF-8
// boundary) with "...".
std::string short_condition(const condition& c) {
  std::string text = condition_text(c);
  if (text.size() <= max_condition_text) {
    return text;
  }
  std::size_t cut = max_condition_text - 3;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  return text.substr(0, cut) + "...";
}

std::string action_text(const action& a) {
  if (a.kind == action_kind::add_score) {
    return fmt::format("add_score {}", to_string(a.val));
  }
  if (a.kind == action_kind::set_detail) {
    return fmt::format("set_detail {} = {}", a.arg, to_string(a.val));
  }
  return fmt::format("{} {}", action_name(a.kind), a.arg);
}

std::string weekdays_text(std::uint8_t mask) {
  static constexpr std::string_view names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
  std::string out;
  for (std::size_t i = 0; i < 7; ++i) {
    if ((mask & (1U << i)) != 0) {
      out += out.empty() ? std::string{names[i]} : ", " + std::string{names[i]};
    }
  }
  return out;
}

std::string clock_text(std::int32_t seconds) {
  return seconds % 60 == 0
             ? fmt::format("{:02}:{:02}", seconds / 3600, seconds / 60 % 60)
             : fmt::format("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
}

std::string offset_text(duration d) {
  return d < duration{0} ? "-" + format_duration(-d) : "+" + format_duration(d);
}

std::string step_text(const workflow_step& st) {
  switch (st.kind) {
    case step_kind::send:
    case step_kind::act:
      return action_text(st.act);
    case step_kind::wait:
      switch (st.wait) {
        case wait_kind::fixed:
          return "wait " + (st.length_months != 0 ? fmt::format("{}mo", st.length_months)
                                                  : format_duration(st.length));
        case wait_kind::after_message: {
          const char* moment = st.moment == message_moment::delivered ? "delivered"
                               : st.moment == message_moment::opened  ? "opened"
                                                                      : "clicked";
          std::string out = fmt::format("wait until {}", moment);
          if (st.length > duration{0}) {
            out += " " + offset_text(st.length);
          }
          if (st.timeout > duration{0}) {
            out += ", at most " + format_duration(st.timeout);
          }
          return out;
        }
        case wait_kind::time_of_day: {
          std::string out = "wait until " + clock_text(st.time_of_day);
          if (st.weekdays != 0x7f) {
            out += " on " + weekdays_text(st.weekdays);
          }
          return out;
        }
        case wait_kind::date:
          return fmt::format("wait until date {}{}", st.detail,
                             st.length != duration{0} ? " " + offset_text(st.length) : "");
      }
      return "wait";
    case step_kind::branch:
      return "if " + short_condition(st.condition);
    case step_kind::wait_for:
      return "wait for " + event_text(st.event) +
             (st.from_previous_message ? " of the previous message" : "");
    case step_kind::split:
      return "split";
    case step_kind::end:
      return "end";
  }
  return "?";
}

// ---- The model: nodes and edges of one workflow -------------------------------------------------

enum class shape : std::uint8_t { terminal, box, wait, decision, split, goal };

struct node {
  std::string id;
  std::vector<std::string> lines;
  shape form = shape::box;
};

struct edge {
  std::string from, to;
  std::string label;
  bool dashed = false;
};

struct model {
  std::string title;
  std::vector<node> nodes;
  std::vector<edge> edges;
};

const workflow_step_stats* find_step(const workflow_stats* ws, const std::string& id) {
  if (ws == nullptr) {
    return nullptr;
  }
  for (const auto& s : ws->steps) {
    if (s.step == id) {
      return &s;
    }
  }
  return nullptr;
}

std::string_view status_text(workflow_status s) {
  switch (s) {
    case workflow_status::draft:
      return "draft";
    case workflow_status::paused:
      return "paused";
    case workflow_status::archived:
      return "archived";
    case workflow_status::active:
      break;
  }
  return "active";
}

model build(const workflow& w, std::size_t index, const workflow_stats* ws) {
  model m;
  m.title = w.status == workflow_status::active
                ? fmt::format("workflow {}", w.id)
                : fmt::format("workflow {} ({})", w.id, status_text(w.status));
  const std::string prefix = fmt::format("w{}_", index);
  const std::string entry_id = prefix + "entry";
  const std::string done_id = prefix + "done";
  auto step_id = [&](std::size_t j) { return fmt::format("{}s{}", prefix, j); };
  const auto& steps = w.steps;
  auto index_of = [&](const std::string& id) -> std::optional<std::size_t> {
    for (std::size_t j = 0; j < steps.size(); ++j) {
      if (steps[j].id == id) {
        return j;
      }
    }
    return std::nullopt;
  };
  // Where a reference leads: the named step; empty: `fallback` (the next listed step, or
  // completion).
  auto target = [&](const std::string& ref, std::size_t j, bool empty_completes) {
    if (!ref.empty()) {
      if (auto k = index_of(ref)) {
        return step_id(*k);
      }
      return done_id;  // validated programs name existing steps
    }
    return !empty_completes && j + 1 < steps.size() ? step_id(j + 1) : done_id;
  };

  node entry{entry_id, {}, shape::terminal};
  if (w.entry.kind == entry_kind::event) {
    entry.lines.push_back("entry: on " + event_text(w.entry.on));
  } else {
    std::string line =
        fmt::format("entry: yearly on {} at {}", w.entry.detail, clock_text(w.entry.time_of_day));
    if (w.entry.offset_days != 0) {
      line += fmt::format(" {:+}d", w.entry.offset_days);
    }
    entry.lines.push_back(std::move(line));
  }
  if (w.entry.condition.node != condition::kind::always) {
    entry.lines.push_back("if " + short_condition(w.entry.condition));
  }
  if (ws != nullptr) {
    entry.lines.push_back(fmt::format("entered {}", ws->entered));
  }
  m.nodes.push_back(std::move(entry));

  for (std::size_t j = 0; j < steps.size(); ++j) {
    const auto& st = steps[j];
    node n{step_id(j), {st.id, step_text(st)}, shape::box};
    switch (st.kind) {
      case step_kind::wait:
        n.form = shape::wait;
        break;
      case step_kind::branch:
      case step_kind::wait_for:
        n.form = shape::decision;
        break;
      case step_kind::split:
        n.form = shape::split;
        break;
      case step_kind::end:
        n.form = shape::terminal;
        break;
      default:
        break;
    }
    if (const auto* s = find_step(ws, st.id)) {
      std::string line = fmt::format("reached {}", s->reached);
      if (st.kind == step_kind::send || s->sent > 0) {
        line += fmt::format(", sent {}", s->sent);
      }
      if (s->opened > 0 || s->clicked > 0) {
        line += fmt::format(", opened {}, clicked {}", s->opened, s->clicked);
      }
      if (s->waiting > 0) {
        line += fmt::format(", waiting {}", s->waiting);
      }
      n.lines.push_back(std::move(line));
    }
    m.nodes.push_back(std::move(n));

    const std::string from = step_id(j);
    switch (st.kind) {
      case step_kind::send:
      case step_kind::act:
        m.edges.push_back({from, target(st.next, j, false), ""});
        break;
      case step_kind::wait:
        if (st.wait != wait_kind::after_message || st.moment == message_moment::delivered) {
          m.edges.push_back({from, target(st.next, j, false), ""});
        } else {
          m.edges.push_back({from, target(st.next, j, false),
                             st.moment == message_moment::opened ? "opened" : "clicked"});
          // Not opened / clicked in time (or no message to wait for): `no`, else `next`.
          m.edges.push_back(
              {from, st.no.empty() ? target(st.next, j, false) : target(st.no, j, true),
               st.timeout > duration{0}
                   ? fmt::format("not {} within {}",
                                 st.moment == message_moment::opened ? "opened" : "clicked",
                                 format_duration(st.timeout))
                   : "no message"});
        }
        break;
      case step_kind::branch:
        m.edges.push_back({from, target(st.yes, j, false), "yes"});
        m.edges.push_back({from, target(st.no, j, true), "no"});
        break;
      case step_kind::wait_for:
        m.edges.push_back({from, target(st.yes, j, false), "came"});
        if (st.timeout > duration{0}) {
          m.edges.push_back(
              {from, target(st.no, j, true), "not within " + format_duration(st.timeout)});
        }
        break;
      case step_kind::split:
        for (const auto& p : st.paths) {
          m.edges.push_back({from, target(p.next, j, false), fmt::format("{}%", p.percent)});
        }
        break;
      case step_kind::end:
        m.edges.push_back({from, done_id, ""});
        break;
    }
  }
  if (!steps.empty()) {
    m.edges.insert(m.edges.begin(), {entry_id, step_id(0), ""});
  }

  node done{done_id, {"completed"}, shape::terminal};
  if (!w.complete_to_group.empty()) {
    done.lines.push_back(
        w.complete_from_group.empty()
            ? "copy to group " + w.complete_to_group
            : fmt::format("move from group {} to {}", w.complete_from_group, w.complete_to_group));
  }
  if (ws != nullptr) {
    done.lines.push_back(fmt::format("completed {}", ws->completed));
  }
  m.nodes.push_back(std::move(done));

  if (!w.exit_on.empty() || w.exit_when.node != condition::kind::always) {
    node goal{prefix + "goal", {"goal: ends the run at any step"}, shape::goal};
    for (const auto& e : w.exit_on) {
      goal.lines.push_back("on " + event_text(e));
    }
    if (w.exit_when.node != condition::kind::always) {
      goal.lines.push_back("if " + short_condition(w.exit_when));
    }
    if (ws != nullptr) {
      goal.lines.push_back(fmt::format("exited {}", ws->exited));
    }
    m.nodes.push_back(std::move(goal));
    m.edges.push_back({entry_id, prefix + "goal", "any time", true});
  }

  // Step counts on the edges: an edge into a step that has no other way in carries its
  // `reached` (with several ways in, the box alone says it: runs per edge are not counted).
  if (ws != nullptr) {
    for (auto& e : m.edges) {
      if (e.dashed || e.to == done_id) {
        continue;
      }
      const auto ways_in = std::count_if(m.edges.begin(), m.edges.end(),
                                         [&](const edge& x) { return x.to == e.to; });
      if (ways_in != 1) {
        continue;
      }
      for (std::size_t j = 0; j < steps.size(); ++j) {
        if (step_id(j) == e.to) {
          if (const auto* s = find_step(ws, steps[j].id)) {
            e.label +=
                e.label.empty() ? fmt::format("{}", s->reached) : fmt::format(": {}", s->reached);
          }
        }
      }
    }
  }
  return m;
}

// ---- Writers ---------------------------------------------------------------------------------

// Mermaid: labels in double quotes, where a double quote is #quot; and line breaks <br/>.
std::string mermaid_text(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) {
      out += "<br/>";
    }
    for (char c : l) {
      if (c == '"') {
        out += "#quot;";
      } else if (c == '<') {
        out += "#lt;";
      } else if (c == '>') {
        out += "#gt;";
      } else {
        out += c;
      }
    }
  }
  return out;
}

void write_mermaid(std::string& out, const model& m, std::size_t index) {
  out += fmt::format("  subgraph w{}[\"{}\"]\n", index, mermaid_text({m.title}));
  for (const auto& n : m.nodes) {
    const std::string text = mermaid_text(n.lines);
    switch (n.form) {
      case shape::terminal:
        out += fmt::format("    {}([\"{}\"])\n", n.id, text);
        break;
      case shape::box:
        out += fmt::format("    {}[\"{}\"]\n", n.id, text);
        break;
      case shape::wait:
        out += fmt::format("    {}(\"{}\")\n", n.id, text);
        break;
      case shape::decision:
        out += fmt::format("    {}{{\"{}\"}}\n", n.id, text);
        break;
      case shape::split:
        out += fmt::format("    {}{{{{\"{}\"}}}}\n", n.id, text);
        break;
      case shape::goal:
        out += fmt::format("    {}[/\"{}\"/]\n", n.id, text);
        break;
    }
  }
  for (const auto& e : m.edges) {
    const char* arrow = e.dashed ? "-.->" : "-->";
    if (e.label.empty()) {
      out += fmt::format("    {} {} {}\n", e.from, arrow, e.to);
    } else {
      out += fmt::format("    {} {}|\"{}\"| {}\n", e.from, arrow, mermaid_text({e.label}), e.to);
    }
  }
  out += "  end\n";
}

// DOT: a double-quoted string with \" and \\ escaped; lines joined with \n.
std::string dot_text(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    if (!out.empty()) {
      out += "\\n";
    }
    for (char c : l) {
      if (c == '"' || c == '\\') {
        out += '\\';
      }
      out += c;
    }
  }
  return out;
}

void write_dot(std::string& out, const model& m, std::size_t index) {
  out += fmt::format("  subgraph cluster_w{} {{\n    label=\"{}\";\n", index, dot_text({m.title}));
  for (const auto& n : m.nodes) {
    std::string_view attrs;
    switch (n.form) {
      case shape::terminal:
        attrs = "shape=oval";
        break;
      case shape::box:
        attrs = "shape=box";
        break;
      case shape::wait:
        attrs = "shape=box, style=rounded";
        break;
      case shape::decision:
        attrs = "shape=diamond";
        break;
      case shape::split:
        attrs = "shape=hexagon";
        break;
      case shape::goal:
        attrs = "shape=note";
        break;
    }
    out += fmt::format("    {} [{}, label=\"{}\"];\n", n.id, attrs, dot_text(n.lines));
  }
  for (const auto& e : m.edges) {
    std::string attrs;
    if (!e.label.empty()) {
      attrs = fmt::format("label=\"{}\"", dot_text({e.label}));
    }
    if (e.dashed) {
      attrs += attrs.empty() ? "style=dashed" : ", style=dashed";
    }
    out += attrs.empty() ? fmt::format("    {} -> {};\n", e.from, e.to)
                         : fmt::format("    {} -> {} [{}];\n", e.from, e.to, attrs);
  }
  out += "  }\n";
}

}  // namespace

std::string workflow_graph(std::span<const workflow> workflows, graph_format format,
                           std::span<const workflow_stats> stats) {
  std::string out = format == graph_format::mermaid
                        ? std::string{"flowchart TD\n"}
                        : std::string{
                              "digraph workflows {\n  node [fontname=\"Helvetica\"];\n"
                              "  edge [fontname=\"Helvetica\"];\n"};
  for (std::size_t i = 0; i < workflows.size(); ++i) {
    const auto& w = workflows[i];
    const auto it = std::find_if(stats.begin(), stats.end(),
                                 [&](const workflow_stats& s) { return s.workflow == w.id; });
    const model m = build(w, i, it == stats.end() ? nullptr : &*it);
    if (format == graph_format::mermaid) {
      write_mermaid(out, m, i);
    } else {
      write_dot(out, m, i);
    }
  }
  if (format == graph_format::dot) {
    out += "}\n";
  }
  return out;
}

}  // namespace nudge
