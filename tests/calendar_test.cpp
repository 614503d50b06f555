// Calendar months and years: parsing, end-of-month clamping, daylight saving, and months in rule
// delays, windows, segments and workflow waits, with hand-computed actions.
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/detail/calendar.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

namespace {

using strings = std::vector<std::string>;

nudge::time_point at(const char* iso) {
  return *nudge::parse_time(iso);
}

std::string plus_months(const char* iso, std::int32_t n, const nudge::zone_rules* z = nullptr) {
  return nudge::format_time(nudge::detail::add_months(at(iso), n, z));
}

nudge::event ev(std::string contact, std::string type, const char* iso) {
  return nudge::event{.contact = std::move(contact), .type = std::move(type), .ts = at(iso)};
}

strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {} {}({})", nudge::format_time(a.ts), a.contact, a.rule,
                              a.action(), a.arg));
  }
  return out;
}

// Warsaw's rule, given explicitly so that the test does not read the system zone database.
const char* const warsaw = R"("delivery": {"default_time_zone": "Europe/Warsaw",
  "time_zones": {"Europe/Warsaw": "CET-1CEST,M3.5.0,M10.5.0/3"}, "use_system_zones": false,
  "consent": false})";

}  // namespace

TEST_CASE("calendar: \"mo\" and \"y\" parse as months and \"m\" stays minutes", "[calendar]") {
  CHECK(nudge::parse_months("2mo") == nudge::months{2});
  CHECK(nudge::parse_months("1y") == nudge::months{12});
  CHECK(nudge::parse_months("0mo") == nudge::months{0});
  CHECK(nudge::parse_duration("2m") == nudge::minutes(2));
  CHECK_FALSE(nudge::parse_duration("2mo"));
  CHECK_FALSE(nudge::parse_duration("1y"));
  CHECK_FALSE(nudge::parse_months("2m"));
  CHECK_FALSE(nudge::parse_months("mo"));
  CHECK_FALSE(nudge::parse_months("-1mo"));
  CHECK_FALSE(nudge::parse_months("1000001mo"));
  CHECK(nudge::years(2) == nudge::months{24});
  CHECK(nudge::longest(nudge::months{2}) == nudge::days(62));
}

TEST_CASE("calendar: a month keeps the day and wall time, clamped to the month's end",
          "[calendar]") {
  CHECK(plus_months("2024-03-15T10:00:00Z", 2) == "2024-05-15T10:00:00Z");
  CHECK(plus_months("2024-01-31T10:00:00Z", 1) == "2024-02-29T10:00:00Z");  // leap year
  CHECK(plus_months("2023-01-31T10:00:00Z", 1) == "2023-02-28T10:00:00Z");
  CHECK(plus_months("2024-01-31T10:00:00Z", 3) == "2024-04-30T10:00:00Z");
  CHECK(plus_months("2024-02-29T23:59:59Z", 12) == "2025-02-28T23:59:59Z");
  CHECK(plus_months("2024-11-30T00:00:00Z", 3) == "2025-02-28T00:00:00Z");  // across a year
  // Past the last storable month: clamped to max_time (9999-12-01 is past the input range, so it
  // is built from epoch seconds rather than parsed).
  CHECK(nudge::detail::add_months(nudge::from_epoch(253'399'622'400), 1, nullptr) ==
        nudge::max_time);
}

TEST_CASE("calendar: months across daylight saving keep the local wall time", "[calendar]") {
  const auto z = nudge::zone_rules::parse("CET-1CEST,M3.5.0,M10.5.0/3");
  REQUIRE(z);
  // 09:00 CET (08:00Z) on 29 February -> 09:00 CET on 29 March, 09:00 CEST (07:00Z) on 29 April.
  CHECK(plus_months("2024-02-29T08:00:00Z", 1, &*z) == "2024-03-29T08:00:00Z");
  CHECK(plus_months("2024-02-29T08:00:00Z", 2, &*z) == "2024-04-29T07:00:00Z");
  // 02:30 CET on 31 January + 2 months is 02:30 on 31 March 2024, inside the gap (02:00 CET ->
  // 03:00 CEST): the first instant after it, 03:00 CEST = 01:00Z.
  CHECK(plus_months("2024-01-31T01:30:00Z", 2, &*z) == "2024-03-31T01:00:00Z");
  // 02:30 on 27 October 2024 exists twice (03:00 CEST -> 02:00 CET): the earlier, 00:30Z.
  CHECK(plus_months("2024-09-27T00:30:00Z", 1, &*z) == "2024-10-27T00:30:00Z");
}

TEST_CASE("calendar: a rule checks again in 2 months, and \"within 2mo\" counts the calendar",
          "[calendar][json]") {
  const auto p = nudge::load_rules(R"({"rules": [
    {"id": "recheck", "on": {"event": "purchase"}, "delay": "2mo",
     "if": {"not_happened": {"event": "purchase", "within": "2mo"}},
     "then": [{"do": "send_email", "arg": "come_back"}]}
  ]})");
  CHECK(p->rules().rules[0].delay_months == 2);
  CHECK(p->rules().rules[0].delay == nudge::duration{0});
  // The default end of a replay counts a month as 31 days.
  CHECK(p->longest_delay() == nudge::days(62));
  nudge::engine e{p};
  const auto out = e.process(
      std::vector<nudge::event>{
          // ann: checked 2024-02-29 10:00 (31 Dec + 2 months, clamped); her purchase left the
          // window at that instant, so nothing happened within 2 months: the e-mail goes out.
          ev("ann", "purchase", "2023-12-31T10:00:00Z"),
          // bob: checked 2024-03-15 09:00 (the 1 Feb purchase is inside until 1 Apr 12:00: no
          // e-mail) and 2024-04-01 12:00 (nothing inside any more: e-mail).
          ev("bob", "purchase", "2024-01-15T09:00:00Z"),
          ev("bob", "purchase", "2024-02-01T12:00:00Z"),
      },
      at("2024-06-01T00:00:00Z"));
  CHECK(lines(out) == strings{
                          "2024-02-29T10:00:00Z ann recheck send_email(come_back)",
                          "2024-04-01T12:00:00Z bob recheck send_email(come_back)",
                      });
}

