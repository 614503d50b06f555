// Workflows under the delivery policy (their send steps wait at the step while a message is
// deferred; a dropped message lets the run move on; caps are shared with rules; priority; goals
// while deferred; statistics and timeline; rule files; split invariance) and workflow times on
// the contact's local clock (time-of-day waits and yearly dates on daylight-saving days in
// Europe/Warsaw, 29 February).
#include <memory>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/explain.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::at;
using test_support::strings;

using nudge::days;
using nudge::hours;

nudge::event ev(std::string type, nudge::time_point t, std::string contact = "ann") {
  return nudge::event{.contact = std::move(contact), .type = std::move(type), .ts = t, .key = {}};
}

// "time contact source[/step] arg" per due action.
strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}{}{} {}", nudge::format_time(a.ts), a.contact, a.rule,
                              a.step.empty() ? "" : "/", a.step, a.arg));
  }
  return out;
}

nudge::local_hours hm(int from_h, int to_h) {
  return {from_h * 3600, to_h * 3600};
}

nudge::contact person(std::string id, std::string zone = {}, bool email = true) {
  nudge::contact c{.id = std::move(id)};
  c.consent["email"] = email;
  c.time_zone = std::move(zone);
  return c;
}

std::shared_ptr<const nudge::program> compile(std::vector<nudge::workflow> workflows,
                                              std::optional<nudge::delivery_policy> defaults,
                                              std::vector<nudge::rule> rules = {},
                                              std::string zone = "UTC") {
  nudge::rule_set rs;
  rs.rules = std::move(rules);
  rs.workflows = std::move(workflows);
  rs.event_types = {"probe", "cart", "signup"};
  rs.timeline_size = 50;
  if (defaults) {
    nudge::delivery_settings d;
    d.defaults = std::move(*defaults);
    d.default_time_zone = std::move(zone);
    rs.delivery = std::move(d);
  }
  return nudge::program::compile(std::move(rs), {}, nudge::system_zones());
}

// Cart reminders: the first at once, the second a day after the first went out.
nudge::workflow cart_flow() {
  return nudge::workflow_builder("cart")
      .enter_on(nudge::on("cart"))
      .exit_on(nudge::on("purchase"))
      .send("r1", nudge::send_email("cart_1"))
      .wait_after_message("w1", nudge::message_moment::delivered, days(1))
      .send("r2", nudge::send_email("cart_2"))
      .build();
}

