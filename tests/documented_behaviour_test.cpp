// What docs/rules.md now says where readers had to guess (issue 14), each with hand-computed
// actions. t0 = 1704067200 = 2024-01-01T00:00:00Z (a UTC midnight: a grid instant of 1d decay).
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/engine.hpp>
#include <nudge/io/load_rules.hpp>

namespace {

const nudge::time_point t0 = nudge::from_epoch(1704067200);

nudge::event ev(std::string contact, std::string type, nudge::time_point at, std::string key = {}) {
  return {.contact = std::move(contact), .type = std::move(type), .ts = at, .key = std::move(key)};
}

std::vector<std::string> lines(const std::vector<nudge::due_action>& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}{}{} {} {}", nudge::to_epoch(a.ts) - 1704067200, a.contact,
                              a.rule, a.from_workflow() ? "/" : "", a.step, a.action(), a.arg));
  }
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("docs: decay at a grid instant only for a score non-zero before it, after its events",
          "[docs][scoring]") {
  auto program = nudge::load_rules(R"({"event_types": ["check"],
    "scoring": {"rules": [{"id": "views", "on": {"event": "page_view"}, "points": 10}],
                "decay": {"every": "1d", "factor": 0.5}},
    "rules": [{"id": "high", "on": {"event": "check"}, "if": {"field": "score", "ge": 10},
               "then": [{"do": "send_email", "arg": "high"}]},
              {"id": "decayed", "on": {"event": "score_changed", "key": "decay"},
               "then": [{"do": "web_push", "arg": "decayed"}]}]})");
  nudge::engine engine{program};
  const auto day = nudge::days(1);
  // c1: 10 points at t0 + 12h; at t0 + 1d its check still reads 10 (events before timers), then
  // the decay halves it. c2: 10 points at t0 + 1d exactly: no decay there, first at t0 + 2d.
  auto due = engine.process(
      std::vector{ev("c1", "page_view", t0 + nudge::hours(12)), ev("c1", "check", t0 + day),
                  ev("c2", "page_view", t0 + day), ev("c2", "check", t0 + day)},
      t0 + 2 * day);
  CHECK(lines(due) == strings{"86400 c1 high send_email high", "86400 c1 decayed web_push decayed",
                              "86400 c2 high send_email high", "172800 c1 decayed web_push decayed",
                              "172800 c2 decayed web_push decayed"});
  CHECK(engine.find_contact("c1")->score == 2.5);
  CHECK(engine.find_contact("c2")->score == 5);
}

TEST_CASE("docs: a threshold at or below 0 is crossed at the first event", "[docs][scoring]") {
  auto program = nudge::load_rules(R"({
    "scoring": {"rules": [{"id": "views", "on": {"event": "page_view"}, "points": 1}],
                "thresholds": [{"name": "any", "at": 0}]},
    "rules": [{"id": "crossed", "on": {"score_crossed": "any"},
               "then": [{"do": "add_tag", "arg": "scored", "notify": true}]}]})");
  nudge::engine engine{program};
  // A signup awards no points: the score 0 is at the threshold already.
  CHECK(lines(engine.process(std::vector{ev("c1", "signup", t0)}, t0)) ==
        strings{"0 c1 crossed add_tag scored"});
  CHECK(engine
            .process(std::vector{ev("c1", "page_view", t0 + nudge::seconds(1))},
                     t0 + nudge::seconds(1))
            .empty());  // reached once, not again
}

TEST_CASE("docs: a transactional message goes out where the action runs", "[docs][delivery]") {
  auto program = nudge::load_rules(R"({"delivery": {},
    "rules": [{"id": "order", "on": {"event": "purchase"},
               "then": [{"do": "send_email", "arg": "promo"},
                        {"do": "send_email", "arg": "receipt", "transactional": true}]}]})");
  nudge::engine engine{program};
  nudge::contact c{.id = "c1"};
  c.consent["email"] = true;
  engine.upsert_contact(c);
  // The promo is held to the end of the instant; the receipt, emitted second, comes first.
  CHECK(lines(engine.process(std::vector{ev("c1", "purchase", t0, "o1")}, t0)) ==
        strings{"0 c1 order send_email receipt", "0 c1 order send_email promo"});
}

TEST_CASE("docs: a rule's delivery without a file-level section requires consent",
          "[docs][delivery]") {
  auto program = nudge::load_rules(R"({"rules": [
    {"id": "plain", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "a"}]},
    {"id": "governed", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "b"}],
     "delivery": {"priority": 10}}]})");
  nudge::engine engine{program};
  // No consent: the ungoverned rule sends, the governed one is dropped (no_consent).
  CHECK(lines(engine.process(std::vector{ev("c1", "signup", t0)}, t0)) ==
        strings{"0 c1 plain send_email a"});
  CHECK(engine.stats()[1].delivery.no_consent == 1);
}

TEST_CASE("docs: a wait after delivered with no earlier message waits plus, then takes next",
          "[docs][workflow]") {
  auto program = nudge::load_rules(R"({"rules": [], "workflows": [{"id": "wf",
    "entry": {"on": {"event": "signup"}},
    "steps": [{"id": "w", "wait": {"after": "delivered", "plus": "2h"}},
              {"id": "s", "send": {"do": "send_email", "arg": "hello"}}]}]})");
  nudge::engine engine{program};
  CHECK(lines(engine.process(std::vector{ev("c1", "signup", t0)}, t0 + nudge::days(1))) ==
        strings{"7200 c1 wf/s send_email hello"});
}
