// The delivery policy: consent (transactional exempt), channel caps over 24 h and a week with
// priority, quiet hours and send windows in the contact's zone with defer or skip, daylight-
// saving days in Europe/Warsaw and America/New_York, statistics, timelines, rule files, split
// invariance and snapshots.
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::at;
using test_support::strings;

using nudge::days;
using nudge::hours;
using nudge::minutes;

nudge::event ev(std::string type, nudge::time_point t, std::string contact = "ann") {
  return nudge::event{.contact = std::move(contact), .type = std::move(type), .ts = t, .key = {}};
}

strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}", nudge::format_time(a.ts), a.rule, a.arg));
  }
  return out;
}

nudge::local_hours hm(int from_h, int from_m, int to_h, int to_m) {
  return {from_h * 3600 + from_m * 60, to_h * 3600 + to_m * 60};
}

// "promo" e-mails on every probe; "receipt" (transactional) on every purchase.
std::shared_ptr<const nudge::program> program_with(nudge::delivery_policy policy,
                                                   std::string zone = "UTC",
                                                   std::vector<nudge::rule> extra = {}) {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("promo").on(nudge::on("probe")).then(nudge::send_email("promo")));
  rs.rules.push_back(nudge::rule_builder("receipt")
                         .on(nudge::on("purchase"))
                         .then(nudge::send_email("receipt") | nudge::transactional{}));
  for (auto& r : extra) {
    rs.rules.push_back(std::move(r));
  }
  rs.event_types = {"probe"};
  rs.timeline_size = 50;
  nudge::delivery_settings d;
  d.defaults = std::move(policy);
  d.default_time_zone = std::move(zone);
  rs.delivery = std::move(d);
  return nudge::program::compile(std::move(rs), {}, nudge::system_zones());
}

nudge::contact_state consenting(const nudge::program& p, std::string zone = {}) {
  nudge::contact c{.id = "ann"};
  c.consent["email"] = true;
  c.time_zone = std::move(zone);
  return p.new_state(std::move(c));
}

