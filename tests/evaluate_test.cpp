// The pure evaluation step: clock rules, windows to the second, timers, cascades of internal
// actions, rule cycles, idempotency keys, and refusal of bad input.
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::at;
using test_support::ev;
using test_support::t0;

std::shared_ptr<const nudge::program> compile(std::vector<nudge::rule> rules,
                                              nudge::program_limits limits = {}) {
  nudge::rule_set rs;
  rs.rules = std::move(rules);
  rs.event_types = {"probe"};
  return nudge::program::compile(std::move(rs), limits);
}

nudge::contact_state fresh(const nudge::program& p, std::string id = "ann") {
  return p.new_state(nudge::contact{.id = std::move(id)});
}

// "time rule verb(arg)" per due action.
std::vector<std::string> lines(const std::vector<nudge::due_action>& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}({})", nudge::format_time(a.ts), a.rule, a.action(), a.arg));
  }
  return out;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_CASE("evaluate: a within-d window excludes t - d and includes t, to the second",
          "[evaluate][window]") {
  // Probed at T: did a purchase happen within the last 60 days?
  auto p = compile({nudge::rule_builder("bought_recently")
                        .on(nudge::on("probe"))
                        .only_if(nudge::happened(nudge::on("purchase")).within(nudge::days(60)))
                        .then(nudge::send_email("thanks"))});
  const auto T = t0 + nudge::days(100);
  const auto probe = [&](nudge::time_point purchase_at) {
    std::vector<nudge::event> events{ev("purchase", purchase_at), ev("probe", T)};
    return nudge::evaluate(*p, fresh(*p), events, T).actions.size();
  };
  CHECK(probe(T - nudge::days(60) - nudge::seconds(1)) == 0);
  CHECK(probe(T - nudge::days(60)) == 0);  // exactly 60 days before: outside
  CHECK(probe(T - nudge::days(60) + nudge::seconds(1)) == 1);
  CHECK(probe(T - nudge::seconds(1)) == 1);
  CHECK(probe(T) == 1);  // at t: inside
}

TEST_CASE("evaluate: a since-trigger window excludes the trigger's second, includes the check's",
          "[evaluate][window]") {
  auto p = compile({nudge::rule_builder("paid_after_cart")
                        .on(nudge::on("cart"))
                        .check_after(nudge::hours(1))
                        .only_if(nudge::happened(nudge::on("purchase")).since_trigger())
                        .then(nudge::send_email("thanks"))});
  const auto run = [&](nudge::time_point purchase_at) {
    std::vector<nudge::event> events{ev("cart", t0), ev("purchase", purchase_at)};
    return nudge::evaluate(*p, fresh(*p), events, t0 + nudge::days(1)).actions.size();
  };
  CHECK(run(t0) == 0);  // same second as the cart, after it in the batch: not "since"
  CHECK(run(t0 + nudge::seconds(1)) == 1);
  CHECK(run(t0 + nudge::hours(1)) == 1);  // at the check: events at T come first
  CHECK(run(t0 + nudge::hours(1) + nudge::seconds(1)) == 0);  // after the check
}

TEST_CASE("evaluate: timers due at T fire after events stamped T and before later ones",
          "[evaluate][clock]") {
  auto p = compile(
      {nudge::rule_builder("delayed")
           .on(nudge::on("signup"))
           .check_after(nudge::hours(1))
           .then(nudge::send_email("timer")),
       nudge::rule_builder("instant").on(nudge::on("page_view")).then(nudge::send_email("event"))});
  const auto T = t0 + nudge::hours(1);
  const auto order = [&](nudge::time_point view_at) {
    std::vector<nudge::event> events{ev("signup", t0), ev("page_view", view_at)};
    return lines(nudge::evaluate(*p, fresh(*p), events, T + nudge::hours(1)).actions);
  };
  CHECK(order(T - nudge::seconds(1)) ==
        strings{at(T - nudge::seconds(1)) + " instant send_email(event)",
                at(T) + " delayed send_email(timer)"});
  CHECK(order(T) ==
        strings{at(T) + " instant send_email(event)", at(T) + " delayed send_email(timer)"});
  CHECK(order(T + nudge::seconds(1)) ==
        strings{at(T) + " delayed send_email(timer)",
                at(T + nudge::seconds(1)) + " instant send_email(event)"});
}

