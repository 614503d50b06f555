// Explanations: timeline entries resolved against the program and printed as text or JSON.
#include <boost/json.hpp>
#include <fmt/format.h>

#include <nudge/engine.hpp>
#include <nudge/explain.hpp>

namespace nudge {

std::string_view timeline_what_name(timeline_what w) noexcept {
  switch (w) {
    case timeline_what::triggered:
      return "triggered";
    case timeline_what::condition_passed:
      return "condition_passed";
    case timeline_what::condition_failed:
      return "condition_failed";
    case timeline_what::refused:
      return "refused";
    case timeline_what::action_emitted:
      return "action_emitted";
    case timeline_what::action_applied:
      return "action_applied";
    case timeline_what::action_skipped:
      return "action_skipped";
    case timeline_what::action_suppressed:
      return "action_suppressed";
    case timeline_what::action_deferred:
      return "action_deferred";
    case timeline_what::segment_entered:
      return "segment_entered";
    case timeline_what::segment_exited:
      return "segment_exited";
    case timeline_what::workflow_entered:
      return "workflow_entered";
    case timeline_what::workflow_step:
      return "workflow_step";
    case timeline_what::workflow_exited:
      return "workflow_exited";
    case timeline_what::workflow_completed:
      return "workflow_completed";
    case timeline_what::merged:
      return "merged";
  }
  return "unknown";
}

std::string_view timeline_reason_name(timeline_reason r) noexcept {
  switch (r) {
    case timeline_reason::none:
      return "";
    case timeline_reason::reentry_once:
      return "reentry_once";
    case timeline_reason::reentry_window:
      return "reentry_window";
    case timeline_reason::rule_cap:
      return "rule_cap";
    case timeline_reason::no_consent:
      return "no_consent";
    case timeline_reason::channel_cap:
      return "channel_cap";
    case timeline_reason::quiet_hours:
      return "quiet_hours";
    case timeline_reason::send_window:
      return "send_window";
    case timeline_reason::unknown_zone:
      return "unknown_zone";
    case timeline_reason::workflow_archived:
      return "workflow_archived";
    case timeline_reason::step_removed:
      return "step_removed";
  }
  return "unknown";
}

namespace {

std::string_view source_kind_name(timeline_source s) noexcept {
  switch (s) {
    case timeline_source::rule:
      return "rule";
    case timeline_source::workflow:
      return "workflow";
    case timeline_source::segment:
      return "segment";
  }
  return "unknown";
}

const rule* find_rule(const program& p, const timeline_entry& e) {
  if (e.source_kind != timeline_source::rule || e.source >= p.rule_count()) {
    return nullptr;
  }
  return &p.rules().rules[e.source];
}

const workflow* find_workflow(const program& p, const timeline_entry& e) {
  if (e.source_kind != timeline_source::workflow || e.source >= p.workflow_count()) {
    return nullptr;
  }
  return &p.rules().workflows[e.source];
}

std::string source_id(const program& p, const timeline_entry& e) {
  if (const rule* r = find_rule(p, e)) {
    return r->id;
  }
  if (const workflow* w = find_workflow(p, e)) {
    return w->id;
  }
  return fmt::format("#{}", e.source);
}

// A workflow step's action: "step s2 send_email welcome_2".
std::string step_text(const workflow* w, std::uint32_t step) {
  if (w == nullptr || step >= w->steps.size()) {
    return fmt::format("step #{}", step);
  }
  const workflow_step& st = w->steps[step];
  if (st.kind != step_kind::send && st.kind != step_kind::act) {
    return fmt::format("step {}", st.id);
  }
  return fmt::format("step {} {}{}{}", st.id, action_name(st.act.kind),
                     st.act.arg.empty() ? "" : " ", st.act.arg);
}

std::string action_text(const rule* r, std::uint32_t step) {
  if (r == nullptr || step >= r->actions.size()) {
    return fmt::format("action #{}", step);
  }
  const action& a = r->actions[step];
  if (a.arg.empty()) {
    return fmt::format("action {} {}", step, action_name(a.kind));
  }
  return fmt::format("action {} {} {}", step, action_name(a.kind), a.arg);
}

std::string reason_text(const timeline_entry& e) {
  switch (e.reason) {
    case timeline_reason::none:
      return "";
    case timeline_reason::reentry_once:
      return "the rule runs once per contact and already ran";
    case timeline_reason::reentry_window:
      return "the rule already ran within its re-entry window";
    case timeline_reason::rule_cap:
      return "the rule's frequency cap was reached";
    case timeline_reason::no_consent:
      return "no consent for the channel";
    case timeline_reason::channel_cap:
      return e.detail == timeline_none
                 ? std::string{"a channel frequency cap was reached"}
                 : fmt::format("channel frequency cap {} was reached", e.detail);
    case timeline_reason::quiet_hours:
      return "quiet hours in the contact's time zone";
    case timeline_reason::send_window:
      return "outside the allowed hours or weekdays in the contact's time zone";
    case timeline_reason::unknown_zone:
      return "the contact's time zone is unknown; the policy's default zone was used";
    case timeline_reason::workflow_archived:
      return "the workflow was archived (or set back to draft): the run ended";
    case timeline_reason::step_removed:
      return "the workflow's new version has no step with the run's step id: the run ended";
  }
  return "";
}

std::string entry_text(const program& p, const timeline_entry& e) {
  if (e.what == timeline_what::merged) {
    return "identify: two ids merged into one contact here (history, timers and timeline "
           "united)";
  }
  const rule* r = find_rule(p, e);
  if (const workflow* w = find_workflow(p, e)) {
    const std::string head = fmt::format("workflow {}", w->id);
    switch (e.what) {
      case timeline_what::action_emitted:
        return fmt::format("{}: {} emitted", head, step_text(w, e.step));
      case timeline_what::action_applied:
        return fmt::format("{}: {} applied", head, step_text(w, e.step));
      case timeline_what::workflow_step:
        return fmt::format("{}: reached {}", head, step_text(w, e.step));
      case timeline_what::action_suppressed:
        return fmt::format("{}: {} suppressed: {}", head, step_text(w, e.step), reason_text(e));
      case timeline_what::action_deferred:
        return fmt::format("{}: {} deferred to {}: {}", head, step_text(w, e.step),
                           format_time(e.until), reason_text(e));
      default:
        break;  // entered, exited, completed: as below
    }
  }
  const std::string head = fmt::format("{} {}", source_kind_name(e.source_kind), source_id(p, e));
  const std::string why = reason_text(e);
  switch (e.what) {
    case timeline_what::triggered:
      if (e.until != e.ts) {
        return fmt::format("{}: triggered; condition checked at {}", head, format_time(e.until));
      }
      return fmt::format("{}: triggered", head);
    case timeline_what::condition_passed:
      return fmt::format("{}: condition held; actions run", head);
    case timeline_what::condition_failed:
      if (e.detail != timeline_none) {
        return fmt::format("{}: condition failed at /rules/{}/if/all/{}", head, e.source, e.detail);
      }
      return fmt::format("{}: condition failed at /rules/{}/if", head, e.source);
    case timeline_what::refused:
      return fmt::format("{}: condition held but the run was refused: {}", head, why);
    case timeline_what::action_emitted:
      return fmt::format("{}: {} emitted", head, action_text(r, e.step));
    case timeline_what::action_applied:
      return fmt::format("{}: {} applied", head, action_text(r, e.step));
    case timeline_what::action_skipped:
      return fmt::format("{}: {} skipped: its own condition did not hold", head,
                         action_text(r, e.step));
    case timeline_what::action_suppressed:
      return fmt::format("{}: {} suppressed: {}", head, action_text(r, e.step), why);
    case timeline_what::action_deferred:
      return fmt::format("{}: {} deferred to {}: {}", head, action_text(r, e.step),
                         format_time(e.until), why);
    case timeline_what::segment_entered:
      return fmt::format("{}: entered", head);
    case timeline_what::segment_exited:
      return fmt::format("{}: exited", head);
    case timeline_what::workflow_entered:
      return fmt::format("{}: entered", head);
    case timeline_what::workflow_step:
      return fmt::format("{}: step {} ran{}{}", head, e.step, why.empty() ? "" : ": ", why);
    case timeline_what::workflow_exited:
      return fmt::format("{}: exited{}{}", head, why.empty() ? "" : ": ", why);
    case timeline_what::workflow_completed:
      return fmt::format("{}: completed", head);
    case timeline_what::merged:
      break;  // above
  }
  return head;
}

}  // namespace

explained_entry explain_entry(const program& program, const timeline_entry& e) {
  explained_entry out;
  out.ts = e.ts;
  out.source = e.what == timeline_what::merged
                   ? std::string{"identity"}
                   : fmt::format("{} {}", source_kind_name(e.source_kind), source_id(program, e));
  out.what = std::string{timeline_what_name(e.what)};
  out.reason = std::string{timeline_reason_name(e.reason)};
  out.text = entry_text(program, e);
  return out;
}

std::vector<explained_entry> explain(const program& program, const contact_state& state) {
  std::vector<explained_entry> out;
  out.reserve(state.timeline.size());
  for (std::size_t i = 0; i < state.timeline.size(); ++i) {
    out.push_back(explain_entry(program, state.timeline[i]));
  }
  return out;
}

std::string format_explanation(const program& program, const contact_state& state) {
  const auto& tl = state.timeline;
  std::string out = fmt::format("contact {}: {} timeline entries", state.contact.id, tl.size());
  if (tl.recorded() > tl.size()) {
    out += fmt::format(" ({} older dropped)", tl.recorded() - tl.size());
  }
  out += '\n';
  if (!state.merged_into.empty()) {
    out += fmt::format(
        "merged into contact {} (identified as it): its history, timers and timeline continue "
        "there; explain {}\n",
        state.merged_into, state.merged_into);
  }
  for (std::size_t i = 0; i < tl.size(); ++i) {
    out += fmt::format("{}  {}\n", format_time(tl[i].ts), entry_text(program, tl[i]));
  }
  return out;
}

std::string format_explanation_json(const program& program, const contact_state& state) {
  namespace json = boost::json;
  const auto& tl = state.timeline;
  json::array entries;
  for (std::size_t i = 0; i < tl.size(); ++i) {
    const timeline_entry& e = tl[i];
    json::object o;
    o["ts"] = format_time(e.ts);
    const bool merge = e.what == timeline_what::merged;
    o["source_kind"] = merge ? "identity" : source_kind_name(e.source_kind);
    o["source"] = merge ? json::value{} : json::value(source_id(program, e));
    o["step"] = e.step == timeline_none ? json::value{} : json::value(e.step);
    o["what"] = timeline_what_name(e.what);
    o["reason"] = e.reason == timeline_reason::none ? json::value{}
                                                    : json::value(timeline_reason_name(e.reason));
    o["until"] = e.until == e.ts ? json::value{} : json::value(format_time(e.until));
    o["detail"] = e.detail == timeline_none ? json::value{} : json::value(e.detail);
    o["text"] = entry_text(program, e);
    entries.push_back(std::move(o));
  }
  json::object root;
  root["contact"] = state.contact.id;
  root["recorded"] = tl.recorded();
  root["dropped"] = tl.recorded() - tl.size();
  root["entries"] = std::move(entries);
  if (!state.merged_into.empty()) {
    root["merged_into"] = state.merged_into;  // an alias record: the contact it went to
  }
  return json::serialize(root);
}

std::optional<std::vector<explained_entry>> explain(engine& engine, std::string_view contact_id) {
  auto state = engine.store().load(contact_id);
  if (!state) {
    return std::nullopt;
  }
  return explain(engine.program(), *state);
}

}  // namespace nudge