strings timeline_texts(const nudge::program& p, const nudge::contact_state& s) {
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

TEST_CASE("delivery: no marketing message without consent, and transactional ones are exempt",
          "[delivery][consent]") {
  const auto p = program_with({});
  const auto t = at("2024-01-10T12:00:00Z");
  const std::vector events{ev("probe", t), ev("purchase", t + minutes(1))};
  SECTION("no consent entry") {
    auto out = nudge::evaluate(*p, p->new_state({.id = "ann"}), events, t + hours(1));
    CHECK(lines(out.actions) == strings{"2024-01-10T12:01:00Z receipt receipt"});
    CHECK(timeline_texts(*p, out.state) ==
          strings{"2024-01-10T12:00:00Z rule promo: action 0 send_email promo suppressed: no "
                  "consent for the channel",
                  "2024-01-10T12:01:00Z rule receipt: action 0 send_email receipt emitted"});
  }
  SECTION("consent withdrawn (false)") {
    auto s = consenting(*p);
    s.contact.consent["email"] = false;
    auto out = nudge::evaluate(*p, s, events, t + hours(1));
    CHECK(lines(out.actions) == strings{"2024-01-10T12:01:00Z receipt receipt"});
  }
  SECTION("consent given") {
    auto out = nudge::evaluate(*p, consenting(*p), events, t + hours(1));
    CHECK(lines(out.actions) ==
          strings{"2024-01-10T12:00:00Z promo promo", "2024-01-10T12:01:00Z receipt receipt"});
  }
  SECTION("consent on another channel does not count") {
    auto s = p->new_state({.id = "ann"});
    s.contact.consent["sms"] = true;
    auto out = nudge::evaluate(*p, s, events, t + hours(1));
    CHECK(lines(out.actions) == strings{"2024-01-10T12:01:00Z receipt receipt"});
  }
}

TEST_CASE("delivery: caps of 2 per 24 h and 5 per week, skip or defer", "[delivery][cap]") {
  nudge::delivery_policy policy;
  policy.caps = {{nudge::channel::email, 2, hours(24)}, {nudge::channel::email, 5, days(7)}};
  const auto t = at("2024-01-08T10:00:00Z");
  SECTION("skip: the third e-mail within 24 h is dropped, the cap counts to the second") {
    policy.on_cap = nudge::on_refusal::skip;
    const auto p = program_with(policy);
    const std::vector events{ev("probe", t),
                             ev("probe", t + hours(1)),
                             ev("probe", t + hours(2)),
                             ev("purchase", t + hours(3)),  // transactional: not capped
                             ev("probe", t + hours(24)),    // (t+24h-24h, t+24h]: 1 -> sent
                             ev("probe", t + hours(24) + nudge::seconds(59))};
    auto out = nudge::evaluate(*p, consenting(*p), events, t + days(2));
    CHECK(lines(out.actions) ==
          strings{"2024-01-08T10:00:00Z promo promo", "2024-01-08T11:00:00Z promo promo",
                  "2024-01-08T13:00:00Z receipt receipt", "2024-01-09T10:00:00Z promo promo"});
    // 10:00:59 on day 2: 11:00 (day 1) and 10:00 (day 2) are both in the window.
    auto e = nudge::engine{p};
    e.upsert_contact(consenting(*p).contact);
    e.process(events, t + days(2));
    CHECK(e.stats()[0].delivery.capped == 2);
    CHECK(e.stats()[0].emitted == 3);
    CHECK(e.stats()[1].delivery.capped == 0);
  }
  SECTION("defer: to the instant the 24 h window has room, then the weekly cap") {
    const auto p = program_with(policy);
    std::vector<nudge::event> events;
    for (int d = 0; d < 3; ++d) {
      events.push_back(ev("probe", t + days(d)));
      events.push_back(ev("probe", t + days(d) + hours(1)));
    }
    auto out = nudge::evaluate(*p, consenting(*p), events, t + days(9));
    // Days 0 and 1: two each. Day 2: one at 10:00, the 11:00 one meets the weekly cap (5 since
    // day 0 10:00) and waits until day 0 10:00 + 7 d.
    CHECK(lines(out.actions) ==
          strings{"2024-01-08T10:00:00Z promo promo", "2024-01-08T11:00:00Z promo promo",
                  "2024-01-09T10:00:00Z promo promo", "2024-01-09T11:00:00Z promo promo",
                  "2024-01-10T10:00:00Z promo promo", "2024-01-15T10:00:00Z promo promo"});
    const auto tl = timeline_texts(*p, out.state);
    CHECK(tl[5] ==
          "2024-01-10T11:00:00Z rule promo: action 0 send_email promo deferred to "
          "2024-01-15T10:00:00Z: channel frequency cap 1 was reached");
    // The deferred e-mail keeps the idempotency key it would have had.
    auto direct = nudge::evaluate(*program_with({}), consenting(*p), events, t + days(9));
    CHECK(out.actions[5].idempotency_key == direct.actions[5].idempotency_key);
  }
  SECTION("defer within 24 h: the third of one day goes when the first leaves the window") {
    const auto p = program_with(policy);
    const std::vector events{ev("probe", t), ev("probe", t + hours(1)), ev("probe", t + hours(2))};
    auto out = nudge::evaluate(*p, consenting(*p), events, t + days(2));
    CHECK(lines(out.actions) == strings{"2024-01-08T10:00:00Z promo promo",
                                        "2024-01-08T11:00:00Z promo promo",
                                        "2024-01-09T10:00:00Z promo promo"});
  }
}

TEST_CASE("delivery: priority decides which message due at one instant takes the capped slot",
          "[delivery][priority]") {
  nudge::delivery_policy policy;
  policy.caps = {{nudge::channel::email, 1, hours(24)}};
  policy.on_cap = nudge::on_refusal::skip;
  nudge::delivery_policy urgent = policy;
  urgent.priority = 10;
  const auto t = at("2024-01-08T10:00:00Z");
  SECTION("higher priority wins although its rule comes later") {
    const auto p = program_with(policy, "UTC",
                                {nudge::rule_builder("vip")
                                     .on(nudge::on("probe"))
                                     .then(nudge::send_email("vip"))
                                     .deliver(urgent)});
    auto out = nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", t)}, t);
    CHECK(lines(out.actions) == strings{"2024-01-08T10:00:00Z vip vip"});
    CHECK(timeline_texts(*p, out.state) ==
          strings{"2024-01-08T10:00:00Z rule vip: action 0 send_email vip emitted",
                  "2024-01-08T10:00:00Z rule promo: action 0 send_email promo suppressed: "
                  "channel frequency cap 0 was reached"});
  }
  SECTION("equal priority: the first emitted wins") {
    const auto p = program_with(policy, "UTC",
                                {nudge::rule_builder("vip")
                                     .on(nudge::on("probe"))
                                     .then(nudge::send_email("vip"))
                                     .deliver(policy)});
    auto out = nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", t)}, t);
    CHECK(lines(out.actions) == strings{"2024-01-08T10:00:00Z promo promo"});
  }
  SECTION("a message deferred to an instant competes with new ones there") {
    nudge::delivery_policy quiet = policy;
    quiet.quiet_hours = hm(0, 0, 9, 0);
    quiet.on_cap = nudge::on_refusal::defer;
    nudge::delivery_policy quiet_urgent = quiet;
    quiet_urgent.priority = 10;
    const auto p = program_with(quiet, "UTC",
                                {nudge::rule_builder("vip")
                                     .on(nudge::on("wake"))
                                     .then(nudge::send_email("vip"))
                                     .deliver(quiet_urgent)});
    // promo at 08:00 is deferred to 09:00; vip is triggered at 09:00 and goes first.
    auto out = nudge::evaluate(*p, consenting(*p),
                               std::vector{ev("probe", at("2024-01-08T08:00:00Z")),
                                           ev("wake", at("2024-01-08T09:00:00Z"))},
                               at("2024-01-10T00:00:00Z"));
    CHECK(lines(out.actions) ==
          strings{"2024-01-08T09:00:00Z vip vip", "2024-01-09T09:00:00Z promo promo"});
  }
}

TEST_CASE("delivery: quiet hours in the contact's zone defer to their end, or skip",
          "[delivery][hours]") {
  nudge::delivery_policy policy;
  policy.quiet_hours = hm(21, 0, 8, 0);
  // 20:30 UTC is 21:30 in Warsaw (CET, UTC+1): quiet until 08:00 CET = 07:00 UTC.
  const auto t = at("2024-01-10T20:30:00Z");
  SECTION("defer") {
    const auto p = program_with(policy, "Europe/Warsaw");
    auto out = nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", t)}, t + days(1));
    CHECK(lines(out.actions) == strings{"2024-01-11T07:00:00Z promo promo"});
    CHECK(timeline_texts(*p, out.state) ==
          strings{"2024-01-10T20:30:00Z rule promo: action 0 send_email promo deferred to "
                  "2024-01-11T07:00:00Z: quiet hours in the contact's time zone",
                  "2024-01-11T07:00:00Z rule promo: action 0 send_email promo emitted"});
    nudge::engine e{p};
    e.upsert_contact(consenting(*p).contact);
    e.process(std::vector{ev("probe", t)}, t + days(1));
    CHECK(e.stats()[0].delivery.deferred_hours == 1);
    CHECK(e.stats()[0].emitted == 1);
  }
  SECTION("skip") {
    policy.on_quiet_hours = nudge::on_refusal::skip;
    const auto p = program_with(policy, "Europe/Warsaw");
    auto out = nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", t)}, t + days(1));
    CHECK(out.actions.empty());
    nudge::engine e{p};
    e.upsert_contact(consenting(*p).contact);
    e.process(std::vector{ev("probe", t)}, t + days(1));
    CHECK(e.stats()[0].delivery.off_hours == 1);
  }
  SECTION("the contact's own zone wins over the default") {
    const auto p = program_with(policy, "Europe/Warsaw");
    // 20:30 UTC is 15:30 in New York: allowed.
    auto out = nudge::evaluate(*p, consenting(*p, "America/New_York"), std::vector{ev("probe", t)},
                               t + days(1));
    CHECK(lines(out.actions) == strings{"2024-01-10T20:30:00Z promo promo"});
  }
  SECTION("a deferred message re-checks consent when it comes due") {
    const auto p = program_with(policy, "Europe/Warsaw");
    auto first = nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", t)}, t + hours(1));
    CHECK(first.actions.empty());
    REQUIRE(first.state.timers.size() == 1);
    CHECK(first.state.timers[0].deferred);
    first.state.contact.consent["email"] = false;  // the host's upsert between batches
    auto second = nudge::evaluate(*p, first.state, std::span<const nudge::event>{}, t + days(1));
    CHECK(second.actions.empty());
    CHECK(timeline_texts(*p, second.state).back() ==
          "2024-01-11T07:00:00Z rule promo: action 0 send_email promo suppressed: no consent "
          "for the channel");
  }
}

TEST_CASE("delivery: a send window with weekdays defers over the weekend", "[delivery][hours]") {
  nudge::delivery_policy policy;
  policy.send_hours = hm(9, 0, 17, 0);
  policy.weekdays = 0x1f;  // Monday to Friday
  const auto p = program_with(policy, "America/New_York");
  // Friday 2024-01-12 22:00 UTC = 17:00 EST: the window [09:00, 17:00) has just closed.
  const auto fri = at("2024-01-12T22:00:00Z");
  auto out = nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", fri)}, fri + days(4));
  CHECK(lines(out.actions) == strings{"2024-01-15T14:00:00Z promo promo"});  // Mon 09:00 EST
  CHECK(timeline_texts(*p, out.state)[0] ==
        "2024-01-12T22:00:00Z rule promo: action 0 send_email promo deferred to "
        "2024-01-15T14:00:00Z: outside the allowed hours or weekdays in the contact's time zone");
  // Friday 16:59:59 EST is inside.
  auto in =
      nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", fri - nudge::seconds(1))}, fri);
  CHECK(lines(in.actions) == strings{"2024-01-12T21:59:59Z promo promo"});
}

TEST_CASE("delivery: daylight-saving days in Europe/Warsaw", "[delivery][dst]") {
  nudge::delivery_policy policy;
  policy.quiet_hours = hm(22, 0, 2, 30);
  const auto p = program_with(policy, "Europe/Warsaw");
  SECTION("spring forward: 02:30 does not exist; the window opens at 03:00 CEST") {
    // 2024-03-31 02:00 CET -> 03:00 CEST at 01:00 UTC. 22:00 UTC on the 30th is 23:00 CET.
    auto out =
        nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", at("2024-03-30T22:00:00Z"))},
                        at("2024-04-01T00:00:00Z"));
    CHECK(lines(out.actions) == strings{"2024-03-31T01:00:00Z promo promo"});
  }
  SECTION("fall back: 02:30 exists twice; the first one ends quiet hours") {
    // 2024-10-27 03:00 CEST -> 02:00 CET at 01:00 UTC. 21:00 UTC on the 26th is 23:00 CEST.
    auto out =
        nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", at("2024-10-26T21:00:00Z"))},
                        at("2024-10-28T00:00:00Z"));
    CHECK(lines(out.actions) == strings{"2024-10-27T00:30:00Z promo promo"});  // 02:30 CEST
  }
  SECTION("fall back: in the repeated hour, 02:10 CET is quiet again until 02:30 CET") {
    auto out =
        nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", at("2024-10-27T01:10:00Z"))},
                        at("2024-10-28T00:00:00Z"));
    CHECK(lines(out.actions) == strings{"2024-10-27T01:30:00Z promo promo"});  // 02:30 CET
  }
}