TEST_CASE("evaluate: timers due at one instant fire in the order they were scheduled",
          "[evaluate][clock]") {
  // Rule "a" comes first in the set, but its timer is scheduled a day after b's.
  auto p = compile({nudge::rule_builder("a")
                        .on(nudge::on("page_view"))
                        .check_after(nudge::days(1))
                        .then(nudge::send_email("a")),
                    nudge::rule_builder("b")
                        .on(nudge::on("signup"))
                        .check_after(nudge::days(2))
                        .then(nudge::send_email("b")),
                    nudge::rule_builder("c")
                        .on(nudge::on("signup"))
                        .check_after(nudge::days(2))
                        .then(nudge::send_email("c"))});
  const auto due = at(t0 + nudge::days(2));
  const strings expected{due + " b send_email(b)", due + " c send_email(c)",
                         due + " a send_email(a)"};
  std::vector<nudge::event> events{ev("signup", t0), ev("page_view", t0 + nudge::days(1))};

  SECTION("in one call") {
    auto out = nudge::evaluate(*p, fresh(*p), events, t0 + nudge::days(3));
    CHECK(lines(out.actions) == expected);
    CHECK(out.state.timers.empty());
    CHECK(out.state.timers_scheduled == 3);
  }
  SECTION("across calls, the order kept in the state") {
    auto first = nudge::evaluate(*p, fresh(*p), std::span{events}.first(1), t0);
    REQUIRE(first.actions.empty());
    auto second = nudge::evaluate(*p, first.state, std::span{events}.last(1), t0 + nudge::days(1));
    REQUIRE(second.actions.empty());
    REQUIRE(second.state.timers.size() == 3);
    CHECK(second.state.next_due() == t0 + nudge::days(2));
    auto third =
        nudge::evaluate(*p, second.state, std::span<const nudge::event>{}, t0 + nudge::days(2));
    CHECK(lines(third.actions) == expected);
  }
  SECTION("not before they are due") {
    auto out = nudge::evaluate(*p, fresh(*p), events, t0 + nudge::days(2) - nudge::seconds(1));
    CHECK(out.actions.empty());
    CHECK(out.state.timers.size() == 3);
  }
}

TEST_CASE("evaluate: events of one instant are applied in the order given", "[evaluate][clock]") {
  auto p = compile({nudge::rule_builder("viewed_after_buying")
                        .on(nudge::on("page_view"))
                        .only_if(nudge::happened(nudge::on("purchase")))
                        .then(nudge::send_email("x"))});
  std::vector<nudge::event> buy_then_view{ev("purchase", t0), ev("page_view", t0)};
  std::vector<nudge::event> view_then_buy{ev("page_view", t0), ev("purchase", t0)};
  CHECK(nudge::evaluate(*p, fresh(*p), buy_then_view, t0).actions.size() == 1);
  CHECK(nudge::evaluate(*p, fresh(*p), view_then_buy, t0).actions.size() == 0);
}