strings policy_timeline(const nudge::program& p, const nudge::contact_state& s) {
  strings out;
  for (const auto& e : nudge::explain(p, s)) {
    if (e.what == "action_deferred" || e.what == "action_suppressed" ||
        e.what == "action_emitted") {
      out.push_back(fmt::format("{} {}", nudge::format_time(e.ts), e.text));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("workflow delivery: quiet hours defer a step's message and the run waits at the step",
          "[workflow][delivery][hours]") {
  nudge::delivery_policy policy;
  policy.quiet_hours = hm(21, 8);
  const auto p = compile({cart_flow()}, policy, {}, "Europe/Warsaw");
  nudge::engine engine{p};
  engine.upsert_contact(person("ann"));
  // 20:30 UTC is 21:30 in Warsaw (CET): quiet until 08:00 CET = 07:00 UTC.
  const auto t = at("2024-01-10T20:30:00Z");
  CHECK(engine.process(std::vector{ev("cart", t)}, t + hours(2)).empty());
  {
    const auto stats = engine.workflow_stats()[0];
    CHECK(stats.steps[0].step == "r1");
    CHECK(stats.steps[0].waiting == 1);  // stuck at r1 while its message is deferred
    CHECK(stats.steps[0].delivery.deferred_hours == 1);
    CHECK(stats.delivery.deferred_hours == 1);
    CHECK(stats.sent == 0);
    const auto s = engine.store().load("ann");
    REQUIRE(s);
    REQUIRE(s->runs.size() == 1);
    CHECK(s->runs[0].phase == 2);
    REQUIRE(s->timers.size() == 1);
    CHECK(s->timers[0].deferred);
    CHECK(s->timers[0].due_at == at("2024-01-11T07:00:00Z"));
  }
  // The wait after delivery counts from the instant the message went out: 07:00 the next day.
  CHECK(lines(engine.advance(at("2024-01-13T00:00:00Z"))) ==
        strings{"2024-01-11T07:00:00Z ann cart/r1 cart_1",
                "2024-01-12T07:00:00Z ann cart/r2 cart_2"});
  const auto stats = engine.workflow_stats()[0];
  CHECK(stats.steps[0].waiting == 0);
  CHECK(stats.steps[0].sent == 1);
  CHECK(stats.sent == 2);
  CHECK(stats.completed == 1);
  const auto s = engine.store().load("ann");
  CHECK(policy_timeline(*p, *s) ==
        strings{"2024-01-10T20:30:00Z workflow cart: step r1 send_email cart_1 deferred to "
                "2024-01-11T07:00:00Z: quiet hours in the contact's time zone",
                "2024-01-11T07:00:00Z workflow cart: step r1 send_email cart_1 emitted",
                "2024-01-12T07:00:00Z workflow cart: step r2 send_email cart_2 emitted"});
}

TEST_CASE("workflow delivery: a dropped message lets the run move on without a send",
          "[workflow][delivery][consent]") {
  const auto flow = nudge::workflow_builder("welcome")
                        .enter_on(nudge::on("signup"))
                        .send("hello", nudge::send_email("hello"))
                        .wait_after_message("w", nudge::message_moment::delivered, days(1))
                        .send("code", nudge::send_sms("code") | nudge::transactional{})
                        .build();
  const auto p = compile({flow}, nudge::delivery_policy{});
  nudge::engine engine{p};
  engine.upsert_contact(person("ann", {}, false));  // no e-mail consent
  const auto t = at("2024-01-10T10:00:00Z");
  // Nothing was delivered, so the wait after delivery counts from the run's arrival there.
  CHECK(lines(engine.process(std::vector{ev("signup", t)}, t + days(2))) ==
        strings{"2024-01-11T10:00:00Z ann welcome/code code"});
  const auto stats = engine.workflow_stats()[0];
  CHECK(stats.steps[0].delivery.no_consent == 1);
  CHECK(stats.steps[0].sent == 0);
  CHECK(stats.steps[0].waiting == 0);
  CHECK(stats.delivery.no_consent == 1);
  CHECK(stats.sent == 1);  // the transactional code, exempt from consent
  CHECK(policy_timeline(*p, *engine.store().load("ann")).front() ==
        "2024-01-10T10:00:00Z workflow welcome: step hello send_email hello suppressed: no "
        "consent for the channel");
}

TEST_CASE("workflow delivery: caps are shared with rules, and priority takes the slot",
          "[workflow][delivery][cap]") {
  nudge::delivery_policy policy;
  policy.caps = {{nudge::channel::email, 1, hours(24)}};
  auto promo = nudge::rule_builder("promo").on(nudge::on("probe")).then(nudge::send_email("promo"));
  SECTION("a rule's e-mail defers the workflow's past the 24 hours") {
    const auto p = compile({cart_flow()}, policy, {promo});
    nudge::engine engine{p};
    engine.upsert_contact(person("ann"));
    const auto t = at("2024-01-10T10:00:00Z");
    CHECK(
        lines(engine.process(std::vector{ev("probe", t), ev("cart", t + hours(1))}, t + days(4))) ==
        strings{"2024-01-10T10:00:00Z ann promo promo", "2024-01-11T10:00:00Z ann cart/r1 cart_1",
                "2024-01-12T10:00:00Z ann cart/r2 cart_2"});
    CHECK(engine.workflow_stats()[0].steps[0].delivery.deferred_cap == 1);
  }
  SECTION("at one instant the workflow's higher priority wins; the rule's message waits") {
    auto flow = cart_flow();
    nudge::delivery_policy urgent = policy;
    urgent.priority = 5;
    flow.delivery = urgent;
    const auto p = compile({flow}, policy, {promo});
    nudge::engine engine{p};
    engine.upsert_contact(person("ann"));
    const auto t = at("2024-01-10T10:00:00Z");
    // At 10:00 cart_1 (priority 5) takes the slot and promo is deferred a day; then cart_2,
    // due at the same instant as promo's retry, wins again.
    CHECK(lines(engine.process(std::vector{ev("probe", t), ev("cart", t)}, t + days(3))) ==
          strings{"2024-01-10T10:00:00Z ann cart/r1 cart_1",
                  "2024-01-11T10:00:00Z ann cart/r2 cart_2",
                  "2024-01-12T10:00:00Z ann promo promo"});
    CHECK(engine.stats()[0].delivery.deferred_cap == 2);
    CHECK(engine.workflow_stats()[0].delivery.deferred_cap == 0);
  }
}

TEST_CASE("workflow delivery: a goal ends a run whose message is deferred, and nothing is sent",
          "[workflow][delivery][goal]") {
  nudge::delivery_policy policy;
  policy.quiet_hours = hm(21, 8);
  const auto p = compile({cart_flow()}, policy);
  nudge::engine engine{p};
  engine.upsert_contact(person("ann"));
  const auto t = at("2024-01-10T22:00:00Z");
  CHECK(engine.process(std::vector{ev("cart", t), ev("purchase", t + hours(2))}, t + days(3))
            .empty());
  const auto stats = engine.workflow_stats()[0];
  CHECK(stats.exited == 1);
  CHECK(stats.active == 0);
  CHECK(stats.steps[0].waiting == 0);
  CHECK(stats.steps[0].delivery.deferred_hours == 1);
  const auto s = engine.store().load("ann");
  CHECK(s->runs.empty());
  CHECK(s->timers.empty());
}

TEST_CASE("workflow delivery: batches split anywhere give the same actions, states and stats",
          "[workflow][delivery][split]") {
  nudge::delivery_policy policy;
  policy.quiet_hours = hm(21, 8);
  policy.caps = {{nudge::channel::email, 2, hours(24)}};
  auto promo = nudge::rule_builder("promo").on(nudge::on("probe")).then(nudge::send_email("promo"));
  const auto p = compile({cart_flow()}, policy, {promo}, "Europe/Warsaw");
  const auto t = at("2024-01-10T19:00:00Z");
  const std::vector<nudge::event> events{ev("probe", t),
                                         ev("cart", t + hours(1)),
                                         ev("probe", t + hours(2)),
                                         ev("cart", t + hours(14)),
                                         ev("probe", t + hours(15)),
                                         ev("purchase", t + hours(40)),
                                         ev("cart", t + hours(41))};
  const auto until = t + days(5);
  nudge::engine whole{p};
  whole.upsert_contact(person("ann"));
  const auto all = lines(whole.process(events, until));
  CHECK(all.size() >= 4);
  // Event by event, through a snapshot into a second engine after `cut` events (runs held at a
  // send step with a deferred message inside it).
  const std::size_t cut = GENERATE(1, 2, 3, 4, 5, 6);
  nudge::memory_store store;
  nudge::engine first{p, &store};
  first.upsert_contact(person("ann"));
  strings pieces;
  for (std::size_t i = 0; i < cut; ++i) {
    for (const auto& l : lines(first.process(std::vector{events[i]}, events[i].ts))) {
      pieces.push_back(l);
    }
  }
  std::ostringstream out;
  nudge::write_snapshot(out, nudge::take_snapshot(first, store));
  nudge::engine split{p};
  nudge::load_snapshot(nudge::parse_snapshot(out.str(), p.get()), split);
  for (std::size_t i = cut; i < events.size(); ++i) {
    for (const auto& l : lines(split.process(std::vector{events[i]}, events[i].ts))) {
      pieces.push_back(l);
    }
  }
  for (const auto& l : lines(split.advance(until))) {
    pieces.push_back(l);
  }
  CHECK(pieces == all);
  CHECK(*split.store().load("ann") == *whole.store().load("ann"));
  CHECK(split.workflow_stats() == whole.workflow_stats());
  CHECK(split.stats() == whole.stats());
}

TEST_CASE("workflow delivery: a workflow's delivery in a rule file, merged over the defaults",
          "[workflow][delivery][json]") {
  const std::string text = R"({
  "delivery": {"caps": [{"channel": "email", "max": 2, "per": "24h"}], "on_cap": "skip"},
  "workflows": [
    {"id": "cart", "entry": {"on": {"event": "cart"}},
     "delivery": {"priority": 3, "quiet_hours": {"from": "21:00", "to": "08:00"}},
     "steps": [{"id": "r1", "send": {"do": "send_email", "arg": "cart_1"}}]}
  ],
  "rules": []
})";
  const auto p = nudge::load_rules(text);
  const auto& w = p->rules().workflows[0];
  REQUIRE(w.delivery);
  CHECK(w.delivery->priority == 3);
  CHECK(w.delivery->caps == p->rules().delivery->defaults.caps);  // inherited
  CHECK(w.delivery->on_cap == nudge::on_refusal::skip);
  CHECK(w.delivery->quiet_hours == hm(21, 8));
  CHECK_THROWS_WITH(
      nudge::load_rules(R"({"rules": [], "workflows": [{"id": "w", "entry": {"on": {"event":)"
                        R"( "cart"}}, "delivery": {"on_cap": "later"}, "steps": [{"id": "s",)"
                        R"( "send": {"do": "send_email", "arg": "x"}}]}]})",
                        {.file_name = "w.json", .limits = {}}),
      Catch::Contains("w.json:1:100: /workflows/0/delivery/on_cap: \"later\" is not "
                      "\"defer\" or \"skip\""));
}

TEST_CASE("workflow local time: waits until a time of day on daylight-saving days (Warsaw)",
          "[workflow][dst]") {
  auto flow = [](std::int32_t time_of_day) {
    return nudge::workflow_builder("office")
        .enter_on(nudge::on("signup"))
        .wait_until_time("wait", time_of_day)
        .send("hello", nudge::send_email("hello"))
        .build();
  };
  auto run = [](const std::shared_ptr<const nudge::program>& p, nudge::contact c,
                nudge::time_point signup) {
    nudge::engine engine{p};
    const std::string id = c.id;
    engine.upsert_contact(std::move(c));
    return lines(engine.process(std::vector{ev("signup", signup, id)}, signup + days(3)));
  };
  SECTION("09:00 local on the spring-forward day is 07:00 UTC; in winter 08:00 UTC") {
    const auto p = compile({flow(9 * 3600)}, std::nullopt);
    CHECK(run(p, person("ann", "Europe/Warsaw"), at("2024-03-30T12:00:00Z")) ==
          strings{"2024-03-31T07:00:00Z ann office/hello hello"});
    CHECK(run(p, person("ann", "Europe/Warsaw"), at("2024-03-29T12:00:00Z")) ==
          strings{"2024-03-30T08:00:00Z ann office/hello hello"});
    // No zone, and no delivery section: UTC.
    CHECK(run(p, person("bob"), at("2024-03-30T12:00:00Z")) ==
          strings{"2024-03-31T09:00:00Z bob office/hello hello"});
  }
  SECTION("02:30 does not exist on 2024-03-31: the first instant after the gap, 03:00 CEST") {
    const auto p = compile({flow(2 * 3600 + 1800)}, std::nullopt);
    CHECK(run(p, person("ann", "Europe/Warsaw"), at("2024-03-30T23:00:00Z")) ==
          strings{"2024-03-31T01:00:00Z ann office/hello hello"});
  }
  SECTION("02:30 exists twice on 2024-10-27: the first, 02:30 CEST") {
    const auto p = compile({flow(2 * 3600 + 1800)}, std::nullopt);
    CHECK(run(p, person("ann", "Europe/Warsaw"), at("2024-10-26T21:00:00Z")) ==
          strings{"2024-10-27T00:30:00Z ann office/hello hello"});
  }
  SECTION("a contact without a zone takes the delivery section's default zone") {
    const auto p = compile({flow(9 * 3600)}, nudge::delivery_policy{}, {}, "America/New_York");
    // 12:00 UTC is 08:00 EDT (New York moved its clocks on 10 March): 09:00 EDT that day.
    CHECK(run(p, person("bob"), at("2024-03-30T12:00:00Z")) ==
          strings{"2024-03-30T13:00:00Z bob office/hello hello"});
  }
}

TEST_CASE("workflow local time: birthdays at 09:00 on the contact's clock, 29 February",
          "[workflow][dst][date]") {
  const auto p = compile({nudge::workflow_builder("birthday")
                              .enter_yearly_on("birthday", 9 * 3600)
                              .send("wish", nudge::send_email("happy_birthday"))
                              .build()},
                         std::nullopt);
  nudge::engine engine{p};
  auto with_birthday = [](std::string id, std::string zone, std::string date) {
    auto c = person(std::move(id), std::move(zone));
    c.details["birthday"] = std::move(date);
    return c;
  };
  engine.upsert_contacts(std::vector<nudge::contact>{
      with_birthday("leap", "Europe/Warsaw", "1992-02-29"),
      with_birthday("june", "Europe/Warsaw", "1985-06-15"),
      with_birthday("york", "America/New_York", "1990-02-29"),
  });
  const auto start = at("2023-01-10T00:00:00Z");
  auto due = engine.process(std::vector{ev("signup", start, "leap"), ev("signup", start, "june"),
                                        ev("signup", start, "york")},
                            at("2024-07-01T00:00:00Z"));
  CHECK(lines(due) == strings{
                          "2023-02-28T08:00:00Z leap birthday/wish happy_birthday",  // CET
                          "2023-02-28T14:00:00Z york birthday/wish happy_birthday",  // EST
                          "2023-06-15T07:00:00Z june birthday/wish happy_birthday",  // CEST
                          "2024-02-29T08:00:00Z leap birthday/wish happy_birthday",
                          "2024-02-29T14:00:00Z york birthday/wish happy_birthday",
                          "2024-06-15T07:00:00Z june birthday/wish happy_birthday",
                      });
}

namespace {

// Fails on demand: the batch it was given must leave no trace.
class failing_sink final : public nudge::sink {
 public:
  void deliver(std::span<const nudge::due_action> actions) override {
    if (fail) {
      throw std::runtime_error("sink down");
    }
    for (const auto& l : lines({actions.begin(), actions.end()})) {
      delivered.push_back(l);
    }
  }
  bool fail = false;
  strings delivered;
};

}  // namespace

TEST_CASE(
    "workflow delivery: a failed batch leaves runs, deferrals, segments and stats as they were",
    "[workflow][delivery][atomic]") {
  nudge::delivery_policy policy;
  policy.quiet_hours = hm(21, 8);
  nudge::rule_set rs;
  rs.workflows = {cart_flow()};
  rs.segments = {{"carting", nudge::happened(nudge::on("cart")).within(days(7))}};
  rs.event_types = {"cart"};
  nudge::delivery_settings d;
  d.defaults = policy;
  rs.delivery = d;
  const auto p = nudge::program::compile(std::move(rs));
  nudge::memory_store store;
  failing_sink sink;
  nudge::engine engine{p, &store, &sink};
  engine.upsert_contacts(std::vector{person("ann"), person("bob")});
  const auto t = at("2024-01-10T22:00:00Z");  // quiet (UTC): ann's reminder waits for 08:00
  engine.process(std::vector{ev("cart", t)}, t + hours(1));
  const auto ann = *store.load("ann");
  REQUIRE(ann.runs.size() == 1);
  REQUIRE(ann.runs[0].phase == 2);
  const auto stats = engine.workflow_stats();
  // The next batch would send ann's reminder at 07:00, enter bob and put him in the segment,
  // but the sink throws: nothing of it may remain.
  sink.fail = true;
  CHECK_THROWS_WITH(engine.process(std::vector{ev("cart", t + hours(10), "bob")}, t + hours(10)),
                    Catch::Contains("sink down"));
  CHECK(*store.load("ann") == ann);
  CHECK(store.load("bob")->runs.empty());
  CHECK(engine.segment_members("carting") == strings{"ann"});
  CHECK(engine.workflow_stats() == stats);
  CHECK(sink.delivered.empty());
  // The retry delivers it all once.
  sink.fail = false;
  engine.process(std::vector{ev("cart", t + hours(10), "bob")}, t + hours(10));
  CHECK(sink.delivered == strings{"2024-01-11T08:00:00Z ann cart/r1 cart_1",
                                  "2024-01-11T08:00:00Z bob cart/r1 cart_1"});
  CHECK(engine.segment_members("carting") == strings{"ann", "bob"});
}