TEST_CASE("delivery: daylight-saving days in America/New_York", "[delivery][dst]") {
  SECTION("spring forward: a window opening at 02:30 opens at 03:00 EDT") {
    nudge::delivery_policy policy;
    policy.send_hours = hm(2, 30, 4, 0);
    const auto p = program_with(policy, "America/New_York");
    // 2024-03-10 02:00 EST -> 03:00 EDT at 07:00 UTC; 05:00 UTC is 00:00 EST.
    auto out =
        nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", at("2024-03-10T05:00:00Z"))},
                        at("2024-03-11T00:00:00Z"));
    CHECK(lines(out.actions) == strings{"2024-03-10T07:00:00Z promo promo"});
  }
  SECTION("fall back: a window opening at 01:30 opens at the first 01:30 (EDT)") {
    nudge::delivery_policy policy;
    policy.send_hours = hm(1, 30, 5, 0);
    const auto p = program_with(policy, "America/New_York");
    // 2024-11-03 02:00 EDT -> 01:00 EST at 06:00 UTC; 04:00 UTC is 00:00 EDT.
    auto out =
        nudge::evaluate(*p, consenting(*p), std::vector{ev("probe", at("2024-11-03T04:00:00Z"))},
                        at("2024-11-04T00:00:00Z"));
    CHECK(lines(out.actions) == strings{"2024-11-03T05:30:00Z promo promo"});
  }
}