TEST_CASE("evaluate: bad events are refused with the event's index and nothing applied",
          "[evaluate][errors]") {
  auto p =
      compile({nudge::rule_builder("r").on(nudge::on("page_view")).then(nudge::send_email("x"))});
  const auto one_day = t0 + nudge::days(1);
  auto state = nudge::evaluate(*p, fresh(*p), std::vector{ev("page_view", one_day)}, one_day).state;
  REQUIRE(state.clock == one_day);
  const auto fails = [&](std::vector<nudge::event> events, nudge::time_point now) -> std::string {
    try {
      nudge::evaluate(*p, state, events, now);
    } catch (const nudge::input_error& e) {
      return e.what();
    }
    return "no error";
  };
  CHECK(fails({ev("page_view", t0)}, one_day) ==
        "event 0 (contact \"ann\"): out of order: 2024-01-01T00:00:00Z (1704067200) is before "
        "2024-01-02T00:00:00Z (1704153600), the contact's last applied event or timer");
  CHECK(fails({ev("page_view", one_day + nudge::hours(2)),
               ev("page_view", one_day + nudge::hours(1))},
              one_day + nudge::hours(3)) ==
        "event 1 (contact \"ann\"): out of order: 2024-01-02T01:00:00Z (1704157200) is before "
        "2024-01-02T02:00:00Z (1704160800), the contact's last applied event or timer");
  CHECK(fails({ev("page_view", one_day), ev("page_view", one_day + nudge::hours(2))},
              one_day + nudge::hours(1)) ==
        "event 1 (contact \"ann\"): time 2024-01-02T02:00:00Z is after now (2024-01-02T01:00:00Z)");
  CHECK(fails({ev("page_view", one_day), ev("PURCHASE", one_day)}, one_day) ==
        "event 1 (contact \"ann\"): unknown event type \"PURCHASE\"");
  CHECK(fails({ev("page_view", one_day, "", "bob")}, one_day) ==
        "event 0 (contact \"bob\"): belongs to contact \"ann\"");
  CHECK(fails({ev("page_view", nudge::from_epoch(-2'208'988'801))}, one_day) ==
        "event 0 (contact \"ann\"): time -2208988801 is outside the supported range "
        "(1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z)");
  // An event at the contact's clock is not older than it: accepted.
  CHECK(fails({ev("page_view", one_day)}, one_day) == "no error");

  SECTION("the error carries its parts") {
    try {
      nudge::evaluate(*p, state, std::vector{ev("page_view", one_day), ev("nope", one_day)},
                      one_day);
      FAIL("no error");
    } catch (const nudge::input_error& e) {
      CHECK(e.contact() == "ann");
      CHECK(e.event_index() == 1);
      CHECK(e.reason() == "unknown event type \"nope\"");
    }
  }
}

TEST_CASE("evaluate: a fired timer moves the contact's clock", "[evaluate][clock]") {
  auto p = compile({nudge::rule_builder("later")
                        .on(nudge::on("signup"))
                        .check_after(nudge::days(1))
                        .then(nudge::send_email("x"))});
  auto out = nudge::evaluate(*p, fresh(*p), std::vector{ev("signup", t0)}, t0 + nudge::days(5));
  CHECK(out.state.clock == t0 + nudge::days(1));  // the timer, not `now`
  CHECK_THROWS_AS(
      nudge::evaluate(*p, out.state,
                      std::vector{ev("signup", t0 + nudge::days(1) - nudge::seconds(1))},
                      t0 + nudge::days(5)),
      nudge::input_error);
  CHECK_NOTHROW(nudge::evaluate(*p, out.state, std::vector{ev("signup", t0 + nudge::days(2))},
                                t0 + nudge::days(5)));
}

TEST_CASE("evaluate: a state from another program is refused", "[evaluate][errors]") {
  auto with_history = compile({nudge::rule_builder("r")
                                   .on(nudge::on("probe"))
                                   .only_if(nudge::happened(nudge::on("purchase")))
                                   .then(nudge::send_email("x"))});
  auto without =
      compile({nudge::rule_builder("r").on(nudge::on("probe")).then(nudge::send_email("x"))});
  REQUIRE(with_history->history_slot_count() == 1);
  CHECK_THROWS_WITH(
      nudge::evaluate(*without, fresh(*with_history), std::vector<nudge::event>{}, t0),
      "contact \"ann\": state has 1 history slots, the program keeps 0 (a state "
      "from another program)");
  // A state without history (a fresh profile) is sized to the program.
  nudge::contact_state bare;
  bare.contact.id = "ann";
  auto out = nudge::evaluate(*with_history, bare, std::vector<nudge::event>{}, t0);
  CHECK(out.state.history.size() == 1);
}

TEST_CASE("evaluate: internal actions raise events that trigger other rules",
          "[evaluate][cascade]") {
  auto p = compile({
      nudge::rule_builder("onboard")
          .on(nudge::on("signup"))
          .then(nudge::add_tag("new"))
          .then(nudge::set_stage("trial"))
          .then(nudge::add_score(10))
          .then(nudge::set_detail("plan", std::string{"free"}))
          .then(nudge::add_to_group("newsletter"))
          .then(nudge::set_status("trialist"))
          .then(nudge::add_tag("new"))  // already there: raises nothing
          .then(nudge::add_tag("seen") | nudge::notify_host{}),
      nudge::rule_builder("on_tag")
          .on(nudge::on("tag_added", "new"))
          .then(nudge::send_email("tagged")),
      nudge::rule_builder("on_stage")
          .on(nudge::on("stage_entered", "trial"))
          .then(nudge::send_email("staged")),
      nudge::rule_builder("on_score")
          .on(nudge::on("score_changed"))
          .only_if(nudge::score().ge(10))
          .then(nudge::send_email("scored")),
      nudge::rule_builder("on_detail")
          .on(nudge::on("detail_set", "plan"))
          .then(nudge::send_email("detailed")),
      nudge::rule_builder("on_group")
          .on(nudge::on("group_added", "newsletter"))
          .then(nudge::send_email("grouped")),
      nudge::rule_builder("on_status")
          .on(nudge::on("status_changed", "trialist"))
          .then(nudge::send_email("statused")),
      nudge::rule_builder("tags_so_far")
          .on(nudge::on("tag_added", "seen"))
          .only_if(nudge::happened(nudge::on("tag_added")).exactly(2))
          .then(nudge::send_sms("two_tags")),
  });
  auto out = nudge::evaluate(*p, fresh(*p), std::vector{ev("signup", t0)}, t0);
  const auto T = at(t0);
  CHECK(lines(out.actions) == strings{
                                  T + " onboard add_tag(seen)",
                                  T + " on_tag send_email(tagged)",
                                  T + " on_stage send_email(staged)",
                                  T + " on_score send_email(scored)",
                                  T + " on_detail send_email(detailed)",
                                  T + " on_group send_email(grouped)",
                                  T + " on_status send_email(statused)",
                                  T + " tags_so_far send_sms(two_tags)",
                              });
  const nudge::contact& c = out.state.contact;
  CHECK(c.tags == nudge::name_map<nudge::time_point>{{"new", t0}, {"seen", t0}});
  CHECK(c.stage == "trial");
  CHECK(c.score == 10);
  CHECK(c.details == nudge::name_map<nudge::value>{{"plan", std::string{"free"}}});
  CHECK(c.groups == nudge::name_set{"newsletter"});
  CHECK(c.status == "trialist");
  CHECK(out.state.events_applied == 8);  // the signup and the seven changes
}

TEST_CASE("evaluate: a rule that re-triggers itself through a delay stops at the timer limit",
          "[evaluate][cascade][limits]") {
  // Found by fuzz_differential (docs/fuzzing.md): each run sets the stage to "b" (re-running the
  // rule once, whose own set_stage is then a no-op) and schedules "ab" a minute later, so every
  // round leaves twice the timers of the one before.
  nudge::program_limits limits;
  limits.max_pending_timers = 100;
  auto p = compile({nudge::rule_builder("r4")
                        .on(nudge::on("stage_entered"))
                        .then(nudge::set_stage("b"))
                        .then(nudge::set_stage("ab") | nudge::after{nudge::minutes(1)})},
                   limits);
  SECTION("within the limit the timers double every minute") {
    auto out = nudge::evaluate(*p, fresh(*p), std::vector{ev("stage_entered", t0, "x")},
                               t0 + nudge::minutes(5));
    CHECK(out.state.timers.size() == 64);
  }
  SECTION("past it the evaluation fails, naming the rule") {
    try {
      nudge::evaluate(*p, fresh(*p), std::vector{ev("stage_entered", t0, "x")},
                      t0 + nudge::minutes(7));
      FAIL("no error");
    } catch (const nudge::rule_cycle_error& e) {
      CHECK(e.contact() == "ann");
      CHECK(e.chain() == strings{"r4"});
      CHECK(std::string{e.what()} ==
            "contact \"ann\": more than 100 pending timers (program_limits::max_pending_timers); "
            "rules holding them: r4 (100); a rule that re-triggers itself through a delay "
            "schedules timers without end");
    }
  }
}

TEST_CASE("evaluate: a cascade that fans out fails once it raised max_cascade_events",
          "[evaluate][cascade][limits]") {
  // Found by fuzz_differential (docs/fuzzing.md, finding 2): two copies of one rule answer
  // "tag a removed" by adding and removing tag a, so each level of the cascade raises twice the
  // events of the one before; the depth limit (16) alone let one event raise 2^17 of them.
  const auto churn = [](const char* id) {
    return nudge::rule_builder(id)
        .on(nudge::on("tag_removed", "a"))
        .then(nudge::add_tag("a"))
        .then(nudge::remove_tag("a"));
  };
  auto start = nudge::rule_builder("start").on(nudge::on("signup")).then(nudge::remove_tag("a"));
  nudge::program_limits limits;
  limits.max_cascade_events = 50;
  SECTION("past the limit the evaluation fails, naming the rules raising the queued events") {
    auto p = compile({start, churn("r3"), churn("r5")}, limits);
    auto state = fresh(*p);
    state.contact.tags["a"] = t0;
    try {
      nudge::evaluate(*p, state, std::vector{ev("signup", t0)}, t0);
      FAIL("no error");
    } catch (const nudge::rule_cycle_error& e) {
      CHECK(e.contact() == "ann");
      CHECK(e.chain() == strings{"r3", "r5"});
      CHECK(std::string{e.what()} ==
            "contact \"ann\": internal actions raised more than 50 events in one cascade "
            "(program_limits::max_cascade_events); rules raising the queued events: r3 (14), "
            "r5 (12); rules that answer an event by raising it again fan out without end");
    }
  }
  SECTION("a cascade that does not fan out still meets the depth limit first") {
    // One copy does not fan out (two events per level): the depth limit (16) ends the cascade
    // before it raised 40 events.
    limits.max_cascade_events = 40;
    auto p = compile({start, churn("r3")}, limits);
    auto state = fresh(*p);
    state.contact.tags["a"] = t0;
    CHECK_THROWS_WITH(nudge::evaluate(*p, state, std::vector{ev("signup", t0)}, t0),
                      Catch::Contains("internal actions trigger rules past the depth limit"));
  }
}

TEST_CASE("evaluate: rules that keep triggering each other fail with the chain",
          "[evaluate][cascade]") {
  SECTION("two rules moving a contact between stages, with a small depth limit") {
    nudge::program_limits limits;
    limits.max_cascade_depth = 4;
    auto p =
        compile({nudge::rule_builder("start").on(nudge::on("signup")).then(nudge::set_stage("a")),
                 nudge::rule_builder("to_b")
                     .on(nudge::on("stage_entered", "a"))
                     .then(nudge::set_stage("b")),
                 // A condition compilation cannot see through (it always holds): the cycle is
                 // left to the run-time limit; without it program::compile refuses the cycle.
                 nudge::rule_builder("to_a")
                     .on(nudge::on("stage_entered", "b"))
                     .only_if(nudge::stage().eq("b"))
                     .then(nudge::set_stage("a"))},
                limits);
    try {
      nudge::evaluate(*p, fresh(*p), std::vector{ev("signup", t0)}, t0);
      FAIL("no error");
    } catch (const nudge::rule_cycle_error& e) {
      CHECK(e.contact() == "ann");
      CHECK(e.chain() == strings{"start", "to_b", "to_a", "to_b", "to_a"});
      CHECK(std::string{e.what()} ==
            "contact \"ann\": internal actions trigger rules past the depth limit; rule cycle: "
            "start -> to_b -> to_a -> to_b -> to_a");
    }
  }
  SECTION("two rules adding tags to each other, at the default limit") {
    auto p = compile({nudge::rule_builder("tag_a")
                          .on(nudge::on("tag_added", "a"))
                          .then(nudge::remove_tag("a"))
                          .then(nudge::add_tag("b")),
                      nudge::rule_builder("tag_b")
                          .on(nudge::on("tag_added", "b"))
                          .then(nudge::remove_tag("b"))
                          .then(nudge::add_tag("a"))});
    try {
      nudge::evaluate(*p, fresh(*p), std::vector{ev("tag_added", t0, "a")}, t0);
      FAIL("no error");
    } catch (const nudge::rule_cycle_error& e) {
      REQUIRE(e.chain().size() == nudge::program_limits{}.max_cascade_depth + 1);
      for (std::size_t i = 0; i < e.chain().size(); ++i) {
        CHECK(e.chain()[i] == (i % 2 == 0 ? "tag_a" : "tag_b"));
      }
    }
  }
  SECTION("adding a tag the contact has raises nothing, so mutual tagging settles") {
    auto p = compile(
        {nudge::rule_builder("tag_a").on(nudge::on("tag_added", "a")).then(nudge::add_tag("b")),
         nudge::rule_builder("tag_b").on(nudge::on("tag_added", "b")).then(nudge::add_tag("a"))});
    auto out = nudge::evaluate(*p, fresh(*p), std::vector{ev("tag_added", t0, "a")}, t0);
    CHECK(out.state.contact.tags == nudge::name_map<nudge::time_point>{{"a", t0}, {"b", t0}});
  }
}

TEST_CASE("evaluate: idempotency keys differ per action and repeat on replay",
          "[evaluate][idempotency]") {
  auto p = compile({nudge::rule_builder("drip")
                        .on(nudge::on("signup"))
                        .then(nudge::send_email("one"))
                        .then(nudge::send_email("one"))  // the same action twice: two keys
                        .then(nudge::send_email("two") | nudge::after{nudge::days(1)}),
                    nudge::rule_builder("every_view")
                        .on(nudge::on("page_view"))
                        .check_after(nudge::hours(1))
                        .then(nudge::send_sms("view"))});
  std::vector<nudge::event> events{ev("signup", t0), ev("page_view", t0 + nudge::minutes(1)),
                                   ev("page_view", t0 + nudge::minutes(1)),
                                   ev("signup", t0 + nudge::hours(2))};
  auto first = nudge::evaluate(*p, fresh(*p), events, t0 + nudge::days(3));
  auto again = nudge::evaluate(*p, fresh(*p), events, t0 + nudge::days(3));
  REQUIRE(first.actions.size() == 8);
  CHECK(first.actions == again.actions);
  CHECK(first.state == again.state);
  std::set<std::uint64_t> keys;
  for (const auto& a : first.actions) {
    keys.insert(a.idempotency_key);
  }
  CHECK(keys.size() == first.actions.size());

  SECTION("another contact with the same events gets other keys") {
    std::vector<nudge::event> bobs;
    for (auto e : events) {
      e.contact = "bob";
      bobs.push_back(e);
    }
    auto bob = nudge::evaluate(*p, fresh(*p, "bob"), bobs, t0 + nudge::days(3));
    REQUIRE(bob.actions.size() == 8);
    for (const auto& a : bob.actions) {
      CHECK(keys.count(a.idempotency_key) == 0);
    }
  }
  SECTION("the same input evaluated in steps gives the same keys") {
    auto step = nudge::evaluate(*p, fresh(*p), std::span{events}.first(2), t0 + nudge::minutes(1));
    auto rest = nudge::evaluate(*p, step.state, std::span{events}.last(2), t0 + nudge::days(3));
    auto all = step.actions;
    all.insert(all.end(), rest.actions.begin(), rest.actions.end());
    CHECK(all == first.actions);
    CHECK(rest.state == first.state);
  }
}

TEST_CASE("evaluate: outcomes record triggers, checks and refusals", "[evaluate][stats]") {
  auto p = compile({nudge::rule_builder("once")
                        .on(nudge::on("page_view"))
                        .only_if(nudge::negate(nudge::has_tag("blocked")))
                        .then(nudge::send_email("x"))
                        .once()});
  std::vector<nudge::event> events{ev("page_view", t0), ev("page_view", t0 + nudge::seconds(1)),
                                   ev("tag_added", t0 + nudge::seconds(2), "blocked"),
                                   ev("page_view", t0 + nudge::seconds(3))};
  auto out = nudge::evaluate(*p, fresh(*p), events, t0 + nudge::seconds(3));
  using k = nudge::rule_outcome_kind;
  CHECK(out.outcomes == std::vector<nudge::rule_outcome>{
                            {0, k::triggered, t0},
                            {0, k::passed, t0},
                            {0, k::triggered, t0 + nudge::seconds(1)},
                            {0, k::suppressed, t0 + nudge::seconds(1)},
                            {0, k::triggered, t0 + nudge::seconds(3)},
                            {0, k::failed, t0 + nudge::seconds(3)},
                        });
  CHECK(out.state.rule_runs.at(0).runs == 1);
}