TEST_CASE("calendar: a segment with a month window flips when the month has passed",
          "[calendar][segment][json]") {
  const auto p = nudge::load_rules(R"({
    "segments": [{"name": "recent_buyer",
                  "if": {"happened": {"event": "purchase", "within": "1mo"}}}],
    "rules": [
      {"id": "miss_you", "on": {"segment_exited": "recent_buyer"},
       "then": [{"do": "send_email", "arg": "miss_you"}]},
      {"id": "loyal", "on": {"event": "purchase"},
       "if": {"last_seen": {"event": "signup", "older_than": "1y"}},
       "then": [{"do": "send_email", "arg": "loyal"}]}
    ]})");
  nudge::engine e{p};
  const auto out = e.process(
      std::vector<nudge::event>{
          ev("ann", "signup", "2023-01-31T10:00:00Z"),
          // 31 Jan + 1 month = 29 Feb 10:00: she leaves the segment then. Her signup is exactly
          // a year old at the purchase (2023-01-31 10:00 + 1 year): older_than holds from then.
          ev("ann", "purchase", "2024-01-31T10:00:00Z"),
          ev("bob", "signup", "2023-06-01T00:00:00Z"),
          // Bob's signup is not a year old at his purchase: no "loyal"; he leaves the segment
          // on 2024-03-10 10:00.
          ev("bob", "purchase", "2024-02-10T10:00:00Z"),
      },
      at("2024-06-01T00:00:00Z"));
  CHECK(lines(out) == strings{
                          "2024-01-31T10:00:00Z ann loyal send_email(loyal)",
                          "2024-02-29T10:00:00Z ann miss_you send_email(miss_you)",
                          "2024-03-10T10:00:00Z bob miss_you send_email(miss_you)",
                      });
}

TEST_CASE("calendar: a workflow waits a month on the contact's clock", "[calendar][workflow]") {
  const auto p = nudge::load_rules(fmt::format(R"({{{}, "rules": [], "workflows": [
    {{"id": "checkin", "entry": {{"on": {{"event": "signup"}}}},
     "steps": [{{"id": "w", "wait": "1mo"}},
               {{"id": "s", "send": {{"do": "send_email", "arg": "checkin"}}}}]}}
  ]}})",
                                               warsaw));
  nudge::engine e{p};
  const auto out = e.process(
      std::vector<nudge::event>{
          // 10:00 CET on 15 March -> 10:00 CEST on 15 April, 08:00Z (the clocks changed between).
          ev("ann", "signup", "2024-03-15T09:00:00Z"),
          // 10:00 CET on 31 January -> 10:00 CET on 29 February.
          ev("bob", "signup", "2024-01-31T09:00:00Z"),
      },
      at("2024-06-01T00:00:00Z"));
  CHECK(lines(out) == strings{
                          "2024-02-29T09:00:00Z bob checkin send_email(checkin)",
                          "2024-04-15T08:00:00Z ann checkin send_email(checkin)",
                      });
}