TEST_CASE("delivery: zone rules from POSIX strings and the system database agree",
          "[delivery][zone]") {
  auto warsaw = nudge::zone_rules::parse("CET-1CEST,M3.5.0,M10.5.0/3");
  REQUIRE(warsaw);
  CHECK(warsaw->utc_offset(at("2024-03-31T00:59:59Z")) == hours(1));
  CHECK(warsaw->utc_offset(at("2024-03-31T01:00:00Z")) == hours(2));
  CHECK(warsaw->utc_offset(at("2024-10-27T00:59:59Z")) == hours(2));
  CHECK(warsaw->utc_offset(at("2024-10-27T01:00:00Z")) == hours(1));
  CHECK(nudge::read_system_zone_rule("Europe/Warsaw", "/usr/share/zoneinfo") ==
        std::optional<std::string>{"CET-1CEST,M3.5.0,M10.5.0/3"});
  CHECK_FALSE(nudge::read_system_zone_rule("../etc/passwd", "/usr/share/zoneinfo"));
  CHECK_FALSE(nudge::zone_rules::parse("not a zone"));
  auto kolkata = nudge::zone_rules::parse("<+0530>-5:30");
  REQUIRE(kolkata);
  CHECK(kolkata->utc_offset(at("2024-06-01T00:00:00Z")) == minutes(330));
}

