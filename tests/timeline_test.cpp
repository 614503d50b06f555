// Contact timelines: what the engine records for a rule (trigger, condition outcome with the
// failing top-level condition, refusals, actions), the bound, snapshots and explanations.
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::t0;

using nudge::days;
using nudge::hours;

std::shared_ptr<const nudge::program> cart_program(std::uint32_t timeline_size) {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("cart_reminder")
          .on(nudge::on("cart"))
          .check_after(hours(2))
          .only_if(nudge::all({nudge::not_happened(nudge::on("purchase")).within(hours(2)),
                               !nudge::has_tag("unsubscribed")}))
          .then(nudge::send_email("cart_reminder"))
          .then(nudge::add_tag("reminded"))
          .once());
  rs.timeline_size = timeline_size;
  return nudge::program::compile(std::move(rs));
}

std::vector<std::string> texts(const nudge::program& p, const nudge::contact_state& s) {
  std::vector<std::string> out;
  for (const auto& e : nudge::explain(p, s)) {
    out.push_back(fmt::format("{} {}", nudge::format_time(e.ts), e.text));
  }
  return out;
}

}  // namespace

TEST_CASE("timeline: a rule's trigger, condition outcome, refusal and actions are recorded",
          "[timeline]") {
  const auto p = cart_program(50);
  const std::vector<nudge::event> events{
      ev("cart", t0),             // passes at 02:00: e-mail + tag
      ev("cart", t0 + hours(3)),  // passes at 05:00 but the rule runs once: refused
      ev("cart", t0 + hours(6)),  // a purchase at 07:00 fails the first condition
      ev("purchase", t0 + hours(7)),
  };
  auto out = nudge::evaluate(*p, p->new_state({.id = "ann"}), events, t0 + days(1));
  REQUIRE(out.actions.size() == 1);
  CHECK(texts(*p, out.state) ==
        std::vector<std::string>{
            "2024-01-01T00:00:00Z rule cart_reminder: triggered; condition checked at "
            "2024-01-01T02:00:00Z",
            "2024-01-01T02:00:00Z rule cart_reminder: condition held; actions run",
            "2024-01-01T02:00:00Z rule cart_reminder: action 0 send_email cart_reminder emitted",
            "2024-01-01T02:00:00Z rule cart_reminder: action 1 add_tag reminded applied",
            "2024-01-01T03:00:00Z rule cart_reminder: triggered; condition checked at "
            "2024-01-01T05:00:00Z",
            "2024-01-01T05:00:00Z rule cart_reminder: condition held but the run was refused: "
            "the rule runs once per contact and already ran",
            "2024-01-01T06:00:00Z rule cart_reminder: triggered; condition checked at "
            "2024-01-01T08:00:00Z",
            "2024-01-01T08:00:00Z rule cart_reminder: condition failed at /rules/0/if/all/0",
        });
  const auto& tl = out.state.timeline;
  CHECK(tl[5].what == nudge::timeline_what::refused);
  CHECK(tl[5].reason == nudge::timeline_reason::reentry_once);
  CHECK(tl[7].what == nudge::timeline_what::condition_failed);
  CHECK(tl[7].detail == 0);
  CHECK(tl[2].step == 0);
}

TEST_CASE("timeline: the second top-level condition is named when it is the one that failed",
          "[timeline]") {
  const auto p = cart_program(50);
  auto s = p->new_state({.id = "ann"});
  s.contact.tags["unsubscribed"] = t0;
  auto out = nudge::evaluate(*p, s, std::vector{ev("cart", t0)}, t0 + hours(2));
  CHECK(out.actions.empty());
  CHECK(texts(*p, out.state).back() ==
        "2024-01-01T02:00:00Z rule cart_reminder: condition failed at /rules/0/if/all/1");
}

