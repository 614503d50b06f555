// nudge explain --db: one contact's timeline and pending work as a live database holds them
// (nudge run's), read without writing and without replaying anything.
#include <string>
#include <vector>

#include <fmt/format.h>

#include <nudge/contact_state.hpp>
#include <nudge/explain.hpp>
#include <nudge/io/sqlite_store.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "log.hpp"

namespace nudge_cli {
namespace {

// The steps a workflow run walks: its version's (the current one or a kept previous one).
const std::vector<nudge::workflow_step>* steps_of(const nudge::workflow& w, std::uint32_t version) {
  if (version == w.version) {
    return &w.steps;
  }
  for (const auto& v : w.previous_versions) {
    if (v.version == version) {
      return &v.steps;
    }
  }
  return nullptr;
}

// A pending timer in words, as the engine will take it when due.
std::string describe_timer(const nudge::program& p, const nudge::contact_state& s,
                           const nudge::timer& t) {
  const auto& rs = p.rules();
  switch (t.kind) {
    case nudge::timer_kind::rule: {
      if (t.action == nudge::timer::segment_flip) {
        return "segments: re-evaluated (a window edge)";
      }
      if (t.action == nudge::timer::score_decay) {
        return "score: decay applied";
      }
      if (t.rule >= rs.rules.size()) {
        return fmt::format("rule #{}: timer", t.rule);
      }
      const nudge::rule& r = rs.rules[t.rule];
      const std::string triggered = nudge::format_time(t.triggered_at);
      if (t.action == nudge::timer::check) {
        return fmt::format("rule {}: condition checked (triggered {})", r.id, triggered);
      }
      const auto k = static_cast<std::size_t>(t.action);
      if (k >= r.actions.size()) {
        return fmt::format("rule {}: action {} (triggered {})", r.id, k, triggered);
      }
      return fmt::format("rule {}: action {} {} {}{} (triggered {})", r.id, k,
                         nudge::action_name(r.actions[k].kind), r.actions[k].arg,
                         t.deferred ? ", deferred by the delivery policy" : "", triggered);
    }
    case nudge::timer_kind::workflow_step: {
      if (t.rule >= rs.workflows.size()) {
        return fmt::format("workflow #{}: run #{} wait ends", t.rule, t.trigger_ordinal);
      }
      const nudge::workflow& w = rs.workflows[t.rule];
      for (const auto& run : s.runs) {
        if (run.workflow == t.rule && run.id == t.trigger_ordinal) {
          const auto* steps = steps_of(w, run.version);
          const std::string step = steps != nullptr && run.step < steps->size()
                                       ? (*steps)[run.step].id
                                       : fmt::format("#{}", run.step);
          return fmt::format("workflow {}: run #{} (version {}) at step {} goes on", w.id, run.id,
                             run.version, step);
        }
      }
      return fmt::format("workflow {}: run #{} goes on", w.id, t.trigger_ordinal);
    }
    case nudge::timer_kind::workflow_date:
      return t.rule < rs.workflows.size()
                 ? fmt::format("workflow {}: yearly date entry", rs.workflows[t.rule].id)
                 : fmt::format("workflow #{}: yearly date entry", t.rule);
  }
  return "timer";
}

// "rule welcome: action 1", "workflow onboarding: step #2" for an outbox entry.
std::string source_of(const nudge::program& p, const nudge::outbox_entry& e) {
  const auto& rs = p.rules();
  if (e.workflow) {
    return e.rule_index < rs.workflows.size()
               ? fmt::format("workflow {}: step #{}", rs.workflows[e.rule_index].id, e.action_index)
               : fmt::format("workflow #{}: step #{}", e.rule_index, e.action_index);
  }
  return e.rule_index < rs.rules.size()
             ? fmt::format("rule {}: action {}", rs.rules[e.rule_index].id, e.action_index)
             : fmt::format("rule #{}: action {}", e.rule_index, e.action_index);
}

}  // namespace

int run_explain_db(const explain_args& args) {
  const auto rules_text = nudge::sqlite_store::read_meta(args.db, meta_rules);
  if (!rules_text) {
    log().error(fmt::format("{}: no rules stored (not written by nudge run)", args.db));
    return exit_input;
  }
  auto program = load_rules_text(*rules_text, args.db + " (stored rules)");
  if (!program) {
    return exit_input;
  }
  nudge::sqlite_store db{args.db, *program, {.read_only = true}};
  const auto state = db.load(args.contact);
  if (!state) {
    log().error(fmt::format("contact \"{}\" is not in the database {}", args.contact, args.db));
    return exit_input;
  }
  std::vector<nudge::outbox_entry> waiting;
  for (auto& e : db.outbox()) {
    if (e.contact == args.contact) {
      waiting.push_back(std::move(e));
    }
  }
  const auto now = db.get_meta("run.now");
  if (args.json) {
    // The replay form's object, with the live state after its fields.
    std::string out = nudge::format_explanation_json(*program, *state);
    out.pop_back();  // the closing brace
    out += fmt::format(",\"database\":{},\"engine_now\":{},\"timeline_size\":{},\"pending\":[",
                       json_quote(args.db),
                       now ? json_quote(nudge::format_time(nudge::from_epoch(std::stoll(*now))))
                           : std::string{"null"},
                       program->timeline_size());
    for (std::size_t i = 0; i < state->timers.size(); ++i) {
      const auto& t = state->timers[i];
      out += fmt::format("{}{{\"at\":\"{}\",\"text\":{}}}", i == 0 ? "" : ",",
                         nudge::format_time(t.due_at),
                         json_quote(describe_timer(*program, *state, t)));
    }
    out += "],\"outbox\":[";
    for (std::size_t i = 0; i < waiting.size(); ++i) {
      const auto& e = waiting[i];
      out += fmt::format(
          "{}{{\"at\":\"{}\",\"sequence\":{},\"source\":{},\"action\":\"{}\","
          "\"arg\":{},\"idempotency_key\":{}}}",
          i == 0 ? "" : ",", nudge::format_time(e.ts), e.sequence,
          json_quote(source_of(*program, e)), nudge::action_name(e.kind), json_quote(e.arg),
          e.idempotency_key);
    }
    out += "]}";
    fmt::print("{}\n", out);
    return exit_ok;
  }
  std::string out = nudge::format_explanation(*program, *state);
  if (program->timeline_size() == 0) {
    out +=
        "(the rules keep no timeline: add \"timeline\": {\"size\": N} to the rule file to "
        "record one from the next event on)\n";
  }
  out += fmt::format("database {}, engine at {}\n", args.db,
                     now ? nudge::format_time(nudge::from_epoch(std::stoll(*now))) : "-");
  out += fmt::format("{} timer{} pending\n", state->timers.size(),
                     state->timers.size() == 1 ? "" : "s");
  for (const auto& t : state->timers) {
    out +=
        fmt::format("{}  {}\n", nudge::format_time(t.due_at), describe_timer(*program, *state, t));
  }
  out += fmt::format("{} action{} undelivered in the outbox\n", waiting.size(),
                     waiting.size() == 1 ? "" : "s");
  for (const auto& e : waiting) {
    out += fmt::format("{}  {} {} {} (key {})\n", nudge::format_time(e.ts), source_of(*program, e),
                       nudge::action_name(e.kind), e.arg, e.idempotency_key);
  }
  fmt::print("{}", out);
  return exit_ok;
}

}  // namespace nudge_cli