TEST_CASE("calendar: builders take months", "[calendar]") {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("r")
          .on(nudge::on("purchase"))
          .check_after(nudge::years(1))
          .only_if(nudge::not_happened(nudge::on("purchase")).within(nudge::years(1)))
          .then(nudge::send_email("anniversary")));
  const auto p = nudge::program::compile(std::move(rs));
  nudge::engine e{p};
  // 29 Feb 2024 + 1 year = 28 Feb 2025 (UTC: the program has no delivery section).
  CHECK(lines(e.process(std::vector<nudge::event>{ev("ann", "purchase", "2024-02-29T12:00:00Z")},
                        at("2026-01-01T00:00:00Z"))) ==
        strings{"2025-02-28T12:00:00Z ann r send_email(anniversary)"});
}

TEST_CASE(
    "calendar: a month unit where only fixed lengths work is a located error and the units "
    "are listed",
    "[calendar][json]") {
  auto problems = [](const std::string& text) {
    auto r = nudge::try_load_rules(text, {.file_name = "m.json"});
    strings out;
    for (const auto& d : r.diagnostics) {
      out.push_back(d.to_string());
    }
    return out;
  };
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"},
 "then": [{"do": "send_email", "arg": "x", "delay": "2mo"}]}]})") ==
        strings{"m.json:2:53: /rules/0/then/0/delay: \"2mo\" counts calendar months, which only "
                "rule delays, \"within\" / \"older_than\" windows and fixed workflow waits take "
                "(use a fixed length here, e.g. \"30d\")"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"}, "delay": "2x",
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"m.json:1:60: /rules/0/delay: \"2x\" is not a duration (expected a whole number "
                "and a unit: s (seconds), m (minutes), h (hours), d (days), w (weeks), mo "
                "(calendar months), y (calendar years); e.g. \"60d\")"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"}, "delay": "1178mo",
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"m.json:1:60: /rules/0/delay: calendar months must be 0 to 1177 (a month counts "
                "as 31 days against the limit of 36500d)"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"},
 "if": {"happened": {"event": "signup", "within": "0mo"}},
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"m.json:2:51: /rules/0/if/happened/within: calendar months must be 1 to 1177 (a "
                "month counts as 31 days against the limit of 36500d)"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"}, "reentry": {"once_per": "1y"},
 "then": [{"do": "send_email", "arg": "x"}]}]})")
            .size() == 1);
}

TEST_CASE("calendar: a sum over a month window, and months in the fingerprint", "[calendar]") {
  const auto p = nudge::load_rules(R"({"rules": [
    {"id": "big_month", "on": {"event": "purchase"},
     "if": {"sum": {"event": "purchase", "property": "value", "within": "1mo", "ge": 100}},
     "then": [{"do": "send_email", "arg": "big_month"}]}
  ]})");
  auto buy = [](const char* iso, double value) {
    auto e = ev("ann", "purchase", iso);
    e.props["value"] = value;
    return e;
  };
  nudge::engine e{p};
  // 60 on 31 January 10:00 stays in the window until 29 February 10:00: at 09:59:59 the sum is
  // 60 + 40 = 100; at 10:00 the 31 January purchase has left it (40 + 50 = 90).
  CHECK(lines(e.process(std::vector<nudge::event>{buy("2024-01-31T10:00:00Z", 60),
                                                  buy("2024-02-29T09:59:59Z", 40),
                                                  buy("2024-02-29T10:00:00Z", 50)},
                        at("2024-03-01T00:00:00Z"))) ==
        strings{"2024-02-29T09:59:59Z ann big_month send_email(big_month)"});
  // "1mo" and "31d" are different rule sets.
  const auto fixed = nudge::load_rules(R"({"rules": [
    {"id": "big_month", "on": {"event": "purchase"},
     "if": {"sum": {"event": "purchase", "property": "value", "within": "31d", "ge": 100}},
     "then": [{"do": "send_email", "arg": "big_month"}]}
  ]})");
  CHECK(nudge::program_fingerprint(*p) != nudge::program_fingerprint(*fixed));
}

TEST_CASE("calendar: months on a step that is not a fixed wait are refused", "[calendar]") {
  nudge::rule_set rs;
  auto w = nudge::workflow_builder("w")
               .enter_on(nudge::on("signup"))
               .wait_until_time("t", 9 * 3600)
               .send("s", nudge::send_email("x"))
               .build();
  w.steps[0].length_months = 1;
  w.steps[1].length_months = 1;
  rs.workflows.push_back(w);
  try {
    nudge::program::compile(std::move(rs));
    FAIL("compiled");
  } catch (const nudge::rule_error& e) {
    strings got;
    for (const auto& d : e.diagnostics()) {
      got.push_back(d.to_string());
    }
    CHECK(got == strings{"/workflows/0/steps/0/wait: only a fixed wait takes calendar months",
                         "/workflows/0/steps/1: only a fixed wait takes calendar months"});
  }
}
