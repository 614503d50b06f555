// Conditions on workflow state: "is in workflow X (at step Y)", "has completed / exited
// workflow X", in rules and in segments (re-evaluated when a run moves), with hand-computed
// actions; unknown names are located errors; the memory survives the snapshot codec.
#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

namespace {

using strings = std::vector<std::string>;

nudge::event ev(std::string contact, std::string type, const char* iso) {
  return nudge::event{
      .contact = std::move(contact), .type = std::move(type), .ts = *nudge::parse_time(iso)};
}

strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {} {}({})", nudge::format_time(a.ts), a.contact, a.rule,
                              a.action(), a.arg));
  }
  return out;
}

const char* const cart_rules = R"({
  "segments": [
    {"name": "in_cart_flow", "if": {"in_workflow": "cart"}},
    {"name": "waiting_for_r2", "if": {"in_workflow": "cart", "step": "w2"}}
  ],
  "rules": [
    {"id": "flow_in", "on": {"segment_entered": "in_cart_flow"},
     "then": [{"do": "webhook", "arg": "in_flow"}]},
    {"id": "flow_out", "on": {"segment_exited": "in_cart_flow"},
     "then": [{"do": "webhook", "arg": "left_flow"}]},
    {"id": "at_w2", "on": {"segment_entered": "waiting_for_r2"},
     "then": [{"do": "webhook", "arg": "at_w2"}]},
    {"id": "browsing", "on": {"event": "page_view"},
     "if": {"in_workflow": "cart", "step": "w2"},
     "then": [{"do": "web_push", "arg": "still_thinking"}]},
    {"id": "thanks_c", "on": {"event": "purchase"}, "delay": "1h",
     "if": {"completed_workflow": "cart"},
     "then": [{"do": "send_email", "arg": "thanks_completed"}]},
    {"id": "thanks_x", "on": {"event": "purchase"}, "delay": "1h",
     "if": {"exited_workflow": "cart"},
     "then": [{"do": "send_email", "arg": "thanks_exited"}]}
  ],
  "workflows": [
    {"id": "cart", "entry": {"on": {"event": "cart"}}, "exit_on": [{"event": "purchase"}],
     "steps": [
       {"id": "w1", "wait": "1h"},
       {"id": "r1", "send": {"do": "send_email", "arg": "cart_1"}},
       {"id": "w2", "wait": "1d"},
       {"id": "r2", "send": {"do": "send_email", "arg": "cart_2"}}
     ]}
  ]
})";

}  // namespace