TEST_CASE("delivery: batches split anywhere give the same actions and states",
          "[delivery][split]") {
  nudge::delivery_policy policy;
  policy.caps = {{nudge::channel::email, 2, hours(24)}};
  policy.quiet_hours = hm(21, 0, 8, 0);
  const auto p = program_with(policy, "Europe/Warsaw");
  std::vector<nudge::event> events;
  auto t = at("2024-03-29T18:00:00Z");
  for (int i = 0; i < 12; ++i) {
    events.push_back(ev(i % 5 == 4 ? "purchase" : "probe", t));
    t += hours(3) + minutes(7 * i);
  }
  const auto until = t + days(3);
  nudge::engine whole{p};
  whole.upsert_contact(consenting(*p).contact);
  const auto all = whole.process(events, until);
  nudge::engine split{p};
  split.upsert_contact(consenting(*p).contact);
  std::vector<nudge::due_action> pieces;
  for (const auto& e : events) {
    for (auto& a : split.process(std::vector{e}, e.ts)) {
      pieces.push_back(a);
    }
  }
  for (auto& a : split.advance(until)) {
    pieces.push_back(a);
  }
  CHECK(lines(all) == lines(pieces));
  CHECK(all.size() >= 8);
  const auto a = whole.store().load("ann");
  const auto b = split.store().load("ann");
  CHECK(*a == *b);
  std::string bytes;
  nudge::encode_contact_state(*a, bytes);
  CHECK(nudge::decode_contact_state(bytes, p.get()) == *a);
  // A failing batch (an unknown type after good events) changes nothing.
  const auto before = whole.store().load("ann");
  CHECK_THROWS_AS(
      whole.process(std::vector{ev("probe", until + hours(1)), ev("nope", until + hours(2))},
                    until + hours(3)),
      nudge::input_error);
  CHECK(*whole.store().load("ann") == *before);
}