TEST_CASE("timeline: the bound keeps the newest entries and counts the dropped ones",
          "[timeline]") {
  const auto p = cart_program(3);
  std::vector<nudge::event> events;
  for (int i = 0; i < 4; ++i) {
    events.push_back(
        ev("cart", t0 + hours(10 * i)));  // 4 for the first run + 2 per refused one = 10
  }
  auto out = nudge::evaluate(*p, p->new_state({.id = "ann"}), events, t0 + days(2));
  const auto& tl = out.state.timeline;
  CHECK(tl.recorded() == 10);
  REQUIRE(tl.size() == 3);
  CHECK(texts(*p, out.state) ==
        std::vector<std::string>{
            "2024-01-01T22:00:00Z rule cart_reminder: condition held but the run was refused: "
            "the rule runs once per contact and already ran",
            "2024-01-02T06:00:00Z rule cart_reminder: triggered; condition checked at "
            "2024-01-02T08:00:00Z",
            "2024-01-02T08:00:00Z rule cart_reminder: condition held but the run was refused: "
            "the rule runs once per contact and already ran",
        });
  CHECK(nudge::format_explanation(*p, out.state)
            .starts_with(
                "contact ann: 3 timeline entries (7 older dropped)\n2024-01-01T22:00:00Z  rule "));
}

TEST_CASE("timeline: size 0 records nothing and changes no action", "[timeline]") {
  const auto on = cart_program(50);
  const auto off = cart_program(0);
  const std::vector<nudge::event> events{ev("cart", t0), ev("purchase", t0 + hours(1))};
  auto a = nudge::evaluate(*on, on->new_state({.id = "ann"}), events, t0 + days(1));
  auto b = nudge::evaluate(*off, off->new_state({.id = "ann"}), events, t0 + days(1));
  CHECK(b.state.timeline.empty());
  CHECK(b.state.timeline.recorded() == 0);
  CHECK(a.state.timeline.size() == 2);  // triggered, condition failed
  CHECK(a.actions == b.actions);
}

TEST_CASE("timeline: recording is split-invariant and survives a snapshot", "[timeline]") {
  const auto p = cart_program(5);
  std::vector<nudge::event> events;
  for (int i = 0; i < 6; ++i) {
    events.push_back(ev(i % 3 == 2 ? "purchase" : "cart", t0 + hours(5 * i)));
  }
  const auto until = t0 + days(3);
  nudge::engine whole{p};
  whole.process(events, until);
  nudge::engine split{p};
  for (const auto& e : events) {
    split.process(std::vector{e}, e.ts);
    std::string bytes;
    auto state = split.store().load("ann");
    REQUIRE(state);
    nudge::encode_contact_state(*state, bytes);
    CHECK(nudge::decode_contact_state(bytes, p.get()) == *state);
  }
  split.advance(until);
  const auto a = whole.store().load("ann");
  const auto b = split.store().load("ann");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->timeline.recorded() > 5);
  CHECK(a->timeline == b->timeline);
  CHECK(*nudge::explain(whole, "ann") == nudge::explain(*p, *a));
  CHECK_FALSE(nudge::explain(whole, "nobody"));
}

TEST_CASE("timeline: JSON explanation names every field", "[timeline][explain]") {
  const auto p = cart_program(50);
  auto out =
      nudge::evaluate(*p, p->new_state({.id = "ann"}), std::vector{ev("cart", t0)}, t0 + hours(1));
  CHECK(nudge::format_explanation_json(*p, out.state) ==
        R"({"contact":"ann","recorded":1,"dropped":0,"entries":[{"ts":"2024-01-01T00:00:00Z",)"
        R"("source_kind":"rule","source":"cart_reminder","step":null,"what":"triggered",)"
        R"("reason":null,"until":"2024-01-01T02:00:00Z","detail":null,"text":"rule )"
        R"(cart_reminder: triggered; condition checked at 2024-01-01T02:00:00Z"}]})");
}

TEST_CASE("timeline: the rule file sets the size, with located errors", "[timeline][json]") {
  const std::string rules =
      R"({"rules": [{"id": "w", "on": {"event": "signup"},)"
      R"( "then": [{"do": "send_email", "arg": "w"}]}], "timeline": {"size": 7}})";
  CHECK(nudge::load_rules(rules)->timeline_size() == 7);
  CHECK(nudge::parse_rules(R"({"rules": []})").timeline_size == 0);
  CHECK_THROWS_WITH(nudge::load_rules(R"({"rules": [], "timeline": {"size": -1, "keep": 3}})",
                                      {.file_name = "t.json", .limits = {}}),
                    "t.json:1:36: /timeline/size: -1 is out of range (expected 0 to 100000)\n"
                    "t.json:1:40: /timeline/keep: unknown field \"keep\" (expected size)");
}