TEST_CASE("workflow state: in_workflow (at a step), completed and exited, in rules and segments",
          "[workflow_state][json]") {
  const auto p = nudge::load_rules(cart_rules);
  nudge::engine e{p};
  auto out = lines(e.process(
      std::vector<nudge::event>{
          // ann walks the whole flow: in at 10:00, cart_1 and step w2 at 11:00, cart_2 and the
          // end 24 h later; her page view at 12:00 finds her at w2. Her purchase on 3 January
          // is checked at 11:00: she completed the flow (and never exited it).
          ev("ann", "cart", "2024-01-01T10:00:00Z"),
          ev("ann", "page_view", "2024-01-01T12:00:00Z"),
          ev("ann", "purchase", "2024-01-03T10:00:00Z"),
          // bob buys at 12:00, at w2: the goal ends his run (left_flow at 12:00); his page view
          // at 12:30 finds him outside; checked at 13:00 he exited and never completed.
          ev("bob", "cart", "2024-01-01T10:00:00Z"),
          ev("bob", "purchase", "2024-01-01T12:00:00Z"),
          ev("bob", "page_view", "2024-01-01T12:30:00Z"),
      },
      *nudge::parse_time("2024-01-05T00:00:00Z")));
  std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
    return a.substr(0, 24) < b.substr(0, 24);  // by time, then contact; same instant: as emitted
  });
  CHECK(out == strings{
                   "2024-01-01T10:00:00Z ann flow_in webhook(in_flow)",
                   "2024-01-01T10:00:00Z bob flow_in webhook(in_flow)",
                   "2024-01-01T11:00:00Z ann cart send_email(cart_1)",
                   "2024-01-01T11:00:00Z ann at_w2 webhook(at_w2)",
                   "2024-01-01T11:00:00Z bob cart send_email(cart_1)",
                   "2024-01-01T11:00:00Z bob at_w2 webhook(at_w2)",
                   "2024-01-01T12:00:00Z ann browsing web_push(still_thinking)",
                   "2024-01-01T12:00:00Z bob flow_out webhook(left_flow)",
                   "2024-01-01T13:00:00Z bob thanks_x send_email(thanks_exited)",
                   "2024-01-02T11:00:00Z ann cart send_email(cart_2)",
                   "2024-01-02T11:00:00Z ann flow_out webhook(left_flow)",
                   "2024-01-03T11:00:00Z ann thanks_c send_email(thanks_completed)",
               });
  // The memory survives the state codec.
  const auto ann = e.store().load("ann");
  REQUIRE(ann);
  CHECK(ann->workflow_history.at(0).completed == 1);
  CHECK(ann->workflow_history.at(0).exited == 0);
  std::string bytes;
  nudge::encode_contact_state(*ann, bytes);
  CHECK(nudge::decode_contact_state(bytes, p.get()) == *ann);
  const auto bob = e.store().load("bob");
  REQUIRE(bob);
  CHECK(bob->workflow_history.at(0).completed == 0);
  CHECK(bob->workflow_history.at(0).exited == 1);
}

TEST_CASE("workflow state: builders give the same conditions as the JSON", "[workflow_state]") {
  const auto p = nudge::load_rules(cart_rules);
  const auto& rs = p->rules();
  CHECK(rs.segments[0].condition == nudge::in_workflow("cart"));
  CHECK(rs.segments[1].condition == nudge::in_workflow("cart", "w2"));
  CHECK(rs.rules[4].condition == nudge::completed_workflow("cart"));
  CHECK(rs.rules[5].condition == nudge::exited_workflow("cart"));
}

TEST_CASE("workflow state: unknown workflows and steps are located errors",
          "[workflow_state][json]") {
  auto problems = [](const std::string& condition) {
    const std::string text = fmt::format(R"({{"rules": [{{"id": "r", "on": {{"event": "signup"}},
 "if": {},
 "then": [{{"do": "send_email", "arg": "x"}}]}}],
 "workflows": [{{"id": "cart", "entry": {{"on": {{"event": "cart"}}}},
  "steps": [{{"id": "w1", "wait": "1h"}}]}}]}})",
                                         condition);
    auto r = nudge::try_load_rules(text, {.file_name = "w.json"});
    strings out;
    for (const auto& d : r.diagnostics) {
      out.push_back(d.to_string());
    }
    return out;
  };
  CHECK(problems(R"({"in_workflow": "crt"})") ==
        strings{"w.json:2:24: /rules/0/if/in_workflow: no workflow \"crt\" is defined"});
  CHECK(problems(R"({"in_workflow": "cart", "step": "w9"})") ==
        strings{"w.json:2:40: /rules/0/if/step: workflow \"cart\" has no step \"w9\""});
  CHECK(problems(R"({"exited_workflow": "nope"})") ==
        strings{"w.json:2:28: /rules/0/if/exited_workflow: no workflow \"nope\" is defined"});
  CHECK(problems(R"({"completed_workflow": ""})") ==
        strings{"w.json:2:31: /rules/0/if/completed_workflow: a workflow id cannot be empty"});
  CHECK(problems(R"({"in_workflow": "cart", "stp": "w1"})") ==
        strings{"w.json:2:32: /rules/0/if/stp: unknown field \"stp\" (did you mean \"step\"?)"});
}