TEST_CASE("delivery: the rule file's delivery section, with per-rule overrides",
          "[delivery][json]") {
  const std::string text = R"({
  "event_types": ["probe"],
  "delivery": {
    "default_time_zone": "Europe/Warsaw",
    "caps": [{"channel": "email", "max": 2, "per": "24h"}],
    "quiet_hours": {"from": "21:00", "to": "08:00"},
    "on_cap": "skip"
  },
  "rules": [
    {"id": "promo", "on": {"event": "probe"},
     "then": [{"do": "send_email", "arg": "promo"}]},
    {"id": "alert", "on": {"event": "probe"},
     "then": [{"do": "send_sms", "arg": "alert"}, {"do": "show_popup", "arg": "p"}],
     "delivery": {"priority": 5, "on_quiet_hours": "skip", "consent": false}},
    {"id": "receipt", "on": {"event": "purchase"},
     "then": [{"do": "send_email", "arg": "receipt", "transactional": true}]}
  ]
})";
  const auto p = nudge::load_rules(text);
  const auto& rs = p->rules();
  REQUIRE(rs.delivery);
  CHECK(rs.delivery->default_time_zone == "Europe/Warsaw");
  CHECK(rs.delivery->defaults.caps ==
        std::vector<nudge::channel_cap>{{nudge::channel::email, 2, hours(24)}});
  CHECK(rs.delivery->defaults.on_cap == nudge::on_refusal::skip);
  REQUIRE(rs.rules[1].delivery);
  CHECK(rs.rules[1].delivery->priority == 5);
  CHECK(rs.rules[1].delivery->caps == rs.delivery->defaults.caps);  // inherited
  CHECK(rs.rules[1].delivery->quiet_hours == hm(21, 0, 8, 0));
  CHECK_FALSE(rs.rules[1].delivery->require_consent);
  CHECK(rs.rules[2].actions[0].transactional);
  CHECK(rs.rules[1].actions[1].kind == nudge::action_kind::show_popup);

  CHECK_THROWS_WITH(
      nudge::load_rules(R"({"rules": [], "delivery": {"caps": [{"channel": "fax", "max": 0,)"
                        R"( "per": "1d"}], "quiet_hours": {"from": "25:00", "to": "8:00"},)"
                        R"( "on_cap": "later", "weekdays": ["mon", "caturday"]}})",
                        {.file_name = "d.json", .limits = {}}),
      "d.json:1:49: /delivery/caps/0/channel: unknown channel \"fax\" (expected email, sms, "
      "web_push, popup or chat)\n"
      "d.json:1:63: /delivery/caps/0/max: 0 is out of range (expected 1 to 1000)\n"
      "d.json:1:105: /delivery/quiet_hours/from: \"25:00\" is not a time of day (expected "
      "\"HH:MM\" or \"HH:MM:SS\", e.g. \"09:30\")\n"
      "d.json:1:120: /delivery/quiet_hours/to: \"8:00\" is not a time of day (expected "
      "\"HH:MM\" or \"HH:MM:SS\", e.g. \"09:30\")\n"
      "d.json:1:139: /delivery/on_cap: \"later\" is not \"defer\" or \"skip\"\n"
      "d.json:1:168: /delivery/weekdays/1: unknown weekday \"caturday\" (expected mon, tue, "
      "wed, thu, fri, sat or sun)");
  CHECK_THROWS_WITH(
      nudge::load_rules(R"({"rules": [], "delivery": {"default_time_zone": "Mars/Olympus",)"
                        R"( "quiet_hours": {"from": "21:00", "to": "08:00"}}})",
                        {.file_name = "z.json", .limits = {}}),
      Catch::Contains("z.json:1:49: /delivery/default_time_zone: unknown time zone "
                      "\"Mars/Olympus\""));
}
